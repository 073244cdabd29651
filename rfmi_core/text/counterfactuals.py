"""Counterfactual prompts: the near-misses of an English prompt, each one edit away, for "this prompt rather than its
rivals" scores (a prompt contrast: log p(x|y) − log p(x|y′), ``pointwise``).

    python -m rfmi_core.rivals "a red book and a blue vase"      # the rivals of one prompt
    python -m rfmi_core.rivals --coverage DIR                     # share of prompts with a rival, per file

Edits, each tried on every prompt (no model, no download: word lists and patterns):

- ``swap attributes``: two different attribute words of one kind (colour, shape, texture, size) trade places, so
  each binds to the other object (a word is an attribute where it qualifies a next word: in "a red square to the
  left" square is the object): "a red book and a blue vase" → "a blue book and a red vase" (the article follows:
  "an oval mirror and a square frame" → "a square mirror and an oval frame").
- ``change attribute``: a prompt with one attribute of a kind gets another of that kind ("a red car" → "a blue car").
- ``mirror relation``: left ↔ right, above ↔ below, on top of ↔ under, in front of ↔ behind, "A hidden by B" →
  "B hidden by A". Symmetric relations (next to, near, beside, on side of) have no mirror.
- ``change count``: a count (a number word or digits) goes up and down by one, the noun's number (and a following
  is/are, was/were, has/have) agreeing: "two dogs" → "three dogs", "one dog".
- ``swap objects``: the head nouns of the two object phrases around an asymmetric relation trade places ("a cat on
  the left of a dog" → "a dog on the left of a cat"); never around "and" or a symmetric relation, where the swap
  means the same.

A rival equal to the prompt (or to another rival) is dropped; a prompt no edit applies to gets none, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Rival", "EDITS", "counterfactuals", "coverage", "rival_lines"]

EDITS = ("swap attributes", "change attribute", "mirror relation", "change count", "swap objects")

ATTRIBUTES = {
    "colour": ("red", "blue", "green", "yellow", "black", "white", "brown", "pink", "purple", "orange", "gray", "grey",
               "silver", "golden", "gold"),
    "shape": ("round", "square", "rectangular", "oval", "triangular", "spherical", "cubic", "cylindrical", "conical",
              "pyramidal", "pentagonal", "hexagonal", "octagonal", "circular", "teardrop", "heart-shaped",
              "star-shaped", "diamond-shaped"),
    "texture": ("wooden", "metallic", "metal", "glass", "plastic", "rubber", "leather", "fabric", "fluffy", "furry",
                "woolen", "wool", "ceramic", "stone", "marble", "glassy", "velvet", "silk", "silky", "paper",
                "cardboard", "concrete", "brick", "porcelain", "steel", "iron"),
    "size": ("big", "small", "tall", "short", "long", "large", "tiny", "huge", "little", "giant"),
}
_KIND = {word: kind for kind, words in ATTRIBUTES.items() for word in words}
# the alternative a lone attribute changes to (the next of its kind, in this order)
_NEXT = {kind: {w: words[(i + 1) % len(words)] for i, w in enumerate(words)} for kind, words in ATTRIBUTES.items()}
_NEXT["colour"].update(grey="red", gold="silver", golden="silver")

# (pattern, its mirror); matched on whole words, case kept from the first letter
_MIRRORS = [
    ("on the left of", "on the right of"), ("to the left of", "to the right of"), ("on the top of", "on the bottom of"),
    ("on top of", "under"), ("in front of", "behind"), ("above", "below"), ("left", "right"), ("beneath", "on top of"),
    ("underneath", "on top of"),
]
_SYMMETRIC = ("next to", "near", "beside", "on side of", "on the side of", "close to", "and", "with", "alongside")
_ASYMMETRIC = tuple(p for pair in _MIRRORS for p in pair) + ("hidden by", "covered by", "inside", "on", "over")

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
_IRREGULAR = {"person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
              "goose": "geese", "foot": "feet", "tooth": "teeth", "sheep": "sheep", "fish": "fish", "deer": "deer",
              "knife": "knives", "leaf": "leaves", "wolf": "wolves", "shelf": "shelves", "loaf": "loaves",
              "cactus": "cacti", "ox": "oxen", "bus": "buses", "glass": "glasses", "dice": "dice"}
_SINGULAR = {plural: single for single, plural in _IRREGULAR.items()}
_VERBS = {"is": "are", "was": "were", "has": "have"}
_VERBS_PLURAL = {v: k for k, v in _VERBS.items()}
_MODIFIERS = set(_KIND) | {"small", "big", "large", "tiny", "little", "huge", "tall", "short", "old", "young", "new",
                           "cute", "fat", "thin", "long", "happy", "sleepy", "hungry", "playful", "shiny", "bright",
                           "dark", "light", "colorful", "colourful", "wild", "baby"}
_DETERMINERS = {"a", "an", "the", "one", "some", "this", "that", "its", "his", "her", "their", "my", "your"}
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+")


class Rival(str):
    """A counterfactual prompt (a str), with ``edit`` (one of ``EDITS``) and ``detail`` ("red ↔ blue")."""

    edit: str
    detail: str

    def __new__(cls, text: str, edit: str, detail: str) -> "Rival":
        rival = super().__new__(cls, text)
        rival.edit, rival.detail = edit, detail
        return rival

    def __repr__(self) -> str:
        return f"Rival({str(self)!r}, {self.edit!r}, {self.detail!r})"


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower()


def _tokens(prompt: str) -> list[_Token]:
    return [_Token(m.group(), m.start(), m.end()) for m in _WORD.finditer(prompt)]


def _like(word: str, model: str) -> str:
    """``word`` with the capitalisation of ``model``'s first letter."""
    return word[:1].upper() + word[1:] if model[:1].isupper() else word


