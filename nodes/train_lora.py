"""Train LoRA: RFMI FT on a fine-tune set, inside ComfyUI on the user's GPU (paper Algorithm 1, Table 2)."""

from __future__ import annotations

import os

import torch

import comfy.model_management
import comfy.sd
import comfy.utils
import folder_paths
from comfy_api.latest import io, ui

from ..rfmi_core import FinetuneSet
from ..rfmi_core.lora import DEFAULT_TARGETS, save_lora
from ..rfmi_core.plot import loss_curve_image
from ..rfmi_core.prompts import resolve_inside
from ..rfmi_core.train import T_SAMPLINGS, TrainConfig, latest_checkpoint, train_lora
from .export_set import set_path
from .model_checks import require_flow_model
from .sockets import CATEGORY
from .training_adapter import comfy_training_mode, comfy_velocity_fn


class LatentSpaceData:
    """A fine-tune set's examples with their latents moved from VAE space into the model's space (process_in)."""

    def __init__(self, data, process_in):
        self.data, self.process_in = data, process_in

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        latent, cond, uncond = self.data[index]
        return self.process_in(latent[None])[0], cond, uncond


def lora_path(name: str) -> str:
    """models/loras/<name>.safetensors; a name that would leave the folder is refused."""
    stem = name[: -len(".safetensors")] if name.endswith(".safetensors") else name
    return resolve_inside(folder_paths.get_folder_paths("loras")[0], stem + ".safetensors")


