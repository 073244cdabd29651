"""Trains the toy text-to-image rectified-flow model from scratch.

    python -m research.toy.train_model --out runs/toy_rf.safetensors --save-every 1000 --snapshots runs/toy_snaps

The defaults are the settings of the run meant to replace the shipped weights: 14000 steps of batch 64, lr 1e-3
(warm-up 100, cosine to 0), EMA 0.999, prompt dropout to ∅ 0.1, phrase dropout 0.15, the 0.75 M-parameter model with
local mixing (``model.py``), seed 0, one torch thread. ``--out``, ``--save-every`` and ``--snapshots`` do not change
the weights. On one thread of an idle 2-core x86-64 CPU a step takes 0.33–0.45 s (14000 steps ≈ 1.3–1.8 h), 1–1.5 s
when the other core is busy.

The shipped file (``weights/toy_rf.safetensors``) is four runs of this command (about 1.8–2.35 h of idle CPU in all,
each file's metadata records its own command), chained in one command by ``python -m
research.toy.train_recipe`` (resumable; ``--stop-after`` is how it pauses the base at step 6000 as the shipped base was).
The first three ran on the world before numeracy had two counted groups; ``--numeracy-groups 1`` draws exactly their
batches (checked against the earlier code on 256 draws):

1. The base: step 14000 of the defaults (``--out runs/f3.safetensors``), trained as steps 1–6000 and then ``--resume``
   to 14000 (8454 s on one thread of a shared 2-core CPU; about 1.3–1.8 h idle). Held-out valid / correct: binding
   91.0 / 32.5 %, spatial 92.0 / 7.5 %, numeracy (one group) 90.5 / 80.5 %. Its spatial prompts came out in a random
   direction: at high noise its mean x̂1 was flat where E[x1 | y] has the objects on their sides
   (``benchmarks/toy_spatial_direction.py``), i.e. it never learnt the layout a prompt implies, only to read one from x_t.
2. The layout stage, 500 steps (95 s): ``--init runs/f3.safetensors --prompt-slots --categories spatial
   --low-t-share 1 --stf 16 --batch 32 --lr 1e-3 --warmup 50 --decay none --ema 0 --seed 3 --out runs/stageA.safetensors``:
   prompt slots (``model.py``) added, spatial prompts only, t below 0.1 only, stable targets (``stable_target.py``),
   a flat learning rate (with a cosine decay the same 500 steps learnt nothing). The mean x̂1 displacement at t = 0.02
   went from +0.1 to +6.2 px (the data's E[x1 | y]: +6.75), on held-out pairs alike; but trained at low t only, the
   model forgot how to finish shapes (held-out valid 16–24 %).
3. The repair stage, 2000 steps (902 s): ``--init runs/stageA.safetensors --steps 2000 --lr 5e-4 --stf 16
   --low-t-share 0.3 --ema 0.998 --seed 4``: every category, 30 % of times below 0.1. The layout stays (+6.3 px).
   Held-out valid / correct: binding 96.5 / 35.0 %, spatial 91.0 / 37.0 %, numeracy (one group) 82.5 / 74.0 %.
4. The counting stage, 2500 steps (964 s, one thread, beside another run): ``--init runs/stageB.safetensors
   --categories numeracy,numeracy,numeracy,binding,spatial --steps 2500 --lr 5e-4 --stf 16 --low-t-share 0.3
   --ema 0.99 --seed 5``: the world's numeracy with two counted groups ("two red squares and one blue disk"), three
   batch draws in five numeracy (a category listed twice is drawn twice as often). It replaced a 500-step one-group
   numeracy stage whose model counted too well (numeracy 88.5 % valid, 78.0 % correct); the runs that led to these
   flags (other counts, shares, learning rates and splits) are in research/notes/toy_two_group_numeracy.md.

Judged on held-out prompts (never trained on; CFG 3, 20 Euler steps, 200 images per category, ``python -m
rfmi_core.toy.evaluate rfmi_core/toy/weights/toy_rf.safetensors --n 200``, and ``--seed 1`` for a second draw),
valid / correct: binding 94.5 / 43.5 % (93.5 / 43.5), spatial 96.0 / 44.5 % (94.5 / 47.5), numeracy 86.0 / 51.5 %
(87.5 / 49.0): the world's design targets (valid ≥ 85 %, correct 30–70 % in every category) hold on both draws. Numeracy by
counts (seed 0): one group 78–100 % valid, 72–100 % correct; two groups 81 / 86 % valid, 35 / 34 % correct.
``--resume`` continues a run from its file's step (EMA weights, fresh optimizer); ``--init`` starts a new run (its own
steps and schedule) from a file's weights; ``--snapshots DIR`` keeps a copy at every save.

Conditional flow matching (paper Sec. 2): x_t = t·x1 + (1 − t)·ε, target u* = x1 − ε, t logit-normal; the prompt is
replaced by ∅ (all padding) with probability ``--dropout`` so the model also learns u(x_t|∅) for CFG and MI, and
otherwise, with probability ``--phrase-dropout``, by the prompt without one of its phrases (an object, a relation or
a count word, drawn uniformly; ``prompts.prompt_phrases`` / ``prompts.without_phrases``), so u(x_t | y ∖ p) is a
trained conditional for phrase MI. ``--stf K`` replaces the target by the stable target field over K scenes of
the same prompt; ``--low-t-share`` moves a share of the times below 0.1. Data are fresh random training pairs of the
toy world (train split only) every step. The weights are an exponential moving average, saved as safetensors
(atomic, resumable: ``--resume`` continues from the file's step).
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
import time

import torch
from safetensors import safe_open

from rfmi_core.util.cli_help import CommandParser, run_cli, non_negative_int, positive_float, positive_int, probability
from rfmi_core.mi.conventions import straight_path
from rfmi_core.util.progress import progress_bar
from rfmi_core.toy.model import DEFAULT_WEIGHTS, ToyFlowConfig, ToyFlowTransformer, load_toy_model, save_toy_weights
from rfmi_core.toy.prompts import CATEGORIES, MAX_TOKENS, PAD_ID, PROMPT_VOCAB, prompt_phrases, tokenize_batch, without_phrases
from .stable_target import stf_velocity_target
from rfmi_core.toy.world import random_training_batch, sample_scenes



def toy_config(width: int = 96, depth: int = 4, heads: int = 4, local_mixing: bool = True,
               prompt_slots: bool = False) -> ToyFlowConfig:
    return ToyFlowConfig(vocab_size=len(PROMPT_VOCAB), max_tokens=MAX_TOKENS, pad_id=PAD_ID, width=width, depth=depth,
                         heads=heads, local_mixing=local_mixing, prompt_slots=prompt_slots)


def drop_random_phrases(texts: list[str], probability: float, generator: torch.Generator) -> list[str]:
    """Each text, or with ``probability`` the text without one of its phrases (``prompts.prompt_phrases``, one drawn
    uniformly; ``prompts.without_phrases``), so u(x_t | y ∖ p) is learnt for every phrase p of every prompt."""
    out = []
    for text in texts:
        draw, pick = torch.rand(2, generator=generator).tolist()
        if draw < probability:
            text = without_phrases(text, [int(pick * len(prompt_phrases(text)))])
        out.append(text)
    return out


LOW_T_MAX = 0.1  # the "layout" range of t: x_t shows too little of x1 there to read a layout from it


def with_low_times(t: torch.Tensor, generator: torch.Generator, share: float, low_max: float = LOW_T_MAX) -> torch.Tensor:
    """``t`` with each time replaced, with probability ``share``, by a uniform draw in [0, ``low_max``). Logit-normal t
    puts 1.4 % of draws below t = 0.1, where a prompt's layout has to come from the prompt, not from x_t."""
    low = torch.rand(t.shape, generator=generator) < share
    return torch.where(low, low_max * torch.rand(t.shape, generator=generator), t)


