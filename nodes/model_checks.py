"""Checks on the MODEL a node is given: a real in-process ModelPatcher of a rectified-flow model."""

from __future__ import annotations

import os

import comfy.model_patcher
import comfy.model_sampling

IN_PROCESS_FIX = (
    "Load this pack in ComfyUI's main process: it ships without a [tool.comfy.isolation] table, so remove one if it was "
    "added to custom_nodes/<this pack>/pyproject.toml (and unset PYISOLATE_ENFORCE_ISOLATED, which forces isolation on "
    "packs that have the table), or start ComfyUI without --use-process-isolation."
)


class RFMIModelError(ValueError):
    """The MODEL input cannot be scored by RFMI; the message says why and what to connect instead."""


def model_type_name(model) -> str:
    model_type = getattr(getattr(model, "model", None), "model_type", None)
    return getattr(model_type, "name", str(model_type))


def require_in_process(model) -> None:
    """RFMI reads velocities through Python hooks inside ComfyUI's sampler; an RPC proxy (process isolation) cannot.

    ComfyUI's pyisolate process isolation (``--use-process-isolation``) runs a pack in a child process, where
    PYISOLATE_CHILD=1 and a MODEL is a ``ModelPatcherProxy`` (not a ``ModelPatcher``) whose setters send the hook to
    the host over RPC: the tap's state would never see the sampler.
    """
    if os.environ.get("PYISOLATE_CHILD") == "1":
        raise RuntimeError("RFMI must run in ComfyUI's main process, but this node runs in an isolated child process "
                           "(PYISOLATE_CHILD=1), where its sampler hooks cannot reach the sampler. " + IN_PROCESS_FIX)
    if not isinstance(model, comfy.model_patcher.ModelPatcher):
        raise RuntimeError(f"RFMI needs a ComfyUI ModelPatcher from the main process but got a {type(model).__name__} "
                           "(an RPC proxy under process isolation, or another pack's wrapper): connect the MODEL from "
                           "ComfyUI's own loaders. " + IN_PROCESS_FIX)


def is_rectified_flow(sampling) -> bool:
    """ComfyUI's CONST prediction with its own maths: x_σ = σ·ε + (1 − σ)·x and denoised = x_σ − σ·output.

    Subclasses that keep the CONST type but change the maths (IMG_TO_IMG_FLOW, IMG_TO_IMG_VELOCITY in newer ComfyUI)
    never noise the latent: there is no trajectory to read MI from.
    """
    const = comfy.model_sampling.CONST
    return (isinstance(sampling, const) and type(sampling).noise_scaling is const.noise_scaling
            and type(sampling).calculate_denoised is const.calculate_denoised)


def sampling_kind(sampling) -> str:
    """The comfy.model_sampling classes a model's sampling is built from, e.g. 'ModelSamplingDiscrete, EPS'."""
    names = [c.__name__ for c in type(sampling).__mro__ if c.__module__ == comfy.model_sampling.__name__]
    return ", ".join(names) or type(sampling).__name__


def require_flow_model(model) -> None:
    """Only rectified-flow models have the velocity the estimator reads: SD3/SD3.5, FLUX, AuraFlow, ..."""
    require_in_process(model)
    sampling = model.get_model_object("model_sampling")
    if not is_rectified_flow(sampling):
        raise RFMIModelError(
            f"RFMI needs a rectified-flow model (SD3/SD3.5, FLUX or another FLOW model), but this MODEL is of type "
            f"{model_type_name(model)} ({sampling_kind(sampling)}). eps- and "
            "v-prediction models (SD1.5, SDXL) and image-to-image flow samplings are not supported: connect a flow model."
        )
    noise_scale = float(getattr(sampling, "noise_scale", 1.0))  # newer ComfyUI: x_σ = σ·s·ε + (1 − σ)·x
    if noise_scale != 1.0:
        raise RFMIModelError(f"RFMI's estimator assumes unit-variance noise, but this model's sampling has noise_scale "
                             f"{noise_scale}: use the model with its noise scale at 1.0.")
