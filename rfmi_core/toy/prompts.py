"""The toy world's language: prompt specs, their text, the fixed train / held-out splits and the tokenizer.

Three categories mirror T2I-CompBench:

- binding   "a red square and a blue disk"                 two objects, different colours and different shapes
- spatial   "a red square to the left of a blue disk"      the same pairs, with left / right / above / below
- numeracy  "three green crosses"                          one colour–shape, 1 to 4 copies, or two counted groups:
            "two red squares and one blue disk"            two colour–shapes (different colours and shapes), one of
                                                           them twice (TWO_GROUP_COUNTS: three objects in all)

Two groups are what T2I-CompBench's numeracy prompts mostly hold (479 of its 700 training prompts join groups by
"and", e.g. "three dogs and two cats"), and what keeps counting from being easier than the rest: with one group only,
a model trained on one counted group drew valid numeracy images with the right count 88 % of the time (numeracy 78 % correct against
binding's 39 %), so counting measured little beyond drawing. The counts stop at three objects because the toy model
draws no more than that validly often enough: two groups of four objects came out 58–67 % valid after a 2500-step
stage (research/notes/toy_two_group_numeracy.md). "one red square and one blue disk" is a binding prompt, so (1, 1)
is no count pair.

The first named object is always the one whose shape comes first in ``SHAPES`` (one text per meaning). The held-out
split is a set of new compositions of seen words and seen objects: an object pair is held out when its second colour
sits 1 + p steps after its first (p = the shape pair's index), for binding and spatial alike, so a held-out pair never
appears together in training; a one-group numeracy triple is held out when count − 1 ≡ colour + shape (mod 4), one
count per colour–shape; a two-group numeracy prompt is held out with its object pair (a held-out pair is never seen
together, counted or not). Every single object, colour, shape, relation and count still appears in the train split.

The held-out split has two halves for fine-tuning studies (the paper's regime: a model fine-tuned on its own samples
of prompts it never trained on, judged on other unseen prompts): "finetune" and "evaluation". Held-out object pairs
alternate between them in their fixed order (a pair and all its binding, spatial and counted prompts go to one half),
and so do held-out one-group numeracy triples; "heldout" is their union. The base model trains on "train" only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

__all__ = [
    "COLOURS", "SHAPES", "RELATIONS", "CATEGORIES", "SPLITS", "MAX_COUNT", "TWO_GROUP_COUNTS", "PromptSpec", "prompt_text",
    "parse_prompt", "canonical", "is_heldout", "heldout_half", "prompt_specs", "prompts", "contrast_prompts", "PROMPT_VOCAB",
    "PAD_ID", "MAX_TOKENS", "tokenize", "tokenize_batch", "detokenize", "PHRASE_KINDS", "prompt_phrases",
    "without_phrases", "ToyPhrases", "split_toy_prompt",
]

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("square", "disk", "cross")
RELATIONS = ("left", "right", "above", "below")
CATEGORIES = ("binding", "spatial", "numeracy")
SPLITS = ("train", "heldout", "finetune", "evaluation")
MAX_COUNT = 4  # also the most objects in a scene
TWO_GROUP_COUNTS = ((1, 2), (2, 1))  # (first, second) counts of two-group numeracy prompts

_PLURALS = {"square": "squares", "disk": "disks", "cross": "crosses"}
_NUMBERS = ("one", "two", "three", "four")
_RELATION_WORDS = {"left": ("to", "the", "left", "of"), "right": ("to", "the", "right", "of"),
                   "above": ("above",), "below": ("below",)}
_OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks for. ``objects`` holds (colour, shape) pairs: two for binding and spatial, one or two for
    numeracy; ``relation`` reads "objects[0] <relation> objects[1]"; ``counts`` is numeracy's number of copies of each
    object (at most MAX_COUNT objects in all)."""

    category: str
    objects: tuple[tuple[str, str], ...]
    relation: str | None = None
    counts: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}; got {self.category!r}")
        for colour, shape in self.objects:
            if colour not in COLOURS or shape not in SHAPES:
                raise ValueError(f"objects must be (colour, shape) pairs from {COLOURS} × {SHAPES}; "
                                 f"got {(colour, shape)}")
        spatial, numeracy = self.category == "spatial", self.category == "numeracy"
        if len(self.objects) not in ((1, 2) if numeracy else (2,)):
            raise ValueError(f"objects must hold {'1 or 2' if numeracy else 2} (colour, shape) pair(s) for "
                             f"{self.category}; got {len(self.objects)}")
        if len(self.objects) == 2 and self.objects[0] == self.objects[1]:
            raise ValueError(f"the two objects must differ; got {self.objects[0]} twice")
        if spatial != (self.relation is not None) or (spatial and self.relation not in RELATIONS):
            raise ValueError(f"relation must be one of {RELATIONS} for spatial prompts and None otherwise; "
                             f"got {self.relation!r}")
        counts_ok = (isinstance(self.counts, tuple) and len(self.counts) == len(self.objects)
                     and all(isinstance(n, int) and n >= 1 for n in self.counts) and sum(self.counts) <= MAX_COUNT)
        if numeracy != (self.counts is not None) or (numeracy and not counts_ok):
            raise ValueError(f"counts must be one count ≥ 1 per object, {MAX_COUNT} objects at most in all, for "
                             f"numeracy prompts and None otherwise; got {self.counts!r}")

    @property
    def text(self) -> str:
        return prompt_text(self)


