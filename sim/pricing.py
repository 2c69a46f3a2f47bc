"""Per-token prices and the per-query cost they imply.

A price table maps a model name to ``(USD per 1M input tokens, USD per 1M output tokens)``, the unit every
provider publishes. The cost of query i on model j is

    prompt_tokens[i] * in_j / 1e6 + output_tokens[i, j] * out_j / 1e6

Datasets that record what each call cost (RouterBench) keep that in ``QuerySet.cost_usd``; the others
(MMLU-Pro, dcrouter) are priced from tokens with a table. :func:`lookup_public_price` fills a table from
the ``genai-prices`` package (optional extra ``prices``), whose price data ships inside the package, so
the lookup works offline; open-weight models served on one's own GPUs are usually not in it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from sim.errors import DataError
from sim.workload.queryset import QuerySet

PriceTable = Mapping[str, tuple[float, float]]
"""model name → (USD per 1M input tokens, USD per 1M output tokens)."""

_PROBE_TOKENS = 1000
"""Tokens priced per probe: small enough to stay in the first tier of tiered (long-context) prices."""


def check_price_table(
    prices: Mapping[str, object], model_names: Sequence[str], file: str | Path | None
) -> None:
    """DataError unless every entry names a known model and holds two finite prices >= 0.

    A model in the table but not in the dataset is almost always a typo (``gpt4o`` for ``gpt-4o``), and
    silently ignoring it would leave the intended model unpriced, so it is an error listing the known
    names. Models of the dataset absent from the table are not checked here (see :func:`price_queries`).
    """
    known = set(model_names)
    for model, value in prices.items():
        if model not in known:
            raise DataError(
                f"unknown model {model!r} in the price table; the dataset's models are: "
                f"{', '.join(model_names) or 'none'}",
                file=file,
                where=f"prices.{model}",
            )
        pair = _as_pair(value)
        if pair is None:
            raise DataError(
                f"bad price {value!r}: expected [USD per 1M input tokens, USD per 1M output tokens], "
                "two finite numbers >= 0",
                file=file,
                where=f"prices.{model}",
            )


def _as_pair(value: object) -> tuple[float, float] | None:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        return None
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            return None
        out.append(float(v))
    return out[0], out[1]


def price_queries(qs: QuerySet, prices: PriceTable) -> NDArray[np.float64]:
    """(n, m) cost in USD of each query on each model, from token counts and ``prices``.

    Raises DataError naming the dataset models that have no price.
    """
    unpriced = [name for name in qs.model_names if name not in prices]
    if unpriced:
        raise DataError(
            f"no price for model(s) {', '.join(map(repr, unpriced))}; priced: {', '.join(prices) or 'none'}",
            where="prices",
        )
    per_in = np.array([prices[name][0] for name in qs.model_names], dtype=np.float64) / 1e6
    per_out = np.array([prices[name][1] for name in qs.model_names], dtype=np.float64) / 1e6
    return (
        qs.prompt_tokens[:, None].astype(np.float64) * per_in[None, :] + qs.output_tokens * per_out[None, :]
    )


def query_costs(qs: QuerySet, prices: PriceTable | None = None) -> NDArray[np.float64]:
    """The recorded ``qs.cost_usd`` when the dataset has it, else :func:`price_queries`."""
    if qs.cost_usd is not None:
        return qs.cost_usd
    if prices is None:
        raise DataError("the dataset records no costs, so a price table is needed", where="prices")
    return price_queries(qs, prices)


def lookup_public_price(model_name: str, provider_id: str | None = None) -> tuple[float, float] | None:
    """(USD per 1M input, per 1M output) from ``genai-prices``, or None (see :func:`public_price_reason`)."""
    return _lookup(model_name, provider_id)[0]


def public_price_reason(model_name: str, provider_id: str | None = None) -> str:
    """Why :func:`lookup_public_price` found (or did not find) a price, for logs and error messages."""
    return _lookup(model_name, provider_id)[1]


def _candidates(model_name: str) -> list[str]:
    """The name, then light normalisations (``Meta-Llama-3_1-70B`` → ``meta-llama-3.1-70b``, no ``-hf``)."""
    base = model_name.strip()
    lowered = base.lower()
    dotted = re.sub(r"(\d)_(\d)", r"\1.\2", lowered)
    stripped = re.sub(r"-hf$", "", dotted)
    return list(dict.fromkeys([base, lowered, dotted, stripped]))


def _attempts(model_name: str, provider_id: str | None) -> list[tuple[str | None, str]]:
    """(provider, model ref) pairs to try; ``org/model`` names are also tried as ``model`` alone."""
    attempts = [(provider_id, ref) for ref in _candidates(model_name)]
    if "/" in model_name:
        prefix, rest = model_name.split("/", 1)
        attempts += [(provider_id, ref) for ref in _candidates(rest)]
        if provider_id is None:
            attempts += [(prefix, ref) for ref in _candidates(rest)]
    return list(dict.fromkeys(attempts))


def _lookup(model_name: str, provider_id: str | None) -> tuple[tuple[float, float] | None, str]:
    try:
        import genai_prices
    except ImportError:
        return None, "the genai-prices package is not installed (pip install 'llmsim[prices]')"
    first_error = ""
    for provider, ref in _attempts(model_name, provider_id):
        try:
            per_in = genai_prices.calc_price(
                genai_prices.Usage(input_tokens=_PROBE_TOKENS, output_tokens=0), ref, provider_id=provider
            )
            per_out = genai_prices.calc_price(
                genai_prices.Usage(input_tokens=0, output_tokens=_PROBE_TOKENS), ref, provider_id=provider
            )
        except LookupError as exc:
            first_error = first_error or str(exc)
            continue
        except Exception as exc:  # the package's own data errors must not break a simulation
            return None, f"genai-prices failed on {ref!r}: {type(exc).__name__}: {exc}"
        scale = 1e6 / _PROBE_TOKENS
        found = (float(per_in.total_price) * scale, float(per_out.total_price) * scale)
        return found, f"genai-prices: {per_in.provider.id}/{per_in.model.id} (looked up as {ref!r})"
    return None, f"genai-prices has no price for {model_name!r}: {first_error}"
