"""A ComfyUI checkpoint as the candidate maker of headless set building (``comfyui_build_set.py``).

The model and text encoders come from ComfyUI's own loader nodes (Load Checkpoint or Load Diffusion Model; Load CLIP,
DualCLIP or TripleCLIP), prompts are encoded by CLIP Text Encode, candidates sampled by Best-of-N's own ``execute``
(ComfyUI's sampler with the pack's tap, candidate j from seed + j on a batch-1 empty latent) and stored as Export
Fine-tune Set stores them (``conditioning_tensors``, ``model_identity``; the records by
``rfmi_core.finetune_set.candidate_records``). So a set built headless holds the candidates, MI and conditioning that
Best-of-N + Export give for the same seed. Import it after ``headless_comfyui.start_comfyui``.
"""

from __future__ import annotations

import torch

import comfy.samplers
import comfy.utils
import nodes as comfy_nodes

from ..rfmi_core.mi.pointwise import PMI_T_EPS
from ..rfmi_core.mi.ranking import DEFAULT_SCORE, RANKING_N_T, RANKING_T_MAX, is_exact
from .best_of_n import RFMIBestOfN
from .conditioning import conditioning_tensors, model_identity

__all__ = ["ComfyCandidates", "load", "load_model", "load_text_encoders"]

LATENT_DOWNSCALE = 8  # EmptySD3LatentImage / EmptyLatentImage: one latent position per 8×8 pixels


def _safetensors(name: str, flag: str) -> str:
    if not name.endswith(".safetensors"):
        raise ValueError(f"{flag} {name!r}: only .safetensors files are loaded")
    return name


def load_model(checkpoint: str | None = None, diffusion_model: str | None = None):
    """(MODEL, the checkpoint's CLIP or None) by Load Checkpoint (models/checkpoints) or Load Diffusion Model
    (models/diffusion_models, default weight dtype)."""
    if checkpoint:
        model, clip, _ = comfy_nodes.CheckpointLoaderSimple().load_checkpoint(_safetensors(checkpoint, "--checkpoint"))
        return model, clip
    return comfy_nodes.UNETLoader().load_unet(_safetensors(diffusion_model, "--diffusion-model"), "default")[0], None


def load_text_encoders(names: list[str], clip_type: str = "sd3"):
    """The CLIP of 1, 2 or 3 files under models/text_encoders, by Load CLIP, DualCLIPLoader or TripleCLIPLoader."""
    names = [_safetensors(n, "--text-encoders") for n in names]
    if len(names) == 1:
        return comfy_nodes.CLIPLoader().load_clip(names[0], clip_type)[0]
    if len(names) == 2:
        return comfy_nodes.DualCLIPLoader().load_clip(names[0], names[1], clip_type)[0]
    if len(names) == 3:
        from comfy_extras.nodes_sd3 import TripleCLIPLoader

        return TripleCLIPLoader.execute(*names).result[0]
    raise ValueError(f"--text-encoders takes 1 to 3 files; got {len(names)}")


class ComfyCandidates:
    """Best-of-N by MI on a ComfyUI MODEL and CLIP (``rfmi_core.candidates.CandidateMaker``)."""

    def __init__(self, model, clip, *, width: int, height: int, steps: int, cfg: float, sampler_name: str,
                 scheduler: str, batch_size: int, velocity: str = "cfg", score: str = DEFAULT_SCORE,
                 n_t: int = RANKING_N_T):
        if clip is None:
            raise ValueError("the checkpoint holds no text encoder: give --text-encoders")
        if sampler_name not in comfy.samplers.KSampler.SAMPLERS:
            raise ValueError(f"--sampler {sampler_name!r} is not a ComfyUI sampler; one of: "
                             f"{', '.join(comfy.samplers.KSampler.SAMPLERS)}")
        if scheduler not in comfy.samplers.KSampler.SCHEDULERS:
            raise ValueError(f"--scheduler {scheduler!r} is not a ComfyUI scheduler; one of: "
                             f"{', '.join(comfy.samplers.KSampler.SCHEDULERS)}")
        self.model, self.clip = model, clip
        self.identity = model_identity(model)
        channels = model.model.latent_format.latent_channels
        self.latent = {"samples": torch.zeros(1, channels, height // LATENT_DOWNSCALE, width // LATENT_DOWNSCALE)}
        self.options = dict(steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler)
        self.batch_size, self.velocity, self.score, self.n_t = batch_size, velocity, score, n_t

    def encode(self, text: str) -> list:
        """CLIP Text Encode's CONDITIONING of ``text``."""
        return comfy_nodes.CLIPTextEncode().encode(self.clip, text)[0]

    def tensors(self, conditioning: list) -> dict[str, torch.Tensor]:
        return conditioning_tensors(conditioning)

    def settings(self, seed: int, n: int) -> dict:
        """Best-of-N's ``all_scores.settings``."""
        o = self.options
        exact = dict(n_t=self.n_t, t_eps=PMI_T_EPS, t_max=RANKING_T_MAX) if is_exact(self.score) else {}
        return dict(sampler_name=o["sampler_name"], scheduler=o["scheduler"], steps=o["steps"], cfg=o["cfg"],
                    velocity=self.velocity, score=self.score, seed=seed, n=n, **exact)

    def best_of_n(self, positive: list, negative: list, seed: int, n: int, progress=None, text: str = ""):
        """Best-of-N's ``all_scores`` for this prompt: n candidates, seeds seed … seed + n − 1. ``progress(done)``
        hears Best-of-N's own progress bar (candidate-steps of n·steps) through ComfyUI's progress hook."""
        o = self.options
        previous = comfy.utils.PROGRESS_BAR_HOOK
        if progress is not None:  # Best-of-N's own bar (n·steps); not the exact score's bar over its draws
            total = n * o["steps"]
            comfy.utils.set_progress_bar_global_hook(
                lambda value, bar_total, preview=None, **_: progress(int(value)) if bar_total == total else None)
        try:
            return RFMIBestOfN.execute(self.model, seed, o["steps"], o["cfg"], o["sampler_name"], o["scheduler"],
                                       positive, negative, self.latent, n, 1, self.batch_size, self.velocity,
                                       self.score, n_t=self.n_t, clip=self.clip, text=text).result[2]
        finally:
            comfy.utils.set_progress_bar_global_hook(previous)


def load(*, checkpoint: str | None, diffusion_model: str | None, text_encoders: list[str], clip_type: str,
         width: int, height: int, **options) -> ComfyCandidates:
    """The maker of ``build_set --comfyui``: the model (and its CLIP) by ComfyUI's loaders, ``text_encoders`` when
    given."""
    model, clip = load_model(checkpoint, diffusion_model)
    if text_encoders:
        clip = load_text_encoders(text_encoders, clip_type)
    return ComfyCandidates(model, clip, width=width, height=height, **options)
