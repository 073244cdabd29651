"""Taps: post-CFG functions that read u_y and u_∅ inside ComfyUI's own sampler (paper Algorithm 2 and Prop. 3.3).

A tap goes on a clone of a ComfyUI model (``attach``: ``set_model_sampler_post_cfg_function``, with the uncond pass
forced even at cfg = 1). For every model evaluation ComfyUI hands it the cond/uncond denoised estimates; the tap turns
them into paper velocities (``conventions.velocity_from_denoised``), passes them to ``read`` and returns the sampler's
own result unchanged, so the latents are those of the stock sampler. No ComfyUI import: the model is duck-typed.

``TrajectoryTap`` integrates MI along the sampler's trajectory; ``PhraseTrajectoryTap`` also each phrase's MI, from
velocities of the prompt without each phrase that its caller evaluates at the same call; ``PairTap`` keeps the latest
pair (Score by MI).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .conventions import velocity_from_denoised
from .phrase_mi import PhraseMIResult, PhraseTrajectoryMI
from .trajectory import MIResult, StepIntegrand, TrajectoryMI

__all__ = ["PostCFGTap", "TrajectoryTap", "PhraseTrajectoryTap", "PairTap"]


class PostCFGTap:
    """Base of the taps: ``read(x, sigma, u_cond, u_uncond, args)`` sees each evaluation's paper velocities."""

    def attach(self, model):
        """A clone of ``model`` whose sampler reports to this tap; the uncond pass is forced even at cfg = 1."""
        patched = model.clone()
        patched.set_model_sampler_post_cfg_function(self.post_cfg, disable_cfg1_optimization=True)
        return patched

    def post_cfg(self, args: dict) -> Tensor:
        """ComfyUI's post-CFG function: reads the evaluation, returns the sampler's own denoised result."""
        if args["uncond"] is None:  # cannot happen with disable_cfg1_optimization, but a zero uncond would lie
            raise RuntimeError("RFMI needs the unconditional pass; connect a negative (empty-prompt) conditioning")
        x, sigma = args["input"].detach(), args["sigma"].detach()
        self.read(x, sigma, velocity_from_denoised(x, args["cond_denoised"].detach(), sigma),
                  velocity_from_denoised(x, args["uncond_denoised"].detach(), sigma), args)
        return args["denoised"]

    def read(self, x: Tensor, sigma: Tensor, u_cond: Tensor, u_uncond: Tensor, args: dict) -> None:
        raise NotImplementedError


class PairTap(PostCFGTap):
    """Keeps (u_y, u_∅) of the latest model evaluation in ``pair``."""

    def __init__(self) -> None:
        self.pair: tuple[Tensor, Tensor] | None = None

    def read(self, x: Tensor, sigma: Tensor, u_cond: Tensor, u_uncond: Tensor, args: dict) -> None:
        self.pair = (u_cond, u_uncond)


class TrajectoryTap(PostCFGTap):
    """Feeds each step's velocities to ``TrajectoryMI``.

    Samplers that evaluate the model several times per step (heun, dpmpp_2s, ...) or move the grid (uni_pc) are
    attributed by the sampler callback (``on_step``): the last evaluation before callback(i) is step i, at its own σ;
    its Δt runs to the σ of the next committed step (or to the schedule's final σ). Evaluations after the last
    callback are dropped, never double-counted. Each evaluation is reduced to its integrands at once (a few [B] and
    [B, *P] tensors): the tap keeps no latent-sized tensor past the hook.
    """

    def __init__(self, velocity: str = "cfg", score: str = "rfmi", keep_map: bool = True):
        self.accumulator = TrajectoryMI(velocity=velocity, score=score, keep_map=keep_map)
        self._latest: list[StepIntegrand] | None = None
        self._committed: list[StepIntegrand] | None = None
        self._final_sigma: float = 0.0

    def read(self, x: Tensor, sigma: Tensor, u_cond: Tensor, u_uncond: Tensor, args: dict) -> None:
        self._latest = self.integrands(sigma.float().flatten().clamp(0, 1), x, u_cond, u_uncond,
                                       float(args["cond_scale"]), args)
        sample_sigmas = args["model_options"].get("transformer_options", {}).get("sample_sigmas")
        if sample_sigmas is not None:
            self._final_sigma = float(sample_sigmas[-1])

    def integrands(self, sigma: Tensor, x: Tensor, u_cond: Tensor, u_uncond: Tensor, cfg_scale: float,
                   args: dict) -> list[StepIntegrand]:
        """One evaluation reduced to its integrands (what ``_add`` adds once the step is known)."""
        return [self.accumulator.integrand(sigma, x, u_cond, u_uncond, cfg_scale)]

    def on_step(self, step: int) -> None:
        """The sampler's callback for step ``step``: commits the newest evaluation as that step."""
        if self._latest is None:
            return
        if self._committed is not None:
            self._add(self._committed, sigma_next=self._latest[0].sigma)
        self._committed, self._latest = self._latest, None

    def finish(self) -> MIResult:
        if self._committed is not None:
            self._add(self._committed, sigma_next=self._final_sigma)
            self._committed = None
        return self.accumulator.result()

    def _add(self, steps: list[StepIntegrand], sigma_next) -> None:
        self.accumulator.add_integrand(steps[0], torch.as_tensor(sigma_next).float().clamp(0, 1))


class PhraseTrajectoryTap(TrajectoryTap):
    """``TrajectoryTap`` that also integrates each phrase's i(x; p | y∖p) (``phrase_mi.PhraseTrajectoryMI``) on the
    same steps. ``ablated_velocities(args)`` returns u_{y∖p} of every phrase at the evaluation being read (the caller
    runs the model on each y∖p there, e.g. in ComfyUI's cond batching); the sampler's result is left unchanged."""

    def __init__(self, ablated_velocities: Callable[[dict], Sequence[Tensor]], num_phrases: int,
                 velocity: str = "cfg", score: str = "rfmi", keep_map: bool = True):
        super().__init__(velocity=velocity, score=score, keep_map=keep_map)
        self.ablated_velocities = ablated_velocities
        self.phrases = PhraseTrajectoryMI(num_phrases, velocity=velocity, score=score, keep_map=keep_map)

    def integrands(self, sigma: Tensor, x: Tensor, u_cond: Tensor, u_uncond: Tensor, cfg_scale: float,
                   args: dict) -> list[StepIntegrand]:
        plain = super().integrands(sigma, x, u_cond, u_uncond, cfg_scale, args)
        ablated = list(self.ablated_velocities(args))
        return plain + self.phrases.integrands(sigma, x, u_cond, u_uncond, ablated, cfg_scale)

    def _add(self, steps: list[StepIntegrand], sigma_next) -> None:
        super()._add(steps, sigma_next)
        self.phrases.add_integrands(steps[1:], torch.as_tensor(sigma_next).float().clamp(0, 1))

    def phrase_result(self) -> PhraseMIResult:
        """Each image's phrase MI along the trajectory (after ``finish``)."""
        return self.phrases.result()
