"""Retrieval predictor (OmniRouter's): a query behaves like the training queries most similar to it.

Prompts are embedded (:mod:`sim.predictors.embed`), the ``k`` training prompts of highest cosine
similarity are found by sparse matrix products over chunks of queries (memory stays at
``chunk × n_train`` floats), and for each model:

- quality = the neighbours' weighted mean score, shrunk towards a prior with ``prior_weight``
  pseudo-neighbours. The prior is the model's training mean on the query's task (``prior="task"``,
  i.e. the :class:`~sim.predictors.task_mean.TaskMean` prediction) or over all tasks
  (``prior="global"``). Shrinking matters: 16 neighbours that all failed should give a small
  probability, not 0 (a Brier score punishes confident errors, and robust routers need σ > 0), and on
  MMLU-Pro the text of a question says little beyond its topic, so raw neighbour means are *worse*
  than per-task means; shrunk towards them they are better (measured in tests/predictors);
- quality_std = the standard error of that mean: ``sqrt(p (1 - p) / (k_eff + prior_weight))`` for
  0/1 scores, ``sqrt(var / (k_eff + prior_weight))`` with the neighbours' weighted variance otherwise,
  where ``k_eff = (Σw)² / Σw²`` is the effective number of neighbours;
- output tokens = the neighbours' weighted mean.

Weights are the similarities (``weighted=True``, neighbours with similarity <= 0 get none) or uniform.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from sim.predictors.base import Prediction, Predictor
from sim.predictors.embed import Embedder, make_embedder
from sim.predictors.task_mean import TaskMean
from sim.workload.queryset import QuerySet


class KNN(Predictor):
    """k-nearest-neighbour quality/length predictor over prompt embeddings (needs ``qs.prompts``)."""

    name = "knn"

    def __init__(
        self,
        rng: np.random.Generator | None = None,
        k: int = 16,
        embedding: str = "tfidf",
        weighted: bool = True,
        prior_weight: float = 16.0,
        prior: str = "task",
        chunk: int = 512,
    ) -> None:
        super().__init__()
        if k < 1 or prior_weight < 0 or chunk < 1:
            raise ValueError(f"need k >= 1 (got {k}), prior_weight >= 0 (got {prior_weight}), chunk >= 1")
        self.k, self.weighted, self.prior_weight, self.chunk = (
            int(k),
            bool(weighted),
            float(prior_weight),
            int(chunk),
        )
        if prior not in ("task", "global"):
            raise ValueError(f"prior={prior!r}: expected 'task' or 'global'")
        self.prior = prior
        self.embedder: Embedder = make_embedder(embedding)
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
        self._train = sp.csr_matrix(self.embedder.fit_transform(prompts).T)  # (d, n_train)
        self._quality = train.quality.astype(np.float64)
        self._tokens = train.output_tokens.astype(np.float64)
        self._task_mean.fit(train)
        self._binary = bool(np.isin(self._quality, (0.0, 1.0)).all())

    def predict(self, qs: QuerySet) -> Prediction:
        self._check_models(qs)
        assert self._train is not None
        queries = self.embedder.transform(_prompts(qs, "predict"))
        if self.prior == "task":
            prior = self._task_mean.predict(qs).quality
        else:
            prior = np.broadcast_to(self._quality.mean(axis=0), (qs.n, qs.m))
        quality = np.empty((qs.n, qs.m))
        std = np.empty_like(quality)
        tokens = np.empty_like(quality)
        for lo in range(0, qs.n, self.chunk):
            rows = slice(lo, min(lo + self.chunk, qs.n))
            idx, w = self._neighbours(queries[rows])
            quality[rows], std[rows], tokens[rows] = self._aggregate(idx, w, prior[rows])
        return Prediction(
            quality=np.clip(quality, 0.0, 1.0), quality_std=std, output_tokens=np.maximum(tokens, 1.0)
        )

    def _neighbours(self, queries: sp.csr_matrix) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Indices (c, k) of the k most similar training prompts and their weights."""
        assert self._train is not None
        sims = np.asarray((queries @ self._train).todense())
        k = min(self.k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        if not self.weighted:
            return idx, np.ones_like(top)
        w = np.clip(top, 0.0, None)
        no_signal = w.sum(axis=1) == 0  # e.g. an empty prompt: fall back to uniform
        w[no_signal] = 1.0
        return idx, w

    def _aggregate(
        self, idx: NDArray[np.int64], w: NDArray[np.float64], prior: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        # Rescale weights to sum to the number of neighbours, so prior_weight counts pseudo-neighbours.
        w = w * (idx.shape[1] / w.sum(axis=1, keepdims=True))
        wsum = w.sum(axis=1)[:, None]
        k_eff = (wsum**2 / (w**2).sum(axis=1, keepdims=True)) + self.prior_weight
        y = self._quality[idx]  # (c, k, m)
        mean = np.einsum("ck,ckm->cm", w, y) / wsum
        p = (mean * wsum + self.prior_weight * prior) / (wsum + self.prior_weight)
        if self._binary:
            var = p * (1.0 - p)
        else:
            var = np.einsum("ck,ckm->cm", w, (y - mean[:, None, :]) ** 2) / wsum
        tokens = np.einsum("ck,ckm->cm", w, self._tokens[idx]) / wsum
        return p, np.sqrt(np.clip(var, 0.0, None) / k_eff), tokens


def _prompts(qs: QuerySet, step: str) -> tuple[str, ...]:
    if qs.prompts is None:
        raise ValueError(
            f"KNN.{step}: this QuerySet has no prompt texts (qs.prompts is None); the kNN predictor retrieves "
            "similar prompts, so load a dataset with prompts or use the task_mean predictor"
        )
    return qs.prompts
