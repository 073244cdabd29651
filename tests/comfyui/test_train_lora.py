"""Train LoRA in the real ComfyUI (tiny MMDiT): loss falls, the stock loader reproduces the trained model, resume
equals the uninterrupted run, the model passed in is unchanged."""

from __future__ import annotations


import pytest
import torch

import comfy.model_management
import comfy.sd
import comfy.utils
import folder_paths
import nodes as comfy_nodes

from rfmi_core import FinetuneSet
from tiny_models import flux_conditioning, sd3_conditioning, tiny_flux, tiny_sd3


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path / "output"))
    (tmp_path / "loras").mkdir()
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "loras",
                        ([str(tmp_path / "loras")], folder_paths.supported_pt_extensions))
    return tmp_path


def make_set(rfmi_nodes, model, name="s"):
    """A small fine-tune set: Best-of-N for two prompts, top-2 each."""
    for i, prompt in enumerate(["a red cube", "two green balls"]):
        positive, negative = sd3_conditioning(10 + i), sd3_conditioning(99)
        scores = rfmi_nodes["RFMIBestOfN"].execute(model, 100 * i, 3, 3.0, "euler", "simple", positive, negative,
                                                   {"samples": torch.zeros(1, 16, 8, 8)}, 4, 2, 4, "cfg", "rfmi").result[2]
        rfmi_nodes["RFMIExportFinetuneSet"].execute(scores, positive, negative, prompt, "", name, 2, model)


def train(rfmi_nodes, model, *, steps=30, lr=3e-3, lora="l", resume=False, save_every=0, seed=0, targets="",
          set_name="s", bf16=False, checkpointing=False, batch_size=4, preset="custom", init_lora="(none)",
          validation_every=0, vae=None, full=False, grad_accumulation=1):
    """Calls the node as ComfyUI does: it takes list inputs (one value each here). ``full``: the NodeOutput."""
    values = dict(model=model, set_name=set_name, lora_name=lora, steps=steps, learning_rate=lr, rank=4, alpha=8.0,
                  warmup_steps=0, batch_size=batch_size, grad_accumulation=grad_accumulation, max_grad_norm=1.0,
                  t_sampling="logit_normal", precision="bf16" if bf16 else "fp32", gradient_checkpointing=checkpointing,
                  save_every=save_every,
                  resume=resume, seed=seed, target_modules=targets, preset=preset, init_lora=init_lora,
                  validation_every=validation_every, validation_prompts=2, validation_steps=3, validation_cfg=3.0)
    if vae is not None:
        values["vae"] = vae
    out = rfmi_nodes["RFMITrainLoRA"].execute(**{k: [v] for k, v in values.items()})
    return out if full else out.result


def fingerprint(model):
    net = model.model.diffusion_model
    return ([n for n, _ in net.named_modules()], {k: v.clone() for k, v in net.state_dict().items()})


def test_loss_falls_and_the_stock_loader_reproduces_the_trained_model(rfmi_nodes, folders, caplog):
    with torch.inference_mode():  # as ComfyUI's executor loads models: inference tensors
        model = tiny_sd3(seed=3)
        make_set(rfmi_nodes, model)
    names, weights = fingerprint(model)
    with torch.inference_mode():
        # every Linear of the blocks, so a tiny random model can visibly fit 4 latents in a few seconds
        patched, curve, path = train(rfmi_nodes, model, steps=80, lr=1e-2, targets=r"joint_blocks\.\d+\..*\.(qkv|proj|fc1|fc2|adaLN_modulation\.1)")
    # ComfyUI's IMAGE: [1, H, W, 3] float in [0, 1], dark ink on a white page (matplotlib's figure, or the bare curve
    # where matplotlib is missing)
    assert curve.shape == (1, 384, 768, 3) and curve.dtype == torch.float32
    assert float(curve.max()) == 1.0 and 0.0 <= float(curve.min()) < 0.5
    losses = FinetuneSet  # noqa: F841 (the losses come from the checkpoint below)
    from rfmi_core.train import load_checkpoint
    state = load_checkpoint(folders / "output" / "rfmi_sets" / "s" / "checkpoints" / "l")
    first, last = sum(state.losses[:20]) / 20, sum(state.losses[-20:]) / 20
    print(f"train LoRA in ComfyUI: loss {first:.4f} (first 20 steps) -> {last:.4f} (last 20)")
    assert last < 0.9 * first
    # the model passed in is unchanged: module tree and weights
    after_names, after_weights = fingerprint(model)
    assert after_names == names and all(torch.equal(after_weights[k], weights[k]) for k in weights)
    # the stock LoraLoaderModelOnly loads the file with no missing keys and gives the node's own patched model
    lora = comfy.utils.load_torch_file(path, safe_load=True)
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    loaded = comfy.lora.load_lora(lora, key_map)
    assert len(loaded) == len({k.rsplit(".lora_", 1)[0].rsplit(".alpha", 1)[0] for k in lora})  # every module mapped
    caplog.clear()
    with caplog.at_level("WARNING"):
        (stock,) = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only(model, path.rsplit("/", 1)[1], 1.0)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]
    positive, negative = sd3_conditioning(10), sd3_conditioning(99)
    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    (a,) = comfy_nodes.common_ksampler(stock, 5, 3, 3.0, "euler", "simple", positive, negative, latent)
    (b,) = comfy_nodes.common_ksampler(patched, 5, 3, 3.0, "euler", "simple", positive, negative, latent)
    (base,) = comfy_nodes.common_ksampler(model, 5, 3, 3.0, "euler", "simple", positive, negative, latent)
    torch.testing.assert_close(a["samples"], b["samples"], atol=1e-5, rtol=0)
    assert not torch.allclose(a["samples"], base["samples"], atol=1e-4)  # the LoRA does change the output


