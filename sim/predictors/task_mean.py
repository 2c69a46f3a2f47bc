"""Per-task averages: the baseline every learned predictor must beat.

Knowing only a query's task (MMLU-Pro category, RouterBench eval), the best guess of a model's success
is its accuracy on that task in training. Tasks are matched by *name*, so train and test QuerySets may
encode tasks differently; a task unseen in training falls back to the model's overall mean.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from sim.predictors.base import Prediction, Predictor, binomial_se
from sim.workload.queryset import QuerySet


class TaskMeanParams(BaseModel):
    """``task_mean`` takes no scenario parameters."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class TaskMean(Predictor):
    """quality = per-task per-model training mean; std = its binomial standard error sqrt(p(1-p)/count);
    output tokens = per-task per-model training mean."""

    name = "task_mean"
    Params: ClassVar[type[BaseModel]] = TaskMeanParams

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self._quality: dict[str, NDArray[np.float64]] = {}
        self._tokens: dict[str, NDArray[np.float64]] = {}
        self._count: dict[str, int] = {}
        self._global: tuple[NDArray[np.float64], NDArray[np.float64], int] | None = None

    def fit(self, train: QuerySet) -> None:
        if train.n == 0:
            raise ValueError("TaskMean.fit: empty training set")
        self._remember_models(train)
        self._quality, self._tokens, self._count = {}, {}, {}
        for t, name in enumerate(train.task_names):
            rows = train.task == t
            if rows.any():
                self._quality[name] = train.quality[rows].mean(axis=0)
                self._tokens[name] = train.output_tokens[rows].mean(axis=0)
                self._count[name] = int(rows.sum())
        self._global = (train.quality.mean(axis=0), train.output_tokens.mean(axis=0), train.n)

    def predict(self, qs: QuerySet) -> Prediction:
        self._check_models(qs)
        assert self._global is not None
        quality = np.empty((len(qs.task_names), qs.m))
        tokens = np.empty_like(quality)
        count = np.empty(len(qs.task_names))
        for t, name in enumerate(qs.task_names):
            if name in self._quality:
                quality[t], tokens[t], count[t] = self._quality[name], self._tokens[name], self._count[name]
            else:
                quality[t], tokens[t], count[t] = self._global
        q = quality[qs.task]
        return Prediction(
            quality=np.clip(q, 0.0, 1.0),
            quality_std=binomial_se(q, count[qs.task][:, None]),
            output_tokens=np.maximum(tokens[qs.task], 1.0),
        )
