"""Fill the router's view of each query: predicted quality, its uncertainty, and predicted cost.

Predictions depend only on the queries (not on the cluster's state), so they are made once, vectorised,
before the simulation starts; the dispatcher then slices rows per batch. The predictor's own accuracy
(Brier score, AUC) against realised quality goes into the run summary.

Predicted cost. Without recorded costs it is the models' per-token prices × (prompt tokens + predicted
output tokens). When the dataset records what each call cost (RouterBench's ``<model>|total_cost``) and
the served tokens are the dataset's own, the realised cost is the recorded one, and the router predicts
it from the training split instead of from prices (7 of RouterBench's 11 models have no public price):

- ``noisy_oracle`` knows each query's outcome by construction, so it predicts the recorded cost itself;
- every other predictor: per model, per-token rates (input a_j, output b_j, USD per token, >= 0) are
  fitted to the training split's recorded costs by non-negative least squares, cost ≈ a_j · prompt +
  b_j · output; predicted cost = a_j · prompt tokens + b_j · the predictor's output-token estimate (kNN:
  its neighbours' lengths, task_mean: the task's mean length). This is what the provider billed, read
  back from the data, so it also holds for models no price list knows.

Warnings (valid but suspicious): configured prices that disagree with the recorded costs by more than
:data:`PRICE_DISAGREEMENT` on the training split (they are not used for routing then), and a model
whose predicted cost is zero on every query while its realised cost is not (e.g. prices set to 0 as a
stop-gap: budgets would be enforced on nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sim import rng as rngs
from sim.config.schema import Scenario
from sim.errors import DataError, ScenarioError, warn_input
from sim.workload.build import Workload, price
from sim.workload.queryset import QuerySet


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
        if wl.train is not None and wl.train.n == 0:  # the data's fault, not the predictor's: say so
            pool = sc.workload.pool
            paths = ", ".join(map(str, getattr(pool, "paths", ()))) or None
            raise DataError(f"no training queries are left for predictor {spec.name!r}: every prompt of the "
                            "training part repeats one of the test part (the dataset is de-duplicated by "
                            "prompt); use a dataset with more distinct prompts or the noisy_oracle predictor",
                            file=paths, where="workload.pool") from None
        raise ScenarioError(f"predictor {spec.name!r}: {exc}", where="router.predictor") from None
    out_tokens = pred.output_tokens
    if wl.token_source == "trace":
        out_tokens = np.asarray(out_tokens, dtype=np.float64)  # a float mean (counts may be integers)
        # The trace fixes the served lengths; the predictor's length estimate still drives predicted
        # cost, rescaled so its mean matches the trace's (the router knows the traffic's average length).
        scale = wl.output_tokens.mean() / max(out_tokens.mean(), 1e-12)
        out_tokens = out_tokens * scale
    if wl.token_source == "pool" and wl.queries.cost_usd is not None:
        cost = recorded_cost_prediction(sc, wl, out_tokens)
    else:
        # without token noise the predicted cost is often the realised one, value for value: then it
        # is a read-only view of it, not a second (N, m) array (32 MB a million queries of four models)
        cost = priced(wl.prompt_tokens, out_tokens, *_prices(sc), same_as=wl.cost)
    _freeze_if_shared(cost, (wl.cost, wl.queries.cost_usd))
    _warn_zero_predicted(sc, cost, wl.cost)
    return Predictions(
        quality=pred.quality,
        quality_std=pred.quality_std,
        output_tokens=out_tokens,
        cost=cost,
        scores=predictor_scores(pred, wl.queries),
    )


def _freeze_if_shared(cost: np.ndarray, held: tuple[np.ndarray | None, ...]) -> None:
    """Make the predicted cost and every workload array it shares a buffer with read-only. One buffer
    behind both (the realised cost when :func:`priced` found them equal, a dataset's recorded costs
    predicted as they are): a write into one (a caller rescaling prices on a Prepared) would silently
    change what the router predicts, which two arrays never did; read-only, such a write fails."""
    for arr in held:
        if arr is not None and np.shares_memory(cost, arr):
            cost.flags.writeable = False
            arr.flags.writeable = False


ROWS_AT_ONCE = 1 << 14
"""Queries priced at once by :func:`priced`."""


def priced(prompt: np.ndarray, output: np.ndarray, price_in: np.ndarray, price_out: np.ndarray, *,
           same_as: np.ndarray | None = None) -> np.ndarray:
    """:func:`~sim.workload.build.price` of every query, a slice of rows at a time into the result: the
    formula is elementwise, so the floats are the same, without its three (N, m) temporaries (~100 MB
    at a million queries of four models).

    ``same_as``: an array the result may equal (the realised cost, when the predicted output tokens are
    the served ones and so are the prices). While every slice equals its rows of ``same_as`` bit for bit
    nothing is stored; if all do, a read-only view of ``same_as`` is returned instead of a copy."""
    shared = same_as is not None and same_as.shape == output.shape and same_as.dtype == np.float64
    out = None if shared else np.empty(output.shape, dtype=np.float64)
    for r in range(0, output.shape[0], ROWS_AT_ONCE):
        part = price(prompt[r : r + ROWS_AT_ONCE], output[r : r + ROWS_AT_ONCE], price_in, price_out)
        if out is None:  # every slice so far equals same_as
            assert same_as is not None
            if _identical(part, same_as[r : r + ROWS_AT_ONCE]):
                continue
            out = np.empty(output.shape, dtype=np.float64)
            out[:r] = same_as[:r]
        out[r : r + ROWS_AT_ONCE] = part
    if out is None:
        assert same_as is not None
        view = same_as.view()
        view.flags.writeable = False
        return view
    return out


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equal float arrays (NaN equals NaN with the same bits; -0.0 differs from 0.0)."""
    return a.shape == b.shape and bool(np.array_equal(a.view(np.int64), np.ascontiguousarray(b).view(np.int64)))


