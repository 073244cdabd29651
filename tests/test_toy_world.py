import itertools

import pytest
import torch
from scipy import ndimage

from rfmi_core.toy import (
    CANVAS,
    CATEGORIES,
    MAX_TOKENS,
    PAD_ID,
    PROMPT_VOCAB,
    SHAPE_PIXELS,
    SHAPES,
    PromptSpec,
    Scene,
    SceneObject,
    classify_pixels,
    connected_components,
    contrast_prompts,
    detokenize,
    judge,
    parse_prompt,
    prompt_specs,
    prompts,
    random_training_pair,
    relation_holds,
    render,
    sample_scene,
    satisfies,
    shape_mask,
    tokenize,
    tokenize_batch,
)
from research.toy.invalid import INVALID_KINDS, render_invalid, unknown_shapes
from rfmi_core.toy.judge import SHAPE_TOLERANCE, _best_placements
from research.toy.judge_report import contrast_scenes, labelled_scenes
from rfmi_core.toy.prompts import PHRASE_KINDS, canonical, prompt_phrases, split_toy_prompt, without_phrases
from rfmi_core.toy.world import GRID, background


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_same_seed_same_images_and_prompts():
    a = [random_training_pair(_gen(3)) for _ in range(2)]
    assert torch.equal(a[0][0], a[1][0]) and a[0][1] == a[1][1]
    g1, g2 = _gen(5), _gen(5)
    for _ in range(20):
        (x1, t1), (x2, t2) = random_training_pair(g1), random_training_pair(g2)
        assert torch.equal(x1, x2) and t1 == t2
    assert [prompts(c, s) for c in CATEGORIES for s in ("train", "heldout")] == \
           [prompts(c, s) for c in CATEGORIES for s in ("train", "heldout")]


def _assert_partition(first: str, second: str, whole: str, counts: dict) -> None:
    """Splits ``first`` and ``second`` have these prompt counts per category, share no prompt and make up ``whole``."""
    assert {c: (len(prompts(c, first)), len(prompts(c, second))) for c in CATEGORIES} == counts
    for c in CATEGORIES:
        a, b = set(prompts(c, first)), set(prompts(c, second))
        assert not a & b and a | b == set(prompts(c, whole))


def test_split_counts_and_disjoint():
    _assert_partition("train", "heldout", "all", {"binding": (24, 12), "spatial": (96, 48), "numeracy": (84, 36)})
    two_group = {split: sum(len(s.objects) == 2 for s in prompt_specs("numeracy", split)) for split in ("train", "heldout")}
    assert two_group == {"train": 24 * 2, "heldout": 12 * 2}  # both count pairs of every pair, with the pair's split


def test_heldout_pairs_never_meet_in_training_but_their_parts_do():
    def pairs(split):
        return {frozenset(s.objects) for c in CATEGORIES for s in prompt_specs(c, split) if len(s.objects) == 2}

    train_pairs = pairs("train")
    held_pairs = {frozenset(s.objects) for c in ("binding", "spatial") for s in prompt_specs(c, "heldout")}
    assert not train_pairs & held_pairs and pairs("heldout") == held_pairs  # counted prompts go with their pair
    assert len(train_pairs) == 24 and len(held_pairs) == 12
    train_objects = {o for pair in train_pairs for o in pair}
    assert {o for pair in held_pairs for o in pair} <= train_objects
    one_group = [s for s in prompt_specs("numeracy", "train") if len(s.objects) == 1]
    train_triples = {(s.objects[0], s.counts) for s in one_group}
    for spec in prompt_specs("numeracy", "heldout"):
        if len(spec.objects) == 1:
            assert (spec.objects[0], spec.counts) not in train_triples
            assert any(o == spec.objects[0] for o, _ in train_triples)
            assert any(n == spec.counts for _, n in train_triples)


