"""RFMI Sampler: the stock KSampler, plus each image's point-wise MI with its prompt (paper Algorithm 2)."""

from __future__ import annotations

import comfy.sample
import latent_preview
from comfy_api.latest import io

from ..rfmi_core import ScoredCandidates
from ..rfmi_core.mi.ranking import RANKING_N_T, is_exact
from .exact import exactly_scored
from .phrase_mi import ranking_phrases, with_phrase_mi
from .sampling import model_latent, output_latent, phrase_tap, sample_scored
from .schema_compat import schema_fields
from .sockets import CATEGORY, Scores, ksampler_inputs, phrase_inputs, rfmi_option_inputs, rival_inputs


class RFMISampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        inputs = ksampler_inputs()
        inputs.insert(inputs.index(next(i for i in inputs if i.id == "latent_image")) + 1,
                      io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01))
        return io.Schema(
            node_id="RFMISampler",
            display_name="RFMI Sampler",
            category=CATEGORY,
            description="Samples exactly like KSampler and scores each image's prompt alignment (nats): by default its "
                        "exact point-wise MI (pmi, n_t model calls per condition after sampling), or the paper's "
                        "trajectory score read from the sampler's own cond/uncond evaluations at no extra cost (rfmi).",
            inputs=inputs + rfmi_option_inputs(phrase_scores=True) + phrase_inputs() + rival_inputs(False),
            outputs=[
                io.Latent.Output(display_name="LATENT"),
                io.Float.Output(display_name="mi", is_output_list=True, tooltip="Point-wise MI per image, nats."),
                Scores.Output(display_name="scores"),
            ],
            is_output_node=True,
            **schema_fields(search_aliases=["mutual information", "ksampler"]),
        )

    @classmethod
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
                velocity, score, n_t=RANKING_N_T, clip=None, text=None, rivals="") -> io.NodeOutput:
        latent = model_latent(model, latent_image)
        batch_index = latent_image.get("batch_index")
        noise = comfy.sample.prepare_noise(latent, seed, batch_index)
        phrases, ablated = ranking_phrases(score, clip, text)
        tap = phrase_tap(ablated, velocity) if phrases else None
        samples, result = sample_scored(
            model, noise, latent, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
            positive=positive, negative=negative, denoise=denoise, noise_mask=latent_image.get("noise_mask"),
            velocity=velocity, score="rfmi" if is_exact(score) else score,
            callback=latent_preview.prepare_callback(model, steps), tap=tap,
        )
        n = samples.shape[0]
        scores = ScoredCandidates(
            mi=result.mi.cpu(), seeds=[seed] * n, batch_index=list(batch_index) if batch_index else list(range(n)),
            result=result, settings=dict(sampler_name=sampler_name, scheduler=scheduler, steps=steps, cfg=cfg,
                                         denoise=denoise, velocity=velocity, score=score),
        )
        scores = with_phrase_mi(scores, tap, phrases, score) if phrases else scores
        if is_exact(score):
            scores = exactly_scored(scores, samples, model, positive, negative, score, clip=clip, text=text,
                                    rivals=rivals, seed=seed, n_t=n_t, batch_size=n)
        mi = [float(v) for v in scores.mi]
        return io.NodeOutput(output_latent(latent_image, samples), mi, scores,
                             ui={"rfmi_mi": mi, "rfmi_score": [score], "rfmi_rivals": list(scores.rivals)})
