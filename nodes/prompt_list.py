"""Prompt list: one prompt a line, from a text file in ComfyUI's input folder or from the text widget."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..rfmi_core.util.fingerprint import file_fingerprint
from ..rfmi_core.text.prompts import parse_prompt_lines, resolve_inside
from .schema_compat import schema_fields
from .sockets import CATEGORY

TEXT_WIDGET = "(text below)"


def prompt_files() -> list[str]:
    """.txt files under the input folder, as paths relative to it."""
    root = folder_paths.get_input_directory()
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/") for f in files if f.endswith(".txt")]
    return sorted(found)


class RFMIPromptList(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIPromptList",
            display_name="Prompt list",
            category=CATEGORY,
            description="One prompt a line (blank lines and lines starting with # skipped) from a .txt file in ComfyUI's "
                        "input folder, or from the text below. The output is a list: downstream nodes (text encoder, "
                        "Best-of-N) run once per prompt. T2I-CompBench's *_train.txt files work as they are.",
            inputs=[
                io.Combo.Input("file", options=[TEXT_WIDGET] + prompt_files(), default=TEXT_WIDGET),
                io.String.Input("text", multiline=True, default="a red cube to the left of a blue sphere"),
                io.Int.Input("start", default=0, min=0, max=1_000_000, tooltip="Index of the first prompt."),
                io.Int.Input("count", default=0, min=0, max=1_000_000, tooltip="How many prompts (0: all from start)."),
            ],
            outputs=[io.String.Output(display_name="prompt", is_output_list=True)],
            **schema_fields(search_aliases=["prompt file", "t2i-compbench", "text list"]),
        )

    @classmethod
    def fingerprint_inputs(cls, file=TEXT_WIDGET, **_) -> str:
        """The prompt file's contents, so that editing the file re-runs the node (the text widget is an input)."""
        if file == TEXT_WIDGET:
            return ""
        try:
            return file_fingerprint(resolve_inside(folder_paths.get_input_directory(), file))
        except ValueError:
            return "invalid path"  # execute says what is wrong

    @classmethod
    def execute(cls, file, text, start, count) -> io.NodeOutput:
        if file != TEXT_WIDGET:
            path = resolve_inside(folder_paths.get_input_directory(), file)
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        prompts = parse_prompt_lines(text)[start:]
        prompts = prompts[:count] if count else prompts
        if not prompts:
            raise ValueError("the prompt list is empty: write one prompt a line, or pick a file that has some "
                             f"(start={start} skips the first {start})")
        return io.NodeOutput(prompts)
