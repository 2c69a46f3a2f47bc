"""Retrieval predictor (OmniRouter's): a query behaves like the training queries most similar to it.

Prompts are embedded (:mod:`sim.predictors.embed`), the ``k`` training prompts of highest cosine
similarity are found by sparse matrix products over chunks of queries (memory stays at
``chunk × n_train`` floats), and for each model:

- quality = the neighbours' weighted mean score, shrunk towards a prior with ``prior_weight``
  pseudo-neighbours. The prior is the model's training mean on the query's task (``prior="task"``,
  i.e. the :class:`~sim.predictors.task_mean.TaskMean` prediction) or over all tasks
  (``prior="global"``). Shrinking matters: 16 neighbours that all failed should give a small
  probability, not 0 (a Brier score punishes confident errors, and robust routers need σ > 0). How
  much depends on the data: on MMLU-Pro the text of a question says little beyond its topic, so raw
  neighbour means are *worse* than per-task means and the best weight is ~16–32 neighbours' worth;
  where the text decides the outcome the best weight is ~1. ``prior_weight="auto"`` (the default)
  picks it from a grid by leave-one-out Brier score on up to ``tune_size`` training queries (evenly
  spaced, so no randomness; their task-mean prior includes themselves, a negligible leak for tasks of
  more than a few dozen queries);
- quality_std = the standard error of that mean: ``sqrt(p (1 - p) / (k_eff + prior_weight))`` for
  0/1 scores, ``sqrt(var / (k_eff + prior_weight))`` with the neighbours' weighted variance (their
  spread) otherwise, where ``k_eff = (Σw)² / Σw²`` is the effective number of neighbours;
- output tokens = the neighbours' weighted mean.

Weights are the similarities (``weighted=True``, neighbours with similarity <= 0 get none) or uniform.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from sim.predictors.base import Prediction, Predictor
from sim.predictors.embed import Embedder, make_embedder
from sim.predictors.task_mean import TaskMean
from sim.workload.queryset import QuerySet


class KNNParams(BaseModel):
    """Scenario parameters of ``knn`` (strict types, finite numbers, checked at load time)."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)
    k: Annotated[int, Field(ge=1, le=10_000)] = Field(16, description="Neighbours per query.")
    embedding: Literal["tfidf", "hashed"] = Field("tfidf", description="Prompt embedding (sim.predictors.embed).")
    weighted: bool = Field(True, description="Weight neighbours by similarity (else uniformly).")
    prior_weight: Annotated[float, Field(ge=0, le=1e6)] | Literal["auto"] = Field(
        "auto", description="Pseudo-neighbours of the prior, or 'auto' (tuned by leave-one-out Brier score)."
    )
    prior: Literal["task", "global"] = Field("task", description="Shrink towards the task mean or the global mean.")
    chunk: Annotated[int, Field(ge=1, le=100_000)] = Field(512, description="Queries per similarity block.")
    tune_size: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        2000, description="Training queries used to tune prior_weight='auto'."
    )


