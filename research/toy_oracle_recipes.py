"""Oracle fine-tuning recipes on the toy world, quickly: one candidate set, one base evaluation, then per recipe a
LoRA on judge-selected (correct-only) or other candidates, judged against the base. Not a test: it prints figures.

    python -m research.toy_oracle_recipes --weights W --recipes '[{"rank": 16, "lr": 1e-3, "steps": 600,
        "batch": 32, "targets": "<regex>"}, {"rank": 8, "lr": 1e-3, "steps": 300, "batch": 32, "select": "random"}]'

Candidates: ``--instances`` prompts per category from the held-out split's "finetune" half (spatial split by object
pair, binding and numeracy by position: the halves of ``prompts.heldout_half``) × ``--m``; evaluation: ``--eval``
images per category of the "evaluation" half.
Caches candidates and the base evaluation under runs/oc/ as safetensors, keyed by the weights' SHA-256 and the
settings (a cache of other weights or settings is recomputed; ``--tag`` only names the files).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import torch

from rfmi_core.toy.demo import (Candidates, DemoSize, Evaluation, FinetuneData, load_part, save_part, evaluate, finetune,
                                 ft_config, select)
from rfmi_core.toy.evaluate import diff_ci, generate, judge_batch, pick_prompts
from rfmi_core.toy.prompts import CATEGORIES, prompts
from research.toy.train_model import load_toy_model

ap = argparse.ArgumentParser()
ap.add_argument("--weights", required=True)
ap.add_argument("--instances", type=int, default=48)
ap.add_argument("--m", type=int, default=8)
ap.add_argument("--eval", type=int, default=200)
ap.add_argument("--cfg", type=float, default=3.0)
ap.add_argument("--tag", default="s6000")
ap.add_argument("--recipes", required=True)
a = ap.parse_args()
torch.set_num_threads(1)
half = lambda category, which: prompts(category, ("finetune", "evaluation")[which])  # noqa: E731
base = load_toy_model(a.weights)
os.makedirs("runs/oc", exist_ok=True)
with open(a.weights, "rb") as handle:
    weights_sha = hashlib.sha256(handle.read()).hexdigest()
cp = f"runs/oc/{a.tag}_splitA_{a.instances}_{a.m}.safetensors"
ckey = json.dumps({"weights": weights_sha, "instances": a.instances, "m": a.m, "cfg": a.cfg})
t = time.time()
part = load_part(cp, ckey)
if part:
    tensors, ctexts, ccats = part
    cands = Candidates(tensors["images"], ctexts, ccats, tensors["groups"], tensors["valid"], tensors["correct"],
                       {"rfmi": tensors["mi"]})
else:
    texts, cats, groups = [], [], []
    for c, cat in enumerate(CATEGORIES):
        for p, text in enumerate(pick_prompts(half(cat, 0), a.instances, c)):
            texts += [text] * a.m
            cats += [cat] * a.m
            groups += [c * a.instances + p] * a.m
    seeds = [i + 5_000_000 for i in range(len(texts))]
    images, res = generate(base, texts, seeds, 20, a.cfg)
    v, cc = judge_batch(images, texts)
    cands = Candidates(images, texts, cats, torch.tensor(groups), v, cc, {"rfmi": res.mi})
    save_part(cp, {"images": images, "groups": cands.groups, "mi": res.mi, "valid": v, "correct": cc}, texts, cats,
               ckey)
print(f"candidates {len(cands.texts)} ({time.time()-t:.0f}s); correct " + ", ".join(
    f"{c} {100*cands.correct[torch.tensor([x==c for x in cands.categories])].float().mean():.1f}" for c in CATEGORIES), flush=True)
texts, cats = [], []
for c, cat in enumerate(CATEGORIES):
    texts += pick_prompts(half(cat, 1), a.eval, 7919 + c)
    cats += [cat] * a.eval
seeds = [10_000_000 + i for i in range(len(texts))]
ep = f"runs/oc/{a.tag}_splitB_base_{a.eval}.safetensors"
ekey = json.dumps({"weights": weights_sha, "eval": a.eval, "cfg": a.cfg})
t = time.time()
part = load_part(ep, ekey)
if part:
    tensors, etexts, ecats = part
    ev0 = Evaluation(tensors["images"], etexts, ecats, tensors["mi"], tensors["valid"], tensors["correct"])
else:
    ev0 = evaluate(base, texts, cats, seeds, 20, a.cfg, progress=False)
    save_part(ep, {"images": ev0.images, "mi": ev0.mi, "valid": ev0.valid, "correct": ev0.correct}, ev0.texts,
               ev0.categories, ekey)
print(f"base on B ({time.time()-t:.0f}s): " + " | ".join(f"{c} correct {ev0.rates(c)[0]} valid {ev0.rates(c)[1]}" for c in CATEGORIES), flush=True)
for r in json.loads(a.recipes):
    k = r.get("k", 2)
    how = r.get("select", "correct")
    if how == "correct":
        idx = torch.cat([torch.nonzero((cands.groups == g) & cands.correct).flatten()[:k] for g in cands.groups.unique().tolist()])
    else:
        idx = select(cands, k, how, 2)
    data = FinetuneData(cands.images[idx], [cands.texts[i] for i in idx.tolist()])
    size = DemoSize(1, a.m, k, r["steps"], a.eval, ft_batch=r["batch"])
    cfg = ft_config(size, 0, r["lr"], r["rank"])
    if "targets" in r:
        cfg.target_modules = r["targets"]
    t = time.time()
    model, res = finetune(base, data, cfg, progress=False)
    ev = evaluate(model, texts, cats, seeds, 20, a.cfg, progress=False)
    cells = []
    for c in CATEGORIES:
        (c0, v0), (c1, v1) = ev0.rates(c), ev.rates(c)
        dc, dv = diff_ci(c0, c1), diff_ci(v0, v1)
        cells.append(f"{c} correct {100*dc[0]:+.1f} [{100*dc[1]:+.1f},{100*dc[2]:+.1f}] valid {100*dv[0]:+.1f} [{100*dv[1]:+.1f},{100*dv[2]:+.1f}]")
    print(f"{r} set {len(data)} ({time.time()-t:.0f}s): " + " | ".join(cells), flush=True)