def prompt_text(spec: PromptSpec) -> str:
    """The prompt's words, e.g. "a red square to the left of a blue disk", "two red squares and one blue disk"."""
    if spec.category == "numeracy":
        return " and ".join(f"{_NUMBERS[n - 1]} {colour} {shape if n == 1 else _PLURALS[shape]}"
                            for (colour, shape), n in zip(spec.objects, spec.counts))
    (c1, s1), (c2, s2) = spec.objects
    link = "and" if spec.category == "binding" else " ".join(_RELATION_WORDS[spec.relation])
    return f"a {c1} {s1} {link} a {c2} {s2}"


def _parse_object(words: list[str], text: str) -> tuple[str, str]:
    if len(words) != 3 or words[0] != "a" or words[1] not in COLOURS or words[2] not in SHAPES:
        raise ValueError(f"prompt {text!r}: expected 'a <colour> <shape>', got {' '.join(words)!r}")
    return words[1], words[2]


def parse_prompt(text: str) -> PromptSpec:
    """The PromptSpec of a prompt text (the inverse of ``prompt_text``; either object order is accepted)."""
    words = text.lower().split()
    if not words:
        raise ValueError("prompt is empty: the empty prompt is the unconditional ∅ and asks for nothing to judge")
    if words[0] in _NUMBERS:
        shapes = {**{s: s for s in SHAPES}, **{p: s for s, p in _PLURALS.items()}}
        groups = [words[:3], words[4:]] if len(words) == 7 and words[3] == "and" else [words]
        if any(len(g) != 3 or g[0] not in _NUMBERS or g[1] not in COLOURS or g[2] not in shapes for g in groups):
            raise ValueError(f"prompt {text!r}: expected '<number> <colour> <shape(s)>', optionally followed by "
                             f"'and <number> <colour> <shape(s)>'")
        return PromptSpec("numeracy", tuple((g[1], shapes[g[2]]) for g in groups),
                          counts=tuple(_NUMBERS.index(g[0]) + 1 for g in groups))
    if len(words) == 7 and words[3] == "and":
        return PromptSpec("binding", (_parse_object(words[:3], text), _parse_object(words[4:], text)))
    for relation, link in _RELATION_WORDS.items():
        if tuple(words[3:3 + len(link)]) == link and len(words) == 6 + len(link):
            return PromptSpec("spatial", (_parse_object(words[:3], text), _parse_object(words[3 + len(link):], text)),
                              relation=relation)
    raise ValueError(f"prompt {text!r} is not a binding, spatial or numeracy prompt of the toy world")


