"""Train LoRA: RFMI FT on a fine-tune set, inside ComfyUI on the user's GPU (paper Algorithm 1, Table 2)."""

from __future__ import annotations

import os
from dataclasses import replace

import torch

import comfy.model_management
import comfy.sd
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..rfmi_core import FinetuneSet
from ..rfmi_core.util.fingerprint import set_fingerprint, stat_fingerprint
from ..rfmi_core.train.lora import load_lora_file, make_weights_trainable, parse_target_modules, save_lora
from ..rfmi_core.present.plot import loss_curve_image, save_png
from ..rfmi_core.text.prompts import resolve_inside
from ..rfmi_core.train import (LatentSpaceData, config_from_settings, latest_checkpoint, low_memory, setting,
                               train_lora)
from ..rfmi_core.train.validation import ValidationPlan, image_grid
from .export_set import set_path
from .model_checks import require_flow_model
from .rank_and_pick import save_temp_pngs
from .schema_compat import advanced, schema_fields
from .sockets import CATEGORY
from .training_adapter import comfy_training_mode, comfy_velocity_fn, sampling_sigmas, training_copy

NO_LORA = "(none)"
PRESETS = ("custom", "low memory")
PRECISIONS = ("auto", "bf16", "fp32")


def uses_bf16(precision: str, device) -> bool:
    """bf16 autocast for ``precision``: "auto" follows the device (bf16 on a GPU; float32 on a CPU, where bf16 is
    emulated: 23× slower per step in benchmarks/train_low_memory_cpu.py), else as named."""
    return precision == "bf16" or (precision == "auto" and getattr(device, "type", str(device)) != "cpu")
VALIDATION_FOLDER = "{stem}_validation"  # beside the LoRA in models/loras/


def lora_path(name: str) -> str:
    """models/loras/<name>.safetensors; a name that would leave the folder is refused."""
    stem = name[: -len(".safetensors")] if name.endswith(".safetensors") else name
    return resolve_inside(folder_paths.get_folder_paths("loras")[0], stem + ".safetensors")


def init_lora_files() -> list[str]:
    """The .safetensors LoRAs ComfyUI lists under models/loras (only safetensors are loaded, never pickles)."""
    return [name for name in folder_paths.get_filename_list("loras") if name.endswith(".safetensors")]


def setting_inputs(*names: str, **extra) -> list:
    """The node inputs of these TrainConfig fields: name, default, range and tooltip from the field's declaration;
    ``extra`` keyword arguments (e.g. advanced) go to every input."""
    inputs = []
    for name in names:
        item = setting(name)
        common = dict(default=item.node_default, tooltip=item.tooltip, **extra)
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


