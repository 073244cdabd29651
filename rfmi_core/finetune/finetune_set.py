"""The fine-tune set of RFMI FT (paper Algorithm 1): each prompt's highest-MI candidates, ready to train a LoRA on.

A set is a folder that several writers may append to at once (one ComfyUI per GPU, machines sharing a folder):

    <set>/set.json                                   format, version, top_k (written once)
    <set>/manifest/<writer>-<seq>.jsonl              one segment per append: a JSON record per candidate
    <set>/latents/<writer>-<seq>.safetensors         that append's latents, stacked: "latents" [n, ...]
    <set>/conditioning/<key>.safetensors             each prompt's conditioning, stored once per (model, text)

Every file is written to a temporary name, flushed, fsynced and renamed into place, and a segment is renamed only after
its latents are in place: a crash or interrupt leaves at most an orphan temporary file, never a half record, and
the previous state stays readable. No writer ever touches another's files, so concurrent appends cannot lose records.
Readers merge all segments, drop duplicates (same prompt, negative, seed, batch index, model and settings), validate
every record against its shard and keep the top-k per prompt (an artist's picks first, then by MI).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from ..util.atomic import TMP_PREFIX as _TMP_PREFIX
from ..util.atomic import publish_bytes, publish_safetensors, save_safetensors_atomic
from ..util.atomic import write_bytes_atomic as _atomic_write_bytes

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "FinetuneSetError",
    "CandidateRecord",
    "FinetuneSet",
    "conditioning_key",
    "candidate_records",
    "record_settings",
]

FORMAT = "rfmi-finetune-set"
SCHEMA_VERSION = 1
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,96}")
_SHARD = re.compile(r"latents/[A-Za-z0-9_-][A-Za-z0-9._-]*\.safetensors")
_KEY = re.compile(r"[0-9a-f]{20}")


class FinetuneSetError(ValueError):
    """A fine-tune set that cannot be read or written as asked; the message names the file and what to do."""


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def conditioning_key(model: str, text: str) -> str:
    """The file stem a prompt's conditioning is stored under: one per (model identity, prompt text)."""
    return _digest("conditioning", model, text)


@dataclass
class CandidateRecord:
    """One kept candidate. ``latent_shard``/``latent_row`` locate its latent; the conditioning keys its prompt's."""

    prompt: str
    negative: str
    seed: int
    batch_index: int
    candidate_index: int
    mi: float
    score: str
    velocity: str
    model: str
    sampler: dict
    latent_shape: list[int]
    picked: bool = False
    time: float = field(default_factory=time.time)
    writer: str = ""
    latent_shard: str = ""
    latent_row: int = -1
    prompt_conditioning: str = ""
    negative_conditioning: str = ""
    schema_version: int = SCHEMA_VERSION
    id: str = ""

    def identity(self) -> str:
        """Equal for the same candidate written twice: prompt, negative, seed, batch index, model and settings."""
        return _digest(self.prompt, self.negative, self.seed, self.batch_index, self.model, self.sampler,
                       self.score, self.velocity)

    @classmethod
    def from_json(cls, data: dict, where: str) -> "CandidateRecord":
        if data.get("schema_version") != SCHEMA_VERSION:
            raise FinetuneSetError(f"{where}: record schema version {data.get('schema_version')!r}, this reader knows "
                                   f"{SCHEMA_VERSION}; update ComfyUI-RFMI to read it")
        missing = [f for f in cls.__dataclass_fields__ if f not in data]
        if missing:
            raise FinetuneSetError(f"{where}: record lacks {', '.join(missing)}; the file is damaged or not an RFMI set")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _default_writer_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def record_settings(settings: dict) -> dict:
    """What a record's ``sampler`` field holds of a ``ScoredCandidates.settings``: all but score and velocity (they have
    their own fields)."""
    return {key: value for key, value in settings.items() if key not in ("score", "velocity")}


def candidate_records(chosen, prompt: str, negative: str, model: str, picked: bool = False) -> list[CandidateRecord]:
    """The records of ``chosen`` (a ``ScoredCandidates`` with latents) for one prompt, as Export Fine-tune Set writes
    them: Best-of-N's candidate j has seed ``settings["seed"]`` + j, so its candidate index is seed − first seed."""
    settings = record_settings(chosen.settings)
    first_seed = chosen.settings.get("seed")
    return [
        CandidateRecord(prompt=prompt.strip(), negative=negative.strip(), seed=int(chosen.seeds[i]),
                        batch_index=int(chosen.batch_index[i]),
                        candidate_index=int(chosen.seeds[i]) - first_seed if first_seed is not None else i,
                        mi=float(chosen.mi[i]), score=str(chosen.settings.get("score", "rfmi")),
                        velocity=str(chosen.settings.get("velocity", "cfg")), model=model, sampler=settings,
                        latent_shape=list(chosen.latents.shape[1:]), picked=picked)
        for i in range(len(chosen))
    ]


