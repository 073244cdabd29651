"""rfmi_core: point-wise mutual information of a rectified-flow model with its prompt (RFMI, Wang et al. 2025).

Headless by design: this package never imports ComfyUI. Units are nats. Time follows the paper (t = 0 noise, t = 1
data); ComfyUI's σ is 1 − t (see ``conventions``).
"""

from .mi.analytic import GaussianChannel, GaussianMixture, TwoPartGaussianChannel, gaussian_velocity
from .mi.conventions import (
    PathSample,
    Velocity,
    cfg_velocity,
    denoised_from_velocity,
    sigma_from_t,
    straight_path,
    t_from_sigma,
    velocity_from_denoised,
    velocity_from_model_output,
)
from .mi.density import TruncatedRatioDensity
from .text.counterfactuals import Rival, counterfactuals  # the function shadows its module's name on the package
from .finetune.finetune_set import CandidateRecord, FinetuneSet, FinetuneSetError
from .mi.estimate import estimate_mi, estimate_mi_draws, estimate_mi_draws_from_pairs
from .mi.pointwise import (
    PMI_N_T,
    PMI_T_EPS,
    ConditionRatios,
    condition_log_ratios,
    exact_pointwise_mi,
    log_likelihood_ratio,
)
from .mi.phrase_mi import (
    PHRASE_SCORES,
    PHRASE_VELOCITIES,
    PhraseEstimate,
    PhraseMIResult,
    PhraseTrajectoryMI,
    estimate_phrase_mi,
    phrase_score,
    sample_with_phrase_mi,
)
from .text.phrases import SplitPrompt, split_prompt
from .mi.sampler import sample_with_mi
from .mi.stats import mean_and_standard_error
from .finetune.scores import ScoredCandidates
from .finetune.select import top_k
from .mi.trajectory import SCORES, VELOCITIES, MIResult, StepIntegrand, TrajectoryMI

__version__ = "0.1.0"

__all__ = [
    "GaussianChannel",
    "GaussianMixture",
    "TwoPartGaussianChannel",
    "gaussian_velocity",
    "PathSample",
    "Velocity",
    "straight_path",
    "cfg_velocity",
    "denoised_from_velocity",
    "sigma_from_t",
    "t_from_sigma",
    "velocity_from_denoised",
    "velocity_from_model_output",
    "TruncatedRatioDensity",
    "Rival",
    "counterfactuals",
    "CandidateRecord",
    "FinetuneSet",
    "FinetuneSetError",
    "estimate_mi",
    "estimate_mi_draws",
    "estimate_mi_draws_from_pairs",
    "PMI_N_T",
    "PMI_T_EPS",
    "ConditionRatios",
    "condition_log_ratios",
    "exact_pointwise_mi",
    "log_likelihood_ratio",
    "PHRASE_SCORES",
    "PHRASE_VELOCITIES",
    "PhraseEstimate",
    "PhraseMIResult",
    "PhraseTrajectoryMI",
    "estimate_phrase_mi",
    "phrase_score",
    "sample_with_phrase_mi",
    "SplitPrompt",
    "split_prompt",
    "sample_with_mi",
    "mean_and_standard_error",
    "ScoredCandidates",
    "top_k",
    "SCORES",
    "VELOCITIES",
    "MIResult",
    "StepIntegrand",
    "TrajectoryMI",
]