def test_resume_after_a_stop_equals_the_uninterrupted_run(rfmi_nodes, folders):
    model = tiny_sd3(seed=4)
    make_set(rfmi_nodes, model)
    _, _, full_path = train(rfmi_nodes, model, steps=8, lora="full", save_every=1)
    calls = []
    original = comfy.model_management.throw_exception_if_processing_interrupted

    def stop_at_step_4():
        calls.append(1)
        if len(calls) == 5:
            raise comfy.model_management.InterruptProcessingException()
        original()

    comfy.model_management.throw_exception_if_processing_interrupted = stop_at_step_4
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            train(rfmi_nodes, model, steps=8, lora="split", save_every=0)
    finally:
        comfy.model_management.throw_exception_if_processing_interrupted = original
    _, _, split_path = train(rfmi_nodes, model, steps=8, lora="split", resume=True)
    full, split = comfy.utils.load_torch_file(full_path), comfy.utils.load_torch_file(split_path)
    assert full.keys() == split.keys()
    for key in full:
        torch.testing.assert_close(split[key], full[key], atol=1e-6, rtol=0)


def test_lora_names_that_leave_the_loras_folder_are_refused(rfmi_nodes, folders):
    model = tiny_sd3()
    make_set(rfmi_nodes, model)
    with pytest.raises(ValueError, match="leave the folder"):
        train(rfmi_nodes, model, steps=1, lora="../../evil")


def test_a_flux_set_keeps_its_guidance_and_trains_a_lora_the_stock_loader_takes_whole(rfmi_nodes, folders, caplog):
    """FLUX: the set stores T5 cond + pooled + guidance once per prompt; training feeds the guidance back; the LoRA's
    double-block keys all load."""
    model = tiny_flux(seed=1)
    positive, negative = flux_conditioning(5, guidance=2.5), flux_conditioning(6, guidance=2.5)
    scores = rfmi_nodes["RFMIBestOfN"].execute(model, 0, 3, 1.0, "euler", "simple", positive, negative,
                                               {"samples": torch.zeros(1, 16, 8, 8)}, 3, 1, 3, "cfg", "rfmi").result[2]
    rfmi_nodes["RFMIExportFinetuneSet"].execute(scores, positive, negative, "a flux prompt", "", "flux", 2, model)
    finetune_set = FinetuneSet.open(folders / "output" / "rfmi_sets" / "flux")
    kept = finetune_set.records()
    assert len(kept) == 2 and len({r.prompt_conditioning for r in kept}) == 1  # stored once for the prompt
    stored = finetune_set.load_conditioning(kept[0].prompt_conditioning)
    assert set(stored) == {"cross_attn", "pooled_output", "guidance"} and stored["guidance"].tolist() == [2.5]
    assert list(stored["cross_attn"].shape) == [1, 7, 64] and list(stored["pooled_output"].shape) == [1, 32]
    names, weights = fingerprint(model)
    # ComfyUI's FLUX blocks update their residual stream in place (x += ...): with gradient checkpointing the trainer
    # feeds each block copies; without, it keeps copies of the saved activations. Both give the same LoRA.
    _, _, path = train(rfmi_nodes, model, steps=3, lr=1e-2, lora="flux_lora", set_name="flux", checkpointing=True)
    with pytest.warns(UserWarning, match="in place"):
        _, _, plain = train(rfmi_nodes, model, steps=3, lr=1e-2, lora="flux_plain", set_name="flux")
    after_names, after_weights = fingerprint(model)
    assert after_names == names and all(torch.equal(after_weights[k], weights[k]) for k in weights)
    lora = comfy.utils.load_torch_file(path, safe_load=True)
    for key, value in comfy.utils.load_torch_file(plain, safe_load=True).items():
        torch.testing.assert_close(lora[key], value, atol=1e-6, rtol=0)
    assert any(lora[k].abs().max() > 0 for k in lora if k.endswith("lora_B.weight"))  # it did train
    modules = {k.rsplit(".lora_", 1)[0].rsplit(".alpha", 1)[0] for k in lora}
    assert modules == {f"diffusion_model.double_blocks.0.{a}.{layer}" for a in ("img_attn", "txt_attn")
                       for layer in ("qkv", "proj")}
    caplog.clear()
    with caplog.at_level("WARNING"):
        loaded = comfy.lora.load_lora(lora, comfy.lora.model_lora_keys_unet(model.model, {}))
    assert len(loaded) == len(modules)
    assert not [r for r in caplog.records if "lora key not loaded" in r.getMessage()]