PHRASE_KINDS = ("object", "relation", "count")


def prompt_phrases(text: str) -> list[tuple[str, str]]:
    """The droppable phrases of a toy prompt, in prompt order, as (kind, words) with kind in PHRASE_KINDS.

    binding "a red square and a blue disk"        → object "a red square", object "a blue disk"
    spatial "a red square to the left of a blue disk" → object, relation "to the left of", object
    numeracy "three green crosses"                → count "three", object "green crosses"
    numeracy "two red squares and one blue disk"  → count, object "red squares", count "one", object "blue disk"

    "and" is no phrase: it is the link between two objects, or two counted groups, when no relation is said
    (``without_phrases``).
    """
    spec = parse_prompt(text)
    words = text.lower().split()
    if spec.category == "numeracy":
        groups = [words[:3], words[4:]] if len(spec.objects) == 2 else [words]
        return [phrase for g in groups for phrase in (("count", g[0]), ("object", " ".join(g[1:])))]
    first, second = ("object", " ".join(words[:3])), ("object", " ".join(words[-3:]))
    if spec.category == "binding":
        return [first, second]
    return [first, ("relation", " ".join(words[3:-3])), second]


def without_phrases(text: str, drop) -> str:
    """The prompt with the phrases at indices ``drop`` (of ``prompt_phrases(text)``) left out: the prompt "y ∖ p".

    The remaining phrases keep their order; two objects left without their relation are joined by "and" (a spatial
    prompt without its relation is its binding prompt), one object keeps its relation ("to the left of a blue disk");
    two counted groups that both keep a phrase stay joined by "and" ("red squares and one blue disk").
    Dropping every phrase gives "" (the unconditional ∅). Raises ValueError for an index outside the phrases.
    """
    phrases = prompt_phrases(text)
    drop = {int(i) for i in drop}
    if not drop <= set(range(len(phrases))):
        raise ValueError(f"drop must hold phrase indices in [0, {len(phrases)}) of {text!r}; got {sorted(drop)}")
    kept = [(kind, words) for i, (kind, words) in enumerate(phrases) if i not in drop]
    if parse_prompt(text).category == "numeracy":
        groups = [[words for i, (_, words) in enumerate(phrases[g:g + 2], g) if i not in drop]
                  for g in range(0, len(phrases), 2)]
        return " and ".join(" ".join(group) for group in groups if group)
    objects = sum(kind == "object" for kind, _ in kept)
    if objects == 2 and len(kept) == 2:
        return f"{kept[0][1]} and {kept[1][1]}"
    return " ".join(words for _, words in kept)


@dataclass(frozen=True)
class ToyPhrases:
    """A toy prompt split into the phrases its model was trained to drop: ``phrases.SplitPrompt``'s interface
    (``phrases``, ``text``, ``ablations()``) with ``prompt_phrases`` / ``without_phrases`` as the rule."""

    text: str

    @property
    def phrases(self) -> tuple[str, ...]:
        return tuple(words for _, words in prompt_phrases(self.text))

    def ablations(self) -> list[str]:
        """The texts of y∖p for every phrase, in order."""
        return [without_phrases(self.text, [i]) for i in range(len(self.phrases))]


def split_toy_prompt(text: str) -> ToyPhrases:
    """The phrases of a toy prompt (lower case, single spaces); ValueError for a text that is no toy prompt."""
    split = ToyPhrases(" ".join(text.lower().split()))
    split.phrases  # noqa: B018 (parses: refuses a text outside the toy language now, not at encoding)
    return split


