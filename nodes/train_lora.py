"""Train LoRA: RFMI FT on a fine-tune set, inside ComfyUI on the user's GPU (paper Algorithm 1, Table 2)."""

from __future__ import annotations

import os

import comfy.model_management
import comfy.sd
import comfy.utils
import folder_paths
from comfy_api.latest import io, ui

from ..rfmi_core import FinetuneSet
from ..rfmi_core.lora import make_weights_trainable, parse_target_modules, save_lora
from ..rfmi_core.plot import loss_curve_image
from ..rfmi_core.prompts import resolve_inside
from ..rfmi_core.train import LatentSpaceData, config_from_settings, latest_checkpoint, setting, train_lora
from .export_set import set_path
from .model_checks import require_flow_model
from .sockets import CATEGORY
from .training_adapter import comfy_training_mode, comfy_velocity_fn


def lora_path(name: str) -> str:
    """models/loras/<name>.safetensors; a name that would leave the folder is refused."""
    stem = name[: -len(".safetensors")] if name.endswith(".safetensors") else name
    return resolve_inside(folder_paths.get_folder_paths("loras")[0], stem + ".safetensors")


def setting_inputs(*names: str) -> list:
    """The node inputs of these TrainConfig fields: name, default, range and tooltip from the field's declaration."""
    inputs = []
    for name in names:
        item = setting(name)
        common = dict(default=item.node_default, tooltip=item.tooltip)
        if item.kind == "int":
            inputs.append(io.Int.Input(item.node_name, **common, **item.node_range))
        elif item.kind == "float":
            inputs.append(io.Float.Input(item.node_name, **common, **item.node_range))
        elif item.kind == "bool":
            inputs.append(io.Boolean.Input(item.node_name, **common))
        elif item.kind == "choice":
            inputs.append(io.Combo.Input(item.node_name, options=list(item.choices), **common))
        else:
            raise ValueError(f"TrainConfig.{name} ({item.kind}) has no node input")
    return inputs


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
                *setting_inputs("steps", "lr", "rank", "alpha", "warmup_steps", "batch_size", "grad_accum_steps",
                                "max_grad_norm", "t_sampling", "bf16", "gradient_checkpointing", "save_every"),
                io.Boolean.Input("resume", default=True, tooltip="Continue from this LoRA's latest checkpoint if any."),
                *setting_inputs("seed"),
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
    def train(cls, model, set_name, lora_name, resume, target_modules, **settings) -> io.NodeOutput:
        require_flow_model(model)
        out_path = lora_path(lora_name)
        finetune_set = FinetuneSet.open(set_path(set_name))
        checkpoints = os.path.join(str(finetune_set.root), "checkpoints", os.path.basename(out_path)[: -len(".safetensors")])
        config = config_from_settings({**settings, "target_modules": parse_target_modules(target_modules)},
                                      node_names=True)
        steps = config.steps
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
