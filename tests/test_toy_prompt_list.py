"""The toy prompt list command: prompts of the chosen split only, balanced over the categories, written whole."""

from __future__ import annotations

from rfmi_core.toy.prompt_list import main, prompt_list
from rfmi_core.toy.prompts import CATEGORIES, parse_prompt, prompts


def test_the_list_draws_each_category_from_the_split_and_never_from_the_evaluation_half():
    texts = prompt_list(5, "finetune", seed=3)
    assert len(texts) == 5 * len(CATEGORIES)
    for c, category in enumerate(CATEGORIES):
        part = texts[5 * c:5 * (c + 1)]
        assert set(part) <= set(prompts(category, "finetune"))
        assert not set(part) & set(prompts(category, "evaluation"))
        assert all(parse_prompt(t).category == category for t in part)
    assert prompt_list(5, "finetune", seed=3) == texts and prompt_list(5, "finetune", seed=4) != texts


def test_the_command_writes_the_file_the_set_builder_reads(tmp_path, capsys):
    out = tmp_path / "prompts.txt"
    main(["--per-category", "4", "--seed", "1", "--out", str(out)])
    assert out.read_text(encoding="utf-8").splitlines() == prompt_list(4, "finetune", seed=1)
    assert "wrote 12 prompts" in capsys.readouterr().out
    main(["--per-category", "2"])
    assert capsys.readouterr().out.splitlines() == prompt_list(2, "finetune", seed=0)


def test_a_category_with_fewer_prompts_than_asked_gives_each_once(tmp_path, capsys):
    available = {category: len(prompts(category, "finetune")) for category in CATEGORIES}
    assert min(available.values()) < 8 < max(available.values())  # the finetune half: 6 binding prompts
    texts = prompt_list(8, "finetune", seed=0)
    assert len(texts) == len(set(texts)) == sum(min(8, n) for n in available.values())
    main(["--per-category", "8", "--out", str(tmp_path / "new" / "p.txt")])  # its folder is made
    printed = capsys.readouterr().out
    assert f"wrote {len(texts)} prompts ({available['binding']} binding, 8 spatial, 8 numeracy" in printed