class FinetuneSet:
    """A fine-tune set folder: ``FinetuneSet.open(path, create=True)`` then ``append(...)`` or ``records()``."""

    def __init__(self, root: Path, top_k: int, writer_id: str):
        self.root = root
        self.top_k = top_k
        self.writer_id = writer_id
        self._sequence = 0
        self._known_ids: set[str] = set()
        self._scanned_segments: set[str] = set()

    # --- opening -------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False, top_k: int = 1,
             writer_id: str | None = None) -> "FinetuneSet":
        """Opens the set at ``path``; with ``create`` makes it (top_k kept per prompt) when absent.

        Several processes may create the same new set at once: the header is published whole by a hard link
        (``util.atomic.publish_bytes``), so exactly one header lands and every creator reads it; a creator whose
        ``top_k`` differs from the set's is refused (one set keeps one k per prompt)."""
        root = Path(path)
        header = root / "set.json"
        if writer_id is not None and not _SAFE_NAME.fullmatch(writer_id):
            raise FinetuneSetError(f"writer id {writer_id!r} must be letters, digits, '.', '_' or '-' (it names files "
                                   "in the set)")
        if create:
            if top_k < 1:
                raise FinetuneSetError(f"top_k must be ≥ 1 (candidates kept per prompt); got {top_k}")
            if not header.exists():
                for sub in ("manifest", "latents", "conditioning"):  # before the header: a set with one has them
                    (root / sub).mkdir(parents=True, exist_ok=True)
                body = json.dumps({"format": FORMAT, "version": SCHEMA_VERSION, "top_k": top_k}, indent=1).encode()
                publish_bytes(header, body)
        elif not header.exists():
            what = "does not exist" if not root.exists() else "is not a fine-tune set (it has no set.json)"
            raise FinetuneSetError(f"{root} {what}; give the folder of a set (Export Fine-tune Set or "
                                   "python -m rfmi_core.build_set make one)")
        info = cls._read_header(header)
        if create and int(info["top_k"]) != top_k:
            raise FinetuneSetError(f"{root} keeps the top {info['top_k']} per prompt, not {top_k}: use k = "
                                   f"{info['top_k']} with this set, or another set name for k = {top_k}")
        return cls(root, int(info["top_k"]), writer_id or _default_writer_id())

    @staticmethod
    def _read_header(header: Path) -> dict:
        fix = ("rewrite it as " + json.dumps({"format": FORMAT, "version": SCHEMA_VERSION, "top_k": 1})
               + " (top_k: the candidates kept per prompt); the segments, latents and conditioning are not affected")
        try:
            text = header.read_text(encoding="utf-8")
        except OSError as error:
            raise FinetuneSetError(f"{header} cannot be read ({error.strerror or error})") from error
        try:
            info = json.loads(text)
        except json.JSONDecodeError as error:
            # headers are published whole (a hard link), so an empty or partial one is damage, not a write in
            # progress (sets made by versions that wrote the header in place can hold one cut short by a crash)
            state = "is empty" if not text.strip() else f"is damaged ({error})"
            raise FinetuneSetError(f"{header} {state}: it is not being written (headers appear whole); {fix}") from error
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise FinetuneSetError(f"{header} is not an RFMI fine-tune set header (format "
                                   f"{info.get('format') if isinstance(info, dict) else info!r})")
        if info.get("version") != SCHEMA_VERSION:
            raise FinetuneSetError(f"{header}: set version {info.get('version')!r}, this reader knows {SCHEMA_VERSION}; "
                                   "update ComfyUI-RFMI")
        if not isinstance(info.get("top_k"), int) or info["top_k"] < 1:
            raise FinetuneSetError(f"{header} has no valid top_k ({info.get('top_k')!r}); {fix}")
        return info

    # --- writing -------------------------------------------------------------------------------------------------
    def append(self, records: list[CandidateRecord], latents: Tensor,
               conditioning: dict[str, dict[str, Tensor]]) -> list[str]:
        """Adds ``records`` (row i of ``latents`` is record i's latent) and any conditioning not yet stored.

        ``conditioning`` maps each record's prompt and negative text to its tensors (e.g. {"cross_attn": [1, L, D],
        "pooled_output": [1, P]}). Returns the new record ids; records already in the set are skipped.
        """
        if len(records) != latents.shape[0]:
            raise FinetuneSetError(f"records ({len(records)}) and latents ({latents.shape[0]}) must pair one to one")
        if not records:
            return []
        existing = self._refresh_known_ids()
        fresh = [(i, r) for i, r in enumerate(records) if r.identity() not in existing]
        fresh = list({r.identity(): (i, r) for i, r in fresh}.values())  # duplicates within this call, too
        if not fresh:
            return []
        for text in {t for _, r in fresh for t in (r.prompt, r.negative)}:
            if text not in conditioning:
                raise FinetuneSetError(f"no conditioning given for the text {text!r}; pass the prompt's and the "
                                       "negative's conditioning tensors")
        self._sequence += 1
        stem = f"{self.writer_id}-{self._sequence:06d}-{uuid.uuid4().hex[:6]}"
        shard = f"latents/{stem}.safetensors"
        rows = torch.stack([latents[i] for i, _ in fresh])
        model = fresh[0][1].model
        for text in {t for _, r in fresh for t in (r.prompt, r.negative)}:
            self._store_conditioning(model, text, conditioning[text])
        save_safetensors_atomic({"latents": rows}, self.root / shard, {"format": FORMAT, "writer": self.writer_id})
        lines, ids = [], []
        for row, (_, record) in enumerate(fresh):
            if list(record.latent_shape) != list(latents.shape[1:]):
                raise FinetuneSetError(f"record latent_shape {record.latent_shape} differs from the latent's "
                                       f"{list(latents.shape[1:])}")
            record.writer, record.latent_shard, record.latent_row = self.writer_id, shard, row
            record.prompt_conditioning = conditioning_key(record.model, record.prompt)
            record.negative_conditioning = conditioning_key(record.model, record.negative)
            record.id = record.identity()
            ids.append(record.id)
            lines.append(json.dumps(asdict(record), sort_keys=True))
        _atomic_write_bytes(self.root / "manifest" / f"{stem}.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
        self._known_ids.update(ids)
        return ids

    def _segments(self) -> list[Path]:
        return sorted(p for p in (self.root / "manifest").glob("*.jsonl") if not p.name.startswith(_TMP_PREFIX))

    def _refresh_known_ids(self) -> set[str]:
        """Ids of every record in the set, reading only the segments added since the last call."""
        for segment in self._segments():
            if segment.name not in self._scanned_segments:
                self._known_ids.update(record.id for _, record in self._segment_records(segment))
                self._scanned_segments.add(segment.name)
        return self._known_ids

    def _segment_records(self, segment: Path) -> list[tuple[str, CandidateRecord]]:
        """The records of one manifest segment, each with its "file:line"; a damaged segment is a FinetuneSetError
        that says how to drop it."""
        try:
            lines = segment.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise self._damaged(segment, str(error)) from error
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{segment}:{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise self._damaged(segment, f"line {number} is not valid JSON: {error}") from error
            if not isinstance(data, dict):
                raise self._damaged(segment, f"line {number} is not a record")
            if data.get("schema_version") == SCHEMA_VERSION and set(CandidateRecord.__dataclass_fields__) - set(data):
                raise self._damaged(segment, f"line {number} lacks "
                                             f"{', '.join(sorted(set(CandidateRecord.__dataclass_fields__) - set(data)))}")
            records.append((where, CandidateRecord.from_json(data, where)))
        return records

    def _damaged(self, segment: Path, detail: str) -> FinetuneSetError:
        """The error for a damaged manifest segment: which file, that the rest is intact, how to drop it."""
        others = len(self._segments()) - 1
        return FinetuneSetError(
            f"{segment} is damaged ({detail}). Segments appear whole (written aside, then renamed), so this is no "
            f"write in progress: the file changed after it was written. The other {others} segment(s) are not "
            f"affected. To drop this one append, move manifest/{segment.stem}.jsonl and latents/{segment.stem}"
            ".safetensors out of the set (its records are lost, the rest stays)")

    def _store_conditioning(self, model: str, text: str, tensors: dict[str, Tensor]) -> None:
        path = self.root / "conditioning" / f"{conditioning_key(model, text)}.safetensors"
        if path.exists():  # stored once per (model, text); of two writers storing it at once, one file lands
            return
        if not tensors:
            raise FinetuneSetError(f"the conditioning of {text!r} is empty")
        publish_safetensors(tensors, path, {"format": FORMAT, "model": model, "text": text})

    # --- reading -------------------------------------------------------------------------------------------------
    def _all_records(self, validate: bool = True) -> list[CandidateRecord]:
        records: list[CandidateRecord] = []
        seen: set[str] = set()
        segments = self._segments()
        shard_rows: dict[str, tuple[int, list[int]]] = {}
        for segment in segments:
            for where, record in self._segment_records(segment):
                if record.id in seen:
                    continue
                seen.add(record.id)
                if validate:
                    self._validate(record, where, shard_rows)
                records.append(record)
        return sorted(records, key=lambda r: (r.time, r.id))

    def _validate(self, record: CandidateRecord, where: str, cache: dict) -> None:
        """A record's latent row and conditioning files exist and fit; each is written before the segment that names
        it, so a missing or unreadable one was lost or changed after the append."""
        segment = where.rsplit(":", 1)[0]
        drop = (f"restore it, or move {segment} (and its latent shard) out of the set to drop that append's records; "
                "the other segments are not affected")
        if not _SHARD.fullmatch(record.latent_shard) or not all(
                _KEY.fullmatch(k) for k in (record.prompt_conditioning, record.negative_conditioning)):
            raise FinetuneSetError(f"{where}: the record names files outside the set's layout ({record.latent_shard!r});"
                                   f" the segment is damaged: {drop}")
        if record.latent_shard not in cache:
            path = self.root / record.latent_shard
            if not path.is_file():
                raise FinetuneSetError(f"{where}: its latent shard {path} is missing; {drop}")
            try:
                with safe_open(str(path), framework="pt") as handle:
                    shape = list(handle.get_slice("latents").get_shape())
            except (SafetensorError, OSError, KeyError, ValueError) as error:
                raise FinetuneSetError(f"{path} is not a readable latent shard ({error}); {drop}") from error
            cache[record.latent_shard] = (shape[0], shape[1:])
        rows, shape = cache[record.latent_shard]
        if not 0 <= record.latent_row < rows or list(record.latent_shape) != list(shape):
            raise FinetuneSetError(f"{where}: row {record.latent_row} of shape {record.latent_shape} does not fit "
                                   f"{record.latent_shard} ({rows} rows of {shape}); {drop}")
        for key in (record.prompt_conditioning, record.negative_conditioning):
            if not (self.root / "conditioning" / f"{key}.safetensors").is_file():
                raise FinetuneSetError(f"{where}: conditioning file conditioning/{key}.safetensors is missing; "
                                       "restore it (every record of its prompt needs it)")

    def records(self, selected: bool = True) -> list[CandidateRecord]:
        """All valid records (duplicates dropped), or with ``selected`` only each prompt's top-k: picks, then by MI."""
        records = self._all_records(validate=True)
        if not selected:
            return records
        groups: dict[tuple[str, str], list[CandidateRecord]] = {}
        for record in records:
            groups.setdefault((record.model, record.prompt), []).append(record)
        kept = []
        for group in groups.values():
            ranked = sorted(group, key=lambda r: (not r.picked, -r.mi, r.time, r.id))
            kept += ranked[: max(self.top_k, sum(r.picked for r in group))]
        return sorted(kept, key=lambda r: (r.time, r.id))

    def load_latents(self, records: Iterable[CandidateRecord]) -> Tensor:
        """The latents of ``records``, stacked in their order."""
        rows = []
        for record in records:
            with safe_open(str(self.root / record.latent_shard), framework="pt") as handle:
                rows.append(handle.get_slice("latents")[record.latent_row : record.latent_row + 1][0])
        if not rows:
            raise FinetuneSetError("no records to load latents for")
        return torch.stack(rows)

    def load_conditioning(self, key: str) -> dict[str, Tensor]:
        path = self.root / "conditioning" / f"{key}.safetensors"
        try:
            with safe_open(str(path), framework="pt") as handle:
                return {name: handle.get_tensor(name) for name in handle.keys()}
        except (SafetensorError, OSError) as error:
            raise FinetuneSetError(f"{path} is missing or unreadable ({error}); restore it") from error

    def summary(self) -> dict:
        """Size, prompts and MI range of the selected records."""
        kept = self.records()
        mi = [r.mi for r in kept]
        return {"records": len(kept), "prompts": len({(r.model, r.prompt) for r in kept}),
                "mi_min": min(mi) if mi else None, "mi_max": max(mi) if mi else None,
                "all_records": len(self._all_records(validate=False))}

    def training_data(self) -> "FinetuneSetData":
        """The selected records as training examples: (latent, prompt conditioning, negative conditioning)."""
        return FinetuneSetData(self, self.records())


class FinetuneSetData:
    """``data[i] -> (latent [C, ...], cond: dict, uncond: dict)``; each conditioning tensor keeps its batch dim of 1."""

    def __init__(self, finetune_set: FinetuneSet, records: list[CandidateRecord]):
        if not records:
            raise FinetuneSetError(f"{finetune_set.root} holds no records to train on; export some candidates first")
        self.records = records
        self.latents = finetune_set.load_latents(records)
        keys = {k for r in records for k in (r.prompt_conditioning, r.negative_conditioning)}
        self.conditioning = {k: finetune_set.load_conditioning(k) for k in keys}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        record = self.records[index]
        return (self.latents[index], self.conditioning[record.prompt_conditioning],
                self.conditioning[record.negative_conditioning])
