"""The whole RFMI loop on the toy world, measured: generate → rank → keep the top-k → LoRA-fine-tune → judge.

    python -m rfmi_core.toy.demo                 # minutes on 2 CPU cores: base vs FT on the exact-MI picks and on
                                                 # random picks (the control)
    python -m rfmi_core.toy.demo --full          # the table: ≥ 500 held-out images per category and model, every
                                                 # selection, with the judge-selected (oracle) FT
    python -m rfmi_core.toy.demo --tiny          # seconds: the CI smoke run

The paper's regime: the base model never trained on the prompts it is fine-tuned on, nor on those it is judged on.
The toy world's held-out compositions are split in two halves (``prompts.heldout_half``): fine-tuning prompts and
evaluation prompts, no held-out object pair or numeracy prompt shared between them.

1. Candidates: for each fine-tuning prompt (``ft_prompts`` per category, the half's prompts in turn, each repeat with
   new seeds), M samples by Euler with CFG; the paper's MI is read along each trajectory (Algorithm 2,
   ``rfmi_core.sample_with_mi``, CFG velocity), and the exact scores of each final image are read after sampling
   (``toy.exact.condition_scores``: ``EXACT_DRAWS`` common draws per prompt's candidates; rivals from the generic
   editor, ``rfmi_core.counterfactuals``).
2. Selection (Algorithm 1): the top-k per prompt (``rfmi_core.top_k``) by ``pmi`` (the exact point-wise MI), by
   ``contrast`` (against the nearest rival prompt), by ``rfmi`` (the paper's Algorithm 2), by ``phrase-min`` (the
   weakest phrase's MI along the trajectory) or by ``phrase-pmi`` (the weakest phrase's exact i(x; p | y∖p));
   controls at the same k per prompt: k at random, and the judge's pick (the oracle: up to k correct candidates; a
   prompt with none gives none).
3. RFMI FT: a LoRA on the toy transformer's attention and MLP layers (``TOY_LORA_TARGETS``,
   ``rfmi_core.train.train_lora``, flow matching on the kept images with their prompts), one per selection, each from
   the same base weights.
4. Evaluation on the evaluation prompts: the judge's "correct" and "valid" rates per category with 95% Wilson
   intervals, base against each FT model on the same prompts and seeds.

Resumable: candidates and each model's held-out samples are kept in ``<out>/parts`` and reused by a rerun with the
same settings (so an interrupted ``--full`` continues where it stopped). Writes to ``--out`` (default ./out/toy_demo):
results.md (the tables), grid_<category>.png (base vs FT samples of
evaluation prompts, MI under each, frame green = correct, amber = valid but wrong, red = invalid), mi_histogram.png
(the ranking scores of the candidates, correct vs wrong, per category), loss_curve.png (each FT model's training loss) and the LoRA of
each FT model (safetensors); the pictures are matplotlib figures.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from safetensors import safe_open

from ..train.lora import save_lora, save_safetensors_atomic
from ..util.cli_help import CommandParser, run_cli, non_negative_float, non_negative_int, positive_float, positive_int
from ..present.plot import loss_curve_figure, save_figure
from ..finetune.select import top_k
from ..mi.ranking import rival_texts
from ..train import TrainConfig, train_lora
from .evaluate import (Evaluation, DEFAULT_CFG, DEFAULT_STEPS, diff_ci, generate, generate_with_phrase_mi, heldout_set,
                       judge_batch, pick_prompts, rate)
from .exact import condition_scores, toy_rivals
from .recipe import TOY_LORA_TARGETS, TOY_PRESET
from .pictures import Sample, mi_histogram_figure, sample_grid_figure
from .report import NOTES, figures, preamble, reading, verdict
from .prompts import CATEGORIES, MAX_TOKENS, PAD_ID, prompts, split_toy_prompt, tokenize_batch
from .model import DEFAULT_WEIGHTS, load_toy_model

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DemoSize", "SIZES", "Candidates", "make_candidates", "select", "FinetuneData", "finetune", "evaluate",
           "run_demo", "main"]

SELECTIONS = ("pmi", "contrast", "rfmi", "random", "judge", "phrase-min", "phrase-pmi")
SCORED = ("pmi", "contrast", "rfmi", "phrase-min", "phrase-pmi")  # the selections that rank by a score
EXACT_DRAWS = 32  # draws of the exact scores per candidate (benchmarks/pmi_cost.py: the AUROC curve against n_t)
JUDGE_SELECTION = "up to k of the prompt's correct candidates; a prompt with none adds none"
DEFAULT_LR, DEFAULT_RANK = TOY_PRESET["lr"], TOY_PRESET["rank"]
MODEL_NAMES = {"base": "base", "pmi": "FT on exact-MI-selected", "contrast": "FT on contrast-selected",
               "rfmi": "FT on Algorithm-2-selected", "random": "FT on random picks", "judge": "FT on judge-selected",
               "phrase-min": "FT on phrase-min-selected", "phrase-pmi": "FT on phrase-pmi-selected"}


@dataclass
class DemoSize:
    """How much work: ``ft_prompts`` fine-tuning prompts per category × ``m`` candidates, top ``k`` kept, FT
    ``ft_steps`` of ``ft_batch``, ``eval_images`` images of evaluation prompts per category and model."""

    ft_prompts: int
    m: int
    k: int
    ft_steps: int
    eval_images: int
    ft_batch: int = 32
    selections: tuple[str, ...] = ("pmi", "random")


SIZES = {
    "tiny": DemoSize(ft_prompts=2, m=4, k=1, ft_steps=3, eval_images=8, ft_batch=4, selections=SELECTIONS),
    "default": DemoSize(ft_prompts=48, m=8, k=2, ft_steps=600, eval_images=200),
    "full": DemoSize(ft_prompts=96, m=8, k=2, ft_steps=600, eval_images=600, selections=SELECTIONS),
}


@dataclass
class Candidates:
    """M samples per fine-tuning prompt: images [N, 3, 16, 16], prompt texts, categories, judge verdicts, and the scores
    read so far (``scores[name]`` [N], nats; name in ``SCORED``: rfmi always, the others when a selection needs them)."""

    images: Tensor
    texts: list[str]
    categories: list[str]
    groups: Tensor  # [N] the prompt index of each candidate (candidates of one prompt share it)
    valid: Tensor
    correct: Tensor
    scores: dict[str, Tensor] = field(default_factory=dict)


def candidate_seeds(n: int, seed: int) -> list[int]:
    """The noise seed of each of ``n`` candidates."""
    return [seed * 1_000_000 + i for i in range(n)]


def phrase_min_along_trajectories(model: nn.Module, cands: Candidates, steps: int, cfg: float, seed: int,
                                  progress: bool = True) -> Tensor:
    """[N] each candidate's ``phrase-min``: its trajectory re-run with one more velocity per phrase
    (``evaluate.generate_with_phrase_mi``, the same seeds, so the same samples)."""
    _, _, phrase_mi = generate_with_phrase_mi(model, cands.texts, candidate_seeds(len(cands.texts), seed), steps, cfg,
                                              progress=progress)
    return torch.stack([p.min() for p in phrase_mi])


def add_scores(model: nn.Module, cands: Candidates, names: tuple[str, ...], steps: int, cfg: float, seed: int,
               progress: bool = True) -> None:
    """Reads the scores ``names`` asks for that ``cands`` lacks: pmi and contrast in one exact pass (common draws per
    prompt, the editor's rivals), phrase-pmi in another (the prompt less each phrase as the rivals), phrase-min along
    re-run trajectories."""
    missing = [n for n in names if n in SCORED and n not in cands.scores]
    if "pmi" in missing or "contrast" in missing:
        rivals = [toy_rivals(t) for t in cands.texts] if "contrast" in missing else None
        exact = condition_scores(model, cands.images, cands.texts, rivals, n_t=EXACT_DRAWS, seed=seed,
                                 groups=cands.groups, progress=progress)
        cands.scores["pmi"] = exact.pmi
        if rivals is not None:
            cands.scores["contrast"] = exact.contrast
    if "phrase-pmi" in missing:
        less_each = [rival_texts("phrase-pmi", t, split=split_toy_prompt) for t in cands.texts]
        cands.scores["phrase-pmi"] = condition_scores(model, cands.images, cands.texts, less_each, n_t=EXACT_DRAWS,
                                                      seed=seed, groups=cands.groups, progress=progress).contrast
    if "phrase-min" in missing:
        cands.scores["phrase-min"] = phrase_min_along_trajectories(model, cands, steps, cfg, seed, progress)


def make_candidates(model: nn.Module, size: DemoSize, steps: int, cfg: float, seed: int,
                    progress: bool = True) -> Candidates:
    """``size.m`` samples with MI for each of ``size.ft_prompts`` fine-tuning prompts per category (seeds from
    ``seed``)."""
    texts, categories, groups = [], [], []
    for c, category in enumerate(CATEGORIES):
        for p, text in enumerate(pick_prompts(prompts(category, "finetune"), size.ft_prompts, seed + c)):
            texts += [text] * size.m
            categories += [category] * size.m
            groups += [c * size.ft_prompts + p] * size.m
    images, result = generate(model, texts, candidate_seeds(len(texts), seed), steps, cfg, progress=progress,
                              desc="candidates")
    valid, correct = judge_batch(images, texts)
    return Candidates(images, texts, categories, torch.tensor(groups), valid, correct, {"rfmi": result.mi})


def select(cands: Candidates, k: int, how: str, seed: int = 0) -> Tensor:
    """Indices of the kept candidates of each prompt: top-k by a score (``how`` in ``SCORED``; ``add_scores`` reads
    it), k at random ("random"), or by the judge ("judge", the oracle: up to k of its correct candidates, at random;
    none when it has none)."""
    g = torch.Generator().manual_seed(seed)
    kept = []
    for group in cands.groups.unique().tolist():
        members = torch.nonzero(cands.groups == group).flatten()
        noise = torch.rand(len(members), generator=g)
        if how in SCORED:
            if how not in cands.scores:
                raise ValueError(f"{how} selection needs the candidates' {how} score (add_scores)")
            order = top_k(cands.scores[how][members], k)
        elif how == "random":
            order = top_k(noise, k)
        elif how == "judge":
            is_correct = cands.correct[members]
            members, noise = members[is_correct], noise[is_correct]
            order = top_k(noise, min(k, len(members))) if len(members) else torch.empty(0, dtype=torch.long)
        else:
            raise ValueError(f"how must be one of {SELECTIONS}; got {how!r}")
        kept.append(members[order])
    return torch.cat(kept)


class FinetuneData:
    """The kept images and their prompts in the trainer's (latent, cond, uncond) form (``rfmi_core.train``)."""

    def __init__(self, images: Tensor, texts: list[str]):
        self.images = images.float()
        self.tokens = tokenize_batch(texts)
        self.empty = torch.full((1, MAX_TOKENS), PAD_ID, dtype=torch.long)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        return self.images[i], {"tokens": self.tokens[i:i + 1]}, {"tokens": self.empty}


def toy_velocity(model: nn.Module, x_t: Tensor, t: Tensor, cond: dict) -> Tensor:
    """The trainer's velocity_fn for the toy model: u = model(x_t, t, tokens)."""
    return model(x_t, t, cond["tokens"])


def ft_config(size: DemoSize, seed: int, lr: float, rank: int) -> TrainConfig:
    """LoRA settings for the toy: Table 2's recipe (AdamW, warm-up, constant lr, no condition dropout) scaled to a
    0.7 M-parameter model trained for minutes (Table 2's lr 5e-6 and clip 0.005 would barely move it)."""
    return TrainConfig(rank=rank, alpha=float(rank), target_modules=TOY_LORA_TARGETS, lr=lr,
                       warmup_steps=max(1, size.ft_steps // 10), max_grad_norm=1.0, steps=size.ft_steps,
                       batch_size=size.ft_batch, grad_accum_steps=1, seed=seed)


def finetune(base: nn.Module, data: FinetuneData, config: TrainConfig, progress: bool = True):
    """A copy of ``base`` with a LoRA trained on ``data`` (adapters kept, frozen) and the trainer's result."""
    model = copy.deepcopy(base)
    result = train_lora(model, data, toy_velocity, config, keep_adapters=True, progress=progress)
    return model.eval(), result


def evaluate(model: nn.Module, texts: list[str], categories: list[str], seeds: list[int], steps: int, cfg: float,
             progress: bool = True, desc: str = "evaluating") -> Evaluation:
    images, result = generate(model, texts, seeds, steps, cfg, progress=progress, desc=desc)
    valid, correct = judge_batch(images, texts)
    return Evaluation(images, texts, categories, result.mi, valid, correct)


@dataclass
class DemoResult:
    candidates: Candidates
    kept: dict[str, Tensor]
    evaluations: dict[str, Evaluation]  # "base" and one per selection
    losses: dict[str, list[float]]
    seconds: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


def _cache_path(out: str, name: str) -> str:
    return os.path.join(out, "parts", f"{name}.safetensors")


def save_part(path: str, tensors: dict[str, Tensor], texts: list[str], categories: list[str], key: str) -> None:
    """Tensors of a run's part, with its texts, categories and settings key, as safetensors (atomic)."""
    save_safetensors_atomic({k: v.contiguous() for k, v in tensors.items()}, path,
                            {"texts": json.dumps(texts), "categories": json.dumps(categories), "key": key})


def load_part(path: str, key: str) -> tuple[dict[str, Tensor], list[str], list[str]] | None:
    """A saved part made with the same settings ``key``, or None (then it is recomputed)."""
    if not os.path.isfile(path):
        return None
    with safe_open(path, framework="pt") as handle:
        meta = handle.metadata()
        if meta.get("key") != key:
            return None
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    return tensors, json.loads(meta["texts"]), json.loads(meta["categories"])


def _verdict(valid: bool, correct: bool) -> str:
    return "correct" if correct else "wrong" if valid else "invalid"


def sample_grid(evaluations: dict[str, Evaluation], category: str, rows: int = 6, columns: int = 4) -> Figure:
    """Rows of evaluation prompts; per model (base, each FT) ``columns`` samples with MI and verdict frames."""
    base = evaluations["base"]
    by_text: dict[str, list[int]] = {}
    for i, c in enumerate(base.categories):
        if c == category:
            by_text.setdefault(base.texts[i], []).append(i)
    lines = [(text, {MODEL_NAMES.get(name, f"FT on {name}-selected"): [
        Sample(ev.images[i], float(ev.mi[i]), _verdict(bool(ev.valid[i]), bool(ev.correct[i])))
        for i in members[:columns]] for name, ev in evaluations.items()})
        for text, members in list(by_text.items())[:rows]]
    return sample_grid_figure(lines, f"{category}: evaluation prompts, base vs fine-tuned (same seeds)")


def _table(result: DemoResult, categories: tuple[str, ...]) -> list[str]:
    names = list(result.evaluations)
    out = ["| category | metric | " + " | ".join(names) + " | " + " | ".join(f"{n} − base" for n in names[1:]) + " |",
           "|---|---|" + "---|" * (2 * len(names) - 1)]
    for category in categories:
        for metric, which in (("correct", 0), ("valid", 1)):
            rates = [result.evaluations[n].rates(category)[which] for n in names]
            diffs = [diff_ci(rates[0], r) for r in rates[1:]]
            out.append(f"| {category} | {metric} | " + " | ".join(str(r) for r in rates) + " | "
                       + " | ".join(f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" for d, lo, hi in diffs) + " |")
    return out


def _selection_lines(cands: Candidates, kept: dict[str, Tensor]) -> list[str]:
    out = ["| category | all candidates correct | " + " | ".join(f"kept by {n}" for n in kept) + " |",
           "|---|---|" + "---|" * len(kept)]
    for category in CATEGORIES:
        mask = torch.tensor([c == category for c in cands.categories])
        cells = [str(rate(cands.correct[mask]))]
        for idx in kept.values():
            sub = idx[mask[idx]]
            cells.append(str(rate(cands.correct[sub])))
        out.append(f"| {category} | " + " | ".join(cells) + " |")
    return out


def run_demo(size: DemoSize, weights: str | None = None, out: str = "out/toy_demo", steps: int = DEFAULT_STEPS,
             cfg: float = DEFAULT_CFG, seed: int = 0, lr: float = DEFAULT_LR, rank: int = DEFAULT_RANK,
             progress: bool = True,
             say=print, command: str = "python -m rfmi_core.toy.demo (run_demo)") -> DemoResult:
    """Runs the loop (module docstring) and writes its files to ``out``; returns everything it measured."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    base = load_toy_model(weights)
    key = json.dumps({"weights": os.path.abspath(weights or DEFAULT_WEIGHTS),
                      "mtime": os.path.getmtime(weights or DEFAULT_WEIGHTS), "steps": steps,
                      "size": {k: v for k, v in vars(size).items() if k != "selections"},
                      "cfg": cfg, "seed": seed}, sort_keys=True, default=list)
    part = load_part(_cache_path(out, "candidates"), key)
    if part is None:
        cands = make_candidates(base, size, steps, cfg, seed, progress)
    else:
        tensors, texts_, categories_ = part
        cands = Candidates(tensors["images"], texts_, categories_, tensors["groups"], tensors["valid"],
                           tensors["correct"], {k[len("score_"):]: v for k, v in tensors.items()
                                                if k.startswith("score_")})
    known = set(cands.scores)
    add_scores(base, cands, size.selections, steps, cfg, seed, progress)
    if part is None or set(cands.scores) != known:
        save_part(_cache_path(out, "candidates"), {"images": cands.images, "groups": cands.groups,
                  "valid": cands.valid, "correct": cands.correct,
                  **{f"score_{k}": v for k, v in cands.scores.items()}}, cands.texts, cands.categories, key)
    seconds["candidates"] = time.perf_counter() - clock
    say(f"{len(cands.texts)} candidates: {size.ft_prompts} fine-tuning prompts per category × M = {size.m}, "
        f"{steps} Euler steps, CFG {cfg:g}, scored by {', '.join(cands.scores)} ({seconds['candidates']:.0f} s)")
    kept = {how: select(cands, size.k, how, seed + SELECTIONS.index(how)) for how in size.selections}
    lines = [f"## Selected for fine-tuning: share correct (judge), top-{size.k} of {size.m} per prompt", "",
             *_selection_lines(cands, kept), ""]
    texts, categories, seeds = heldout_set(size.eval_images, seed, "evaluation")
    clock = time.perf_counter()
    def cached_evaluation(name: str, model_fn) -> Evaluation:
        """The evaluation of one model, from out/parts when an earlier run with the same settings saved it."""
        part_key = key + json.dumps({"lr": lr, "rank": rank, "model": name})
        found = load_part(_cache_path(out, f"eval_{name}"), part_key)
        if found is not None:
            t, _, _ = found
            return Evaluation(t["images"], texts, categories, t["mi"], t["valid"], t["correct"])
        ev = evaluate(model_fn(), texts, categories, seeds, steps, cfg, progress, f"evaluating {name}")
        save_part(_cache_path(out, f"eval_{name}"), {"images": ev.images, "mi": ev.mi, "valid": ev.valid,
                  "correct": ev.correct, "losses": torch.tensor(losses.get(name, [0.0]))}, texts, categories,
                  part_key)
        return ev

    losses: dict[str, list[float]] = {}
    evaluations = {"base": cached_evaluation("base", lambda: base)}
    for how, index in kept.items():
        def tuned(how=how, index=index) -> nn.Module:
            data = FinetuneData(cands.images[index], [cands.texts[i] for i in index.tolist()])
            model, trained = finetune(base, data, ft_config(size, seed, lr, rank), progress)
            losses[how] = trained.losses
            save_lora(trained.lora_state_dict, os.path.join(out, f"lora_{how}.safetensors"),
                      {"selection": how, "images": len(data), "steps": trained.steps_done})
            return model

        evaluations[how] = cached_evaluation(how, tuned)
        if how not in losses:  # restored from an earlier run
            losses[how] = load_part(_cache_path(out, f"eval_{how}"), key + json.dumps(
                {"lr": lr, "rank": rank, "model": how}))[0]["losses"].tolist()
    seconds["finetune+evaluate"] = time.perf_counter() - clock
    result = DemoResult(cands, kept, evaluations, losses, seconds)
    lines += [f"## Evaluation prompts (held out from the base model and every fine-tune): judge verdicts, {size.eval_images} images per category and model "
              f"(95% Wilson intervals; differences: Newcombe)", "", *_table(result, CATEGORIES), "",
              "FT: LoRA rank {r}, lr {lr:g}, {s} steps of batch {b}; final loss ".format(
                  r=rank, lr=lr, s=size.ft_steps, b=size.ft_batch)
              + ", ".join(f"{n} {sum(v[-10:]) / len(v[-10:]):.4f}" for n, v in losses.items())]
    ranked = next((h for h in size.selections if h in SCORED), "pmi")
    shown = next((h for h in size.selections if h in cands.scores), "rfmi")
    opening = verdict(evaluations, ranked)
    lines = [*preamble(command, os.path.relpath(weights or DEFAULT_WEIGHTS), size, steps, cfg, seed, lr, rank,
                       JUDGE_SELECTION)[:2], *opening, *figures(shown),
             *preamble(command, os.path.relpath(weights or DEFAULT_WEIGHTS), size, steps, cfg, seed, lr, rank,
                       JUDGE_SELECTION)[2:],
             *lines, "", reading(evaluations), "", *NOTES]
    result.lines = lines
    result.summary = [line for line in opening if line][:1]
    os.makedirs(out, exist_ok=True)
    for category in CATEGORIES:
        save_figure(sample_grid(evaluations, category), os.path.join(out, f"grid_{category}.png"))
    save_figure(mi_histogram_figure({category: {"correct": cands.scores[shown][mask & cands.correct],
                                                "wrong": cands.scores[shown][mask & ~cands.correct]}
                                     for category in CATEGORIES
                                     for mask in [torch.tensor([c == category for c in cands.categories])]},
                                    f"{shown} of the {len(cands.texts)} candidates (fine-tuning prompts), correct vs "
                                    "wrong by the judge", score=shown), os.path.join(out, "mi_histogram.png"))
    save_figure(loss_curve_figure({MODEL_NAMES.get(n, n): v for n, v in losses.items()},
                                  f"LoRA fine-tuning loss (rank {rank}, lr {lr:g}, batch {size.ft_batch})"),
                os.path.join(out, "loss_curve.png"))
    with open(os.path.join(out, "results.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return result


PROG = "python -m rfmi_core.toy.demo"


def build_parser(prog: str = PROG) -> CommandParser:
    """The command's flags, each with its range (an out-of-range value is one error line before any work); ``prog``:
    the command the user typed (``python -m rfmi_core.demo`` forwards here)."""
    parser = CommandParser(prog=prog, description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="the full table with random and judge-selected controls")
    mode.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (CI)")
    parser.add_argument("--weights", default=None, help="toy model safetensors (default: the shipped weights)")
    parser.add_argument("--out", default=os.path.join("out", "toy_demo"), help="folder for results.md, the pictures and the LoRAs")
    parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help="Euler steps per sample")
    parser.add_argument("--cfg", type=non_negative_float, default=DEFAULT_CFG, help="classifier-free guidance scale of the sampler")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds the prompts, candidates, fine-tuning and judging")
    parser.add_argument("--lr", type=positive_float, default=DEFAULT_LR, help="LoRA learning rate")
    parser.add_argument("--rank", type=positive_int, default=DEFAULT_RANK, help="LoRA rank (alpha = rank)")
    parser.add_argument("--controls", action="store_true", help="also run the random and judge-selected controls")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch CPU threads (1 by default: on a shared CPU, 2 threads made LoRA steps 8× slower)")
    for name in ("ft_prompts", "m", "k", "ft_steps", "eval_images", "ft_batch"):
        parser.add_argument("--" + name.replace("_", "-"), type=positive_int, default=None, help="override the size's value (default: the --tiny / default / --full size's)")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> None:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = copy.deepcopy(SIZES["full" if args.full else "tiny" if args.tiny else "default"])
    for name in ("ft_prompts", "m", "k", "ft_steps", "eval_images", "ft_batch"):
        if getattr(args, name) is not None:
            setattr(size, name, getattr(args, name))
    if size.k > size.m:
        parser.error(f"--k ({size.k}) cannot exceed --m ({size.m}): k of each prompt's m candidates are kept")
    if args.controls:
        size.selections = SELECTIONS
    start = time.perf_counter()
    result = run_demo(size, args.weights, args.out, args.steps, args.cfg, args.seed, args.lr, args.rank,
                      progress=True, command=" ".join(["python -m rfmi_core.toy.demo", *(argv if argv is not None
                                                                                         else sys.argv[1:])]))
    print("\n" + "\n".join(line.replace("**", "") for line in result.summary))
    print(f"\nthe tables, figures and how to read them: {args.out}/results.md (with grid_*.png, mi_histogram.png, "
          f"loss_curve.png, lora_*.safetensors) "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    run_cli(main, PROG)