def _replace(prompt: str, edits: list[tuple[int, int, str]]) -> str:
    """``prompt`` with each (start, end) span replaced, spans given in any order (no overlaps)."""
    for start, end, text in sorted(edits, reverse=True):
        prompt = prompt[:start] + text + prompt[end:]
    return prompt


def _fix_articles(text: str) -> str:
    """a/an agreeing with the next word's first letter (vowel letters; the common exceptions aside)."""
    def fix(m: re.Match) -> str:
        article, gap, word = m.group(1), m.group(2), m.group(3)
        vowel = word[0].lower() in "aeiou" and not word.lower().startswith(("uni", "use", "one", "eu"))
        return _like("an" if vowel else "a", article) + gap + word
    return re.sub(r"\b([Aa]n?)(\s+)([A-Za-z][\w-]*)", fix, text)


def _qualifies(prompt: str, tokens: list[_Token], i: int) -> bool:
    """Whether token i stands before a word it qualifies (no punctuation between, not a relation word)."""
    if i + 1 >= len(tokens):
        return False
    after = tokens[i + 1]
    return not prompt[tokens[i].end : after.start].strip() and after.lower not in _STOP and after.lower not in _VERBS \
        and after.lower not in _VERBS_PLURAL


def _attribute_rivals(prompt: str, tokens: list[_Token]) -> list[Rival]:
    rivals = []
    for kind in ATTRIBUTES:
        found = [t for i, t in enumerate(tokens) if _KIND.get(t.lower) == kind and _qualifies(prompt, tokens, i)]
        distinct = list(dict.fromkeys(t.lower for t in found))
        if len(distinct) >= 2:
            first = next(t for t in found if t.lower == distinct[0])
            second = next(t for t in found if t.lower == distinct[1])
            text = _replace(prompt, [(first.start, first.end, _like(second.lower, first.text)),
                                     (second.start, second.end, _like(first.lower, second.text))])
            rivals.append(Rival(_fix_articles(text), "swap attributes", f"{first.lower} ↔ {second.lower}"))
        elif len(distinct) == 1:
            lone = found[0]
            other = _NEXT[kind][lone.lower]
            text = _replace(prompt, [(t.start, t.end, _like(other, t.text)) for t in found])
            rivals.append(Rival(_fix_articles(text), "change attribute", f"{lone.lower} → {other}"))
    return rivals


def _relation_spans(prompt: str, phrases) -> list[tuple[int, int, str]]:
    """(start, end, phrase) of each whole-word occurrence of the phrases, longest first, without overlaps."""
    taken: list[tuple[int, int, str]] = []
    for phrase in sorted(phrases, key=len, reverse=True):
        for m in re.finditer(rf"\b{re.escape(phrase)}\b", prompt, flags=re.IGNORECASE):
            if not any(m.start() < e and s < m.end() for s, e, _ in taken):
                taken.append((m.start(), m.end(), phrase))
    return sorted(taken)


