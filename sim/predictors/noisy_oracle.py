"""The noisy oracle: true quality plus Gaussian noise of a known size.

It isolates the effect of prediction error on routing: with ``noise=0`` routers see the truth, and
raising ``noise`` traces how fast a policy degrades (the robust-routing paper's +1–14 % grows with
noise). Because the noise level is known, ``quality_std = noise`` is exactly calibrated before clipping.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sim.predictors.base import Prediction, Predictor, true_quality
from sim.workload.queryset import QuerySet


class NoisyOracleParams(BaseModel):
    """Scenario parameters of ``noisy_oracle`` (strict types, finite numbers, checked at load time)."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)
    noise: Annotated[float, Field(ge=0, le=10)] = Field(
        0.1, description="Standard deviation of the Gaussian noise on quality (quality is in [0, 1])."
    )
    token_noise: Annotated[float, Field(ge=0, le=10)] = Field(
        0.0, description="Lognormal sigma of the noise factor on output tokens."
    )


class NoisyOracle(Predictor):
    """``clip(true + N(0, noise), 0, 1)``; output tokens are the true ones times ``exp(N(0, token_noise))``.

    Noise is drawn from ``rng`` at each :meth:`predict` call (a second call on the same queries draws
    fresh noise; reuse the Prediction to keep it fixed).
    """

    name = "noisy_oracle"
    Params: ClassVar[type[BaseModel]] = NoisyOracleParams

    def __init__(self, rng: np.random.Generator, noise: float = 0.1, token_noise: float = 0.0) -> None:
        super().__init__()
        if noise < 0 or token_noise < 0:
            raise ValueError(f"noise ({noise}) and token_noise ({token_noise}) must be >= 0")
        self.rng = rng
        self.noise = float(noise)
        self.token_noise = float(token_noise)

    def fit(self, train: QuerySet) -> None:
        """Nothing to learn: the oracle reads the truth of the queries it predicts for."""

    def predict(self, qs: QuerySet) -> Prediction:
        """Drawn :data:`PAIRS_AT_ONCE` (query, model) pairs at a time into the result arrays (whole
        (n, m) temporaries were several times the result at a million queries); the generator yields
        the same normals in pieces as at once, quality's for every row before the tokens', so results
        are unchanged."""
        truth = true_quality(qs)
        n = truth.shape[0]
        step = max(1, PAIRS_AT_ONCE // max(truth.shape[1], 1))
        quality = np.empty(truth.shape, dtype=np.result_type(truth.dtype, np.float64))
        for r in range(0, n, step):
            part = truth[r : r + step]
            np.clip(part + self.rng.normal(0.0, self.noise, size=part.shape), 0.0, 1.0, out=quality[r : r + step])
        tokens = _exact_counts(qs.output_tokens) if self.token_noise == 0 else None
        if tokens is None:
            tokens = self._tokens(qs, step)
        return Prediction(
            quality=quality,
            # one value for every pair: a read-only broadcast view, not an (N, m) array
            quality_std=np.broadcast_to(np.float64(self.noise), truth.shape),
            output_tokens=tokens,
        )

    def _tokens(self, qs: QuerySet, step: int) -> np.ndarray:
        """``max(true tokens × exp(N(0, token_noise)), 1)`` as floats, ``step`` rows at a time."""
        n = qs.output_tokens.shape[0]
        tokens = np.empty(qs.output_tokens.shape)
        for r in range(0, n, step):
            part = qs.output_tokens[r : r + step].astype(np.float64)
            if self.token_noise > 0:
                part = part * np.exp(self.rng.normal(0.0, self.token_noise, size=part.shape))
            np.maximum(part, 1.0, out=tokens[r : r + step])
        return tokens


def _exact_counts(counts: np.ndarray) -> np.ndarray | None:
    """Without token noise the prediction is the true counts, at least 1: when they are integers >= 1
    already, a read-only view of them (the values of the float formula; an (N, m) float64 copy is
    32 MB a million queries of four models), else None. Consumers widen to float where they compute
    (the latency estimator, prices); a mean takes them as floats first (:mod:`sim.predict`)."""
    if counts.size == 0 or counts.dtype.kind not in "iu" or counts.min() < 1:
        return None
    view = counts.view()
    view.flags.writeable = False
    return view


PAIRS_AT_ONCE = 1 << 16
"""Pairs (rows × models) drawn at once by :meth:`NoisyOracle.predict`."""