def test_two_group_numeracy_prompts_round_trip_and_name_each_count():
    from rfmi_core.toy.prompts import TWO_GROUP_COUNTS

    spec = parse_prompt("Two red squares and one blue disk")
    assert spec == PromptSpec("numeracy", (("red", "square"), ("blue", "disk")), counts=(2, 1))
    assert canonical(parse_prompt("one blue disk and two red squares")) == spec
    assert spec.text == "two red squares and one blue disk" and parse_prompt(spec.text) == spec
    for text in prompts("numeracy", "all"):
        assert parse_prompt(text).text == text and len(tokenize(text).nonzero()) == len(text.split())
    counted = [s for s in prompt_specs("numeracy", "all") if len(s.objects) == 2]
    assert {s.counts for s in counted} == set(TWO_GROUP_COUNTS) and (1, 1) not in TWO_GROUP_COUNTS
    with pytest.raises(ValueError, match="4 objects at most"):
        PromptSpec("numeracy", (("red", "square"), ("blue", "disk")), counts=(3, 2))
    with pytest.raises(ValueError, match="must differ"):
        parse_prompt("two red squares and one red square")
    with pytest.raises(ValueError, match="number"):
        parse_prompt("two red squares and a blue disk")


def test_training_pairs_come_from_the_train_split_and_cover_every_category():
    train = {c: set(prompts(c, "train")) for c in CATEGORIES}
    g = _gen(1)
    seen = set()
    for _ in range(60):
        image, text = random_training_pair(g)
        category = next(c for c in CATEGORIES if text in train[c])
        seen.add(category)
        assert judge(image, text).correct
    assert seen == set(CATEGORIES)


def test_prompt_text_round_trip_and_tokenizer():
    for c in CATEGORIES:
        for text in prompts(c, "all"):
            assert parse_prompt(text).text == text
            tokens = tokenize(text)
            assert tokens.shape == (MAX_TOKENS,) and tokens.dtype == torch.long
            assert detokenize(tokens) == text
            assert (tokens[len(text.split()):] == PAD_ID).all() and (tokens[: len(text.split())] != PAD_ID).all()
    assert (tokenize("") == PAD_ID).all()
    assert tokenize_batch(["three green crosses", ""]).shape == (2, MAX_TOKENS)
    assert max(len(t.split()) for c in CATEGORIES for t in prompts(c, "all")) == MAX_TOKENS
    assert len(set(PROMPT_VOCAB)) == len(PROMPT_VOCAB)


@pytest.mark.parametrize("text, message", [("a purple square and a red disk", "outside PROMPT_VOCAB"),
                                           ("a " * 11, "MAX_TOKENS"), ("<pad>", "outside PROMPT_VOCAB")])
def test_tokenize_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        tokenize(text)


@pytest.mark.parametrize("text", ["", "red square", "a red square and", "five red squares", "a red square near a blue disk"])
def test_parse_prompt_rejects(text):
    with pytest.raises(ValueError, match="prompt"):
        parse_prompt(text)


def test_ink_pixel_counts_within_documented_tolerance():
    assert SHAPE_PIXELS == {"square": 16, "disk": 21, "cross": 20}
    assert max(SHAPE_PIXELS.values()) / min(SHAPE_PIXELS.values()) <= 1.32
    scene = Scene((SceneObject("red", "square", 0, 0), SceneObject("blue", "disk", 0, 6),
                   SceneObject("yellow", "cross", 8, 8)))
    classes = classify_pixels(render(scene, _gen())[None])
    assert int((classes > 0).sum()) == 16 + 21 + 20


def test_values_in_range_and_background_varies():
    g = _gen(2)
    images = torch.stack([random_training_pair(g)[0] for _ in range(200)])
    assert images.shape == (200, 3, CANVAS, CANVAS) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    corner = images[:, :, 0, 0].mean(1)  # mostly background
    assert corner.std() > 0.15


def test_background_is_flat_grey_and_layouts_sit_on_the_patch_grid():
    g = _gen(14)
    for _ in range(20):
        bg = background(g)
        assert torch.equal(bg, bg.flatten()[0].expand_as(bg)) and -0.5 <= float(bg[0, 0, 0]) <= 0.5
    rows, cols = set(), set()
    for c in CATEGORIES:
        for spec in prompt_specs(c, "all"):
            for obj in sample_scene(spec, g).objects:
                rows.add(obj.row)
                cols.add(obj.col)
    assert GRID == 2 and rows == cols == set(range(0, CANVAS - 4 + 1, GRID))  # squares reach 12, every even place