class KNN(Predictor):
    """k-nearest-neighbour quality/length predictor over prompt embeddings (needs ``qs.prompts``)."""

    name = "knn"
    Params: ClassVar[type[BaseModel]] = KNNParams
    #: It retrieves by prompt text: the scenario check refuses it with a synthetic pool (no texts).
    needs_prompts: ClassVar[bool] = True
    PRIOR_WEIGHT_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)

    def __init__(
        self,
        rng: np.random.Generator | None = None,
        k: int = 16,
        embedding: str = "tfidf",
        weighted: bool = True,
        prior_weight: float | str = "auto",
        prior: str = "task",
        chunk: int = 512,
        tune_size: int = 2000,
    ) -> None:
        super().__init__()
        if k < 1 or chunk < 1 or tune_size < 1:
            raise ValueError(
                f"need k >= 1 (got {k}), chunk >= 1 (got {chunk}), tune_size >= 1 (got {tune_size})"
            )
        if prior_weight != "auto" and not (isinstance(prior_weight, int | float) and prior_weight >= 0):
            raise ValueError(f"prior_weight must be 'auto' or a number >= 0, got {prior_weight!r}")
        if prior not in ("task", "global"):
            raise ValueError(f"prior={prior!r}: expected 'task' or 'global'")
        self.k, self.weighted, self.chunk, self.tune_size = int(k), bool(weighted), int(chunk), int(tune_size)
        self.prior_weight = prior_weight
        self.prior = prior
        self.embedder: Embedder = make_embedder(embedding)
        self.fitted_prior_weight = 0.0
        """The weight in use after :meth:`fit` (the tuned one when ``prior_weight="auto"``)."""
        self._task_mean = TaskMean()
        self._train: sp.csr_matrix | None = None
        self._quality = np.zeros((0, 0))
        self._tokens = np.zeros((0, 0))
        self._binary = True

    def fit(self, train: QuerySet) -> None:
        prompts = _prompts(train, "fit")
        if train.n == 0:
            raise ValueError("KNN.fit: empty training set")
        self._remember_models(train)
        embedded = self.embedder.fit_transform(prompts)
        self._train = sp.csr_matrix(embedded.T)  # (d, n_train)
        self._quality = train.quality.astype(np.float64)
        self._tokens = train.output_tokens.astype(np.float64)
        self._task_mean.fit(train)
        self._binary = bool(np.isin(self._quality, (0.0, 1.0)).all())
        if self.prior_weight == "auto":
            self.fitted_prior_weight = self._tune_prior_weight(train, embedded)
        else:
            self.fitted_prior_weight = float(self.prior_weight)

    def predict(self, qs: QuerySet) -> Prediction:
        self._check_models(qs)
        queries = self.embedder.transform(_prompts(qs, "predict"))
        prior = self._prior(qs)
        quality = np.empty((qs.n, qs.m))
        std = np.empty_like(quality)
        tokens = np.empty_like(quality)
        for lo in range(0, qs.n, self.chunk):
            rows = slice(lo, min(lo + self.chunk, qs.n))
            stats = self._stats(*self._neighbours(queries[rows]))
            quality[rows], std[rows] = self._shrink(stats, prior[rows], self.fitted_prior_weight)
            tokens[rows] = stats[3]
        return Prediction(
            quality=np.clip(quality, 0.0, 1.0), quality_std=std, output_tokens=np.maximum(tokens, 1.0)
        )

    def _prior(self, qs: QuerySet) -> NDArray[np.float64]:
        if self.prior == "task":
            return self._task_mean.predict(qs).quality
        return np.broadcast_to(self._quality.mean(axis=0), (qs.n, qs.m))

    def _tune_prior_weight(self, train: QuerySet, embedded: sp.csr_matrix) -> float:
        """The grid weight with the best leave-one-out Brier score on evenly spaced training queries."""
        if train.n <= self.k:
            return float(self.k)  # too few queries to leave one out; a neighbourhood's worth of prior
        sample = np.unique(np.linspace(0, train.n - 1, min(self.tune_size, train.n)).round().astype(np.int64))
        prior = self._prior(train)[sample]
        brier = np.zeros(len(self.PRIOR_WEIGHT_GRID))
        for lo in range(0, len(sample), self.chunk):
            rows = sample[lo : lo + self.chunk]
            stats = self._stats(*self._neighbours(embedded[rows], exclude=rows))
            for g, weight in enumerate(self.PRIOR_WEIGHT_GRID):
                p, _ = self._shrink(stats, prior[lo : lo + self.chunk], weight)
                brier[g] += float(((p - train.quality[rows]) ** 2).sum())
        return float(self.PRIOR_WEIGHT_GRID[int(np.argmin(brier))])

    def _neighbours(
        self, queries: sp.csr_matrix, exclude: NDArray[np.int64] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Indices (c, k) of the k most similar training prompts (never ``exclude[row]``) and their weights."""
        assert self._train is not None
        sims = np.asarray((queries @ self._train).todense())
        if exclude is not None:
            sims[np.arange(len(exclude)), exclude] = -np.inf
        k = min(self.k, sims.shape[1] - (exclude is not None))
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        if not self.weighted:
            return idx, np.ones_like(top)
        w = np.clip(top, 0.0, None)
        w[w.sum(axis=1) == 0] = 1.0  # no similar prompt at all (e.g. empty): uniform
        return idx, w

    def _stats(self, idx: NDArray[np.int64], w: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        """(weight sum, k_eff, weighted mean score, weighted mean tokens, weighted score variance)."""
        # Rescale weights to sum to the number of neighbours, so prior_weight counts pseudo-neighbours.
        w = w * (idx.shape[1] / w.sum(axis=1, keepdims=True))
        wsum = w.sum(axis=1)[:, None]
        k_eff = wsum**2 / (w**2).sum(axis=1, keepdims=True)
        y = self._quality[idx]  # (c, k, m)
        mean = np.einsum("ck,ckm->cm", w, y) / wsum
        tokens = np.einsum("ck,ckm->cm", w, self._tokens[idx]) / wsum
        var = np.einsum("ck,ckm->cm", w, (y - mean[:, None, :]) ** 2) / wsum
        return wsum, k_eff, mean, tokens, var

    def _shrink(
        self, stats: tuple[NDArray[np.float64], ...], prior: NDArray[np.float64], weight: float
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Quality shrunk towards ``prior`` with ``weight`` pseudo-neighbours, and its standard error."""
        wsum, k_eff, mean, _, spread = stats
        p = (mean * wsum + weight * prior) / (wsum + weight)
        var = p * (1.0 - p) if self._binary else spread
        return p, np.sqrt(np.clip(var, 0.0, None) / (k_eff + weight))


def _prompts(qs: QuerySet, step: str) -> tuple[str, ...]:
    if qs.prompts is None:
        raise ValueError(
            f"KNN.{step}: this QuerySet has no prompt texts (qs.prompts is None); the kNN predictor retrieves "
            "similar prompts, so load a dataset with prompts or use the task_mean predictor"
        )
    return qs.prompts