PRICE_DISAGREEMENT = 0.2
"""Relative gap between priced and recorded training cost beyond which a warning is printed."""


def _prices(sc: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Per-model (input, output) USD per 1M tokens; an unset price (recorded costs only) counts as NaN."""
    pin = [np.nan if m.price_in_per_mtok is None else m.price_in_per_mtok for m in sc.models]
    pout = [np.nan if m.price_out_per_mtok is None else m.price_out_per_mtok for m in sc.models]
    return np.array(pin, dtype=np.float64), np.array(pout, dtype=np.float64)


def fit_token_rates(train: QuerySet) -> np.ndarray:
    """(m, 2) non-negative USD per (input, output) token fitted to ``train.cost_usd`` per model (NNLS)."""
    from scipy.optimize import nnls

    assert train.cost_usd is not None
    rates = np.zeros((train.m, 2))
    prompt = train.prompt_tokens.astype(np.float64)
    for j in range(train.m):
        design = np.column_stack([prompt, train.output_tokens[:, j].astype(np.float64)])
        if len(design):
            rates[j] = nnls(design, train.cost_usd[:, j])[0]
    return rates


def recorded_cost_prediction(sc: Scenario, wl: Workload, out_tokens: np.ndarray) -> np.ndarray:
    """(N, m) predicted cost when the dataset records costs (rules in the module docstring)."""
    assert wl.queries.cost_usd is not None
    train = wl.train if wl.train is not None and wl.train.cost_usd is not None and wl.train.n else None
    _warn_price_disagreement(sc, train if train is not None else wl.queries)
    if sc.router.predictor.name == "noisy_oracle" or train is None:
        return np.asarray(wl.queries.cost_usd, dtype=np.float64)  # (read-only in build_predictions)
    rates = fit_token_rates(train)
    return wl.prompt_tokens[:, None] * rates[None, :, 0] + out_tokens * rates[None, :, 1]


def _warn_price_disagreement(sc: Scenario, data: QuerySet) -> None:
    """Warn per model whose configured prices price ``data`` > 20 % off what it recorded."""
    assert data.cost_usd is not None
    pin, pout = _prices(sc)
    priced = price(data.prompt_tokens, data.output_tokens, pin, pout).sum(axis=0)
    recorded = data.cost_usd.sum(axis=0)
    for j, m in enumerate(sc.models):
        if not np.isfinite(priced[j]) or recorded[j] <= 0:
            continue
        gap = priced[j] / recorded[j] - 1.0
        if abs(gap) > PRICE_DISAGREEMENT:
            warn_input(
                f"the prices of model {m.name!r} give {priced[j]:.4g} USD where the dataset recorded "
                f"{recorded[j]:.4g} USD ({gap:+.0%}); routing predicts from the recorded costs",
                where=f"models[{j}]",
            )


def _warn_zero_predicted(sc: Scenario, predicted: np.ndarray, realised: np.ndarray) -> None:
    for j, m in enumerate(sc.models):
        if predicted.shape[0] and not predicted[:, j].any() and realised[:, j].any():
            warn_input(
                f"model {m.name!r}: predicted cost is 0 on every query but the realised cost is "
                f"{realised[:, j].sum():.4g} USD: budgets are enforced on predicted cost, so they will be "
                "overrun (are its prices 0?)",
                where=f"models[{j}]",
            )
