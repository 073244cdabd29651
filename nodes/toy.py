"""The toy world in ComfyUI: the toy rectified-flow transformer as a FLOW MODEL, its prompt encoder and its "decoder".

The toy model works in image space (3×16×16 in [-1, 1]): its LATENT is the image itself (identity latent format, 3
channels), its CONDITIONING the prompt's word ids as a float tensor [1, MAX_TOKENS, 1] (the embedding lives in the
network), and decoding is the affine map [-1, 1] → [0, 1]. So the stock KSampler, Best-of-N, Export and Train LoRA
run the whole RFMI loop on CPU with no download. The loader's CLIP (``ToyClip``) is the same text encoder for CLIP
Text Encode and for phrase MI, which it splits into the toy model's own phrases.
"""

from __future__ import annotations

import os

import torch

import folder_paths
from comfy_api.latest import io

from ..rfmi_core import t_from_sigma
from ..rfmi_core.toy import CANVAS, MAX_TOKENS, PAD_ID, PROMPT_VOCAB
from ..rfmi_core.toy.conditioning import conditioning_from_text, tokens_from_conditioning
from ..rfmi_core.toy.prompts import ToyPhrases, split_toy_prompt
from ..rfmi_core.toy.model import ToyFlowTransformer
from ..rfmi_core.toy.model import DEFAULT_WEIGHTS, load_toy_model
from .flow_model import flow_model_patcher
from .sockets import CATEGORY

TOY_FOLDER = "rfmi_toy"
SHIPPED = "shipped"
TOY_CATEGORY = f"{CATEGORY}/toy"


def toy_weight_files() -> list[str]:
    """.safetensors files under models/rfmi_toy/ (registered on first use)."""
    if TOY_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(TOY_FOLDER, os.path.join(folder_paths.models_dir, TOY_FOLDER), is_default=True)
    return [name for name in folder_paths.get_filename_list(TOY_FOLDER) if name.endswith(".safetensors")]


class ComfyToyNet(ToyFlowTransformer):
    """The toy transformer called as ComfyUI calls a diffusion model: net(x, timestep = σ, context = word ids).

    ComfyUI's flow convention: x = σ·noise + (1 − σ)·data, output noise − data. The toy network returns the paper's
    u = data − noise at t = 1 − σ, so the output is −u.
    """

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor | None = None, **_) -> torch.Tensor:
        if context is None:
            raise ValueError("the toy model needs a CONDITIONING: connect RFMI Toy Text Encode")
        if context.ndim != 3 or context.shape[-1] != 1:
            raise ValueError(f"the toy model takes the conditioning of RFMI Toy Text Encode ([B, L, 1] word ids); got "
                             f"shape {tuple(context.shape)}: other text encoders do not fit it")
        tokens = tokens_from_conditioning(context)
        t = t_from_sigma(timestep.to(x.dtype).reshape(-1).expand(x.shape[0]))
        return -super().forward(x, t, tokens.expand(x.shape[0], -1))


def toy_model_patcher(path: str | None = None):
    """The toy model (shipped weights, or a file) as a ComfyUI FLOW ModelPatcher (shift 1, σ passed as the timestep)."""
    toy = load_toy_model(path)
    if toy.config.vocab_size != len(PROMPT_VOCAB) or toy.config.pad_id != PAD_ID:
        raise ValueError(f"these toy weights have a vocabulary of {toy.config.vocab_size} words (pad id "
                         f"{toy.config.pad_id}); this pack's toy tokenizer has {len(PROMPT_VOCAB)} (pad id {PAD_ID}): "
                         "retrain them with `python -m research.toy.train_recipe` (from the repository)")
    net = ComfyToyNet(toy.config)
    net.load_state_dict(toy.state_dict())
    return flow_model_patcher(net.eval(), latent_channels=toy.config.channels, shift=1.0, multiplier=1.0)


def toy_conditioning(text: str) -> list:
    """CONDITIONING of a toy prompt: word ids as float [1, MAX_TOKENS, 1]; "" is ∅ (all padding)."""
    try:
        return [[conditioning_from_text(text), {}]]
    except ValueError as error:
        raise ValueError(f"{error}. The toy model knows only these words: {' '.join(PROMPT_VOCAB[1:])} "
                         f"(at most {MAX_TOKENS} of them), e.g. 'a red square to the left of a blue disk'") from None