def test_list_inputs_train_once_and_differing_sets_are_refused(rfmi_nodes, folders):
    """After a prompt list, set_name arrives once per exported prompt: the node trains once on the whole set."""
    model = tiny_sd3(seed=5)
    make_set(rfmi_nodes, model)
    node = rfmi_nodes["RFMITrainLoRA"]
    values = dict(model=[model], set_name=["s", "s", "s"], lora_name=["once"], steps=[2], learning_rate=[1e-3],
                  rank=[4], alpha=[4.0], warmup_steps=[0], batch_size=[1], grad_accumulation=[1], max_grad_norm=[1.0],
                  t_sampling=["uniform"], precision=["fp32"], gradient_checkpointing=[False], save_every=[0], resume=[False],
                  seed=[0], target_modules=[""], preset=["custom"], init_lora=["(none)"], validation_every=[0],
                  validation_prompts=[1], validation_steps=[1], validation_cfg=[1.0])
    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        patched, curve, path = node.execute(**values).result
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert path.endswith("once.safetensors") and curve.shape[0] == 1
    assert seen == [(1, 2), (2, 2)]  # ComfyUI's ProgressBar, once per step of the one training
    with pytest.raises(ValueError, match="different values for set_name"):
        node.execute(**{**values, "set_name": ["s", "other"]})


# ---------------------------------------------------------------------------------- a copy, init_lora, presets, checks


def weights(model):
    return {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}


def test_training_copies_the_model_and_gives_the_lora_of_training_in_place(rfmi_nodes, folders, pack_import):
    """A model loaded from a file (so newer ComfyUI can deep-copy it, as its TrainLoraNode does) and the same weights
    loaded from memory (trained in place, then restored): the same LoRA, bitwise, and both inputs unchanged."""
    import inspect

    import safetensors.torch
    from tiny_models import tiny_sd3_state_dict

    adapter = pack_import("nodes.training_adapter")
    path = folders / "tiny_sd3.safetensors"
    safetensors.torch.save_file(tiny_sd3_state_dict(seed=6), str(path))
    with torch.inference_mode():  # as ComfyUI's executor loads models: inference tensors
        from_file = comfy.sd.load_diffusion_model(str(path))
        in_memory = tiny_sd3(seed=6)
        make_set(rfmi_nodes, in_memory)
    copy_supported = "force_deepcopy" in inspect.signature(from_file.clone).parameters
    trainee = adapter.training_copy(from_file)
    assert (trainee.model is not from_file.model) == copy_supported  # ComfyUI 0.33: a deep copy; 0.3.64: shared
    assert adapter.training_copy(in_memory).model is in_memory.model  # no file to re-read: trained in place
    del trainee
    before_file, before_memory = weights(from_file), weights(in_memory)
    with torch.inference_mode():
        _, _, copied = train(rfmi_nodes, from_file, steps=4, lr=1e-2, lora="copied")
        _, _, in_place = train(rfmi_nodes, in_memory, steps=4, lr=1e-2, lora="in_place")
    for before, model in ((before_file, from_file), (before_memory, in_memory)):
        after = weights(model)
        assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    a, b = comfy.utils.load_torch_file(copied), comfy.utils.load_torch_file(in_place)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert max(float(a[k].abs().max()) for k in a if k.endswith("lora_B.weight")) > 1e-3  # it did train


