"""Sparse MILP models of batch routing, solved by HiGHS through :func:`scipy.optimize.milp`.

One builder serves ``milp``, the exact capacity-only assignment used for certificates and best-effort
answers, the Bertsimas–Sim robust model and the oracle, so the formulation lives in one place:
x_ij ∈ {0, 1} flattened row-major (index ``i * k + j``), one equality row per query, one capacity row
per column whose capacity can bind, then whatever extra variables and rows the caller adds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from policies.problem import FloatArray, IntArray

# scipy.optimize.milp status codes
_OPTIMAL, _LIMIT, _INFEASIBLE, _UNBOUNDED = 0, 1, 2, 3

_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: int | None = None


def _flush_c_stdout() -> None:
    """Flush C stdio buffers, so text HiGHS printed goes where fd 1 pointed when it printed it."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to call (not a POSIX platform)
        pass


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null while HiGHS runs.

    HiGHS prints some debug lines (``HighsMipSolverData::transformNewIntegerFeasibleSolution ...``)
    from C++ straight to stdout, which no option of :func:`scipy.optimize.milp` turns off; they would
    break ``llmsim run -q`` (stdout is only the run folder path). fd 1 is process-wide, so nested or
    concurrent callers share one redirection (a count under a lock): only the last one out restores it.
    """
    global _quiet_depth, _quiet_saved
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = _redirect_fd1()
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _quiet_saved is not None:
                _flush_c_stdout()
                os.dup2(_quiet_saved, 1)
                os.close(_quiet_saved)
                _quiet_saved = None


def _redirect_fd1() -> int | None:
    """Point fd 1 at /dev/null and return a copy of the old fd 1 (None if fd 1 cannot be redirected)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):  # closed or replaced stdout: nothing of ours to flush
        pass
    _flush_c_stdout()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 at all: nothing to protect
        return None
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
        finally:
            os.close(devnull)
    except OSError:
        os.close(saved)
        return None
    return saved


@dataclass
class MilpSolution:
    """What came back from HiGHS, already rounded to one column per query.

    ``status`` is ``optimal`` (proven within ``mip_rel_gap``), ``limit`` (time/node limit: ``cols`` is
    the incumbent, or ``None`` if HiGHS found none), ``infeasible`` or ``error``.
    """

    status: str
    cols: IntArray | None
    message: str
    objective: float | None = None  # maximised objective of the model as HiGHS reports it
    dual_bound: float | None = None  # upper bound on the maximised objective
    mip_gap: float | None = None
    extra: FloatArray | None = None  # values of the variables added with add_vars
    x: FloatArray | None = None  # (n, k) raw x (fractional for a relaxation)