def parse_targets(text: str) -> str | list[str]:
    """Empty: the default (attention qkv/proj of every joint/double block); one name a line or comma: a list; else a regex."""
    text = text.strip()
    if not text:
        return DEFAULT_TARGETS
    if any(ch in text for ch in "\\()[]|*+?^$"):
        return text
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class RFMITrainLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMITrainLoRA",
            display_name="Train LoRA",
            category=CATEGORY,
            description="RFMI FT: LoRA-fine-tunes the model on a fine-tune set with the flow-matching velocity loss "
                        "(logit-normal t), Table 2 defaults, checkpoints and resume. Writes models/loras/<lora_name> "
                        "(loads with the stock LoraLoaderModelOnly) and outputs the model with the LoRA applied. "
                        "The model passed in is left exactly as it was. Runs once per queue even after a prompt "
                        "list: connect Export Fine-tune Set's set_name so it trains after every prompt is exported.",
            inputs=[
                io.Model.Input("model"),
                io.String.Input("set_name", default="rfmi_set", tooltip="A set under output/rfmi_sets/."),
                io.String.Input("lora_name", default="rfmi_lora"),
                io.Int.Input("steps", default=2000, min=1, max=1_000_000),
                io.Float.Input("learning_rate", default=5e-6, min=0.0, max=1.0, step=1e-6, round=1e-8),
                io.Int.Input("rank", default=32, min=1, max=512),
                io.Float.Input("alpha", default=32.0, min=0.0, max=1024.0, step=1.0),
                io.Int.Input("warmup_steps", default=400, min=0, max=1_000_000),
                io.Int.Input("batch_size", default=1, min=1, max=256),
                io.Int.Input("grad_accumulation", default=4, min=1, max=1024),
                io.Float.Input("max_grad_norm", default=0.005, min=0.0, max=1000.0, step=0.001, round=1e-6),
                io.Combo.Input("t_sampling", options=list(T_SAMPLINGS), default="logit_normal"),
                io.Boolean.Input("bf16", default=True, tooltip="bf16 autocast (the LoRA stays float32)."),
                io.Boolean.Input("gradient_checkpointing", default=True),
                io.Int.Input("save_every", default=250, min=0, max=1_000_000, tooltip="Checkpoint every N steps (0: end only)."),
                io.Boolean.Input("resume", default=True, tooltip="Continue from this LoRA's latest checkpoint if any."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF),
                io.String.Input("target_modules", default="", multiline=True,
                                tooltip="Empty: attention qkv/proj of every joint/double block. Names (comma or line "
                                        "separated) or a regex over module paths."),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The input model with the trained LoRA applied."),
                io.Image.Output(display_name="loss_curve"),
                io.String.Output(display_name="lora_path"),
            ],
            is_output_node=True,
            is_input_list=True,  # one training per queue, after all of an upstream prompt list's exports
        )

    @classmethod
    def execute(cls, **inputs: list) -> io.NodeOutput:
        return cls.train(**single_values(inputs))

    @classmethod
    def train(cls, model, set_name, lora_name, steps, learning_rate, rank, alpha, warmup_steps, batch_size,
              grad_accumulation, max_grad_norm, t_sampling, bf16, gradient_checkpointing, save_every, resume, seed,
              target_modules) -> io.NodeOutput:
        require_flow_model(model)
        out_path = lora_path(lora_name)
        finetune_set = FinetuneSet.open(set_path(set_name))
        checkpoints = os.path.join(str(finetune_set.root), "checkpoints", os.path.basename(out_path)[: -len(".safetensors")])
        config = TrainConfig(rank=rank, alpha=alpha, lr=learning_rate, warmup_steps=warmup_steps, steps=steps,
                             batch_size=batch_size, grad_accum_steps=grad_accumulation, max_grad_norm=max_grad_norm,
                             t_sampling=t_sampling, bf16=bf16, gradient_checkpointing=gradient_checkpointing,
                             save_every=save_every, seed=seed, target_modules=parse_targets(target_modules))
        comfy.model_management.load_models_gpu([model], force_full_load=True)
        base = model.model
        data = LatentSpaceData(finetune_set.training_data(), base.process_latent_in)
        progress = comfy.utils.ProgressBar(steps)

        def on_step(step: int, loss: float) -> None:
            comfy.model_management.throw_exception_if_processing_interrupted()
            progress.update_absolute(step, steps)

        resume_from = latest_checkpoint(checkpoints) if resume and os.path.isdir(checkpoints) else None
        make_weights_trainable(base.diffusion_model)
        with comfy_training_mode():
            result = train_lora(base.diffusion_model, data, comfy_velocity_fn(base), config, checkpoint_dir=checkpoints,
                                resume_from=resume_from, on_step=on_step)
        save_lora(result.lora_state_dict, out_path, metadata={"rfmi_set": set_name, "steps": str(result.steps_done)})
        patched, _ = comfy.sd.load_lora_for_models(model, None, result.lora_state_dict, 1.0, 0)
        text = f"{os.path.basename(out_path)}: {result.steps_done} steps, final loss {result.losses[-1]:.4f}"
        return io.NodeOutput(patched, loss_curve_image(result.losses), out_path, ui=ui.PreviewText(text))


def single_values(inputs: dict[str, list]) -> dict:
    """The one value of each input of a list-input node: a list (e.g. set_name once per exported prompt) must repeat
    a single value; a MODEL or set that differs along the list is refused (train one at a time)."""
    values = {}
    for name, items in inputs.items():
        items = items if isinstance(items, list) else [items]
        first = items[0]
        if any(item is not first and item != first for item in items[1:]):
            raise ValueError(f"Train LoRA got {len(items)} different values for {name}; it trains one model on one set "
                             "per run: give a single value")
        values[name] = first
    return values


def make_weights_trainable(net: torch.nn.Module) -> int:
    """Replaces inference-mode parameters (ComfyUI loads weights inside torch.inference_mode, and autograd may not save
    those) by ordinary tensors with the same values, one at a time; returns how many. The weights stay bitwise equal."""
    count = 0
    with torch.inference_mode(False):
        for module in net.modules():
            for name, param in list(module._parameters.items()):
                if param is not None and param.is_inference():
                    module._parameters[name] = torch.nn.Parameter(param.clone(), requires_grad=param.requires_grad)
                    count += 1
    return count
