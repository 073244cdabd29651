"""Score by MI: the point-wise MI of latents that already exist, by importance-sampled noise levels.

Scores (``rfmi_core.ranking``): ``pmi`` (default), the exact i(x; y) of each latent (``rfmi_core.pointwise``);
``contrast`` / ``posterior`` against rival prompts (typed, or the editor's suggestions for ``text``); ``rfmi``, the
paper's Prop. 3.3 estimator of u_y·(u_y − u_∅) (right on average, not per image).

The velocities come from ComfyUI's own CFG path (conditioning processing, model loading, latent format): a custom
sampler function receives the processed latent and calls the model at the drawn noise levels; a post-CFG tap (rfmi)
or the conditions guider (exact scores, ``exact``) reads the velocities of each call.
"""

from __future__ import annotations

import torch

import comfy.sample
import comfy.utils
from comfy_api.latest import io

from ..rfmi_core import PMI_T_EPS, VELOCITIES, ScoredCandidates, estimate_mi_draws_from_pairs
from ..rfmi_core.mi.ranking import EXACT_SCORES, RANKING_N_T, RANKING_T_MAX, SCORE_HELP, is_exact
from ..rfmi_core.mi.stats import mean_and_standard_error
from ..rfmi_core.mi.taps import PairTap
from .exact import rank_exactly, rival_conditionings
from .model_checks import require_flow_model
from .sampling import model_latent, scoring_sampler
from .schema_compat import advanced, schema_fields
from .sockets import CATEGORY, Scores, rival_inputs, score_seed_input

SCORE_OPTIONS = (*EXACT_SCORES, "rfmi")


def score_latents(model, latent: dict, positive, negative, *, seed: int, n_t: int, t_eps: float, cfg: float,
                  velocity: str, draws_per_call: int) -> torch.Tensor:
    """[B, n_t] importance-weighted draws per latent (their mean is the MI), through ComfyUI's sampling machinery."""
    require_flow_model(model)
    tap = PairTap()
    patched = tap.attach(model)
    latent_image = model_latent(patched, latent)
    draws = {}
    sampler = scoring_sampler(
        lambda: tap.pair,
        lambda velocity_pair, x1, generator: estimate_mi_draws_from_pairs(
            velocity_pair, x1, n_t=n_t, t_eps=t_eps, generator=generator, mi_velocity=velocity, cfg=cfg,
            draws_per_call=draws_per_call),
        seed=seed, n_t=n_t, draws_per_call=draws_per_call, result=draws)
    comfy.sample.sample_custom(
        patched, torch.zeros_like(latent_image), cfg, sampler,
        torch.tensor([1.0, 0.0]), positive, negative, latent_image, seed=seed,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
    )
    return draws["value"]


class RFMIScoreLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIScoreLatent",
            display_name="Score by MI",
            category=CATEGORY,
            description="Point-wise MI (nats) of latents that already exist — loaded, VAE-encoded or from any sampler — "
                        "with the given prompt, by importance-sampled noise levels. pmi (default) is exact per image; "
                        "contrast / posterior compare the prompt with rival prompts; rfmi is the paper's estimator "
                        "(right on average only). Seeded and reproducible.",
            inputs=[
                io.Model.Input("model"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative", tooltip="The ∅ of the MI: an empty-prompt encoding."),
                io.Latent.Input("latent"),
                score_seed_input(),
                io.Int.Input("n_t", default=RANKING_N_T, min=1, max=4096,
                             tooltip="Noise levels drawn per latent (each costs one model call per condition)."),
                io.Float.Input("t_eps", default=PMI_T_EPS, min=0.5, max=0.9999, step=0.0001, round=0.0001,
                               tooltip="The sampling density ∝ t/(1−t) is held constant above this t (0.6 suits the "
                                       "exact scores; the paper's rfmi uses 0.99)."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="rfmi only: scale of u_cfg when velocity is cfg (1.0 gives u_y, the paper's "
                                       "Prop. 3.3)."),
                io.Combo.Input("velocity", options=list(VELOCITIES), default="cfg", tooltip="rfmi only."),
                io.Int.Input("draws_per_call", default=1, min=1, max=256,
                             tooltip="Noise levels batched into one model call (more is faster, uses more memory)."),
                io.Combo.Input("score", options=list(SCORE_OPTIONS), default="pmi",
                               tooltip="; ".join(f"{name}: {SCORE_HELP[name]}" for name in SCORE_OPTIONS)),
            ] + rival_inputs() + [
                io.Float.Input("t_max", default=RANKING_T_MAX, min=0.5, max=1.0, step=0.01, round=0.001, optional=True,
                               **advanced(),
                               tooltip="Exact scores: the noise levels integrated, t ≤ t_max (1: the exact ratio; "
                                       "0.9 ranks best on the toy: above it fine-detail terms are noise)."),
            ],
            outputs=[
                io.Float.Output(display_name="mi", is_output_list=True),
                Scores.Output(display_name="scores"),
            ],
            is_output_node=True,
            **schema_fields(search_aliases=["mutual information", "image ranking", "prompt contrast"]),
        )

    @classmethod
    def execute(cls, model, positive, negative, latent, seed, n_t, t_eps, cfg, velocity, draws_per_call, score="pmi",
                clip=None, text=None, rivals="", t_max=RANKING_T_MAX) -> io.NodeOutput:
        samples = latent["samples"]
        settings = dict(n_t=n_t, t_eps=t_eps, score=score, seed=seed)
        if is_exact(score):
            settings["t_max"] = t_max
        rival_texts = ()
        if is_exact(score):
            rival_texts, rival_conds = rival_conditionings(clip, text, rivals, score)
            ranked = rank_exactly(model, samples, positive, negative, rival_conds, score, seed=seed, n_t=n_t,
                                  t_eps=t_eps, batch_size=samples.shape[0], draws_per_call=draws_per_call,
                                  t_max=t_max)
            mi, se, margins = ranked
            settings.update(velocity="cond", estimator="exact")
        else:
            draws = score_latents(model, latent, positive, negative, seed=seed, n_t=n_t, t_eps=t_eps, cfg=cfg,
                                  velocity=velocity, draws_per_call=draws_per_call)
            mi, se = mean_and_standard_error(draws, dim=1)
            margins = None
            settings.update(cfg=cfg, velocity=velocity, estimator="prop3.3")
        n = mi.shape[0]
        scores = ScoredCandidates(mi=mi, seeds=[seed] * n, batch_index=list(range(n)), mi_standard_error=se,
                                  latents=samples.cpu(), settings=settings, rivals=tuple(rival_texts),
                                  rival_margins=margins if rival_texts else None)
        values = [float(v) for v in mi]
        return io.NodeOutput(values, scores, ui={"rfmi_mi": values, "rfmi_score": [score],
                                                 "rfmi_rivals": list(rival_texts)})
