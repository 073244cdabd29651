"""The toy text-to-image rectified-flow model: a ~0.7 M-parameter joint-attention transformer (MMDiT-like).

Image tokens (2×2 patches of a 3×16×16 image) and prompt tokens (a learned embedding of the toy tokenizer's ids)
attend jointly in every block; the time t (paper convention: 0 noise, 1 data) and the mean prompt embedding modulate
each block through adaLN. The network returns the paper velocity u = x1 − x0. Module names follow SD3's MMDiT
(``joint_blocks.N.x_block.attn.qkv`` / ``.proj``) so the trainer's default LoRA targets apply unchanged.

``local_mixing`` (on in the shipped weights; off by default, for configs that do not name it) adds a depthwise 3×3 convolution
over the 8×8 grid of image tokens inside each block's MLP (SegFormer's MixFFN; zero-initialised, 15 k parameters):
neighbouring patches of one shape agree on it sooner than through attention alone.

``prompt_slots`` (on in the shipped weights; off by default) adds to the adaLN condition an MLP of the prompt's token
embeddings in their slots (zero-initialised last layer). The mean embedding is a bag of words: "a red square to the
left of a blue disk" and "a blue square to the left of a red disk" pool alike, so at high noise, where the layout
must come from the prompt alone, the blocks had no summary saying which colour goes left. With slots a width-64 probe
(t = 0.02, stable targets) learnt the layout within 600 steps, held-out pairs included; without them it had not.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import torch
from safetensors import safe_open
from torch import Tensor, nn

from ..util.atomic import save_safetensors_atomic

__all__ = ["ToyFlowConfig", "ToyFlowTransformer"]


@dataclass
class ToyFlowConfig:
    vocab_size: int = 32
    max_tokens: int = 8
    image_size: int = 16
    channels: int = 3
    patch: int = 2
    width: int = 96
    depth: int = 4
    heads: int = 4
    pad_id: int = 0
    local_mixing: bool = False  # a depthwise 3×3 convolution over the image tokens inside each MLP (MixFFN)
    prompt_slots: bool = False  # adaLN also reads an MLP of the token embeddings in their slots (word order)

    def to_dict(self) -> dict:
        return asdict(self)


def sincos_2d(width: int, side: int) -> Tensor:
    """DiT's fixed 2-D sin-cos position features [1, side², width]: half the channels encode the row, half the column."""
    quarter = width // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                                indexing="ij")
    parts = [f(axis.flatten()[:, None] * freqs[None]) for axis in (rows, cols) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1)[None]


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of t ∈ [0, 1] (scaled by 1000, as diffusion transformers do)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, w))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, side: int = 0):
        super().__init__()
        self.side = side  # > 0: the image tokens (the last side² tokens) get a depthwise 3×3 conv in the MLP
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)
        if side:
            self.local = nn.Conv2d(4 * width, 4 * width, 3, padding=1, groups=4 * width)
            nn.init.zeros_(self.local.weight)
            nn.init.zeros_(self.local.bias)

    def _mlp(self, x: Tensor) -> Tensor:
        if not self.side:
            return self.mlp(x)
        h = self.mlp[0](x)
        b, n, d = h.shape
        image = h[:, n - self.side ** 2:].transpose(1, 2).reshape(b, d, self.side, self.side)
        local = self.local(image).reshape(b, d, self.side ** 2).transpose(1, 2)
        h = torch.cat([h[:, : n - self.side ** 2], h[:, n - self.side ** 2:] + local], dim=1)
        return self.mlp[2](self.mlp[1](h))

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, mask)
        return x + gate2 * self._mlp(self.norm2(x) * (1 + scale2) + shift2)


class JointBlock(nn.Module):
    """One joint-attention block over [prompt tokens; image tokens] (named like MMDiT's for LoRA targeting)."""

    def __init__(self, width: int, heads: int, side: int = 0):
        super().__init__()
        self.x_block = Block(width, heads, side)

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None) -> Tensor:
        return self.x_block(x, c, mask)


