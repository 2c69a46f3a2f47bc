"""The routing problem of one batch, as plain numpy arrays.

A :class:`RoutingProblem` is everything a policy may look at. It is deliberately free of simulator
types so that ``policies`` works as a library on its own (see ``../shared/docs/routing.md``).

Two forms, chosen by which fields are set:

* **max-quality** (``budget`` set, ``min_quality`` unset): maximise Σ quality s.t. cost ≤ budget;
* **min-cost** (``min_quality`` set): minimise Σ cost s.t. mean quality ≥ α.

With neither set the problem is *unconstrained* except for capacity (max-quality without a budget row).
Both rows may be set at once; solvers that cannot handle both say so.
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
    validate: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        q = np.asarray(self.quality, dtype=np.float64)
        c = np.asarray(self.cost, dtype=np.float64)
        object.__setattr__(self, "quality", q)
        object.__setattr__(self, "cost", c)
        m = q.shape[1] if q.ndim == 2 else 0
        cap = np.full(m, np.inf) if self.capacity is None else np.asarray(self.capacity, dtype=np.float64)
        object.__setattr__(self, "capacity", cap)
        for name in ("quality_std", "true_quality", "load"):
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
        _ = n

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

    def model_label(self, j: int) -> str:
        return self.model_names[j] if self.model_names is not None else f"model {j}"