def test_shapes_are_separable_and_unknown_shapes_are_not_shapes():
    for shape in SHAPES:
        mask = torch.zeros(CANVAS, CANVAS)
        m = shape_mask(shape)
        mask[5:5 + m.shape[0], 5:5 + m.shape[1]] = m.float()
        assert _best_placements(mask.flatten()[None])[0] == [0.0]
    for m in unknown_shapes():
        placed = []
        for r, c in itertools.product(range(CANVAS - m.shape[0] + 1), range(CANVAS - m.shape[1] + 1)):
            canvas = torch.zeros(CANVAS, CANVAS)
            canvas[r:r + m.shape[0], c:c + m.shape[1]] = m.float()
            placed.append(canvas.flatten())
        assert min(_best_placements(torch.stack(placed))[0]) > SHAPE_TOLERANCE


def test_connected_components_match_scipy():
    g = _gen(4)
    classes = torch.randint(0, 3, (50, CANVAS, CANVAS), generator=g)
    labels = connected_components(classes)
    for b in range(50):
        expected = sum(ndimage.label((classes[b] == k).numpy())[1] for k in (1, 2))
        assert len(labels[b].unique()) - 1 == expected


def test_sampled_scenes_satisfy_their_prompt():
    g = _gen(6)
    for c in CATEGORIES:
        for spec in prompt_specs(c, "all")[::3]:
            scene = sample_scene(spec, g)
            assert satisfies(scene, spec)
            assert not any(satisfies(scene, other) for other in contrast_prompts(spec))


def test_relations_exclude_each_other():
    a, b = (0.0, 0.0), (4.0, 4.0)  # exact diagonal: neither below nor right
    assert not any(bool(relation_holds(a, b, r)) for r in ("left", "right", "above", "below"))
    assert relation_holds((0.0, 0.0), (1.0, 5.0), "left") and relation_holds((1.0, 5.0), (0.0, 0.0), "right")


@pytest.mark.parametrize("category", CATEGORIES)
def test_judge_agrees_with_ground_truth_on_clean_renders(category):
    images, texts, truth = labelled_scenes(category, 300, _gen(7))
    verdicts = judge(images, texts)
    assert sum(v.valid for v in verdicts) / 300 >= 0.99
    assert sum(v.correct == t for v, t in zip(verdicts, truth)) / 300 >= 0.99
    assert 0.3 < sum(truth) / 300 < 0.7


@pytest.mark.parametrize("category", CATEGORIES)
def test_judge_rejects_renders_of_a_contrast_prompt(category):
    images, texts = contrast_scenes(category, 300, _gen(8))
    assert sum(not v.correct for v in judge(images, texts)) / 300 >= 0.99


def test_judge_swapped_colours():
    image = render(sample_scene("a red square and a blue disk", _gen(9)), _gen(9))
    assert judge(image, "a red square and a blue disk").correct
    assert not judge(image, "a blue square and a red disk").correct
    image = render(sample_scene("a red square to the left of a blue disk", _gen(9)), _gen(9))
    assert judge(image, PromptSpec("spatial", (("red", "square"), ("blue", "disk")), "left")).correct
    assert not judge(image, "a red square to the right of a blue disk").correct


@pytest.mark.parametrize("kind", INVALID_KINDS)
def test_judge_rejects_non_scenes(kind):
    g = _gen(10)
    images = torch.stack([render_invalid(kind, g) for _ in range(20)])
    verdicts = judge(images, "one red square")
    assert not any(v.valid or v.correct for v in verdicts)
    assert all(v.details["reasons"] for v in verdicts)


def test_judge_is_robust_to_moderate_noise():
    images, texts, truth = labelled_scenes("numeracy", 200, _gen(11))
    noisy = images + 0.2 * torch.randn(images.shape, generator=_gen(12))
    assert sum(v.correct == t for v, t in zip(judge(noisy, texts), truth)) / 200 >= 0.99


def test_judge_shapes_and_errors():
    image, text = random_training_pair(_gen(13))
    single = judge(image, text)
    batch = judge(image[None].repeat(3, 1, 1, 1), text)
    assert single.valid and len(batch) == 3 and all(v == single for v in batch)
    with pytest.raises(ValueError, match="image must be"):
        judge(image[:, :8], text)
    with pytest.raises(ValueError, match="one per image"):
        judge(image[None].repeat(2, 1, 1, 1), [text])
    with pytest.raises(ValueError, match="NaN"):
        judge(image * float("nan"), text)


