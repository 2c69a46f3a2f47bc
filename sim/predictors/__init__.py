"""Quality / output-length predictors a router consults before dispatching (see :mod:`.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sim.predictors.base import Prediction, Predictor, true_quality
from sim.predictors.evaluate import auc_score, predictor_scores
from sim.predictors.noisy_oracle import NoisyOracle
from sim.predictors.registry import PREDICTORS, make_predictor
from sim.predictors.task_mean import TaskMean

if TYPE_CHECKING:
    from sim.predictors.knn import KNN


def __getattr__(name: str) -> Any:
    """``KNN`` is imported when first asked for (it pulls in scipy.sparse; see registry.PREDICTORS)."""
    if name == "KNN":
        from sim.predictors.knn import KNN

        return KNN
    raise AttributeError(f"module 'sim.predictors' has no attribute {name!r}")

__all__ = [
    "KNN",
    "PREDICTORS",
    "NoisyOracle",
    "Prediction",
    "Predictor",
    "TaskMean",
    "auc_score",
    "make_predictor",
    "predictor_scores",
    "true_quality",
]