def test_init_lora_continues_from_a_saved_lora_and_low_memory_is_its_preset(rfmi_nodes, folders):
    model = tiny_sd3(seed=7)
    make_set(rfmi_nodes, model)
    _, _, first = train(rfmi_nodes, model, steps=20, lr=1e-2, lora="first")
    _, _, second = train(rfmi_nodes, model, steps=1, lr=1e-7, lora="second", init_lora="first.safetensors")
    a, b = comfy.utils.load_torch_file(first), comfy.utils.load_torch_file(second)
    assert a.keys() == b.keys() and max(float(a[k].abs().max()) for k in a if k.endswith("lora_B.weight")) > 1e-3
    for key in a:  # one step at lr 1e-7 from the first LoRA: AdamW moves each weight by about 1e-7
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="set rank"):
        rfmi_nodes["RFMITrainLoRA"].execute(**{k: [v] for k, v in dict(
            model=model, set_name="s", lora_name="r2", steps=1, learning_rate=1e-3, rank=2, alpha=2.0, warmup_steps=0,
            batch_size=1, grad_accumulation=1, max_grad_norm=1.0, t_sampling="uniform", precision="fp32",
            gradient_checkpointing=False, save_every=0, resume=False, seed=0, target_modules="", preset="custom",
            init_lora="first.safetensors", validation_every=0, validation_prompts=1, validation_steps=1,
            validation_cfg=1.0).items()})
    # the preset overrides gradient checkpointing and the batch size, at the same effective batch (precision stays
    # the precision input's: fp32 here, as auto would choose on this CPU): it trains what they would
    _, _, preset = train(rfmi_nodes, model, steps=2, lora="preset", preset="low memory", batch_size=4)
    _, _, explicit = train(rfmi_nodes, model, steps=2, lora="explicit", checkpointing=True, batch_size=1,
                           grad_accumulation=4)
    _, _, default = train(rfmi_nodes, model, steps=2, lora="default", batch_size=4)
    p, e, d = (comfy.utils.load_torch_file(x) for x in (preset, explicit, default))
    assert all(torch.equal(p[k], e[k]) for k in p) and not all(torch.equal(p[k], d[k]) for k in p)


def test_validation_grids_every_n_steps_are_saved_beside_the_lora_and_shown(rfmi_nodes, folders):
    from tiny_models import tiny_vae

    model, vae = tiny_sd3(seed=8), tiny_vae()
    make_set(rfmi_nodes, model)
    with pytest.raises(ValueError, match="needs a VAE"):
        train(rfmi_nodes, model, steps=2, lora="v", validation_every=1)
    out = train(rfmi_nodes, model, steps=4, lr=3e-2, lora="v", validation_every=2, vae=vae, full=True)
    folder = folders / "loras" / "v_validation"
    assert sorted(p.name for p in folder.iterdir()) == ["step_000000.png", "step_000002.png", "step_000004.png"]
    import numpy as np
    from PIL import Image

    grids = [np.asarray(Image.open(folder / f"step_00000{s}.png")).astype(np.float32) for s in (0, 2, 4)]
    # two prompts (rows) × two seeds (columns) of 64 × 64 images, 2 px white padding
    assert grids[0].shape == (2 * 66 + 2, 2 * 66 + 2, 3)
    assert np.abs(grids[1] - grids[0]).max() > 0 and np.abs(grids[2] - grids[0]).max() > 0  # the fine-tune shows
    assert grids[0][2:66, 2:66].std() > 1 and not np.array_equal(grids[0][2:66, 2:66], grids[0][2:66, 68:132])
    shown = out.ui["images"]
    assert len(shown) == 3 and all(ref["type"] == "temp" for ref in shown) and out.ui["text"][0].startswith("v.safetensors")
    train(rfmi_nodes, model, steps=4, lr=3e-2, lora="v2", validation_every=2, vae=vae, full=True)
    assert np.array_equal(np.asarray(Image.open(folders / "loras" / "v2_validation" / "step_000004.png")),
                          grids[2].astype(np.uint8))  # same seed, same prompts: the same images


