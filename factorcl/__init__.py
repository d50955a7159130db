"""FactorCL: factorized contrastive learning of shared and unique multimodal information.

- :class:`FactorCL`: the model on any two encoders, one class for every method of the
  objective table (:data:`METHODS`); its settings are a :class:`FactorCLConfig`.
- :func:`fit` / :class:`Trainer`: the training loop (main step + NCE-CLUB critic steps).
- :func:`linear_probe`, :func:`extract_features`, :func:`probe_ablation`: evaluation.
"""

from . import data
from .eval_callback import EvalCallback, knn_accuracy
from .model import FactorCL
from .model_config import FactorCLConfig
from .objectives import METHODS, SIGNS, TERMS, Objective, get_objective
from .probe import ProbeResult, extract_features, linear_probe, probe_ablation
from .train import Callback, NonFiniteLossError, TrainConfig, Trainer, TrainResult, fit

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "EvalCallback",
    "knn_accuracy",
    "METHODS",
    "SIGNS",
    "TERMS",
    "FactorCL",
    "FactorCLConfig",
    "NonFiniteLossError",
    "Objective",
    "ProbeResult",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "data",
    "extract_features",
    "fit",
    "get_objective",
    "linear_probe",
    "probe_ablation",
]
