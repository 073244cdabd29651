"""A small fine-tune set for the toy model, as ComfyUI's toy nodes export one (word ids as cross_attn)."""

from pathlib import Path

import torch

from rfmi_core import CandidateRecord, FinetuneSet
from rfmi_core.toy.prompts import prompts as toy_prompts
from rfmi_core.toy.prompts import tokenize


def make_toy_set(path: Path, num_prompts: int) -> Path:
    """Two candidates (seeds 0, 1) for each of the first ``num_prompts`` binding prompts, seeded latents; returns path."""
    finetune_set = FinetuneSet.open(path, create=True, top_k=2)
    prompts = toy_prompts("binding")[:num_prompts]
    conditioning = {text: {"cross_attn": tokenize(text).float().reshape(1, -1, 1)} for text in prompts + [""]}
    records = [CandidateRecord(prompt=p, negative="", seed=s, batch_index=0, candidate_index=s, mi=1.0 + s,
                               score="rfmi", velocity="cfg", model="toy", sampler={}, latent_shape=[3, 16, 16])
               for p in prompts for s in range(2)]
    latents = torch.randn(2 * num_prompts, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    finetune_set.append(records, latents, conditioning)
    return path
