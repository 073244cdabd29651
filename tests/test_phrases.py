"""The prompt splitter: phrases at '|' marks, else at commas and 'and'; the ablated prompts y∖p; T2I-CompBench counts."""

from pathlib import Path

import pytest

from rfmi_core.text.phrases import SplitPrompt, phrase_counts, split_prompt

COMPBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "t2i-compbench"


@pytest.mark.parametrize("prompt, phrases, text, ablations", [
    ("a red square | left of | a blue disk", ["a red square", "left of", "a blue disk"],
     "a red square left of a blue disk", ["left of a blue disk", "a red square a blue disk", "a red square left of"]),
    ("four tents, three pigs, one cow and four paddles", ["four tents", "three pigs", "one cow", "four paddles"],
     "four tents, three pigs, one cow and four paddles",
     ["three pigs, one cow and four paddles", "four tents, one cow and four paddles",
      "four tents, three pigs and four paddles", "four tents, three pigs, one cow"]),
    ("a red apple AND a green train.", ["a red apple", "a green train"], "a red apple and a green train",
     ["a green train", "a red apple"]),
    ("A kitchen has red cabinets, and white appliances.", ["A kitchen has red cabinets", "white appliances"],
     "A kitchen has red cabinets, and white appliances", ["white appliances", "A kitchen has red cabinets"]),
    ("A white counter with a big, brown bowl", ["A white counter with a big", "brown bowl"],
     "A white counter with a big, brown bowl", ["brown bowl", "A white counter with a big"]),
    ("a cup on the right of a dog", ["a cup on the right of a dog"], "a cup on the right of a dog", [""]),
    ("  a  cat | | a dog ", ["a cat", "a dog"], "a cat a dog", ["a dog", "a cat"]),
    ("salt, pepper and a fork", ["salt, pepper", "a fork"], "salt, pepper and a fork", ["a fork", "salt, pepper"]),
])
def test_split_and_ablate(prompt, phrases, text, ablations):
    split = split_prompt(prompt)
    assert list(split.phrases) == phrases
    assert split.text == text
    assert split.ablations() == ablations


def test_relations_split_a_spatial_prompt_into_three_phrases():
    split = split_prompt("a cup on the right of a dog", relations=True)
    assert list(split.phrases) == ["a cup", "on the right of", "a dog"]
    assert split.text == "a cup on the right of a dog"
    assert split.without(1) == "a cup a dog"
    assert list(split_prompt("a girl hidden by a desk and a cat", relations=True).phrases) == \
        ["a girl", "hidden by", "a desk", "a cat"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="prompt"):
        split_prompt("  . ")
    with pytest.raises(ValueError, match="index"):
        split_prompt("a cat and a dog").without(2)
    with pytest.raises(ValueError, match="separators"):
        SplitPrompt(("a", "b"), ())


# The counts stated in rfmi_core/phrases.py's docstring and docs/phrase_splitter.md: {phrases: prompts}, train + val.
EXPECTED = {
    False: {"3d_spatial": {1: 1000}, "color": {1: 90, 2: 886, 3: 18, 4: 6}, "shape": {2: 996, 3: 4},
            "numeracy": {1: 325, 2: 276, 3: 154, 4: 118, 5: 127}, "spatial": {1: 1000},
            "texture": {1: 16, 2: 979, 3: 5}},
    True: {"3d_spatial": {3: 1000}, "color": {1: 60, 2: 882, 3: 48, 4: 10}, "shape": {2: 996, 3: 4},
           "numeracy": {1: 319, 2: 276, 3: 159, 4: 118, 5: 128}, "spatial": {3: 1000},
           "texture": {1: 15, 2: 972, 3: 5, 4: 7, 5: 1}},
}


@pytest.mark.skipif(not COMPBENCH.is_dir(), reason=f"T2I-CompBench prompts not found at {COMPBENCH}")
@pytest.mark.parametrize("relations", [False, True])
def test_counts_on_every_compbench_prompt(relations):
    for category, expected in EXPECTED[relations].items():
        prompts = [line.strip() for name in (f"{category}_train.txt", f"{category}_val.txt")
                   for line in (COMPBENCH / name).read_text().splitlines() if line.strip()]
        counts = phrase_counts(prompts, relations)
        print(category, relations, dict(sorted(counts.items())))
        assert dict(counts) == expected, category
        for prompt in prompts:  # every ablation is a non-empty, shorter text (or ∅ for a one-phrase prompt)
            split = split_prompt(prompt, relations)
            for ablated in split.ablations():
                assert (ablated == "") == (len(split) == 1) and len(ablated) < len(split.text)


def test_phrase_report_prints_the_counts_and_refuses_a_folder_without_lists(tmp_path, capsys):
    from rfmi_core.util.cli_help import UsageError
    from rfmi_core.phrase_report import main

    (tmp_path / "shape_val.txt").write_text("a red cube and a blue ball\na cat\n\n")
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| shape | 2 | 1 | 1 | 0 | 0 | 0 | 0 | 1.50 |" in out
    with pytest.raises(UsageError, match="no prompt lists"):  # one line on stderr, exit 2 (tests/test_cli_errors.py)
        main([str(tmp_path / "empty")])
