"""RFMI Phrase MI: how much each phrase of the prompt is in each existing latent, i(x; p | y∖p) in nats, and where.

The node splits the prompt (``rfmi_core.phrases.split_prompt``), encodes y, ∅ (the empty prompt) and every y∖p with
the given CLIP exactly as CLIPTextEncode does, and estimates each candidate's phrase MI by Prop. 3.3's importance-
sampled noise levels (``rfmi_core.estimate_phrase_mi_from_velocities``: the same t and noise for y, ∅ and every y∖p).

The velocities come from ComfyUI's own sampling machinery, as Score by MI's do: a custom sampler function receives the
processed latent and calls the model at the drawn noise levels; the guider (``exact.ConditionsGuider``, a CFGGuider
like ComfyUI's PerpNeg guider) evaluates y, ∅ and every y∖p in one ``calc_cond_batch`` call (ComfyUI's own cond
batching) and keeps their velocities.
"""

from __future__ import annotations

from dataclasses import replace

import torch

import comfy.utils
from comfy_api.latest import io, ui

from ..rfmi_core.finetune.scores import ScoredCandidates
from ..rfmi_core.mi.phrase_mi import (PHRASE_FORMS, PHRASE_SCORES, PHRASE_VELOCITIES, PhraseEstimate,
                                   estimate_phrase_mi_from_velocities, phrase_score)
from ..rfmi_core.present.phrase_table import phrase_masks, phrase_table
from ..rfmi_core.text.phrases import SplitPrompt, split_prompt
from .exact import ConditionsGuider
from .model_checks import require_flow_model
from .sampling import model_latent, scoring_sampler
from .sockets import CATEGORY, Scores, score_seed_input


def encode_text(clip, text: str) -> list:
    """CONDITIONING of ``text``: the body of ComfyUI's CLIPTextEncode.encode (tokenize, then
    encode_from_tokens_scheduled)."""
    if clip is None:
        raise RuntimeError("clip input is invalid: None. If the clip is from a checkpoint loader node, the checkpoint "
                           "does not contain a valid clip or text encoder model.")
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def split_for(clip, prompt: str, relations: bool = False) -> SplitPrompt:
    """The prompt's phrases: by the CLIP's own rule when it brings one (``split_phrases``: the toy text encoder's, the
    phrases its model was trained to drop), else ``split_prompt``'s."""
    own_rule = getattr(clip, "split_phrases", None)
    return own_rule(prompt) if own_rule is not None else split_prompt(prompt, relations=relations)


def phrase_conditionings(clip, prompt: str, relations: bool = False) -> tuple[SplitPrompt, list, list, list[list]]:
    """(the split prompt, y, ∅, [y∖p per phrase]) as CONDITIONINGs, each encoded as CLIPTextEncode would."""
    split = split_for(clip, prompt, relations)
    ablated = [encode_text(clip, text) for text in split.ablations()]
    return split, encode_text(clip, split.text), encode_text(clip, ""), ablated


def score_phrases(model, latent: dict, positive, negative, ablated: list, *, seed: int, n_t: int, t_eps: float,
                  cfg: float, velocity: str, draws_per_call: int = 1, form: str = "exact") -> PhraseEstimate:
    """Phrase MI of the LATENT's samples through ComfyUI's sampling machinery (CONDITIONINGs y, ∅ and y∖p)."""
    require_flow_model(model)
    if not ablated:
        raise ValueError("phrase MI needs at least one phrase (one ablated conditioning)")
    guider = ConditionsGuider(model)
    guider.set_condition_list(positive, negative, ablated)
    guider.set_cfg(cfg)
    latent_image = model_latent(model, latent)
    result = {}
    sampler = scoring_sampler(
        lambda: (guider.velocities[0], guider.velocities[1], guider.velocities[2:]),
        lambda velocity_set, x1, generator: estimate_phrase_mi_from_velocities(
            velocity_set, x1, len(ablated), n_t=n_t, t_eps=t_eps, generator=generator, mi_velocity=velocity, cfg=cfg,
            draws_per_call=draws_per_call, form=form, common=form == "exact"),
        seed=seed, n_t=n_t, draws_per_call=draws_per_call, result=result)
    guider.sample(torch.zeros_like(latent_image), latent_image, sampler,
                  torch.tensor([1.0, 0.0]), seed=seed, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED)
    return result["value"]