def _mirror_rivals(prompt: str) -> list[Rival]:
    mirror = {a: b for a, b in _MIRRORS} | {b: a for a, b in _MIRRORS if b not in ("on top of",)}
    rivals = []
    for start, end, phrase in _relation_spans(prompt, mirror):
        if phrase in ("left", "right") and not re.search(r"\b(on|to|at) the\s+$", prompt[:start], re.IGNORECASE):
            continue  # "left" as a verb or adjective ("the dog left", "left hand")
        target = mirror[phrase]
        text = prompt[:start] + _like(target, prompt[start:end]) + prompt[end:]
        rivals.append(Rival(text, "mirror relation", f"{phrase} → {target}"))
    for m in re.finditer(r"\b(hidden|covered) by\b", prompt, flags=re.IGNORECASE):
        before, after = _noun_phrase_before(prompt, m.start()), _noun_phrase_after(prompt, m.end())
        if before and after and before[2].lower() != after[2].lower():
            text = _replace(prompt, [(before[0], before[1], after[2]), (after[0], after[1], before[2])])
            rivals.append(Rival(text[:1].upper() + text[1:] if prompt[:1].isupper() else text, "mirror relation",
                                f"A {m.group(1)} by B → B {m.group(1)} by A"))
    return rivals


def _noun_phrase_after(prompt: str, index: int) -> tuple[int, int, str] | None:
    """The (start, end, text) of the noun phrase that starts after ``index``: a determiner or count, modifiers, nouns
    up to the next relation word, punctuation or the end."""
    m = re.match(r"\s+((?:(?:a|an|the|\w+)\s+)?[\w-]+(?:\s+[\w-]+)?)", prompt[index:], flags=re.IGNORECASE)
    if not m:
        return None
    words = m.group(1).split()
    kept = []
    for word in words:
        if kept and (word.lower() in _STOP or word.lower() in _VERBS or word.lower() in _VERBS_PLURAL):
            break
        kept.append(word)
    text = " ".join(kept)
    start = index + m.start(1)
    return start, start + len(text), text


def _noun_phrase_before(prompt: str, index: int) -> tuple[int, int, str] | None:
    """The (start, end, text) of the noun phrase that ends before ``index``: from the last determiner (or the start)."""
    head = prompt[:index].rstrip()
    m = re.search(r"(?:^|\b)((?:a|an|the|\d+|" + "|".join(NUMBERS) + r")\s+[^,.;]*)$", head, flags=re.IGNORECASE)
    if not m:
        return None
    return m.start(1), len(head), m.group(1)


_STOP = {"and", "with", "on", "in", "at", "of", "by", "to", "near", "next", "behind", "under", "above", "below",
         "beside", "hidden", "covered", "inside", "over"}


