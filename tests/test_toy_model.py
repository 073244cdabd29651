"""The toy model: shapes, the shipped weights load, the training loss falls."""

import pytest
import torch
from safetensors import safe_open

from rfmi_core.toy.prompts import PAD_ID, tokenize_batch
from rfmi_core.toy.prompts import prompt_phrases, without_phrases
from research.toy.train_model import (DEFAULT_WEIGHTS, cfm_loss, drop_random_phrases, load_toy_model, save_toy_weights,
                                       toy_config, train)
from rfmi_core.toy.model import ToyFlowTransformer
from rfmi_core.toy.world import random_training_batch


def _fixed_loss(model, images, tokens) -> float:
    with torch.no_grad():
        return float(cfm_loss(model, images, tokens, torch.Generator().manual_seed(123), dropout=0.0))


def test_training_loss_falls(tmp_path):
    torch.set_num_threads(1)
    images, texts = random_training_batch(32, torch.Generator().manual_seed(5))
    tokens = tokenize_batch(texts)
    torch.manual_seed(0)
    before = _fixed_loss(ToyFlowTransformer(toy_config()), images, tokens)
    out = tmp_path / "toy.safetensors"
    train(steps=20, batch=16, lr=3e-3, dropout=0.1, ema_decay=0.0, seed=0, out=str(out), resume=False, save_every=20,
          warmup=1)
    after = _fixed_loss(load_toy_model(str(out)), images, tokens)
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["steps"] == "20"
    assert after < 0.8 * before, (before, after)


def test_shipped_weights_give_velocities_of_the_image_shape():
    model = load_toy_model()
    x = torch.randn(2, 3, 16, 16)
    tokens = tokenize_batch(["one red square", ""])
    assert int(tokens[1].ne(PAD_ID).sum()) == 0
    with torch.no_grad():
        u = model(x, torch.tensor([0.3, 0.7]), tokens)
    assert u.shape == x.shape and torch.isfinite(u).all()
    with safe_open(DEFAULT_WEIGHTS, framework="pt") as f:
        assert int(f.metadata()["steps"]) >= 250


def test_phrase_dropout_trains_on_each_prompt_without_one_phrase():
    _, texts = random_training_batch(200, torch.Generator().manual_seed(7))
    assert drop_random_phrases(texts, 0.0, torch.Generator().manual_seed(1)) == texts
    dropped = drop_random_phrases(texts, 1.0, torch.Generator().manual_seed(1))
    partials = {text: {without_phrases(text, [i]) for i in range(len(prompt_phrases(text)))} for text in texts}
    assert all(d in partials[t] for t, d in zip(texts, dropped))
    kinds = {prompt_phrases(t)[i][0] for t, d in zip(texts, dropped) for i in range(len(prompt_phrases(t)))
             if without_phrases(t, [i]) == d}
    assert kinds == {"object", "relation", "count"}
    half = drop_random_phrases(texts, 0.5, torch.Generator().manual_seed(2))
    assert 60 < sum(a != b for a, b in zip(texts, half)) < 140


def test_local_mixing_is_a_zero_initialised_addition_that_old_files_skip():
    torch.manual_seed(0)
    mixing = ToyFlowTransformer(toy_config(local_mixing=True))
    plain = ToyFlowTransformer(toy_config(local_mixing=False))
    extra = set(mixing.state_dict()) - set(plain.state_dict())
    assert extra and all(".local." in k for k in extra)
    for name, p in mixing.named_parameters():  # adaLN and output start at zero: make the blocks do something
        if "adaLN" in name or "final" in name:
            p.data.normal_(0, 0.05)
    plain.load_state_dict({k: v for k, v in mixing.state_dict().items() if k not in extra})
    x, t, tokens = torch.randn(2, 3, 16, 16), torch.tensor([0.2, 0.8]), tokenize_batch(["one red square", ""])
    with torch.no_grad():
        assert torch.allclose(mixing(x, t, tokens), plain(x, t, tokens), atol=1e-6)  # the conv starts at zero
        for block in mixing.joint_blocks:
            block.x_block.local.weight.normal_(0, 0.1)
        assert not torch.allclose(mixing(x, t, tokens), plain(x, t, tokens), atol=1e-4)


def test_prompt_slots_keep_the_word_order_the_mean_embedding_loses():
    torch.manual_seed(0)
    model = ToyFlowTransformer(toy_config(prompt_slots=True))
    tokens = tokenize_batch(["a red square and a blue disk", "a blue square and a red disk"])  # one bag of words
    present = tokens != PAD_ID
    embedded = model.token_embedder(tokens) * present[..., None]
    assert torch.allclose(embedded.sum(1)[0], embedded.sum(1)[1])
    slots = model._slots(tokens, present)
    assert slots.shape == (2, model.config.max_tokens * model.config.width)
    assert not torch.allclose(slots[0], slots[1])


def test_prompt_slots_start_at_zero_so_a_trained_file_grows_them_unchanged(tmp_path):
    torch.manual_seed(0)
    plain = ToyFlowTransformer(toy_config(width=32, depth=1))
    for name, p in plain.named_parameters():  # adaLN and output start at zero: make the blocks do something
        if "adaLN" in name or "final" in name:
            p.data.normal_(0, 0.05)
    path = tmp_path / "plain.safetensors"
    save_toy_weights(plain, str(path), {"steps": 1})
    grown = load_toy_model(str(path), toy_config(width=32, depth=1, prompt_slots=True))
    assert grown.config.prompt_slots and not load_toy_model(str(path)).config.prompt_slots
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([0.05, 0.7])
    tokens = tokenize_batch(["a red square to the left of a blue disk", ""])
    with torch.no_grad():
        assert torch.allclose(grown(x, t, tokens), plain(x, t, tokens), atol=1e-6)
        grown.slot_embedder[2].weight.normal_(0, 0.1)
        assert not torch.allclose(grown(x, t, tokens), plain(x, t, tokens), atol=1e-4)
    with pytest.raises(ValueError, match="width differ"):
        load_toy_model(str(path), toy_config(width=64, depth=1, prompt_slots=True))
