"""Splitting a prompt into phrases, and the ablated prompts y∖p that phrase MI (``phrase_mi``) compares y against.

The rule (``split_prompt``), applied to the prompt with runs of whitespace collapsed and a final '.' dropped:

1. **Explicit marks win.** If the prompt holds a ``|``, it is split at every ``|`` and nowhere else
   (``a red square | left of | a blue disk`` → 3 phrases); the text of y joins the phrases with one space.
2. **Otherwise** it is split at commas and at the word ``and`` (``, and`` is one separator), case-insensitive.
3. **Fragments of one word are merged** into the phrase after them (the last one into the phrase before), with the
   separator between them kept: ``a big, brown bowl`` stays one phrase; ``with a blue, black, and white floor`` keeps
   ``black, and white floor`` together. A fragment is a phrase only if it has at least two words.
4. With ``relations=True`` (off by default) a phrase is further split around the first spatial relation it contains
   (``RELATIONS``: T2I-CompBench's ``on the left of``, ``next to``, ``hidden by`` …), which becomes a phrase of its
   own: ``a cup on the right of a dog`` → ``a cup`` | ``on the right of`` | ``a dog``.

The text of y∖p (``SplitPrompt.without``) is the prompt with phrase p and one separator beside it removed (the one
before it; for the first phrase the one after it): ``four tents, two boats and one pig`` without ``two boats`` is
``four tents and one pig``. A prompt of one phrase has y∖p = "" (∅): its phrase MI is the plain MI.

Counts on every prompt of T2I-CompBench (``python -m rfmi_core.phrase_report DIR`` prints them; ``docs/phrase_splitter.md``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

__all__ = ["RELATIONS", "SplitPrompt", "split_prompt", "phrase_counts"]

RELATIONS = (
    "on the left of", "on the right of", "on the top of", "on the bottom of", "on top of", "on side of",
    "to the left of", "to the right of", "in front of", "next to", "hidden by", "behind", "near", "above", "below",
    "under",
)
_SEPARATOR = re.compile(r"\s*,\s*and\s+|\s*,\s*|\s+and\s+", flags=re.IGNORECASE)
_RELATION = re.compile(r"\s+(" + "|".join(re.escape(r) for r in RELATIONS) + r")\s+", flags=re.IGNORECASE)


@dataclass(frozen=True)
class SplitPrompt:
    """A prompt as phrases and the separators between them (``separators[i]`` joins phrase i and i + 1)."""

    phrases: tuple[str, ...]
    separators: tuple[str, ...]

    def __post_init__(self):
        if len(self.separators) != max(len(self.phrases) - 1, 0):
            raise ValueError(f"{len(self.phrases)} phrases need {max(len(self.phrases) - 1, 0)} separators; "
                             f"got {len(self.separators)}")

    def __len__(self) -> int:
        return len(self.phrases)

    @property
    def text(self) -> str:
        """The prompt y as it is encoded: phrases joined by their separators (``|`` marks become one space)."""
        return self._join(list(self.phrases), list(self.separators))

    def without(self, index: int) -> str:
        """The text of y∖p for phrase ``index``: that phrase and one separator beside it removed ("" for one phrase)."""
        if not 0 <= index < len(self.phrases):
            raise ValueError(f"index must name one of the {len(self.phrases)} phrases; got {index}")
        phrases, separators = list(self.phrases), list(self.separators)
        del phrases[index]
        if separators:
            del separators[index - 1 if index > 0 else 0]
        return self._join(phrases, separators)

    def ablations(self) -> list[str]:
        """The texts of y∖p for every phrase, in order."""
        return [self.without(i) for i in range(len(self.phrases))]

    @staticmethod
    def _join(phrases: list[str], separators: list[str]) -> str:
        if not phrases:
            return ""
        return phrases[0] + "".join(s + p for s, p in zip(separators, phrases[1:]))


def _split_with(pattern: re.Pattern, text: str) -> tuple[list[str], list[str]]:
    """(parts, separators as found) of ``text`` split at ``pattern``; empty parts are dropped with their separator."""
    parts, separators, start = [], [], 0
    for match in pattern.finditer(text):
        parts.append(text[start : match.start()])
        separators.append(match.group(0))
        start = match.end()
    parts.append(text[start:])
    kept_parts, kept_separators = [], []
    for i, part in enumerate(parts):
        if part.strip():
            if kept_parts:
                kept_separators.append(separators[i - 1])
            kept_parts.append(part.strip())
    return kept_parts, kept_separators


def _merge_single_words(parts: list[str], separators: list[str]) -> tuple[list[str], list[str]]:
    """Merges each one-word fragment into the next phrase (the last into the previous), keeping the separator."""
    i = 0
    while len(parts) > 1 and i < len(parts):
        if len(parts[i].split()) >= 2:
            i += 1
            continue
        if i + 1 < len(parts):
            parts[i : i + 2] = [parts[i] + separators[i] + parts[i + 1]]
            del separators[i]
        else:
            parts[i - 1 : i + 1] = [parts[i - 1] + separators[i - 1] + parts[i]]
            del separators[i - 1]
            i -= 1
    return parts, separators


def _normalise_separator(separator: str) -> str:
    return ", " if separator.strip() == "," else (", and " if "," in separator else " and ")


def split_prompt(prompt: str, relations: bool = False) -> SplitPrompt:
    """The phrases of ``prompt`` by the module's rule (explicit ``|`` marks; else commas and ``and``; one-word
    fragments merged; optionally spatial relations as phrases of their own)."""
    text = " ".join(prompt.split()).rstrip(".").strip()
    if not text:
        raise ValueError("prompt must hold at least one word to split into phrases")
    if "|" in text:
        parts = [p.strip() for p in text.split("|") if p.strip()]
        return SplitPrompt(tuple(parts), (" ",) * (len(parts) - 1))
    parts, separators = _split_with(_SEPARATOR, text)
    separators = [_normalise_separator(s) for s in separators]
    parts, separators = _merge_single_words(parts, separators)
    if relations:
        out_parts, out_separators = [], []
        for i, part in enumerate(parts):
            if i > 0:
                out_separators.append(separators[i - 1])
            match = _RELATION.search(part)
            if match and part[: match.start()].strip() and part[match.end() :].strip():
                pieces = [part[: match.start()].strip(), match.group(1), part[match.end() :].strip()]
                out_parts.extend(pieces)
                out_separators.extend([" ", " "])
            else:
                out_parts.append(part)
        parts, separators = out_parts, out_separators
    return SplitPrompt(tuple(parts), tuple(separators))


def phrase_counts(prompts: list[str], relations: bool = False) -> Counter:
    """How many prompts split into 1, 2, 3 … phrases."""
    return Counter(len(split_prompt(p, relations)) for p in prompts)
