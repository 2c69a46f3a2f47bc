"""Quality / output-length predictors a router consults before dispatching (see :mod:`.base`)."""

from __future__ import annotations

from sim.predictors.base import Prediction, Predictor, true_quality
from sim.predictors.evaluate import auc_score, predictor_scores
from sim.predictors.knn import KNN
from sim.predictors.noisy_oracle import NoisyOracle
from sim.predictors.registry import PREDICTORS, make_predictor
from sim.predictors.task_mean import TaskMean

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