def ranking_phrases(score: str, clip, text: str | None) -> tuple[tuple[str, ...], list]:
    """(phrases, [y∖p CONDITIONING per phrase]) when a sampler node's ``score`` ranks by phrase, else ((), [])."""
    if score not in PHRASE_SCORES:
        return (), []
    if clip is None or not (text or "").strip():
        raise ValueError(f"score '{score}' ranks by the MI of each phrase of the prompt: connect clip (the CLIP that "
                         "encoded positive) and give text (positive's prompt; '|' marks phrases, else commas and "
                         "'and' do), or choose score rfmi")
    split = split_for(clip, text)
    return tuple(split.phrases), [encode_text(clip, ablation) for ablation in split.ablations()]


def with_phrase_mi(scores: ScoredCandidates, tap, phrases: tuple[str, ...], score: str) -> ScoredCandidates:
    """Sampled candidates with their phrase MI and maps read by ``tap`` (``sampling.phrase_tap``), ranked by the
    phrase ``score`` (their plain MI stays in ``result``)."""
    per_phrase = tap.phrase_result()
    maps = None if per_phrase.maps is None else per_phrase.maps.cpu()
    return replace(scores, mi=phrase_score(per_phrase.mi, score).cpu(), phrases=phrases,
                   phrase_mi=per_phrase.mi.cpu(), phrase_maps=maps)


def scores_with_phrases(scores: ScoredCandidates | None, split, estimate: PhraseEstimate) -> ScoredCandidates:
    """Best-of-N's scores with each candidate's phrase MI and maps added (their ranking kept), or, for a latent, new
    scores ranked by the plain MI of the same draws."""
    if scores is None:
        n = estimate.mi.shape[0]
        scores = ScoredCandidates(mi=estimate.total_mi.cpu(), seeds=[0] * n, batch_index=list(range(n)))
    maps = None if estimate.maps is None else estimate.maps.cpu()
    return replace(scores, phrases=tuple(split.phrases), phrase_mi=estimate.mi.cpu(), phrase_maps=maps)


def candidates_latent(latent: dict | None, scores) -> dict:
    """The LATENT to score: ``latent``, or the latents that Best-of-N's scores kept (exactly one of the two)."""
    if (latent is None) == (scores is None):
        raise ValueError("connect either latent or scores (Best-of-N's all_scores), not both and not neither")
    if latent is not None:
        return latent
    if scores.latents is None:
        raise ValueError("these scores carry no latents: connect Best-of-N's all_scores, or a LATENT to latent")
    return {"samples": scores.latents}


