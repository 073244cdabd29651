"""A fine-tune set built from a prompt list, the prompts shared by the processes of a run (paper Algorithm 1's data).

For each prompt: encode it and the negative, sample M candidates with their score (by default the exact point-wise
MI of each final image; or the paper's Algorithm 2 read along the trajectory; a ``CandidateMaker``), keep the top k and add them, with both conditionings, to the set in one
atomic ``FinetuneSet.append`` — a prompt is in the set wholly or not at all. A prompt is *complete* when the set holds
min(k, M) records of it made by this model with these settings (seed, M, steps, cfg, sampler, score, velocity); a
rerun skips complete prompts, so a killed process or machine costs only its unfinished prompts.

Under torchrun (``rfmi_core.train.distributed``'s environment), rank 0 reads which prompts are pending and gives the
list to every rank (a gloo group: nothing but that list and the summary travels); rank r of W takes pending[r::W]
and appends as its own writer (``finetune_set``: concurrent appends never lose records). The candidates of a prompt
depend only on the prompt, the seed and the settings, so W processes build the set of one, order aside.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .candidates import CandidateMaker
from .finetune_set import FinetuneSet, candidate_records, record_settings
from .select import top_k
from ..train.distributed import World, broadcast_from_main, current_world

__all__ = ["BuildPlan", "BuildReport", "prompt_key", "pending_prompts", "share", "build_prompt", "build_set",
           "gather_report"]


@dataclass(frozen=True)
class BuildPlan:
    """What to build: M candidates (seeds seed … seed + M − 1, the same for every prompt, as Best-of-N over a Prompt
    List) for each prompt against ``negative``, the top k kept."""

    prompts: tuple[str, ...]
    m: int = 50
    k: int = 1
    seed: int = 0
    negative: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.m:
            raise ValueError(f"k must be between 1 and m ({self.m}); got k={self.k}")
        if not self.prompts:
            raise ValueError("the prompt list is empty: give one prompt a line")


@dataclass
class BuildReport:
    """One process's run, or the whole run's after ``gather_report``: prompts built now, prompts skipped as already
    complete, candidates sampled, wall seconds (the slowest process's)."""

    built: int = 0
    skipped: int = 0
    images: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def prompt_key(model: str, prompt: str, negative: str, sampler: dict, score: str, velocity: str) -> str:
    """The key of a prompt's records made by one model with one set of settings."""
    return json.dumps([model, prompt.strip(), negative.strip(), sampler, score, velocity], sort_keys=True)


def _expected_key(maker: CandidateMaker, plan: BuildPlan, prompt: str) -> str:
    settings = json.loads(json.dumps(maker.settings(plan.seed, plan.m)))  # as a record stores it, after JSON
    return prompt_key(maker.identity, prompt, plan.negative, record_settings(settings), settings.get("score", "rfmi"),
                      settings.get("velocity", "cfg"))


def pending_prompts(finetune_set: FinetuneSet, maker: CandidateMaker, plan: BuildPlan) -> list[str]:
    """The plan's prompts (duplicates dropped, order kept) not yet complete in the set."""
    counts: dict[str, int] = {}
    for r in finetune_set.records(selected=False):
        key = prompt_key(r.model, r.prompt, r.negative, r.sampler, r.score, r.velocity)
        counts[key] = counts.get(key, 0) + 1
    unique = list(dict.fromkeys(p.strip() for p in plan.prompts))
    return [p for p in unique if counts.get(_expected_key(maker, plan, p), 0) < min(plan.k, plan.m)]


def share(pending: list[str], world: World) -> list[str]:
    """This rank's prompts: every W-th from its rank on (pending[r::W]), so the shares differ by at most one."""
    return pending[world.rank::world.size]


def build_prompt(finetune_set: FinetuneSet, maker: CandidateMaker, plan: BuildPlan, prompt: str,
                 progress: Callable[[int], None] | None = None) -> int:
    """Samples the M candidates of ``prompt``, appends the top k with the conditionings; returns M. ``progress`` is
    told the candidate-steps done so far."""
    positive, negative = maker.encode(prompt), maker.encode(plan.negative)
    scores = maker.best_of_n(positive, negative, plan.seed, plan.m, progress, text=prompt.strip())
    expected = maker.settings(plan.seed, plan.m)
    if scores.settings != expected:
        raise RuntimeError(f"the model's Best-of-N reported settings {scores.settings}, expected {expected}")
    chosen = scores.select(top_k(scores.mi, plan.k))
    records = candidate_records(chosen, prompt, plan.negative, maker.identity)
    finetune_set.append(records, chosen.latents, {prompt.strip(): maker.tensors(positive),
                                                  plan.negative.strip(): maker.tensors(negative)})
    return len(scores)


def build_set(maker: CandidateMaker, plan: BuildPlan, path: str, world: World | None = None,
              progress: bool = True) -> BuildReport:
    """Builds this rank's share of the plan's pending prompts into the set at ``path`` (created with top_k = k).

    The progress bar (one per rank) counts candidate-steps, so its rate is steps/s (1 / the s/step of the capacity
    formula); its postfix shows the prompts done and images/s."""
    world = world or current_world()
    start = time.perf_counter()
    finetune_set = FinetuneSet.open(path, create=True, top_k=plan.k)
    if world.size > 1:
        pending = broadcast_from_main(lambda: pending_prompts(finetune_set, maker, plan))
    else:
        pending = pending_prompts(finetune_set, maker, plan)
    mine = share(pending, world)
    report = BuildReport(skipped=len(set(p.strip() for p in plan.prompts)) - len(pending) if world.is_main else 0)
    steps_per_prompt = plan.m * int(maker.settings(plan.seed, plan.m)["steps"])
    bar = _step_bar(len(mine) * steps_per_prompt, progress, world)
    for prompt in mine:
        base = report.built * steps_per_prompt
        report.images += build_prompt(finetune_set, maker, plan, prompt,
                                      (lambda done: bar.update(base + done - bar.n)) if bar is not None else None)
        report.built += 1
        if bar is not None:
            bar.update(base + steps_per_prompt - bar.n)
            bar.set_postfix_str(f"prompt {report.built}/{len(mine)}, "
                                f"{report.images / (time.perf_counter() - start):.2f} img/s")
    if bar is not None:
        bar.close()
    report.seconds = time.perf_counter() - start
    return report


def _step_bar(total: int, enabled: bool, world: World) -> Any:
    """A tqdm bar over ``total`` candidate-steps (one line per rank), or None."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the dependencies
        return None
    return tqdm(total=total, desc=f"rank {world.rank}" if world.size > 1 else "build_set", unit="step",
                position=world.rank, dynamic_ncols=True)


def gather_report(report: BuildReport, world: World | None = None) -> BuildReport:
    """The run's report on every rank: counts summed over the ranks, seconds the slowest rank's (a collective)."""
    world = world or current_world()
    if world.size == 1:
        return report
    import torch.distributed as dist

    counts = torch.tensor([report.built, report.skipped, report.images], dtype=torch.float64)
    seconds = torch.tensor([report.seconds], dtype=torch.float64)
    dist.all_reduce(counts)
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    built, skipped, images = (int(v) for v in counts.tolist())
    return BuildReport(built, skipped, images, float(seconds.item()))
