"""A toy compositional world where the whole RFMI loop runs on a CPU in minutes, with an exact judge.

16×16 RGB scenes of 1–4 coloured shapes (square, disk, cross; red, green, blue, yellow) on flat grey, in the
model's data space [-1, 1]; prompts in three T2I-CompBench-like categories (binding, spatial, numeracy) with fixed
train / held-out splits; a word tokenizer; and a judge that decides validity and prompt alignment from pixels alone.
Pure torch; deterministic from a ``torch.Generator``.
"""

from .judge import Perception, Verdict, classify_pixels, connected_components, judge, perceive
from .prompts import (
    CATEGORIES,
    COLOURS,
    MAX_TOKENS,
    PAD_ID,
    PROMPT_VOCAB,
    RELATIONS,
    SHAPES,
    SPLITS,
    PromptSpec,
    canonical,
    contrast_prompts,
    detokenize,
    is_heldout,
    parse_prompt,
    prompt_specs,
    prompt_text,
    prompts,
    tokenize,
    tokenize_batch,
)
from .world import (
    CANVAS,
    PALETTE,
    SHAPE_PIXELS,
    Scene,
    SceneObject,
    random_scene,
    random_training_batch,
    random_training_pair,
    relation_holds,
    render,
    sample_layout,
    sample_scene,
    satisfies,
    shape_mask,
)

__all__ = [
    "Perception", "Verdict", "classify_pixels", "connected_components", "judge", "perceive",
    "CATEGORIES", "COLOURS", "MAX_TOKENS", "PAD_ID", "PROMPT_VOCAB", "RELATIONS", "SHAPES", "SPLITS", "PromptSpec",
    "canonical", "contrast_prompts", "detokenize", "is_heldout", "parse_prompt", "prompt_specs", "prompt_text",
    "prompts", "tokenize", "tokenize_batch",
    "CANVAS", "PALETTE", "SHAPE_PIXELS", "Scene", "SceneObject", "random_scene", "random_training_batch", "random_training_pair",
    "relation_holds", "render", "sample_layout", "sample_scene", "satisfies", "shape_mask",
]
