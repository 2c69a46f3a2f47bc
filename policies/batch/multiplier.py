"""The multiplier ν of the side row (budget or quality floor), searched in one dimension.

Relaxing the side row gives ``L(ν) = max_x Σ (score − ν·row) x`` over capacity-feasible x; for any
ν ≥ 0, ``L(ν) + ν·rhs`` bounds the optimum from above, and the argmax ``x(ν)`` uses less of the row
as ν grows. The search is projected subgradient descent on that bound in its one-dimensional form:
the subgradient is the row violation ``row·x(ν) − rhs``; the step doubles while its sign persists
(to find a bracket) and halves when it flips (oscillation), which is bisection, accelerated by
regula falsi (Illinois) on the violation once a bracket exists. With a single side row the LP
optimum mixes ``x(ν*−)`` and ``x(ν*+)``, which differ in about one query, so the feasible end of the
final bracket is within about one query of optimal (``routing.md``). The inner solver is pluggable:
the auction for ``lagrangian``, network simplex for ``min_cost_flow``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from policies.batch.linear_form import LinearForm
from policies.batch.transport import Transport
from policies.problem import FloatArray, IntArray

Inner = Callable[[FloatArray], Transport]

NU_MAX = 1e12  # beyond this the score no longer matters next to the row
NU_MIN = 1e-7  # below this, try ν = 0 itself
# Stop refining after this many evaluations in a row that reproduce an end of the bracket: the
# bracket then most likely holds a single breakpoint of x(ν), and refining cannot find new points.
STALE_LIMIT = 3


@dataclass
class Point:
    nu: float
    cols: IntArray
    value: float  # Σ score
    violation: float  # row·x − rhs
    bound: float  # L(ν) + ν·rhs (upper bound on the optimum of Σ score)


@dataclass
class Search:
    best: Point | None  # best feasible point found (None: none found)
    lo: Point | None  # last infeasible point (smaller ν)
    hi: Point | None  # last feasible point (larger ν)
    bound: float  # best upper bound on max Σ score
    evaluations: int
    history: list[tuple[float, float]] = field(default_factory=list)  # (ν, violation)


def _evaluate(form: LinearForm, inner: Inner, nu: float) -> Point:
    assert form.row is not None and form.rhs is not None
    w = form.score - nu * form.row if nu > 0 else form.score
    t = inner(w)
    return Point(nu, t.cols, form.value(t.cols), form.side(t.cols) - form.rhs, t.bound + nu * form.rhs)


def search(form: LinearForm, inner: Inner, *, max_evals: int = 60, nu0: float = 1.0,
           bracket: tuple[float, float] | None = None, rtol: float = 1e-5) -> Search:
    """Find the smallest ν whose argmax satisfies the side row (see the module docstring).

    ``bracket`` = (ν_lo, ν_hi) found by a cheaper inner solver is tried first, so an expensive inner
    solver (network simplex) needs only a few evaluations. Stops when the bracket's two assignments
    differ in at most one query, when the best feasible point is certified within ``rtol`` of the
    bound, when ``STALE_LIMIT`` evaluations in a row found nothing new, when the bracket is
    numerically closed, or after ``max_evals``.
    """
    history: list[tuple[float, float]] = []
    best: Point | None = None
    bound = np.inf
    evals = 0

    def ev(nu: float) -> Point:
        nonlocal best, bound, evals
        p = _evaluate(form, inner, nu)
        evals += 1
        history.append((nu, p.violation))
        bound = min(bound, p.bound)
        if p.violation <= form.row_tol and (best is None or p.value > best.value):
            best = p
        return p

    def ok(p: Point) -> bool:
        return p.violation <= form.row_tol

    lo: Point | None = None
    hi: Point | None = None
    if bracket is not None and bracket[1] > 0:
        first, second = bracket[1], max(bracket[0], 0.0)
    else:
        first, second = nu0, None
    p = ev(first)
    if ok(p):
        hi = p
        if second is not None:
            q = ev(second)
            if ok(q):
                hi = q
            else:
                lo = q
        if lo is None:  # does the row hold without pricing it at all?
            q = ev(0.0)
            if ok(q):
                return Search(q, None, q, bound, evals, history)
            lo = q
        # Going down: quarter ν until infeasible (ν = 0 is the infeasible end meanwhile).
        while lo.nu == 0.0 and hi.nu / 4.0 >= NU_MIN and evals < max_evals:
            q = ev(hi.nu / 4.0)
            if ok(q):
                hi = q
            else:
                lo = q
    else:
        lo = p
        # Going up: the step on ν grows (×4) while the violation keeps its sign.
        nu = lo.nu * 4.0
        while evals < max_evals:
            q = ev(nu)
            if ok(q):
                hi = q
                break
            lo = q
            if nu >= NU_MAX:
                break
            nu = min(nu * 4.0, NU_MAX)
        if hi is None:
            return Search(best, lo, None, bound, evals, history)

    # Refine: Illinois regula falsi on the violation, safeguarded by (geometric) bisection.
    side_lo, side_hi = 0, 0  # how often each end was kept in a row (Illinois halving)
    stale = 0  # evaluations in a row that only reproduced an end of the bracket
    while evals < max_evals and stale < STALE_LIMIT:
        if int(np.count_nonzero(lo.cols != hi.cols)) <= 1:
            break
        if best is not None and bound - best.value <= rtol * max(1.0, abs(bound)):
            break
        width = hi.nu - lo.nu
        if width <= 1e-7 * hi.nu:
            break
        g_lo = lo.violation * 0.5 ** max(side_lo - 1, 0)
        g_hi = hi.violation * 0.5 ** max(side_hi - 1, 0)
        if lo.nu > 0 and hi.nu / lo.nu > 16:
            nu = float(np.sqrt(lo.nu * hi.nu))
        else:
            denom = g_lo - g_hi
            nu = lo.nu + width * (g_lo / denom) if denom > 0 else lo.nu + 0.5 * width
            nu = min(max(nu, lo.nu + 1e-3 * width), hi.nu - 1e-3 * width)
        p = ev(nu)
        if ok(p):
            stale = stale + 1 if np.array_equal(p.cols, hi.cols) else 0
            hi = p
            side_lo, side_hi = side_lo + 1, 0
        else:
            stale = stale + 1 if np.array_equal(p.cols, lo.cols) else 0
            lo = p
            side_lo, side_hi = 0, side_hi + 1
    return Search(best, lo, hi, bound, evals, history)