class RFMIPhraseMI(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIPhraseMI",
            display_name="RFMI Phrase MI",
            category=CATEGORY,
            description="How much each phrase of the prompt is in each existing latent: i(x; p | y∖p) in nats, the MI "
                        "the phrase adds once the rest of the prompt is known, and where (a heatmap per phrase). The "
                        "prompt is split at commas, 'and', or explicit '|' marks; y, ∅ (the empty prompt) and every "
                        "prompt without one phrase are encoded with the given CLIP as CLIP Text Encode would. Seeded.",
            inputs=[
                io.Model.Input("model"),
                io.Clip.Input("clip"),
                io.String.Input("text", multiline=True, default="",
                                tooltip="The prompt the latents were made with, e.g. 'a red square | left of | a blue "
                                        "disk' (| marks phrases; otherwise commas and 'and' do)."),
                io.Latent.Input("latent", optional=True, tooltip="The candidates (or connect scores instead)."),
                score_seed_input(),
                io.Int.Input("n_t", default=32, min=2, max=4096, tooltip="Noise levels drawn per latent."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Scale of u_cfg for the cfg velocities (1.0: all three velocities agree)."),
                io.Combo.Input("velocity", options=list(PHRASE_VELOCITIES), default="cfg",
                               tooltip="cfg: u_cfg(y)·(u_cfg(y) − u_cfg(y∖p)); cfg-y: u_cfg(y)·(u_cfg(y) − u_{y∖p}); "
                                       "cond: u_y·(u_y − u_{y∖p}), the exact identity."),
                io.Float.Input("t_eps", default=0.99, min=0.5, max=0.9999, step=0.0001, round=0.0001,
                               tooltip="The sampling density ∝ t/(1−t) is held constant above this t."),
                io.Int.Input("draws_per_call", default=1, min=1, max=256,
                             tooltip="Noise levels batched into one model call (more is faster, uses more memory)."),
                io.Boolean.Input("split_relations", default=False,
                                 tooltip="Also split a phrase around a spatial relation ('on the left of', 'next to' "
                                         "…), which becomes a phrase of its own."),
                io.Combo.Input("form", options=list(PHRASE_FORMS), default="exact",
                               tooltip="exact: each latent's own log p(x|y) − log p(x|y∖p) (the I-MMSE form; conditional "
                                       "velocities, common draws; cfg and velocity unused); paper: the paper's identity "
                                       "with y∖p in place of ∅ (right on average over prompts, not per image)."),
                Scores.Input("scores", optional=True,
                             tooltip="Best-of-N's all_scores: its N candidates' latents, in its order (instead of "
                                     "latent)."),
                io.Image.Input("images", optional=True,
                               tooltip="The decoded images (same order): the heatmaps are then upsampled to them."),
            ],
            outputs=[
                io.String.Output(display_name="table"),
                io.Float.Output(display_name="phrase_mi", is_output_list=True,
                                tooltip="Candidate-major: candidate 0's phrases, then candidate 1's, …"),
                io.Float.Output(display_name="phrase_min", is_output_list=True,
                                tooltip="Each candidate's weakest phrase MI (the phrase-min score)."),
                io.String.Output(display_name="phrases", is_output_list=True),
                io.Mask.Output(display_name="heatmaps", is_output_list=True,
                               tooltip="One MASK per phrase, a map per candidate, scaled to the candidate's peak."),
                Scores.Output(display_name="scores",
                              tooltip="The candidates with their phrase MI, for Rank and Pick's phrase bars: "
                                      "Best-of-N's scores (same ranking), or the latent's ranked by plain MI."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, clip, text, seed, n_t, cfg, velocity, t_eps, draws_per_call, split_relations,
                form="exact", latent=None, scores=None, images=None) -> io.NodeOutput:
        latent = candidates_latent(latent, scores)
        split, positive, negative, ablated = phrase_conditionings(clip, text, relations=split_relations)
        estimate = score_phrases(model, latent, positive, negative, ablated, seed=seed, n_t=n_t, t_eps=t_eps, cfg=cfg,
                                 velocity=velocity, draws_per_call=draws_per_call, form=form)
        table = phrase_table(split.phrases, estimate.mi, estimate.standard_error, estimate.total_mi)
        masks = []
        if estimate.maps is not None and estimate.maps.ndim == 4:
            size = (images.shape[1], images.shape[2]) if images is not None else (None, None)
            masks = phrase_masks(estimate.maps.cpu(), *size)
        values = [float(v) for v in estimate.mi.flatten()]
        return io.NodeOutput(table, values, [float(v) for v in estimate.score("phrase-min")], list(split.phrases),
                             masks, scores_with_phrases(scores, split, estimate), ui=ui.PreviewText(table))