def test_prompt_phrases_cover_every_prompt_and_dropping_them_stays_in_vocabulary():
    assert prompt_phrases("a red square and a blue disk") == [("object", "a red square"), ("object", "a blue disk")]
    assert prompt_phrases("a red square to the left of a blue disk") == [
        ("object", "a red square"), ("relation", "to the left of"), ("object", "a blue disk")]
    assert prompt_phrases("three green crosses") == [("count", "three"), ("object", "green crosses")]
    assert without_phrases("a red square to the left of a blue disk", [1]) == "a red square and a blue disk"
    assert without_phrases("a red square to the left of a blue disk", [0]) == "to the left of a blue disk"
    assert without_phrases("a red disk above a blue cross", [2]) == "a red disk above"
    assert without_phrases("a red square and a blue disk", [0]) == "a blue disk"
    assert without_phrases("three green crosses", [0]) == "green crosses"
    assert without_phrases("three green crosses", [1]) == "three"
    counted = "two red squares and one blue disk"
    assert prompt_phrases(counted) == [("count", "two"), ("object", "red squares"), ("count", "one"),
                                       ("object", "blue disk")]
    assert without_phrases(counted, [0]) == "red squares and one blue disk"
    assert without_phrases(counted, [0, 1]) == "one blue disk"
    assert without_phrases(counted, [1, 3]) == "two and one"
    for c in CATEGORIES:
        for text in prompts(c, "all"):
            phrases = prompt_phrases(text)
            groups = 2 if " and " in text else 1
            assert {k for k, _ in phrases} <= set(PHRASE_KINDS)
            assert len(phrases) == {"binding": 2, "spatial": 3, "numeracy": 2 * groups}[c]
            words = " ".join(w for _, w in phrases).split()
            assert [w for w in text.split() if w != "and"] == words  # every word but the link "and", in order
            assert without_phrases(text, []) == text and without_phrases(text, range(len(phrases))) == ""
            for i in range(len(phrases)):
                partial = without_phrases(text, [i])
                assert partial != text
                assert len(partial.split()) == len(text.split()) - len(phrases[i][1].split()) - (
                    c == "binding") + (c == "spatial" and i == 1)
                tokenize(partial)  # in the vocabulary, within MAX_TOKENS
    with pytest.raises(ValueError, match="drop must"):
        without_phrases("three green crosses", [2])
    with pytest.raises(ValueError, match="prompt"):
        prompt_phrases("red square")


def test_split_toy_prompt_gives_the_phrases_and_ablations_the_toy_model_was_trained_on():
    split = split_toy_prompt("A red square  to the left of a blue disk")
    assert split.text == "a red square to the left of a blue disk"
    assert split.phrases == ("a red square", "to the left of", "a blue disk")
    assert split.ablations() == ["to the left of a blue disk", "a red square and a blue disk",
                                 "a red square to the left of"]
    assert split_toy_prompt("three green crosses").ablations() == ["green crosses", "three"]
    with pytest.raises(ValueError, match="not a binding, spatial or numeracy prompt"):
        split_toy_prompt("a red square near a blue disk")


def test_heldout_halves_split_pairs_and_triples_and_never_share_one():
    from rfmi_core.toy.prompts import heldout_half

    _assert_partition("finetune", "evaluation", "heldout", {"binding": (6, 6), "spatial": (24, 24), "numeracy": (18, 18)})
    pairs = {half: {frozenset(s.objects) for c in CATEGORIES for s in prompt_specs(c, half) if len(s.objects) == 2}
             for half in ("finetune", "evaluation")}
    assert not pairs["finetune"] & pairs["evaluation"] and len(pairs["finetune"]) == len(pairs["evaluation"]) == 6
    for half in ("finetune", "evaluation"):  # a held-out pair's binding, spatial and counted prompts share its half
        counted = {frozenset(s.objects) for s in prompt_specs("numeracy", half) if len(s.objects) == 2}
        assert counted == {frozenset(s.objects) for s in prompt_specs("binding", half)}
    assert prompts("binding", "finetune")[0] == "a red square and a green disk"
    assert prompts("binding", "evaluation")[0] == "a green square and a blue disk"
    with pytest.raises(ValueError, match="train prompt"):
        heldout_half(prompt_specs("binding", "train")[0])