def validation_inputs() -> list:
    """Validation images: the set's first prompts, sampled with fixed seeds every N steps and at step 0."""
    return [
        io.Int.Input("validation_every", default=0, min=0, max=1_000_000,
                     tooltip="Sample the validation prompts every N steps (and at step 0, the model as it came in), "
                             "decode them with the VAE and save one grid per step beside the LoRA "
                             "(models/loras/<lora_name>_validation/); 0: off. Needs the vae input."),
        io.Int.Input("validation_prompts", default=4, min=1, max=64, **advanced(),
                     tooltip="The set's first N distinct prompts (one row each), seeds seed … seed + 1."),
        io.Int.Input("validation_steps", default=20, min=1, max=200, **advanced(),
                     tooltip="Sampling steps of each validation image (Euler, the model's own 'simple' schedule)."),
        io.Float.Input("validation_cfg", default=4.5, min=0.0, max=30.0, step=0.1, round=0.01, **advanced(),
                       tooltip="CFG scale of the validation images (against each prompt's own negative)."),
        io.Vae.Input("vae", optional=True, tooltip="Decodes the validation images."),
    ]


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
                        "Trains a copy: the model passed in is left exactly as it was. Runs once per queue even "
                        "after a prompt list: connect Export Fine-tune Set's set_name so it trains after every prompt "
                        "is exported. Re-runs when the set's contents or the init LoRA change.",
            inputs=[
                io.Model.Input("model"),
                io.String.Input("set_name", default="rfmi_set", tooltip="A set under output/rfmi_sets/."),
                io.String.Input("lora_name", default="rfmi_lora"),
                *setting_inputs("steps", "lr", "rank"),
                *setting_inputs("alpha", "warmup_steps", "batch_size", "grad_accum_steps", "max_grad_norm",
                                "t_sampling", **advanced()),
                io.Combo.Input("precision", options=list(PRECISIONS), default="auto", **advanced(),
                               tooltip="auto: bf16 autocast on a GPU, float32 on a CPU (where bf16 is emulated and "
                                       "far slower); bf16 / fp32: as named. The LoRA itself stays float32."),
                *setting_inputs("gradient_checkpointing", "save_every", **advanced()),
                io.Boolean.Input("resume", default=True, tooltip="Continue from this LoRA's latest checkpoint if any."),
                *setting_inputs("seed", **advanced(), control_after_generate=True),
                io.String.Input("target_modules", default="", multiline=True, **advanced(),
                                tooltip="Empty: attention qkv/proj of every joint/double block. Names (comma or line "
                                        "separated) or a regex over module paths."),
                io.Combo.Input("preset", options=list(PRESETS), default=PRESETS[0],
                               tooltip="low memory: gradient checkpointing and batch_size 1 (and bf16 unless precision "
                                       "says fp32 or auto on a CPU) whatever is set above, at the same effective batch "
                                       "(grad_accumulation × batch_size micro-batches of one); the conditioning is "
                                       "always the set's cached tensors, so no text encoder is loaded."),
                io.Combo.Input("init_lora", options=[NO_LORA, *init_lora_files()], default=NO_LORA,
                               tooltip="Start from this LoRA (a .safetensors this node wrote, or any with the same "
                                       "keys, rank and target modules) instead of from zero."),
                *validation_inputs(),
            ],
            outputs=[
                io.Model.Output(display_name="MODEL", tooltip="The input model with the trained LoRA applied."),
                io.Image.Output(display_name="loss_curve"),
                io.String.Output(display_name="lora_path"),
            ],
            is_output_node=True,
            is_input_list=True,  # one training per queue, after all of an upstream prompt list's exports
            **schema_fields(search_aliases=["lora training", "fine-tune", "finetune", "rfmi ft"]),
        )

    @classmethod
    def fingerprint_inputs(cls, set_name=(), init_lora=(), **_) -> tuple:
        """The set's contents and the init LoRA's file (those given as widgets; a linked set_name re-runs with its
        source)."""
        try:
            sets = tuple(set_fingerprint(set_path(name)) for name in set_name)
        except ValueError:
            sets = ("invalid name",)  # execute says what is wrong
        loras = tuple(stat_fingerprint([init_lora_path(name)]) for name in init_lora if name != NO_LORA)
        return sets, loras

    @classmethod
    def execute(cls, **inputs: list) -> io.NodeOutput:
        return cls.train(**single_values(inputs))

    @classmethod
    def train(cls, model, set_name, lora_name, resume, target_modules, preset, init_lora, validation_every,
              validation_prompts, validation_steps, validation_cfg, vae=None, precision="auto",
              **settings) -> io.NodeOutput:
        require_flow_model(model)
        if validation_every and vae is None:
            raise ValueError("validation_every > 0 needs a VAE to decode the validation images: connect the vae "
                             "input, or set validation_every to 0")
        out_path = lora_path(lora_name)
        finetune_set = FinetuneSet.open(set_path(set_name))
        checkpoints = os.path.join(str(finetune_set.root), "checkpoints", os.path.basename(out_path)[: -len(".safetensors")])
        config = config_from_settings({**settings, "target_modules": parse_target_modules(target_modules)},
                                      node_names=True)
        config = low_memory(config) if preset == "low memory" else config
        config = replace(config, bf16=uses_bf16(precision, model.load_device))
        init = load_lora_file(init_lora_path(init_lora)) if init_lora != NO_LORA else None
        trainee = training_copy(model)
        comfy.model_management.load_models_gpu([trainee], force_full_load=True)
        base = trainee.model
        data = LatentSpaceData(finetune_set.training_data(), base.process_latent_in)
        velocity = comfy_velocity_fn(base)
        plan = (ValidationPlan.from_data(data, validation_every, validation_prompts, config.seed,
                                         sampling_sigmas(trainee, validation_steps), validation_cfg,
                                         images_per_prompt=2, bf16=config.bf16) if validation_every else None)
        make_weights_trainable(base.diffusion_model)
        validate = plan.hook(base.diffusion_model, velocity) if plan else (lambda step: None)
        progress = comfy.utils.ProgressBar(config.steps)

        def on_step(step: int, loss: float) -> None:
            comfy.model_management.throw_exception_if_processing_interrupted()
            validate(step)
            progress.update_absolute(step, config.steps)

        resume_from = latest_checkpoint(checkpoints) if resume and os.path.isdir(checkpoints) else None
        with comfy_training_mode():
            validate(0)
            result = train_lora(base.diffusion_model, data, velocity, config, checkpoint_dir=checkpoints,
                                resume_from=resume_from, on_step=on_step, init_lora=init)
        save_lora(result.lora_state_dict, out_path, metadata={"rfmi_set": set_name, "steps": str(result.steps_done)})
        patched, _ = comfy.sd.load_lora_for_models(model, None, result.lora_state_dict, 1.0, 0)
        text = f"{os.path.basename(out_path)}: {result.steps_done} steps, final loss {result.losses[-1]:.4f}"
        ui = {"text": [text]}
        if plan:
            ui["images"] = save_temp_pngs(validation_grids(plan, vae, base, out_path), "rfmi_validation")
        return io.NodeOutput(patched, loss_curve_image(result.losses), out_path, ui=ui)


def init_lora_path(name: str) -> str:
    return folder_paths.get_full_path_or_raise("loras", name)


def validation_grids(plan: ValidationPlan, vae, base, out_path: str) -> torch.Tensor:
    """Each validation step's samples decoded by ``vae`` as one grid (a row per prompt, a column per seed), saved as
    <lora>_validation/step_<n>.png beside the LoRA; returns the grids [steps, H, W, 3] in step order."""
    folder = os.path.join(os.path.dirname(out_path),
                          VALIDATION_FOLDER.format(stem=os.path.basename(out_path)[: -len(".safetensors")]))
    os.makedirs(folder, exist_ok=True)
    grids = []
    for step, latents in sorted(plan.samples.items()):
        with torch.no_grad():
            images = vae.decode(base.process_latent_out(latents.float()))[..., :3].cpu().float()
        grid = image_grid(images.reshape(-1, *images.shape[-3:]), columns=len(plan.seeds))
        save_png(grid, os.path.join(folder, f"step_{step:06d}.png"), compress_level=6)
        grids.append(grid)
    return torch.stack(grids)


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
