"""Predictors by name, so scenarios can say ``predictor: {name: knn, k: 16}``."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.predictors.base import Predictor
from sim.predictors.knn import KNN
from sim.predictors.noisy_oracle import NoisyOracle
from sim.predictors.task_mean import TaskMean

PREDICTORS: dict[str, type[Predictor]] = {
    "noisy_oracle": NoisyOracle,
    "task_mean": TaskMean,
    "knn": KNN,
}


def make_predictor(name: str, rng: np.random.Generator, **params: Any) -> Predictor:
    """A new predictor ``name`` drawing any randomness from ``rng`` (ValueError listing valid names)."""
    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}; valid predictors: {', '.join(sorted(PREDICTORS))}")
    return PREDICTORS[name](rng, **params)  # type: ignore[call-arg]