class MilpModel:
    """Builder for ``max obj·v`` over v = (x, extra) with the assignment and capacity rows built in.

    Args:
        score: (n, k) objective coefficients of x (maximised).
        cap: (k,) integer capacities; a column with ``cap >= n`` gets no capacity row.
        fixed_zero: optional (n, k) mask of x_ij known to be 0 in some optimal solution (dominated
            columns, see :func:`policies.batch.dominance.dominated`); they get upper bound 0.
    """

    def __init__(self, score: FloatArray, cap: IntArray, fixed_zero: np.ndarray | None = None) -> None:
        n, k = score.shape
        self.n, self.k = n, k
        self.nx = n * k
        self._obj: list[FloatArray] = [np.asarray(score, dtype=np.float64).ravel()]
        ub = np.ones(self.nx)
        if fixed_zero is not None:
            ub[np.asarray(fixed_zero, dtype=bool).ravel()] = 0.0
        self._lb: list[FloatArray] = [np.zeros(self.nx)]
        self._ub: list[FloatArray] = [ub]
        self._int: list[FloatArray] = [np.ones(self.nx)]
        self._rows: list[sp.coo_matrix] = []
        self._row_lb: list[FloatArray] = []
        self._row_ub: list[FloatArray] = []
        self._nvars = self.nx
        # Σ_j x_ij = 1
        assign = sp.kron(sp.eye(n, format="csr"), np.ones((1, k)), format="coo")
        self._add(assign, np.ones(n), np.ones(n))
        # Σ_i x_ij ≤ cap_j for the columns where that can bind
        bind = np.nonzero(np.asarray(cap) < n)[0]
        if bind.size:
            sel = sp.csr_matrix((np.ones(bind.size), (np.arange(bind.size), bind)), shape=(bind.size, k))
            capm = sp.kron(np.ones((1, n)), sel, format="coo")
            self._add(capm, np.full(bind.size, -np.inf), np.asarray(cap, dtype=np.float64)[bind])

    # ------------------------------------------------------------------ building
    def _add(self, a: sp.spmatrix, lb: FloatArray, ub: FloatArray) -> None:
        self._rows.append(sp.coo_matrix(a))
        self._row_lb.append(np.asarray(lb, dtype=np.float64))
        self._row_ub.append(np.asarray(ub, dtype=np.float64))

    def add_vars(self, count: int, obj: FloatArray | float, lb: float = 0.0, ub: float = np.inf,
                 integer: bool = False) -> slice:
        """Append ``count`` continuous (or integer) variables; returns their index range."""
        start = self._nvars
        self._obj.append(np.broadcast_to(np.asarray(obj, dtype=np.float64), (count,)).copy())
        self._lb.append(np.full(count, lb))
        self._ub.append(np.full(count, ub))
        self._int.append(np.full(count, 1.0 if integer else 0.0))
        self._nvars += count
        return slice(start, start + count)

    def add_x_row(self, coef: FloatArray, lb: float = -np.inf, ub: float = np.inf) -> None:
        """One dense row over x: ``lb ≤ Σ_ij coef_ij x_ij ≤ ub`` (a budget or quality row)."""
        flat = np.asarray(coef, dtype=np.float64).ravel()
        nz = np.nonzero(flat)[0]
        a = sp.coo_matrix((flat[nz], (np.zeros(nz.size, dtype=np.int64), nz)), shape=(1, self.nx))
        self._add(a, np.array([lb]), np.array([ub]))

    def add_rows(self, a: sp.spmatrix, lb: FloatArray, ub: FloatArray) -> None:
        """Rows over the variables created so far (``a`` may have fewer columns than variables)."""
        self._add(sp.coo_matrix(a), lb, ub)

    # ------------------------------------------------------------------ solving
    def solve(self, time_limit: float | None = None, mip_rel_gap: float | None = None, *,
              relax: bool = False, fix: IntArray | None = None) -> MilpSolution:
        """Solve with HiGHS.

        Args:
            time_limit: seconds (HiGHS checks it between phases, so it can overrun on big models).
            mip_rel_gap: HiGHS's relative optimality gap.
            relax: solve the LP relaxation (integrality dropped); ``x`` then holds the LP solution.
            fix: (n,) column per query to fix x_ij = 1 at, or -1 to leave the query free.
        """
        nv = self._nvars
        blocks = [sp.coo_matrix((r.data, (r.row, r.col)), shape=(r.shape[0], nv)) for r in self._rows]
        a = sp.vstack(blocks, format="csr")
        obj = np.concatenate(self._obj)
        lb = np.concatenate(self._lb)
        if fix is not None:
            rows = np.nonzero(np.asarray(fix) >= 0)[0]
            lb[rows * self.k + np.asarray(fix)[rows]] = 1.0
        options: dict[str, float | bool] = {"presolve": True}
        if time_limit is not None:
            options["time_limit"] = max(float(time_limit), 1e-3)
        if mip_rel_gap is not None and not relax:
            options["mip_rel_gap"] = float(mip_rel_gap)
        with quiet_stdout():
            res = milp(
                -obj,
                integrality=np.zeros(nv) if relax else np.concatenate(self._int),
                bounds=Bounds(lb, np.concatenate(self._ub)),
                constraints=LinearConstraint(a, np.concatenate(self._row_lb), np.concatenate(self._row_ub)),
                options=options,
            )
        msg = str(res.message)
        if res.status == _INFEASIBLE:
            return MilpSolution("infeasible", None, msg)
        if res.status not in (_OPTIMAL, _LIMIT):
            return MilpSolution("error", None, msg)
        bound = getattr(res, "mip_dual_bound", None)
        gap = getattr(res, "mip_gap", None)
        if res.x is None:
            return MilpSolution("limit", None, msg,
                                dual_bound=None if bound is None else -float(bound))
        x = np.asarray(res.x)
        if relax and res.status == _OPTIMAL:
            bound = res.fun  # the LP optimum bounds the MILP
        return MilpSolution(
            "optimal" if res.status == _OPTIMAL else "limit",
            self.round_x(x[: self.nx]),
            msg,
            objective=-float(res.fun),
            dual_bound=None if bound is None or not np.isfinite(bound) else -float(bound),
            mip_gap=None if gap is None else float(gap),
            extra=x[self.nx:],
            x=x[: self.nx].reshape(self.n, self.k),
        )

    def round_x(self, x: FloatArray) -> IntArray:
        """One column per query from a (near-)integral x: the largest entry of each row."""
        return np.argmax(x.reshape(self.n, self.k), axis=1).astype(np.int64)