def _plural(noun: str) -> str:
    lower = noun.lower()
    if lower in _IRREGULAR:
        return _like(_IRREGULAR[lower], noun)
    if re.search(r"[^aeiou]y$", lower):
        return noun[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", lower):
        return noun + "es"
    return noun + "s"


def _singular(noun: str) -> str:
    lower = noun.lower()
    if lower in _SINGULAR:
        return _like(_SINGULAR[lower], noun)
    if lower.endswith("ies") and len(lower) > 4:
        return noun[:-3] + "y"
    if re.search(r"(ses|xes|zes|ches|shes)$", lower):
        return noun[:-2]
    if lower.endswith("s") and not lower.endswith("ss"):
        return noun[:-1]
    return noun


def _count_rivals(prompt: str, tokens: list[_Token]) -> list[Rival]:
    rivals = []
    for i, token in enumerate(tokens):
        lower = token.lower
        value = int(lower) if lower.isdigit() else (NUMBERS.index(lower) if lower in NUMBERS[1:] else None)
        if value is None or value < 1 or value > 100:
            continue
        if lower == "one" and i + 1 < len(tokens) and tokens[i + 1].lower in ("of", "another", "by"):
            continue  # "one of the", "one another"
        j = i + 1
        while j < len(tokens) and tokens[j].lower in _MODIFIERS:
            j += 1
        if j >= len(tokens) or tokens[j].lower in _STOP or tokens[j].lower in NUMBERS:
            continue
        noun = tokens[j]
        for new in (value + 1, value - 1):
            if new < 1 or (not lower.isdigit() and new >= len(NUMBERS)):
                continue
            number = str(new) if lower.isdigit() else _like(NUMBERS[new], token.text)
            edits = [(token.start, token.end, number)]
            if (value == 1) != (new == 1):
                edits.append((noun.start, noun.end, _plural(noun.text) if value == 1 else _singular(noun.text)))
                verb = tokens[j + 1] if j + 1 < len(tokens) else None
                table = _VERBS if value == 1 else _VERBS_PLURAL
                if verb is not None and verb.lower in table:
                    edits.append((verb.start, verb.end, _like(table[verb.lower], verb.text)))
            rivals.append(Rival(_replace(prompt, edits), "change count", f"{lower} → {number.lower()}"))
    return rivals


def _plain_noun_phrase(words: list[str]) -> bool:
    """A determiner or count, modifiers, then one noun: "a red square", "two big dogs"."""
    return (len(words) >= 2 and (words[0].lower() in _DETERMINERS or words[0].lower() in NUMBERS or words[0].isdigit())
            and all(w.lower() in _MODIFIERS for w in words[1:-1]))


def _object_swap_rivals(prompt: str) -> list[Rival]:
    """The head nouns of "NP RELATION NP" trade places, for an asymmetric relation and a prompt that is exactly those
    two short noun phrases around it (a longer sentence has verbs a word list cannot tell from nouns: no guess)."""
    spans = _relation_spans(prompt, _ASYMMETRIC + _SYMMETRIC)
    if len(spans) != 1 or spans[0][2] in _SYMMETRIC:
        return []
    start, end, _ = spans[0]
    words_before, words_after = prompt[:start].split(), prompt[end:].rstrip(" .!").split()
    if not (_plain_noun_phrase(words_before) and _plain_noun_phrase(words_after)):
        return []
    first = _head_noun(prompt, (0, start, prompt[:start]))
    second = _head_noun(prompt, (end, len(prompt), prompt[end:]))
    if not first or not second or first[2].lower() == second[2].lower():
        return []
    text = _replace(prompt, [(first[0], first[1], _like(second[2].lower(), first[2])),
                             (second[0], second[1], _like(first[2].lower(), second[2]))])
    return [Rival(_fix_articles(text), "swap objects", f"{first[2].lower()} ↔ {second[2].lower()}")]


def _head_noun(prompt: str, phrase: tuple[int, int, str]) -> tuple[int, int, str] | None:
    """The last word of a noun phrase (its head: "a red square" → square), unless it is a determiner or a count."""
    words = [_Token(m.group(), phrase[0] + m.start(), phrase[0] + m.end()) for m in _WORD.finditer(phrase[2])]
    if not words or words[-1].lower in _DETERMINERS or words[-1].lower in NUMBERS or words[-1].lower.isdigit():
        return None
    return words[-1].start, words[-1].end, words[-1].text


def counterfactuals(prompt: str) -> list[Rival]:
    """The rivals of ``prompt``: one-edit near-misses (``Rival``: a str with its ``edit`` and ``detail``), in the order
    of ``EDITS``; none when no edit applies. Rivals equal to the prompt or to an earlier rival are dropped."""
    text = " ".join(prompt.split())
    tokens = _tokens(text)
    found = (_attribute_rivals(text, tokens) + _mirror_rivals(text) + _count_rivals(text, tokens)
             + _object_swap_rivals(text))
    kept: dict[str, Rival] = {}
    for rival in found:
        key = " ".join(rival.lower().split())
        if key != text.lower() and key not in kept:
            kept[key] = rival
    return list(kept.values())


def coverage(prompts: list[str]) -> tuple[float, dict[str, int]]:
    """(share of prompts with at least one rival, how many prompts each edit reached)."""
    reached = {edit: 0 for edit in EDITS}
    covered = 0
    for prompt in prompts:
        rivals = counterfactuals(prompt)
        covered += bool(rivals)
        for edit in {r.edit for r in rivals}:
            reached[edit] += 1
    return (covered / len(prompts) if prompts else 0.0), reached


def rival_lines(typed: str, prompt: str) -> list[str]:
    """The rivals a scoring node uses: the typed ones (one a line, blank lines and the prompt itself skipped), else
    the editor's suggestions for ``prompt``."""
    own = " ".join(prompt.split()).lower()
    lines = [" ".join(line.split()) for line in (typed or "").splitlines()]
    typed_rivals = list(dict.fromkeys(line for line in lines if line and line.lower() != own))
    return typed_rivals if typed_rivals else [str(r) for r in counterfactuals(prompt)]
