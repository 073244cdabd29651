"""Best-of-N by MI: N candidates for one prompt, ranked by point-wise MI; the top k go on (paper Algorithm 1)."""

from __future__ import annotations

import torch

import comfy.model_management
import comfy.sample
import comfy.utils
import latent_preview
from comfy_api.latest import io

from ..rfmi_core import ScoredCandidates, top_k
from ..rfmi_core.mi.ranking import RANKING_N_T, is_exact
from .exact import exactly_scored
from .phrase_mi import ranking_phrases, with_phrase_mi
from .sampling import model_latent, output_latent, phrase_tap, sample_scored
from .schema_compat import schema_fields
from .sockets import CATEGORY, Scores, ksampler_inputs, phrase_inputs, rfmi_option_inputs, rival_inputs


def candidate_noise(latent: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """The noise of each candidate: the stock KSampler's noise for its seed on a batch-1 latent, stacked."""
    return torch.cat([comfy.sample.prepare_noise(latent[:1], seed) for seed in seeds])


class RFMIBestOfN(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIBestOfN",
            display_name="Best-of-N by MI",
            category=CATEGORY,
            description="Samples N candidates for one prompt, in chunks of batch_size, and keeps the k with the highest "
                        "score: by default the exact point-wise MI of each image (pmi, n_t model calls per condition "
                        "after sampling), or a contrast with rival prompts, or the paper's trajectory score (rfmi, "
                        "free). Candidate j is the image KSampler gives for seed + j on a batch-1 latent (replay it "
                        "with RFMI Sampler or KSampler at that seed; batched kernels may differ in the last bits).",
            inputs=ksampler_inputs() + [
                io.Int.Input("n", default=8, min=1, max=4096, tooltip="Number of candidates."),
                io.Int.Input("k", default=1, min=1, max=4096, tooltip="How many of the best to output."),
                io.Int.Input("batch_size", default=4, min=1, max=512, tooltip="Candidates sampled together."),
            ] + rfmi_option_inputs(phrase_scores=True) + phrase_inputs() + rival_inputs(clip_and_text=False),
            outputs=[
                io.Latent.Output(display_name="best"),
                io.Float.Output(display_name="best_mi", is_output_list=True),
                Scores.Output(display_name="all_scores", tooltip="All N candidates with latents and MI, for ranking and export."),
            ],
            is_output_node=True,
            **schema_fields(search_aliases=["best of n", "image ranking", "mutual information"]),
        )

    @classmethod
    def validate_inputs(cls, n, k, **_) -> bool | str:
        if isinstance(n, int) and isinstance(k, int) and k > n:
            return f"k ({k}) cannot exceed the number of candidates n ({n})"
        return True

    @classmethod
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, n, k,
                batch_size, velocity, score, n_t=RANKING_N_T, clip=None, text=None, rivals="") -> io.NodeOutput:
        latent = model_latent(model, latent_image)
        if latent.shape[0] != 1:
            raise ValueError(f"Best-of-N makes its own batch: give it a latent of batch size 1 (got {latent.shape[0]}); "
                             "n sets the number of candidates")
        phrases, ablated = ranking_phrases(score, clip, text)
        progress = comfy.utils.ProgressBar(n * steps)  # one bar over all N (counts candidate-steps), with previews
        previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)
        parts = []
        for start in range(0, n, batch_size):
            comfy.model_management.throw_exception_if_processing_interrupted()
            seeds = [seed + j for j in range(start, min(start + batch_size, n))]

            def on_step(step, x0, x, total_steps, done=start, size=len(seeds)):
                preview = previewer.decode_latent_to_preview_image("JPEG", x0) if previewer else None
                progress.update_absolute(done * steps + (step + 1) * size, n * steps, preview)

            tap = phrase_tap(ablated, velocity) if phrases else None
            samples, result = sample_scored(
                model, candidate_noise(latent, seeds), latent.expand(len(seeds), *latent.shape[1:]).clone(),
                seed=seeds[0], steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler, positive=positive,
                negative=negative, noise_mask=latent_image.get("noise_mask"), velocity=velocity,
                score="rfmi" if is_exact(score) else score, callback=on_step, tap=tap,
            )
            part = ScoredCandidates(mi=result.mi.cpu(), seeds=seeds, batch_index=[0] * len(seeds), result=result,
                                    latents=samples.cpu())
            parts.append(with_phrase_mi(part, tap, phrases, score) if phrases else part)
        scores = ScoredCandidates.concat(parts)
        scores.settings = dict(sampler_name=sampler_name, scheduler=scheduler, steps=steps, cfg=cfg, velocity=velocity,
                               score=score, seed=seed, n=n)
        if is_exact(score):
            comfy.model_management.throw_exception_if_processing_interrupted()
            scores = exactly_scored(scores, scores.latents, model, positive, negative, score, clip=clip, text=text,
                                    rivals=rivals, seed=seed, n_t=n_t, batch_size=batch_size)
        best = scores.select(top_k(scores.mi, k))
        best_latent = output_latent(latent_image, best.latents, drop=("batch_index", "noise_mask"))
        best_mi = [float(v) for v in best.mi]
        return io.NodeOutput(best_latent, best_mi, scores,
                             ui={"rfmi_mi": [float(v) for v in scores.mi], "rfmi_best": best.seeds,
                                 "rfmi_score": [score], "rfmi_rivals": list(scores.rivals)})