def cfm_loss(model: ToyFlowTransformer, x1: torch.Tensor, tokens: torch.Tensor, generator: torch.Generator,
             dropout: float, references: torch.Tensor | None = None, low_t_share: float = 0.0) -> torch.Tensor:
    """Flow-matching loss with logit-normal t (``low_t_share`` of it moved to small t: ``with_low_times``) and
    prompt dropout to ∅.

    ``references`` [n, K, ...] (K images of each row's prompt, references[:, 0] = x1) switches the target to the
    stable target field (``stable_target.stf_velocity_target``); a row dropped to ∅ takes K − 1 other images of the
    batch after its own (draws of the marginal that ∅ stands for).
    """
    n = x1.shape[0]
    t = torch.sigmoid(torch.randn(n, generator=generator))
    eps = torch.randn(x1.shape, generator=generator)
    drop = torch.rand(n, generator=generator) < dropout
    if low_t_share > 0:  # drawn after the rest, so runs without it keep their random stream
        t = with_low_times(t, generator, low_t_share)
    tokens = torch.where(drop[:, None], torch.full_like(tokens, PAD_ID), tokens)
    x_t, target = straight_path(x1, eps, t)
    if references is not None:
        k = references.shape[1]
        if references.shape[0] != n or not torch.equal(references[:, 0], x1) or k > n:
            raise ValueError(f"references must be [n, K, ...] with K <= n = {n} and references[:, 0] equal to x1")
        references = references.clone()
        for row in torch.nonzero(drop).flatten().tolist():
            others = torch.randperm(n - 1, generator=generator)[: k - 1]
            references[row, 1:] = x1[others + (others >= row).long()]  # any image of the batch but the row's own
        target = stf_velocity_target(x_t, t, references)
    return (model(x_t, t, tokens) - target).square().mean()