def test_fingerprints_follow_the_prompt_file_and_the_set(rfmi_nodes, folders, monkeypatch):
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(folders / "input"))
    (folders / "input").mkdir()
    prompts = folders / "input" / "prompts.txt"
    prompts.write_text("a red cube\n")
    node = rfmi_nodes["RFMIPromptList"]
    first = node.fingerprint_inputs(file="prompts.txt", text="", start=0, count=0)
    assert node.fingerprint_inputs(file="prompts.txt", text="", start=0, count=0) == first
    prompts.write_text("a red cube\ntwo green balls\n")
    assert node.fingerprint_inputs(file="prompts.txt", text="", start=0, count=0) != first
    assert node.fingerprint_inputs(file="(text below)", text="x", start=0, count=0) == ""

    model = tiny_sd3(seed=9)
    trainer = rfmi_nodes["RFMITrainLoRA"]
    make_set(rfmi_nodes, model, name="f")
    before = trainer.fingerprint_inputs(set_name=["f"], init_lora=["(none)"])
    train(rfmi_nodes, model, steps=2, lora="f_lora", set_name="f", save_every=1)  # writes checkpoints into the set
    assert trainer.fingerprint_inputs(set_name=["f"], init_lora=["(none)"]) == before
    positive, negative = sd3_conditioning(50), sd3_conditioning(99)
    scores = rfmi_nodes["RFMIBestOfN"].execute(model, 7, 3, 3.0, "euler", "simple", positive, negative,
                                               {"samples": torch.zeros(1, 16, 8, 8)}, 2, 1, 2, "cfg", "rfmi").result[2]
    rfmi_nodes["RFMIExportFinetuneSet"].execute(scores, positive, negative, "a third prompt", "", "f", 2, model)
    after = trainer.fingerprint_inputs(set_name=["f"], init_lora=["(none)"])
    assert after != before
    assert trainer.fingerprint_inputs(set_name=["f"], init_lora=["f_lora.safetensors"]) != after


def test_newer_schema_fields_are_used_where_this_comfyui_has_them(rfmi_nodes):
    """Feature-detected from ComfyUI's own classes: on 0.33 Rank and Pick is an interactive (intermediate-output) node,
    the nodes have search aliases and Train LoRA's settings are advanced; on 0.3.64 Rank and Pick stays an output
    node and the schemas have none of these fields."""
    import dataclasses
    import inspect

    from comfy_api.latest import io

    has = {f.name for f in dataclasses.fields(io.Schema)}
    takes_advanced = "advanced" in inspect.signature(io.Int.Input.__init__).parameters
    pick = rfmi_nodes["RFMIRankAndPick"]
    pick_info = pick.GET_NODE_INFO_V1()
    if "has_intermediate_output" in has:
        assert pick.HAS_INTERMEDIATE_OUTPUT is True and pick_info["output_node"] is False
    else:
        assert pick_info["output_node"] is True
    trainer = rfmi_nodes["RFMITrainLoRA"].GET_NODE_INFO_V1()
    aliases = {node: rfmi_nodes[node].GET_SCHEMA().__dict__.get("search_aliases") or []
               for node in ("RFMIBestOfN", "RFMIRankAndPick", "RFMITrainLoRA", "RFMISampler")}
    if "search_aliases" in has:
        assert "best of n" in aliases["RFMIBestOfN"] and "pick" in aliases["RFMIRankAndPick"]
        assert "lora training" in aliases["RFMITrainLoRA"] and "mutual information" in aliases["RFMISampler"]
        assert "image ranking" in aliases["RFMIBestOfN"] + aliases["RFMIRankAndPick"]
        assert "lora training" in trainer["search_aliases"]
    else:
        assert aliases == {node: [] for node in aliases}
    required, optional = trainer["input"]["required"], trainer["input"].get("optional", {})
    marked = {name for name, spec in {**required, **optional}.items()
              if len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("advanced")}
    expected = {"alpha", "warmup_steps", "batch_size", "grad_accumulation", "max_grad_norm", "t_sampling", "precision",
                "gradient_checkpointing", "save_every", "seed", "target_modules", "validation_prompts",
                "validation_steps", "validation_cfg"}
    assert marked == (expected if takes_advanced else set())


def test_precision_follows_the_device_unless_named(pack_import):
    """auto: bf16 autocast on a GPU, float32 on a CPU (bf16 is emulated there); bf16 / fp32 as named."""
    uses_bf16 = pack_import("nodes.train_lora").uses_bf16
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert [uses_bf16("auto", cpu), uses_bf16("auto", gpu)] == [False, True]
    assert [uses_bf16("bf16", cpu), uses_bf16("fp32", gpu)] == [True, False]
