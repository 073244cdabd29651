"""Socket definitions shared by the RFMI nodes (one place for the KSampler-like inputs and the RFMI options)."""

from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ..rfmi_core import SCORES, VELOCITIES
from ..rfmi_core.mi.phrase_mi import PHRASE_SCORES
from ..rfmi_core.mi.ranking import DEFAULT_SCORE, EXACT_SCORES, RANKING_N_T, SCORE_HELP
from .schema_compat import advanced

CATEGORY = "RFMI"
MAX_SEED = 0xFFFFFFFFFFFFFFFF

Scores = io.Custom("RFMI_SCORES")
"""N candidates with their MI, per-step trace, per-position map and seeds (rfmi_core.ScoredCandidates)."""


def score_seed_input() -> io.Int.Input:
    """The seed of a score's noise levels and noises. ``control_after_generate`` is declared, as on every seed: the
    frontend (1.49 and later) counts declared control widgets when it migrates saved widget values, and a seed whose
    control it adds by name alone shifts the values after a forced-input socket by one."""
    return io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                        tooltip="Seeds the noise levels and the noise: the same seed gives the same score.")


def ksampler_inputs() -> list:
    """The stock KSampler's widgets and sockets, in its order (model, seed, steps, cfg, sampler, scheduler, ...)."""
    return [
        io.Model.Input("model"),
        io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                     tooltip="The random seed used for creating the noise."),
        io.Int.Input("steps", default=20, min=1, max=10000),
        io.Float.Input("cfg", default=4.5, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance scale. At 1.0 the unconditional pass still runs: RFMI needs it."),
        io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS),
        io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS),
        io.Conditioning.Input("positive"),
        io.Conditioning.Input("negative", tooltip="The ∅ of the MI: connect an empty-prompt encoding for FLUX and at cfg 1."),
        io.Latent.Input("latent_image"),
    ]


def rfmi_option_inputs(phrase_scores: bool = False) -> list:
    """velocity, score and n_t; with ``phrase_scores`` the score may also be phrase-min / phrase-mean."""
    options = list(EXACT_SCORES) + list(SCORES) + (list(PHRASE_SCORES) if phrase_scores else [])
    return [
        io.Combo.Input("velocity", options=list(VELOCITIES), default="cfg",
                       tooltip="For the trajectory scores (rfmi, mitune, squared, phrase): cfg: u_cfg stands in for "
                               "u_y (the paper's choice for ranking); cond: u_y. The exact scores use u_y."),
        io.Combo.Input("score", options=options, default=DEFAULT_SCORE,
                       tooltip="; ".join(f"{name}: {SCORE_HELP[name]}" for name in options)),
        io.Int.Input("n_t", default=RANKING_N_T, min=1, max=4096, optional=True, **advanced(),
                     tooltip="For the exact scores (pmi, contrast, posterior, phrase-pmi): noise levels drawn per "
                             "candidate after sampling, each one model call per condition (∅, y, each rival or y∖p)."),
    ]


def phrase_inputs() -> list:
    """Optional clip and text: what a sampler node needs to rank by phrase-min / phrase-mean."""
    return [
        io.Clip.Input("clip", optional=True,
                      tooltip="For score phrase-pmi / phrase-min / phrase-mean / contrast / posterior: the CLIP that "
                              "encoded positive (each prompt without one phrase, and each rival, is encoded with it, "
                              "as CLIP Text Encode does)."),
        io.String.Input("text", optional=True, force_input=True,
                        tooltip="For score phrase-pmi / phrase-min / phrase-mean / contrast / posterior: positive's "
                                "prompt ('|' marks phrases, else commas and 'and' do; rivals are suggested from it), "
                                "e.g. from the String node that feeds CLIP Text Encode."),
    ]


def rival_inputs(clip_and_text: bool = True) -> list:
    """Optional clip, text (unless the node has them already: ``phrase_inputs``) and rivals: what the contrast and
    posterior scores need to encode the rival prompts."""
    return ([
        io.Clip.Input("clip", optional=True,
                      tooltip="For contrast / posterior / phrase-pmi: the CLIP that encoded positive (the rivals, or "
                              "the prompt less each phrase, are encoded with it, as CLIP Text Encode does)."),
        io.String.Input("text", optional=True, force_input=True,
                        tooltip="positive's prompt, e.g. from the String node that feeds CLIP Text Encode: its rivals "
                                "are suggested from it when rivals is empty; phrase-pmi splits it into phrases."),
    ] if clip_and_text else []) + [
        io.String.Input("rivals", multiline=True, default="", optional=True,
                        tooltip="Rival prompts for contrast / posterior, one per line (near-misses: 'a blue book and a "
                                "red vase' for 'a red book and a blue vase'). Empty: the pack's editor suggests them "
                                "from text (swapped attributes, mirrored relations, counts ± 1)."),
    ]
