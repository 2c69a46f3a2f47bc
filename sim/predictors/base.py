"""The predictor interface: what a router knows about a query before sending it anywhere.

Routers never see realised quality; they see a :class:`Prediction` — estimated success probability
â_ij, its uncertainty σ_ij (used by the robust formulations in docs/routing.md) and predicted output
length (which, with prices, gives the predicted cost ĉ_ij). Every predictor is fitted on a training
:class:`QuerySet` and predicts for another, so the simulator can swap an oracle, a per-task average or
a retrieval model without the router noticing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

from sim.workload.queryset import QuerySet


@dataclass(frozen=True, eq=False)
class Prediction:
    """Per (query, model) predictions, each (n, m).

    Attributes:
        quality: predicted probability of a correct / acceptable answer, in [0, 1].
        quality_std: uncertainty of ``quality`` (a standard deviation), >= 0.
        output_tokens: predicted output length, > 0 (float: an expectation, not a count; integer counts
            when the prediction is exactly the true ones, e.g. ``noisy_oracle`` without token noise:
            consumers widen to float64 where they compute).
    """

    quality: NDArray[np.float64]
    quality_std: NDArray[np.float64]
    output_tokens: NDArray[np.float64]

    def __post_init__(self) -> None:
        shape = self.quality.shape
        if len(shape) != 2 or self.quality_std.shape != shape or self.output_tokens.shape != shape:
            raise ValueError(
                f"Prediction: quality {self.quality.shape}, quality_std {self.quality_std.shape} and "
                f"output_tokens {self.output_tokens.shape} must be the same (n, m) shape"
            )
        if not np.all((self.quality >= 0.0) & (self.quality <= 1.0)):
            raise ValueError("Prediction: quality must be in [0, 1] (and not NaN)")
        if not np.all(self.quality_std >= 0.0):
            raise ValueError("Prediction: quality_std must be >= 0 (and not NaN)")
        if not np.all(self.output_tokens > 0.0):
            raise ValueError("Prediction: output_tokens must be > 0 (and not NaN)")


class Predictor(ABC):
    """Fit on a training QuerySet, then predict for any QuerySet over the same models."""

    name: str = "predictor"
    #: A strict pydantic model of the constructor's parameters (names, types, ranges): scenarios are
    #: checked against it at load time, so a bad ``k: .inf`` is an error naming the field, not a crash.
    Params: ClassVar[type[BaseModel]]

    def __init__(self) -> None:
        self._models: tuple[str, ...] | None = None

    @abstractmethod
    def fit(self, train: QuerySet) -> None:
        """Learn from ``train`` (its realised quality and output tokens)."""

    @abstractmethod
    def predict(self, qs: QuerySet) -> Prediction:
        """Predictions for every query of ``qs`` on every model of ``qs``."""

    def _remember_models(self, train: QuerySet) -> None:
        self._models = train.model_names

    def _check_models(self, qs: QuerySet) -> None:
        """A predictor fitted on other models (or another column order) would silently mislabel columns."""
        if self._models is None:
            raise RuntimeError(f"{type(self).__name__}.predict called before fit")
        if qs.model_names != self._models:
            raise ValueError(
                f"{type(self).__name__} was fitted on models {list(self._models)} but asked to predict for "
                f"{list(qs.model_names)}; use qs.select_models(...) to match"
            )


def true_quality(qs: QuerySet) -> NDArray[np.float64]:
    """Success probability when known (synthetic pools), else the realised quality."""
    return qs.true_prob if qs.true_prob is not None else qs.quality


def binomial_se(p: NDArray[np.float64], count: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sqrt(p (1 - p) / count)``; count 0 gives the widest possible value, 0.5."""
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(np.clip(p * (1.0 - p), 0.0, None) / count)
    return np.where(count > 0, se, 0.5)