def canonical(spec: PromptSpec) -> PromptSpec:
    """The same meaning with the object whose shape comes first in SHAPES named first (spatial flips its relation,
    counted groups keep their counts)."""
    if len(spec.objects) == 1 or SHAPES.index(spec.objects[0][1]) <= SHAPES.index(spec.objects[1][1]):
        return spec
    relation = _OPPOSITE[spec.relation] if spec.relation else None
    counts = spec.counts[::-1] if spec.counts else None
    return PromptSpec(spec.category, spec.objects[::-1], relation, counts)


def _pair_heldout(first: tuple[str, str], second: tuple[str, str]) -> bool:
    pair_index = list(itertools.combinations(range(len(SHAPES)), 2)).index(
        (SHAPES.index(first[1]), SHAPES.index(second[1])))
    return (COLOURS.index(second[0]) - COLOURS.index(first[0])) % len(COLOURS) == 1 + pair_index


@lru_cache(maxsize=None)
def _object_pairs() -> tuple[tuple[tuple[str, str], tuple[str, str]], ...]:
    """Every canonical pair of objects with different colours and shapes, in a fixed order."""
    return tuple(((c1, s1), (c2, s2)) for s1, s2 in itertools.combinations(SHAPES, 2)
                 for c1 in COLOURS for c2 in COLOURS if c1 != c2)


def is_heldout(spec: PromptSpec) -> bool:
    """Whether a canonical prompt belongs to the held-out split (see the module docstring for the rule)."""
    if spec.category == "numeracy" and len(spec.objects) == 1:
        (colour, shape), (n,) = spec.objects[0], spec.counts
        return n - 1 == (COLOURS.index(colour) + SHAPES.index(shape)) % MAX_COUNT
    return _pair_heldout(*spec.objects)


@lru_cache(maxsize=None)
def _all_specs(category: str) -> tuple[PromptSpec, ...]:
    if category == "numeracy":
        one_group = [PromptSpec("numeracy", ((c, s),), counts=(n,))
                     for c in COLOURS for s in SHAPES for n in range(1, MAX_COUNT + 1)]
        return tuple(one_group + [PromptSpec("numeracy", pair, counts=counts)
                                  for pair in _object_pairs() for counts in TWO_GROUP_COUNTS])
    if category == "binding":
        return tuple(PromptSpec("binding", pair) for pair in _object_pairs())
    return tuple(PromptSpec("spatial", pair, relation=r) for pair in _object_pairs() for r in RELATIONS)


def heldout_half(spec: PromptSpec) -> str:
    """"finetune" or "evaluation": the half of the held-out split a held-out canonical prompt belongs to: its held-out
    object pair's position among the held-out pairs (binding, spatial and two-group numeracy alike) or its position
    among the held-out one-group numeracy triples (even → finetune, odd → evaluation)."""
    if not is_heldout(spec):
        raise ValueError(f"{spec.text!r} is a train prompt; only held-out prompts have a half")
    if len(spec.objects) == 2:
        position = [pair for pair in _object_pairs() if _pair_heldout(*pair)].index(spec.objects)
    else:
        position = [s for s in _all_specs("numeracy") if len(s.objects) == 1 and is_heldout(s)].index(spec)
    return ("finetune", "evaluation")[position % 2]


def _in_split(spec: PromptSpec, split: str) -> bool:
    if split == "all":
        return True
    if split in ("train", "heldout"):
        return is_heldout(spec) == (split == "heldout")
    return is_heldout(spec) and heldout_half(spec) == split


def prompt_specs(category: str, split: str = "train") -> list[PromptSpec]:
    """The canonical prompts of one category in one split (``SPLITS`` or "all"), in a fixed order."""
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}; got {category!r}")
    if split not in SPLITS + ("all",):
        raise ValueError(f"split must be one of {SPLITS + ('all',)}; got {split!r}")
    specs = _all_specs(category)
    return [s for s in specs if _in_split(s, split)]


def prompts(category: str, split: str = "train") -> list[str]:
    """The texts of ``prompt_specs(category, split)``."""
    return [spec.text for spec in prompt_specs(category, split)]


