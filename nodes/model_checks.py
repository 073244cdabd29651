"""Checks on the MODEL a node is given: a flow model, and a real in-process ModelPatcher."""

from __future__ import annotations

import os

import comfy.model_patcher
import comfy.model_sampling


class RFMIModelError(ValueError):
    """The MODEL input cannot be scored by RFMI; the message says why and what to connect instead."""


def model_type_name(model) -> str:
    model_type = getattr(getattr(model, "model", None), "model_type", None)
    return getattr(model_type, "name", str(model_type))


def require_in_process(model) -> None:
    """RFMI reads velocities through Python hooks inside ComfyUI's sampler; an RPC proxy (process isolation) cannot."""
    if os.environ.get("PYISOLATE_CHILD") == "1" or not isinstance(model, comfy.model_patcher.ModelPatcher):
        raise RuntimeError(
            "RFMI must run in ComfyUI's main process: it hooks the sampler with Python callbacks, which cannot cross "
            f"process isolation (got a {type(model).__name__}). Do not give this pack a [tool.comfy.isolation] table "
            "and do not force isolation for it (PYISOLATE_ENFORCE_ISOLATED)."
        )


def require_flow_model(model) -> None:
    """Only rectified-flow (CONST) models have the velocity the estimator reads: SD3/SD3.5, FLUX, AuraFlow, ..."""
    require_in_process(model)
    sampling = model.get_model_object("model_sampling")
    # IMG_TO_IMG_FLOW (newer ComfyUI) is CONST too but never noises the latent: no trajectory to read MI from.
    if not isinstance(sampling, comfy.model_sampling.CONST) or model_type_name(model).startswith("IMG_TO_IMG"):
        raise RFMIModelError(
            f"RFMI needs a rectified-flow model (SD3/SD3.5, FLUX or another FLOW model), but this MODEL is of type "
            f"{model_type_name(model)} ({type(sampling).__name__}). eps- and v-prediction models (SD1.5, SDXL) are not "
            "supported: connect a flow model."
        )
