"""Fill the router's view of each query: predicted quality, its uncertainty, and predicted cost.

Predictions depend only on the queries (not on the cluster's state), so they are made once, vectorised,
before the simulation starts; the dispatcher then slices rows per batch. The predictor's own accuracy
(Brier score, AUC) against realised quality goes into the run summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sim import rng as rngs
from sim.config.schema import Scenario
from sim.errors import ScenarioError
from sim.workload.build import Workload, price


@dataclass(frozen=True)
class Predictions:
    quality: np.ndarray  # (N, m)
    quality_std: np.ndarray  # (N, m)
    output_tokens: np.ndarray  # (N, m) predicted
    cost: np.ndarray  # (N, m) predicted USD
    scores: dict[str, Any]


def build_predictions(sc: Scenario, wl: Workload) -> Predictions:
    from sim.predictors import make_predictor
    from sim.predictors.evaluate import predictor_scores

    spec = sc.router.predictor
    try:
        predictor = make_predictor(spec.name, rngs.stream(sc.seed, "predictor"), **spec.params)
    except (ValueError, TypeError) as exc:
        raise ScenarioError(str(exc), where="router.predictor") from None
    try:
        predictor.fit(wl.train if wl.train is not None else wl.queries)
        pred = predictor.predict(wl.queries)
    except ValueError as exc:
        raise ScenarioError(f"predictor {spec.name!r}: {exc}", where="router.predictor") from None
    out_tokens = pred.output_tokens
    if wl.token_source == "trace":
        # The trace fixes the served lengths; the predictor's length estimate still drives predicted
        # cost, rescaled so its mean matches the trace's (the router knows the traffic's average length).
        scale = wl.output_tokens.mean() / max(out_tokens.mean(), 1e-12)
        out_tokens = out_tokens * scale
    price_in = np.array([m.price_in_per_mtok for m in sc.models])
    price_out = np.array([m.price_out_per_mtok for m in sc.models])
    cost = price(wl.prompt_tokens, out_tokens, price_in, price_out)
    return Predictions(
        quality=pred.quality,
        quality_std=pred.quality_std,
        output_tokens=out_tokens,
        cost=cost,
        scores=predictor_scores(pred, wl.queries),
    )
