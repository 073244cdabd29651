"""Export Fine-tune Set in the real ComfyUI: top-k of Best-of-N into a set under the output folder."""

from __future__ import annotations

import pytest
import torch

import folder_paths

from rfmi_core import FinetuneSet
from tiny_models import sd3_conditioning, tiny_sd3


@pytest.fixture()
def output_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    return tmp_path


def test_export_keeps_top_k_and_appends_across_runs(rfmi_nodes, output_dir):
    model = tiny_sd3()
    positive, negative = sd3_conditioning(1), sd3_conditioning(2)

    def best_of_n(seed):
        return rfmi_nodes["RFMIBestOfN"].execute(model, seed, 3, 3.0, "euler", "simple", positive, negative,
                                                 {"samples": torch.zeros(1, 16, 8, 8)}, 4, 1, 4, "cfg", "rfmi").result[2]

    export = rfmi_nodes["RFMIExportFinetuneSet"]
    first = best_of_n(0)
    summary, written_to = export.execute(first, positive, negative, "a red cube", "", "my set", 2, model).result
    assert "+2" in summary and "2 images for 1 prompts" in summary and written_to == "my set"
    again = export.execute(first, positive, negative, "a red cube", "", "my set", 2, model).result[0]
    assert "+0 (2 already there)" in again
    export.execute(best_of_n(100), positive, negative, "a red cube", "", "my set", 2, model)
    kept = FinetuneSet.open(output_dir / "rfmi_sets" / "my set").records()
    pool = torch.cat([first.mi, best_of_n(100).mi])
    assert sorted(r.mi for r in kept) == pytest.approx(sorted(pool.topk(2).values.tolist()))
    stored = FinetuneSet.open(output_dir / "rfmi_sets" / "my set").load_conditioning(kept[0].prompt_conditioning)
    assert torch.equal(stored["cross_attn"], positive[0][0]) and torch.equal(stored["pooled_output"],
                                                                            positive[0][1]["pooled_output"])


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/../../b"])
def test_set_names_that_leave_the_output_folder_are_refused(rfmi_nodes, output_dir, name):
    model = tiny_sd3()
    scores = rfmi_nodes["RFMIBestOfN"].execute(model, 0, 2, 3.0, "euler", "simple", sd3_conditioning(1),
                                               sd3_conditioning(2), {"samples": torch.zeros(1, 16, 8, 8)}, 2, 1, 2,
                                               "cfg", "rfmi").result[2]
    with pytest.raises(ValueError, match="leave the folder"):
        rfmi_nodes["RFMIExportFinetuneSet"].execute(scores, sd3_conditioning(1), sd3_conditioning(2), "p", "", name, 1,
                                                    model)