class ToyFlowTransformer(nn.Module):
    """u = net(x_t [B, 3, 16, 16], t [B], tokens [B, L]); tokens all ``pad_id`` is the empty prompt ∅."""

    def __init__(self, config: ToyFlowConfig | None = None):
        super().__init__()
        self.config = config = config or ToyFlowConfig()
        w, p = config.width, config.patch
        self.num_patches = (config.image_size // p) ** 2
        self.x_embedder = nn.Linear(config.channels * p * p, w)
        # starts at DiT's 2-D sin-cos features (trainable): neighbouring patches start alike, so shapes spanning
        # several patches are learnt within a few thousand CPU steps (a random start left scattered 2×2 blobs at 2000)
        self.pos_embed = nn.Parameter(sincos_2d(w, config.image_size // p))
        self.token_embedder = nn.Embedding(config.vocab_size, w)
        self.token_pos = nn.Parameter(torch.randn(1, config.max_tokens, w) * 0.02)
        self.t_embedder = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.y_embedder = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        if config.prompt_slots:  # zero-initialised: a model given this module starts as the one without it
            self.slot_embedder = nn.Sequential(nn.Linear(w * config.max_tokens, w), nn.SiLU(), nn.Linear(w, w))
            nn.init.zeros_(self.slot_embedder[2].weight)
            nn.init.zeros_(self.slot_embedder[2].bias)
        side = config.image_size // p if config.local_mixing else 0
        self.joint_blocks = nn.ModuleList([JointBlock(w, config.heads, side) for _ in range(config.depth)])
        self.final_norm = nn.LayerNorm(w, elementwise_affine=False)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.final_linear = nn.Linear(w, config.channels * p * p)
        for layer in (self.final_modulation[1], self.final_linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def patchify(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        p = self.config.patch
        return x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)

    def unpatchify(self, tokens: Tensor) -> Tensor:
        b = tokens.shape[0]
        c, p, s = self.config.channels, self.config.patch, self.config.image_size // self.config.patch
        return tokens.reshape(b, s, s, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, s * p, s * p)

    def _slots(self, tokens: Tensor, present: Tensor) -> Tensor:
        """[B, max_tokens·width]: each token's embedding in its own slot (padding zero), so the summary keeps word
        order: which colour is named first and which relation follows it, which the mean embedding loses."""
        slots = self.token_embedder(tokens) * present[..., None]
        missing = self.config.max_tokens - tokens.shape[1]
        return nn.functional.pad(slots, (0, 0, 0, missing)).flatten(1)

    def forward(self, x: Tensor, t: Tensor, tokens: Tensor) -> Tensor:
        cfg = self.config
        if x.shape[1:] != (cfg.channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"x must be [B, {cfg.channels}, {cfg.image_size}, {cfg.image_size}]; got {tuple(x.shape)}")
        if tokens.ndim != 2 or tokens.shape[0] != x.shape[0]:
            raise ValueError(f"tokens must be [B, L] with B = {x.shape[0]}; got {tuple(tokens.shape)}")
        tokens = tokens.long()
        present = tokens != cfg.pad_id  # [B, L]
        text = self.token_embedder(tokens) + self.token_pos[:, : tokens.shape[1]]
        pooled = (text * present[..., None]).sum(1) / present.sum(1, keepdim=True).clamp(min=1)
        c = self.t_embedder(timestep_embedding(t, cfg.width)) + self.y_embedder(pooled)
        if cfg.prompt_slots:
            c = c + self.slot_embedder(self._slots(tokens, present))
        h = torch.cat([text, self.x_embedder(self.patchify(x)) + self.pos_embed], dim=1)
        keep = torch.cat([present, torch.ones(x.shape[0], self.num_patches, dtype=torch.bool, device=x.device)], 1)
        mask = keep[:, None, None, :]  # image tokens never attend to padding
        for block in self.joint_blocks:
            h = block(h, c, mask)
        shift, scale = self.final_modulation(c)[:, None].chunk(2, dim=-1)
        out = self.final_linear(self.final_norm(h[:, tokens.shape[1] :]) * (1 + scale) + shift)
        return self.unpatchify(out)


DEFAULT_WEIGHTS = os.path.join(os.path.dirname(__file__), "weights", "toy_rf.safetensors")
"""The weights shipped with the pack (made by ``python -m research.toy.train_recipe``)."""


def save_toy_weights(model: ToyFlowTransformer, path: str, metadata: dict) -> None:
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(model.config.to_dict()), **{k: str(v) for k, v in metadata.items()}}
    save_safetensors_atomic(tensors, path, meta)


def load_toy_model(path: str | None = None, grow: ToyFlowConfig | None = None) -> ToyFlowTransformer:
    """The toy model from its safetensors file (default: ``DEFAULT_WEIGHTS``, shipped with the pack), in eval mode.

    ``grow`` (for ``--init``): the file's model with the zero-initialised modules ``grow`` switches on and the file
    lacks (``local_mixing``, ``prompt_slots``) added; it starts as the file's model does. Sizes must match."""
    path = path or DEFAULT_WEIGHTS
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no toy weights at {path}; train them with `python -m research.toy.train_recipe` from the repository")
    with safe_open(path, framework="pt") as handle:
        config = ToyFlowConfig(**json.loads(handle.metadata()["config"]))
        state = {k: handle.get_tensor(k) for k in handle.keys()}
    if grow is not None:
        fixed = [f for f in ("vocab_size", "max_tokens", "image_size", "channels", "patch", "width", "depth", "heads")
                 if getattr(grow, f) != getattr(config, f)]
        if fixed:
            raise ValueError(f"--init {path}: its {', '.join(fixed)} differ from the requested model's; only the "
                             "optional modules (local mixing, prompt slots) can be added to a trained model")
        config = ToyFlowConfig(**{**config.to_dict(), "local_mixing": config.local_mixing or grow.local_mixing,
                                  "prompt_slots": config.prompt_slots or grow.prompt_slots})
    model = ToyFlowTransformer(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or (missing and grow is None) or any(".local." not in k and "slot_embedder" not in k for k in missing):
        raise ValueError(f"{path} does not match its recorded config: missing {missing}, unexpected {unexpected}")
    return model.eval()