def stf_references(images: torch.Tensor, texts: list[str], full_texts: list[str], k: int,
                   generator: torch.Generator) -> torch.Tensor:
    """[n, k, ...]: each image first, then k − 1 fresh scenes of its prompt (``world.sample_scenes``) when the text is
    still the full prompt; a text left without a phrase keeps its own image only (k copies: the plain target), since
    its scenes are those of the full prompts it was cut from."""
    rows = []
    for image, text, full in zip(images, texts, full_texts):
        if text == full:
            rows.append(torch.cat([image[None], sample_scenes(full, k - 1, generator)]))
        else:
            rows.append(image[None].expand(k, *image.shape))
    return torch.stack(rows)


def train(steps: int, batch: int, lr: float, dropout: float, ema_decay: float, seed: int, out: str,
          resume: bool, save_every: int, snapshot_dir: str | None = None, warmup: int = 100,
          phrase_dropout: float = 0.0, config: ToyFlowConfig | None = None, init: str | None = None,
          stf: int = 1, low_t_share: float = 0.0, categories: tuple[str, ...] = CATEGORIES,
          decay: str = "cosine", stop_after: int | None = None, command: str | None = None,
          numeracy_groups: int = 2) -> None:
    """Trains (or resumes, or continues from ``init``) the toy model to step ``steps``, saving the EMA weights to
    ``out`` every ``save_every`` steps; ``stop_after`` ends the run early at that step (saved there; the schedule is
    still the one of ``steps``), for a later ``resume``."""
    torch.manual_seed(seed)
    if init:  # a new run (its own step count and schedule) that starts from another file's weights and config
        model, ema = load_toy_model(init, config).train(), load_toy_model(init, config)
        config = model.config
    else:
        config = config or toy_config()
        model = ToyFlowTransformer(config)
        ema = ToyFlowTransformer(config)
        ema.load_state_dict(model.state_dict())
    start = 0
    if resume and os.path.isfile(out):
        with safe_open(out, framework="pt") as handle:
            meta = handle.metadata()
            state = {k: handle.get_tensor(k) for k in handle.keys()}
        model.load_state_dict(state)
        ema.load_state_dict(state)
        start = int(meta.get("steps", 0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    if decay not in ("cosine", "none"):
        raise ValueError(f"decay must be 'cosine' or 'none'; got {decay!r}")
    def schedule(s: int) -> float:  # linear warm-up (again after a resume: its optimizer is fresh), cosine to 0 or flat
        cosine = 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)) if decay == "cosine" else 1.0
        return min(1.0, (s - start + 1) / warmup) * cosine
    end = steps if stop_after is None else min(steps, stop_after)
    losses: list[float] = []
    began = time.time()
    for step in progress_bar(range(start, end), desc="training toy model", initial=start, total=steps):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        images, full_texts = random_training_batch(batch, generator, categories, numeracy_groups)
        texts = drop_random_phrases(full_texts, phrase_dropout, generator) if phrase_dropout > 0 else full_texts
        references = stf_references(images, texts, full_texts, stf, generator) if stf > 1 else None
        loss = cfm_loss(model, images, tokenize_batch(texts), generator, dropout, references, low_t_share)
        for group in optimizer.param_groups:
            group["lr"] = lr * schedule(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - ema_decay)
        losses.append(loss.item())
        done = step + 1
        if done % save_every == 0 or done == end:
            recent = sum(losses[-100:]) / len(losses[-100:])
            save_toy_weights(ema, out, {"steps": done, "batch": batch, "lr": lr, "dropout": dropout,
                                        "phrase_dropout": phrase_dropout, "ema_decay": ema_decay, "seed": seed, "stf": stf,
                                        "low_t_share": low_t_share, "init": init or "",
                                        "categories": ",".join(categories), "numeracy_groups": numeracy_groups,
                                        "decay": decay, "loss_last100": f"{recent:.5f}",
                                        "command": command or "", "seconds": f"{time.time() - began:.0f}"})
            if snapshot_dir:  # a copy per save, for studies of model quality against training steps
                os.makedirs(snapshot_dir, exist_ok=True)
                shutil.copyfile(out, os.path.join(snapshot_dir, f"toy_rf_step{done:06d}.safetensors"))


