"""The routing problem of one batch, as plain numpy arrays.

A :class:`RoutingProblem` is everything a policy may look at. It is deliberately free of simulator
types so that ``policies`` works as a library on its own (see ``../shared/docs/routing.md``).

Two forms, chosen by which fields are set:

* **max-quality** (``budget`` set, ``min_quality`` unset): maximise Σ quality s.t. cost ≤ budget;
* **min-cost** (``min_quality`` set): minimise Σ cost s.t. mean quality ≥ α.

With neither set the problem is *unconstrained* except for capacity (max-quality without a budget row).
Both rows may be set at once; solvers that cannot handle both say so.

**Latency SLO** (optional; issue 12): ``latency`` (n, m) is the predicted latency in seconds of query i on
model j (the metric the router is configured to route on: TTFT or end to end) and ``slo`` its target.
``slo_mode="constraint"`` makes a pair predicted over the SLO infeasible, like a pair that is not
allowed (:func:`policies.check_assignment` reports every chosen one); ``slo_mode="penalty"`` keeps it
allowed but charges ``slo_penalty · (latency − slo)+`` in the objective's own units (each policy
documents its scaling). With ``latency`` or ``slo`` unset the problem is exactly the SLO-free one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from numpy.typing import NDArray

from policies.errors import InvalidProblemError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

REJECT = -1
"""Assignment value of a query that is not routed to any model."""

SLO_TOL = 1e-9
"""Seconds of slack when comparing a predicted latency with the SLO (float noise is not a miss)."""

SLO_MODES = ("constraint", "penalty")


class ProblemForm(str, Enum):
    MAX_QUALITY = "max_quality"
    MIN_COST = "min_cost"


@dataclass(frozen=True, eq=False)
class RoutingProblem:
    """One batch: ``n`` queries × ``m`` models.

    Attributes:
        quality: (n, m) predicted quality in [0, 1] of model j on query i.
        cost: (n, m) predicted cost in USD (>= 0).
        capacity: (m,) how many queries model j may take in this batch; ``np.inf`` = unlimited.
        budget: total cost cap of the batch (USD) or ``None``.
        min_quality: floor α on the batch's mean quality, or ``None``.
        quality_std: (n, m) uncertainty of ``quality`` or ``None`` (used by robust policies).
        allow_reject: whether a query may be left unassigned (quality 0, cost 0).
        true_quality: (n, m) realised quality, only for the ``oracle`` policy (an upper bound in reports).
        load: (m,) work already in flight per model (used by ``least_loaded``); zeros when unknown.
        model_names: optional names for messages.
        latency: (n, m) predicted latency (s) of query i on model j, finite and >= 0, or ``None``.
        slo: the latency target (s, > 0) the pairs are judged against, or ``None`` (no SLO).
        slo_mode: ``"constraint"`` (a pair over the SLO is infeasible) or ``"penalty"``.
        slo_penalty: μ >= 0, the price per second over the SLO in penalty mode, in objective units.
    """

    quality: FloatArray
    cost: FloatArray
    capacity: FloatArray | None = None
    budget: float | None = None
    min_quality: float | None = None
    quality_std: FloatArray | None = None
    allow_reject: bool = False
    true_quality: FloatArray | None = None
    load: FloatArray | None = None
    model_names: tuple[str, ...] | None = None
    latency: FloatArray | None = None
    slo: float | None = None
    slo_mode: str = "constraint"
    slo_penalty: float = 0.0
    validate: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        q = np.asarray(self.quality, dtype=np.float64)
        c = np.asarray(self.cost, dtype=np.float64)
        object.__setattr__(self, "quality", q)
        object.__setattr__(self, "cost", c)
        m = q.shape[1] if q.ndim == 2 else 0
        cap = np.full(m, np.inf) if self.capacity is None else np.asarray(self.capacity, dtype=np.float64)
        object.__setattr__(self, "capacity", cap)
        for name in ("quality_std", "true_quality", "load", "latency"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, np.asarray(v, dtype=np.float64))
        if self.validate:
            self._check()

    # ------------------------------------------------------------------ validation
    def _check(self) -> None:
        q, c = self.quality, self.cost
        if q.ndim != 2:
            raise InvalidProblemError(f"quality must be a 2-D (n, m) array, got shape {q.shape}")
        n, m = q.shape
        if m == 0:
            raise InvalidProblemError("the problem has no models (m = 0)")
        if c.shape != q.shape:
            raise InvalidProblemError(f"cost has shape {c.shape}, expected {q.shape} like quality")
        if not np.all(np.isfinite(q)) or np.any(q < 0) or np.any(q > 1):
            raise InvalidProblemError("quality must be finite and within [0, 1]")
        if not np.all(np.isfinite(c)) or np.any(c < 0):
            raise InvalidProblemError("cost must be finite and >= 0")
        cap = self.capacity
        assert cap is not None
        if cap.shape != (m,):
            raise InvalidProblemError(f"capacity has shape {cap.shape}, expected ({m},)")
        if np.any(np.isnan(cap)) or np.any(cap < 0):
            raise InvalidProblemError("capacity must be >= 0 (np.inf for unlimited)")
        if self.budget is not None and (not np.isfinite(self.budget) or self.budget < 0):
            raise InvalidProblemError(f"budget must be a finite number >= 0, got {self.budget}")
        if self.min_quality is not None and not (0.0 <= self.min_quality <= 1.0):
            raise InvalidProblemError(f"min_quality must be within [0, 1], got {self.min_quality}")
        for name in ("quality_std", "true_quality"):
            v = getattr(self, name)
            if v is not None and v.shape != q.shape:
                raise InvalidProblemError(f"{name} has shape {v.shape}, expected {q.shape}")
        if self.true_quality is not None and (
            not np.all(np.isfinite(self.true_quality))
            or np.any(self.true_quality < 0)
            or np.any(self.true_quality > 1)
        ):
            raise InvalidProblemError("true_quality must be finite and within [0, 1]")
        if self.quality_std is not None and (
            not np.all(np.isfinite(self.quality_std)) or np.any(self.quality_std < 0)
        ):
            raise InvalidProblemError("quality_std must be finite and >= 0")
        if self.load is not None and self.load.shape != (m,):
            raise InvalidProblemError(f"load has shape {self.load.shape}, expected ({m},)")
        if self.model_names is not None and len(self.model_names) != m:
            raise InvalidProblemError(f"model_names has {len(self.model_names)} names for {m} models")
        self._check_slo()

    def _check_slo(self) -> None:
        """The four SLO fields: shapes, finite non-negative latency, positive SLO, a known mode, μ >= 0."""
        lat = self.latency
        if lat is not None:
            if lat.shape != self.quality.shape:
                raise InvalidProblemError(f"latency has shape {lat.shape}, expected {self.quality.shape}")
            if not np.all(np.isfinite(lat)) or np.any(lat < 0):
                raise InvalidProblemError("latency must be finite and >= 0 (seconds)")
        if self.slo is not None:
            if isinstance(self.slo, bool) or not isinstance(self.slo, int | float | np.floating | np.integer):
                raise InvalidProblemError(f"slo must be a number of seconds, got {self.slo!r}")
            if not np.isfinite(self.slo) or self.slo <= 0:
                raise InvalidProblemError(f"slo must be a finite number of seconds > 0, got {self.slo}")
        if self.slo_mode not in SLO_MODES:
            raise InvalidProblemError(f"slo_mode must be one of {SLO_MODES}, got {self.slo_mode!r}")
        mu = self.slo_penalty
        if isinstance(mu, bool) or not isinstance(mu, int | float | np.floating | np.integer):
            raise InvalidProblemError(f"slo_penalty must be a number, got {mu!r}")
        if not np.isfinite(mu) or mu < 0:
            raise InvalidProblemError(f"slo_penalty must be a finite number >= 0, got {mu}")

    # ------------------------------------------------------------------ helpers
    @property
    def n(self) -> int:
        return int(self.quality.shape[0])

    @property
    def m(self) -> int:
        return int(self.quality.shape[1])

    @property
    def form(self) -> ProblemForm:
        """``MIN_COST`` when a quality floor is set, otherwise ``MAX_QUALITY``."""
        return ProblemForm.MIN_COST if self.min_quality is not None else ProblemForm.MAX_QUALITY

    def int_capacity(self) -> IntArray:
        """Capacity as integers, with ``inf`` replaced by ``n`` (no model can take more than n)."""
        cap = self.capacity
        assert cap is not None
        return np.minimum(np.floor(np.where(np.isinf(cap), self.n, cap)), self.n).astype(np.int64)

    @property
    def has_slo(self) -> bool:
        """True when both ``latency`` and ``slo`` are set (otherwise the SLO fields change nothing)."""
        return self.latency is not None and self.slo is not None

    def slo_excess(self) -> FloatArray | None:
        """(n, m) seconds over the SLO, ``(latency − slo)+``; ``None`` without an SLO."""
        if self.latency is None or self.slo is None:
            return None
        return np.maximum(self.latency - float(self.slo), 0.0)

    def slo_forbidden(self) -> np.ndarray | None:
        """(n, m) mask of the pairs predicted to miss the SLO (beyond ``SLO_TOL``) in constraint mode.

        ``None`` in penalty mode or without an SLO, so callers can skip all SLO work in the common case.
        """
        if self.slo_mode != "constraint" or self.latency is None or self.slo is None:
            return None
        return np.asarray(self.latency > float(self.slo) + SLO_TOL)

    def slo_penalty_matrix(self) -> FloatArray | None:
        """(n, m) ``μ · (latency − slo)+`` in penalty mode; ``None`` when it is zero everywhere.

        Returning ``None`` for μ = 0 (or no pair over the SLO) is what makes penalty mode with μ = 0
        reproduce the SLO-free answer bit for bit: the policies then do not touch their scores at all.
        """
        if self.slo_mode != "penalty" or self.slo_penalty == 0:
            return None
        excess = self.slo_excess()
        if excess is None or not np.any(excess > 0):
            return None
        return float(self.slo_penalty) * excess

    def model_label(self, j: int) -> str:
        return self.model_names[j] if self.model_names is not None else f"model {j}"
