"""Socket definitions shared by the RFMI nodes (one place for the KSampler-like inputs and the RFMI options)."""

from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ..rfmi_core import SCORES, VELOCITIES
from ..rfmi_core.phrase_mi import PHRASE_SCORES

CATEGORY = "RFMI"
MAX_SEED = 0xFFFFFFFFFFFFFFFF

Scores = io.Custom("RFMI_SCORES")
"""N candidates with their MI, per-step trace, per-position map and seeds (rfmi_core.ScoredCandidates)."""


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
    """velocity and score; with ``phrase_scores`` the score may also be phrase-min / phrase-mean (ranking by phrase)."""
    phrase_tip = (" phrase-min / phrase-mean: the weakest / mean phrase's i(x; p | y∖p), each read like rfmi (connect "
                  "clip and text).") if phrase_scores else ""
    return [
        io.Combo.Input("velocity", options=list(VELOCITIES), default="cfg",
                       tooltip="cfg: u_cfg stands in for u_y (the paper's choice for ranking); cond: u_y."),
        io.Combo.Input("score", options=list(SCORES) + (list(PHRASE_SCORES) if phrase_scores else []), default="rfmi",
                       tooltip="rfmi: the integral over the sampler's grid; mitune: the reference code's mean; "
                               "squared: ∫ t/(1−t)·‖u_y − u_∅‖² dt (never negative)." + phrase_tip),
    ]


def phrase_inputs() -> list:
    """Optional clip and text: what a sampler node needs to rank by phrase-min / phrase-mean."""
    return [
        io.Clip.Input("clip", optional=True,
                      tooltip="For score phrase-min / phrase-mean: the CLIP that encoded positive (each prompt without "
                              "one phrase is encoded with it, as CLIP Text Encode does)."),
        io.String.Input("text", optional=True, force_input=True,
                        tooltip="For score phrase-min / phrase-mean: positive's prompt ('|' marks phrases, else commas "
                                "and 'and' do), e.g. from the String node that feeds CLIP Text Encode."),
    ]
