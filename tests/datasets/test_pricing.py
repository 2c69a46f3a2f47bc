"""Price tables, per-query costs and the optional genai-prices lookup."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from sim.errors import DataError
from sim.pricing import (
    check_price_table,
    lookup_public_price,
    price_queries,
    public_price_reason,
    query_costs,
)
from sim.workload.queryset import QuerySet


def _qs(cost=None):
    return QuerySet(
        model_names=("big", "small"),
        task_names=("t",),
        task=np.zeros(2, dtype=np.int64),
        prompt_tokens=np.array([1000, 2000]),
        quality=np.zeros((2, 2)),
        output_tokens=np.array([[100, 300], [200, 400]]),
        query_ids=np.arange(2),
        cost_usd=cost,
    )


def test_price_queries():
    cost = price_queries(_qs(), {"big": (10.0, 30.0), "small": (0.5, 1.0)})
    np.testing.assert_allclose(cost[0], [1000 * 10e-6 + 100 * 30e-6, 1000 * 0.5e-6 + 300 * 1e-6])
    np.testing.assert_allclose(cost[1, 0], 2000 * 10e-6 + 200 * 30e-6)
    with pytest.raises(DataError, match="no price for model.*'small'"):
        price_queries(_qs(), {"big": (1.0, 1.0)})


def test_query_costs_prefers_recorded_costs():
    recorded = np.full((2, 2), 0.5)
    assert query_costs(_qs(recorded)) is recorded
    assert query_costs(_qs(), {"big": (0, 0), "small": (0, 0)}).sum() == 0
    with pytest.raises(DataError, match="price table is needed"):
        query_costs(_qs())


def test_unknown_model_in_price_table():
    with pytest.raises(DataError) as err:
        check_price_table({"big": (1, 2), "gpt4o": (2.5, 10)}, ["big", "small"], "prices.yaml")
    msg = str(err.value)
    assert "prices.yaml" in msg and "'gpt4o'" in msg and "big, small" in msg


@pytest.mark.parametrize("value", [(1.0,), (1.0, -2.0), ("a", 1.0), "12", (float("nan"), 1.0), (True, 1.0)])
def test_bad_price_values(value):
    with pytest.raises(DataError, match=r"prices.yaml: prices.big: bad price"):
        check_price_table({"big": value}, ["big"], "prices.yaml")


def test_public_price_lookup_offline():
    pytest.importorskip("genai_prices", reason="optional extra 'prices' not installed")
    price = lookup_public_price("gpt-4o")
    assert price is not None and price[0] > 0 and price[1] > price[0]
    assert lookup_public_price("openai/gpt-4o") == price
    assert lookup_public_price("surely-not-a-model-xyz") is None
    assert "no price" in public_price_reason("surely-not-a-model-xyz")


def test_public_price_without_package(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "genai_prices":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    assert lookup_public_price("gpt-4o") is None
    assert "not installed" in public_price_reason("gpt-4o")
