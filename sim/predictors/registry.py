"""Predictors by name, so scenarios can say ``predictor: {name: knn, params: {k: 16}}``.

Each predictor class carries a strict pydantic ``Params`` model (names, types, ranges); scenario
parameters are validated against it at load time, so ``k: .inf`` or ``noise: "high"`` is a clear error
naming ``router.predictor.params.<key>`` instead of an exception deep inside a run.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel

from sim.predictors.base import Predictor


class _Registry(Mapping[str, type[Predictor]]):
    """Name → predictor class, each module imported on first lookup: ``knn`` pulls in scipy.sparse, which
    a run with another predictor (and ``llmsim validate``'s start-up) need not pay for."""

    def __init__(self, where: dict[str, str]) -> None:
        self._where = where  # name → "module:Class"

    def __getitem__(self, name: str) -> type[Predictor]:
        module, cls = self._where[name].split(":")
        found: type[Predictor] = getattr(importlib.import_module(module), cls)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


PREDICTORS: Mapping[str, type[Predictor]] = _Registry({
    "noisy_oracle": "sim.predictors.noisy_oracle:NoisyOracle",
    "task_mean": "sim.predictors.task_mean:TaskMean",
    "knn": "sim.predictors.knn:KNN",
})


class UnknownPredictorError(KeyError, ValueError):
    """A predictor name is not in the registry; the message lists the valid names (like policies'
    ``UnknownPolicyError``; also a ValueError for callers that catch bad arguments)."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a readable sentence.
        return str(self.args[0]) if self.args else "unknown predictor"


def available_predictors() -> list[str]:
    """Sorted names of every registered predictor."""
    return sorted(PREDICTORS)


def predictor_class(name: str) -> type[Predictor]:
    try:
        return PREDICTORS[name]
    except (KeyError, TypeError):
        raise UnknownPredictorError(
            f"unknown predictor {name!r}; valid predictors: {', '.join(available_predictors())}"
        ) from None


def predictor_params_model(name: str) -> type[BaseModel]:
    """The strict pydantic model of predictor ``name``'s parameters."""
    params: type[BaseModel] = predictor_class(name).Params
    return params


def predictor_parameters(name: str) -> list[str]:
    """Names of the parameters predictor ``name`` accepts."""
    return list(predictor_params_model(name).model_fields)


def validate_predictor_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against the predictor's typed model, defaults filled (pydantic
    ValidationError on a bad name, type or range)."""
    return predictor_params_model(name).model_validate(params).model_dump()


def make_predictor(name: str, rng: np.random.Generator, **params: Any) -> Predictor:
    """A new predictor ``name`` drawing any randomness from ``rng``: UnknownPredictorError listing the
    valid names, or pydantic's ValidationError (a ValueError) for bad parameters."""
    cls = predictor_class(name)
    return cls(rng, **validate_predictor_params(name, params))  # type: ignore[call-arg]