def build_parser() -> CommandParser:
    """train_model's flags (also read by ``train_recipe``, whose stages are lists of them)."""
    parser = CommandParser(prog="python -m research.toy.train_model", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=14000, help="total steps")
    parser.add_argument("--stop-after", type=positive_int, default=None,
                        help="end this run at that step (saved; the schedule stays that of --steps); --resume goes on")
    parser.add_argument("--batch", type=positive_int, default=64)
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--dropout", type=probability, default=0.1, help="probability of training on ∅ (for CFG)")
    parser.add_argument("--phrase-dropout", type=probability, default=0.15,
                        help="probability of training on the prompt without one of its phrases (drawn uniformly)")
    parser.add_argument("--width", type=positive_int, default=96)
    parser.add_argument("--depth", type=positive_int, default=4)
    parser.add_argument("--heads", type=positive_int, default=4)
    parser.add_argument("--no-local-mixing", action="store_true", help="no depthwise 3×3 conv in the MLPs")
    parser.add_argument("--prompt-slots", action="store_true",
                        help="adaLN also reads the token embeddings in their slots (word order; added to an --init model)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--ema", type=probability, default=0.999)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--save-every", type=positive_int, default=250)
    parser.add_argument("--warmup", type=non_negative_int, default=100, help="linear learning-rate warm-up steps")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", default=DEFAULT_WEIGHTS)
    parser.add_argument("--snapshots", default=None, help="folder that keeps a copy of the weights at every save")
    parser.add_argument("--init", default=None,
                        help="start from this weights file (its config; a new run: its own steps and schedule)")
    parser.add_argument("--stf", type=positive_int, default=1,
                        help="reference images per prompt for the stable-target-field target (1: the plain target)")
    parser.add_argument("--decay", choices=("cosine", "none"), default="cosine",
                        help="learning rate after the warm-up: cosine to 0, or none (constant)")
    parser.add_argument("--categories", default=",".join(CATEGORIES),
                        help="comma-separated prompt categories to train on (default: all, drawn uniformly)")
    parser.add_argument("--numeracy-groups", type=int, choices=(1, 2), default=2,
                        help="numeracy prompts of at most this many counted groups (1: the world of the first three "
                             "shipped stages, before two-group counting)")
    parser.add_argument("--low-t-share", type=probability, default=0.0,
                        help=f"share of training times drawn uniformly below t = {LOW_T_MAX} instead of logit-normal")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.set_num_threads(args.threads)
    train(args.steps, args.batch, args.lr, args.dropout, args.ema, args.seed, args.out, args.resume, args.save_every,
          args.snapshots, args.warmup, args.phrase_dropout, toy_config(args.width, args.depth, args.heads, not args.no_local_mixing, args.prompt_slots),
          args.init, args.stf, args.low_t_share, tuple(c.strip() for c in args.categories.split(",") if c.strip()), args.decay,
          args.stop_after, "python -m research.toy.train_model " + shlex.join(argv), args.numeracy_groups)


if __name__ == "__main__":
    run_cli(main, "python -m research.toy.train_model")
