"""What two fine-tune sets hold, order aside: records (less where and when they were written), latents, conditioning."""

from pathlib import Path

import torch

from rfmi_core import FinetuneSet

WHERE_AND_WHEN = ("time", "writer", "latent_shard", "latent_row")


def set_contents(path: Path) -> dict:
    """{record id: (record fields less WHERE_AND_WHEN, latent, prompt conditioning, negative conditioning)}."""
    finetune_set = FinetuneSet.open(path)
    records = finetune_set.records(selected=False)
    latents = finetune_set.load_latents(records)
    contents = {}
    for record, latent in zip(records, latents):
        fields = {k: v for k, v in vars(record).items() if k not in WHERE_AND_WHEN}
        contents[record.id] = (fields, latent, finetune_set.load_conditioning(record.prompt_conditioning),
                               finetune_set.load_conditioning(record.negative_conditioning))
    return contents


def assert_same_sets(a: Path, b: Path) -> int:
    """Asserts equal records, MI, latents and conditioning (bitwise); returns the number of records."""
    first, second = set_contents(a), set_contents(b)
    assert sorted(first) == sorted(second)
    for key, (fields, latent, cond, uncond) in first.items():
        other = second[key]
        assert fields == other[0]
        assert torch.equal(latent, other[1])
        for mine, theirs in ((cond, other[2]), (uncond, other[3])):
            assert sorted(mine) == sorted(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    return len(first)


def manifest_lines(path: Path) -> list[str]:
    """Every record line of every segment (duplicates included)."""
    return [line for segment in sorted((path / "manifest").glob("*.jsonl")) if not segment.name.startswith(".")
            for line in segment.read_text().splitlines() if line.strip()]