class ToyClip:
    """The toy text encoder as a ComfyUI CLIP: what CLIP Text Encode and the RFMI phrase nodes call (``tokenize``,
    ``encode_from_tokens_scheduled``) gives RFMI Toy Text Encode's CONDITIONING, and ``split_phrases`` splits a prompt
    into the phrases the toy model was trained to drop (``split_toy_prompt``)."""

    def tokenize(self, text: str, **_) -> str:
        toy_conditioning(text)  # refuses words outside the toy vocabulary here, as a real tokenizer would
        return text

    def encode_from_tokens_scheduled(self, tokens: str, **_) -> list:
        return toy_conditioning(tokens)

    def split_phrases(self, text: str) -> ToyPhrases:
        return split_toy_prompt(text)


class RFMIToyModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIToyModelLoader",
            display_name="RFMI Toy Model Loader",
            category=TOY_CATEGORY,
            description="The toy text-to-image rectified-flow transformer (≈0.7 M parameters, 16×16 RGB scenes of "
                        "coloured shapes) as a flow MODEL for any sampler. 'shipped' loads the weights that come with "
                        "the pack; other files are .safetensors under models/rfmi_toy/. Runs on CPU in seconds. Its "
                        "CLIP is the toy text encoder, for CLIP Text Encode and for phrase MI (Best-of-N's phrase-min, "
                        "RFMI Phrase MI), which it splits into the phrases the toy model knows.",
            inputs=[io.Combo.Input("weights", options=[SHIPPED, *toy_weight_files()], default=SHIPPED)],
            outputs=[io.Model.Output(), io.Clip.Output()],
        )

    @classmethod
    def execute(cls, weights) -> io.NodeOutput:
        path = DEFAULT_WEIGHTS if weights == SHIPPED else folder_paths.get_full_path_or_raise(TOY_FOLDER, weights)
        return io.NodeOutput(toy_model_patcher(path), ToyClip())


class RFMIToyTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIToyTextEncode",
            display_name="RFMI Toy Text Encode",
            category=TOY_CATEGORY,
            description="A prompt for the toy model, e.g. 'a red square to the left of a blue disk', 'three green "
                        "crosses', 'a blue disk and a yellow square'. Empty: the unconditional ∅ (connect it to "
                        "negative: it is the ∅ of the MI).",
            inputs=[io.String.Input("text", default="", tooltip=f"Words from: {' '.join(PROMPT_VOCAB[1:])}")],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, text) -> io.NodeOutput:
        return io.NodeOutput(toy_conditioning(text))


class RFMIToyEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIToyEmptyLatent",
            display_name="RFMI Toy Empty Latent",
            category=TOY_CATEGORY,
            description=f"An empty toy 'latent': the toy model samples images directly, 3×{CANVAS}×{CANVAS}.",
            inputs=[io.Int.Input("batch_size", default=1, min=1, max=4096)],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, batch_size) -> io.NodeOutput:
        return io.NodeOutput({"samples": torch.zeros(batch_size, 3, CANVAS, CANVAS)})


class RFMIToyDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RFMIToyDecode",
            display_name="RFMI Toy Decode",
            category=TOY_CATEGORY,
            description="Toy samples ([-1, 1], 3×16×16) to an IMAGE in [0, 1], enlarged by whole pixels for viewing.",
            inputs=[
                io.Latent.Input("samples"),
                io.Int.Input("scale", default=8, min=1, max=64, tooltip="Each pixel becomes scale × scale pixels."),
            ],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, samples, scale) -> io.NodeOutput:
        x = samples["samples"]
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"the toy decoder takes toy samples [B, 3, H, W]; got shape {tuple(x.shape)}: connect the "
                             "output of a sampler run on RFMI Toy Model Loader's MODEL")
        image = ((x.float().clamp(-1, 1) + 1) / 2).movedim(1, -1)
        return io.NodeOutput(image.repeat_interleave(scale, 1).repeat_interleave(scale, 2).cpu())