def contrast_prompts(spec: PromptSpec) -> list[PromptSpec]:
    """Every one-edit prompt of the same category that no scene satisfying ``spec`` can satisfy.

    binding: colours swapped, one colour replaced by an unused one, one shape replaced by the third shape;
    spatial: the same object edits, or any other relation; numeracy: another count, colour or shape (two groups:
    other counts of TWO_GROUP_COUNTS, or the binding edits with the counts kept).
    """
    if spec.category == "numeracy" and len(spec.objects) == 1:
        (colour, shape), (n,) = spec.objects[0], spec.counts
        edits = [((colour, shape), m) for m in range(1, MAX_COUNT + 1) if m != n]
        edits += [((c, shape), n) for c in COLOURS if c != colour] + [((colour, s), n) for s in SHAPES if s != shape]
        return [PromptSpec("numeracy", (obj,), counts=(m,)) for obj, m in edits]
    (c1, s1), (c2, s2) = spec.objects
    pairs = [((c2, s1), (c1, s2))]
    pairs += [((c, s1), (c2, s2)) for c in COLOURS if c not in (c1, c2)]
    pairs += [((c1, s1), (c, s2)) for c in COLOURS if c not in (c1, c2)]
    pairs += [((c1, s), (c2, s2)) for s in SHAPES if s not in (s1, s2)]
    pairs += [((c1, s1), (c2, s)) for s in SHAPES if s not in (s1, s2)]
    out = [canonical(PromptSpec(spec.category, pair, spec.relation, spec.counts)) for pair in pairs]
    if spec.category == "numeracy":
        out += [PromptSpec("numeracy", spec.objects, counts=counts) for counts in TWO_GROUP_COUNTS
                if counts != spec.counts]
    if spec.category == "spatial":
        out += [PromptSpec("spatial", spec.objects, relation=r) for r in RELATIONS if r != spec.relation]
    return out


PROMPT_VOCAB = ["<pad>", "a", "and", "to", "the", "of", *RELATIONS, *_NUMBERS, *COLOURS, *SHAPES, *_PLURALS.values()]
PAD_ID = 0
MAX_TOKENS = 10  # the longest prompt, "a red square to the left of a blue disk"
_WORD_ID = {word: i for i, word in enumerate(PROMPT_VOCAB)}


def tokenize(text: str) -> Tensor:
    """Word ids, long [MAX_TOKENS], padded with PAD_ID; "" gives all padding (the unconditional ∅ for CFG)."""
    words = text.lower().split()
    unknown = [w for w in words if w not in _WORD_ID or w == PROMPT_VOCAB[PAD_ID]]
    if unknown:
        raise ValueError(f"text {text!r} holds word(s) {unknown} outside PROMPT_VOCAB")
    if len(words) > MAX_TOKENS:
        raise ValueError(f"text {text!r} has {len(words)} words; at most MAX_TOKENS = {MAX_TOKENS} fit")
    ids = [_WORD_ID[w] for w in words] + [PAD_ID] * (MAX_TOKENS - len(words))
    return torch.tensor(ids, dtype=torch.long)


def tokenize_batch(texts: list[str]) -> Tensor:
    """``tokenize`` of each text, stacked: long [B, MAX_TOKENS]."""
    return torch.stack([tokenize(t) for t in texts])


def detokenize(tokens: Tensor) -> str:
    """The text of a [MAX_TOKENS] id row (padding dropped): ``detokenize(tokenize(t)) == t`` for lower-case t."""
    ids = [int(i) for i in torch.as_tensor(tokens).flatten()]
    if any(not 0 <= i < len(PROMPT_VOCAB) for i in ids):
        raise ValueError(f"tokens must be ids in [0, {len(PROMPT_VOCAB)}); got {ids}")
    return " ".join(PROMPT_VOCAB[i] for i in ids if i != PAD_ID)
