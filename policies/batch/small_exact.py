"""Exact answer of a small batch without HiGHS's branch-and-bound: LP duals, reduced-cost fixing, search.

Why: on small batches whose predicted quality is tied (the ``task_mean`` predictor gives every query of a
task the same quality row), HiGHS's branch-and-bound spends 0.1–1 s in restarts, cuts and sub-MIPs on a
50 × 11 model that its own reduced-cost fixing shrinks to ~25 binaries; the tie makes many assignments
almost equally good, so the gap closes slowly. Here the same shrinking is done once, then the few queries
that still have a choice are searched exhaustively in Python.

The argument (weak duality, valid for *any* multipliers, not only optimal LP duals): for u free,
μ ≥ 0 on the capacity rows and ν ≥ 0 on the side rows, let ``rc_ij = score_ij − u_i − μ_j − Σ_r ν_r row_rij``
and ``D = Σ u_i + Σ μ_j cap_j + Σ_r ν_r rhs_r``. Every assignment x within capacity and the side rows has

    value(x) = D + Σ_i rc_i,x(i) − Σ_j μ_j (cap_j − load_j) − Σ_r ν_r slack_r  ≤  D + Σ_i rc_i,x(i).

With ``b_i = max_j rc_ij``, ``Zub = D + Σ b_i`` and ``loss_ij = b_i − rc_ij ≥ 0``: value(x) ≤ Zub − Σ loss.
So an assignment beating the incumbent Z only uses pairs with ``loss ≤ Zub − Z``, and a partial assignment
whose losses already exceed that is pruned. The search is exhaustive over what is left, so its answer is
optimal (up to ``REL_EPS`` relative, float noise), which is at least as good as HiGHS's answer within
``mip_rel_gap``. When several assignments are optimal, the one found may differ from HiGHS's, with the
same objective. If the search needs more than ``max_nodes`` nodes it gives up (``None``) and the caller
runs HiGHS as before, so a hard instance costs a few milliseconds more, never a wrong answer.

Robust's Bertsimas–Sim protection (Γ) adds ``milp``'s z and p_i to the LP; the same bound holds with
the reduced costs of every variable, and complete assignments are judged on the protected quality
(:class:`_Judge`), so the search stays exact. Its partial assignments are pruned on the nominal quality
of the α row, which is never below the protected one.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from policies.batch.linear_form import LinearForm
from policies.batch.repair import improve, repair_capacity, repair_side
from policies.problem import FloatArray, IntArray, ProblemForm
from policies.result import TOL

MAX_VARS = 4000  # n × k up to which the search is tried (the LP and the search stay in milliseconds)
MAX_QUERIES = 500  # the search recurses once per query with a choice: stay far below Python's limit
MAX_NODES = 5_000  # search nodes before giving up (HiGHS then runs as before)
REL_EPS = 1e-10  # relative slack on "strictly better" (float noise of summing scores in another order)


@dataclass(frozen=True)
class SideRow:
    """One side row ``Σ coef_ij x_ij ≤ rhs`` (scaled units) with the checker's slack ``tol``."""

    coef: FloatArray
    rhs: float
    tol: float
    protected: bool = False  # the α row under Bertsimas–Sim protection: coef is its nominal relaxation


def side_rows(form: LinearForm, protected: bool = False) -> list[SideRow]:
    """Every side row of the problem: the form's own, plus the budget when α and a budget are both set.

    :class:`LinearForm` keeps only the α row in that case (see its docstring); ``milp`` models both.
    ``protected``: the α row holds for the protected quality (robust with Γ).
    """
    rows: list[SideRow] = []
    if form.row is not None and form.rhs is not None:
        alpha = form.row_name == "min_quality"
        rows.append(SideRow(form.row, float(form.rhs), form.row_tol, protected and alpha))
    p = form.problem
    if p.form is ProblemForm.MIN_COST and p.budget is not None:
        coef = p.cost / form.cost_scale
        if form.reject_col is not None:
            coef = np.hstack([coef, np.zeros((form.n, 1))])
        tol = 0.5 * TOL * max(1.0, float(p.budget)) / form.cost_scale
        rows.append(SideRow(coef, float(p.budget) / form.cost_scale, tol))
    return rows


def applies(form: LinearForm, delta: FloatArray | None = None) -> bool:
    """Whether ``milp`` should try this module: a small batch with tied quality rows and no SLO terms.

    Untied batches stay with HiGHS, which is fast on them; SLO penalties and forbidden pairs add a third
    kind of coefficient that the staircase argument of :func:`staircase` does not cover. ``delta``: the
    robust deviations (Γ protection), which must be tied too.
    """
    p = form.problem
    if form.n < 2 or form.n > MAX_QUERIES or form.n * form.k > MAX_VARS or form.forbidden is not None:
        return False
    if p.slo_penalty_matrix() is not None:
        return False
    return int(np.unique(_tie_key(form, delta), axis=0).shape[0]) < form.n


def _tie_key(form: LinearForm, delta: FloatArray | None) -> FloatArray:
    """What must be equal for two queries to be interchangeable up to cost: quality (and δ)."""
    return form.quality if delta is None else np.hstack([form.quality, delta])


@dataclass(frozen=True)
class _Judge:
    """The objective and feasibility of a complete assignment, protected (Γ) or not.

    With protection, the value (max-quality) and the α row (min-cost) use the protected quality: the
    nominal total minus the Γ largest drops δ of the chosen pairs (a fractional Γ takes that share of
    the next one) — the optimum of the model's z, p variables for this assignment.
    """

    form: LinearForm
    rows: list[SideRow]
    quality: FloatArray  # (n, k) nominal quality, reject column 0
    delta: FloatArray | None = None  # (n, k) deviations, reject column 0
    gamma: float = 0.0

    def protected(self, cols: IntArray) -> float:
        i = np.arange(self.form.n)
        assert self.delta is not None
        drops = np.sort(self.delta[i, cols])[::-1]
        whole = min(int(np.floor(self.gamma)), drops.size)
        loss = float(drops[:whole].sum())
        if whole < drops.size:
            loss += (self.gamma - whole) * float(drops[whole])
        return float(self.quality[i, cols].sum()) - loss

    def value(self, cols: IntArray) -> float:
        if self.delta is None or self.form.problem.form is ProblemForm.MIN_COST:
            return self.form.value(cols)
        return self.protected(cols)

    def feasible(self, cols: IntArray) -> bool:
        """Capacity and every side row, with the slack :func:`policies.check_assignment` allows."""
        if not self.form.cap_ok(cols):
            return False
        i = np.arange(self.form.n)
        for r in self.rows:
            used = -self.protected(cols) if r.protected else float(r.coef[i, cols].sum())
            if used - r.rhs > r.tol:
                return False
        return True


def solve(form: LinearForm, max_nodes: int | None = None, protect: tuple[FloatArray, float] | None = None,
          deadline: float = np.inf) -> IntArray | None:
    """An optimal column per query, or ``None`` (LP not optimal, no feasible assignment found, more than
    ``max_nodes`` nodes, default :data:`MAX_NODES`, or past ``deadline`` on :func:`time.perf_counter`):
    the caller then runs HiGHS, which also diagnoses infeasibility. ``protect``: robust's (δ (n, m), Γ),
    as in :func:`policies.batch.milp.build_model`.
    """
    max_nodes = MAX_NODES if max_nodes is None else max_nodes
    judge = _judge(form, protect)
    lp = _lp(form, judge)
    if lp is None:
        return None
    best = _incumbent(form, judge, lp)
    while True:
        # Restart whenever the search cuts the gap to the bound by a quarter: fewer pairs stay candidates.
        gap = np.inf if best is None else lp.zub - judge.value(best)
        search = _Search(judge, lp, best, max_nodes, stop_below=gap * 0.75, deadline=deadline)
        found = search.run()
        max_nodes -= search.nodes_used
        if not search.stopped:
            return found
        best = found


def model_value(form: LinearForm, cols: IntArray, protect: tuple[FloatArray, float] | None = None) -> float:
    """The maximised objective of ``milp``'s model at ``cols`` (protected quality under Γ, max-quality)."""
    return _judge(form, protect).value(cols)


def _judge(form: LinearForm, protect: tuple[FloatArray, float] | None) -> _Judge:
    rows = side_rows(form, protected=protect is not None)
    if protect is None:
        return _Judge(form, rows, _pad(form, form.quality))
    delta = _pad(form, np.asarray(protect[0], dtype=np.float64))
    return _Judge(form, rows, _pad(form, form.quality), delta, float(protect[1]))


def _pad(form: LinearForm, a: FloatArray) -> FloatArray:
    """Append the reject column (all zeros) when the form has one."""
    return np.hstack([a, np.zeros((form.n, 1))]) if form.reject_col is not None else a


@dataclass(frozen=True)
class _Bound:
    """The LP's solution and the weak-duality bound of the module docstring."""

    x: FloatArray  # (n, k) LP solution
    zub: float  # D + Σ_i b_i
    loss: FloatArray  # (n, k) b_i − rc_ij ≥ 0
    mu: FloatArray  # (k,) capacity multipliers (0 on rows that cannot bind)
    nu: FloatArray  # (rows,) side-row multipliers
    z: float = 0.0  # the LP's z (protection level), 0 without protection


def _lp(form: LinearForm, judge: _Judge) -> _Bound | None:
    """LP relaxation through HiGHS: its solution, the bound ``Zub`` and the losses (module docstring).

    Variables are x, then (with protection) z and p_i as in ``milp``'s model. The reduced costs come
    from the LP's duals, ``rc = c − Aᵀy`` over every variable; z and p are not searched, so a positive
    rc on them (float noise) is charged at their largest useful value (max δ) into ``Zub``.
    """
    n, k = form.n, form.k
    rows, delta = judge.rows, judge.delta
    nx = n * k
    nv = nx + (0 if delta is None else n + 1)
    a_eq = sp.csr_matrix((np.ones(nx), np.arange(nx), np.arange(0, nx + 1, k)), shape=(n, nv))
    a_ub, b = _ub_rows(form, judge, nv)
    c = form.score.ravel()
    if delta is not None:
        quality_objective = form.problem.form is not ProblemForm.MIN_COST
        c = np.concatenate([c, [-judge.gamma if quality_objective else 0.0],
                            np.full(n, -1.0 if quality_objective else 0.0)])
    bind = np.nonzero(form.cap < n)[0]
    res = linprog(-c, A_ub=a_ub, b_ub=b, A_eq=a_eq, b_eq=np.ones(n), bounds=(0, None), method="highs")
    if res.status != 0 or res.x is None:
        return None
    u = -np.asarray(res.eqlin.marginals)
    y = np.zeros(0) if a_ub is None else np.maximum(-np.asarray(res.ineqlin.marginals), 0.0)
    rc = c - a_eq.T @ u - (0.0 if a_ub is None else a_ub.T @ y)
    d = float(u.sum() + (0.0 if b is None else y @ b))
    if delta is not None:
        d += float(np.maximum(rc[n * k:], 0.0).sum()) * float(delta.max(initial=0.0))
    mu = np.zeros(k)
    mu[bind] = y[: bind.size]
    nu = y[bind.size: bind.size + len(rows)]
    rcx = rc[: n * k].reshape(n, k)
    best = rcx.max(axis=1)
    x = np.asarray(res.x)
    z = 0.0 if delta is None else float(x[n * k])
    return _Bound(x[: n * k].reshape(n, k), d + float(best.sum()), best[:, None] - rcx, mu, nu, z)


def _ub_rows(form: LinearForm, judge: _Judge, nv: int) -> tuple[sp.csr_matrix | None, FloatArray | None]:
    """The ≤ rows (binding capacities, side rows, protection rows), assembled once as COO triplets:
    scipy's kron/stack helpers cost more than HiGHS itself on a 50 × 11 LP."""
    n, k = form.n, form.k
    nx = n * k
    bind = np.nonzero(form.cap < n)[0]
    data, row, col, rhs = [], [], [], []
    for t, j in enumerate(bind):  # Σ_i x_ij ≤ cap_j
        data.append(np.ones(n))
        row.append(np.full(n, t))
        col.append(np.arange(n) * k + j)
    rhs.append(form.cap[bind].astype(np.float64))
    at = bind.size
    for r in judge.rows:
        coef = r.coef.ravel()
        if r.protected:  # Σ −q x + Γ z + Σ p ≤ −α n
            coef = np.concatenate([coef, [judge.gamma], np.ones(n)])
        nz = np.nonzero(coef)[0]
        data.append(coef[nz])
        row.append(np.full(nz.size, at))
        col.append(nz)
        rhs.append(np.array([r.rhs]))
        at += 1
    if judge.delta is not None:  # δ_i · x_i − z − p_i ≤ 0
        data += [judge.delta.ravel(), -np.ones(n), -np.ones(n)]
        row += [at + np.repeat(np.arange(n), k), at + np.arange(n), at + np.arange(n)]
        col += [np.arange(nx), np.full(n, nx), nx + 1 + np.arange(n)]
        rhs.append(np.zeros(n))
        at += n
    if at == 0:
        return None, None
    a = sp.csr_matrix((np.concatenate(data), (np.concatenate(row), np.concatenate(col))), shape=(at, nv))
    return a, np.concatenate(rhs)


def _incumbent(form: LinearForm, judge: _Judge, lp: _Bound) -> IntArray | None:
    """LP rounding made feasible and improved by single-query moves (``None`` if that fails).

    The moves know the form's own row only; with α and a budget, improving (cheaper at the same α)
    never hurts the budget, and the result is checked against every row anyway. With protection they
    work on the quality ``â − (δ − z)+`` at the LP's z, whose total minus Γz never exceeds the protected
    quality (that is the minimum over z), so what holds there holds protected.
    """
    work = form
    if judge.delta is not None:
        m = form.problem.m
        q_z = form.problem.quality - np.maximum(judge.delta[:, :m] - lp.z, 0.0)
        work = LinearForm.from_problem(form.problem, quality=q_z)
        if work.row_name == "min_quality" and work.rhs is not None:
            work = dataclasses.replace(work, rhs=work.rhs - judge.gamma * lp.z)
    cols = np.argmax(lp.x, axis=1)
    cols = improve(work, repair_side(work, repair_capacity(work, cols)))
    return cols if judge.feasible(cols) else None


class _Search:
    """Depth-first search over the queries that still have a choice after reduced-cost fixing.

    A node's bound is the identity of the module docstring with what is already known: the losses of
    the decided queries, capacity left unused for sure (``cap − load − what the rest could still add``)
    and side-row slack left for sure (``rhs − side − the most the rest could still use``).
    """

    def __init__(self, judge: _Judge, bound: _Bound, incumbent: IntArray | None, max_nodes: int,
                 stop_below: float = -np.inf, deadline: float = np.inf) -> None:
        self.deadline = deadline
        form = judge.form
        self.judge, self.form, self.rows, self.b = judge, form, judge.rows, bound
        self.stop_below, self.stopped = stop_below, False
        self.best = incumbent
        self.best_value = -np.inf if incumbent is None else judge.value(incumbent)
        self.eps = REL_EPS * max(1.0, abs(bound.zub))
        self.nodes_left = max_nodes
        self.visited = 0
        room = bound.zub - self.best_value + self.eps
        cand = bound.loss <= room  # pairs that can appear in an assignment at least as good as the best
        order = np.argsort(bound.loss, axis=1, kind="stable")
        self.choices = [[int(j) for j in order[i] if cand[i, j]] for i in range(form.n)]
        queue, self.group, self.rank = staircase(form, self.choices, _tie_key(form, judge.delta))
        self._fix_single(queue)
        self._suffixes()

    def _fix_single(self, queue: list[int]) -> None:
        """Assign the queries with one option up front; the search then branches on the others only.

        Their columns bound the staircase of the free queries of their group: a free query's rank lies
        between the largest rank fixed before it and the smallest fixed after it (``lo``/``hi``).
        ``dead`` when the fixed ones alone break capacity or the staircase (nothing better exists).
        """
        n, k = self.form.n, self.form.k
        self.cols = np.zeros(n, dtype=np.int64)
        self.queue = [i for i in queue if len(self.choices[i]) > 1]
        self.lo, self.hi = [0] * n, [k] * n
        fixed = [i for i in queue if len(self.choices[i]) == 1]
        for i in fixed:
            self.cols[i] = self.choices[i][0]
        self.base_load = np.bincount(self.cols[fixed], minlength=k) if fixed else np.zeros(k, dtype=np.int64)
        self.dead = bool(np.any(self.base_load > self.form.cap))
        for order in (queue, queue[::-1]):  # lo from the fixed before, hi from the fixed after
            seen: dict[int, int] = {}
            for i in order:
                rank, g = self.rank[i], self.group[i]
                if rank is None:
                    continue
                if len(self.choices[i]) == 1:
                    r = int(rank[self.choices[i][0]])
                    prev = seen.get(g)
                    if prev is not None and (r < prev if order is queue else r > prev):
                        self.dead = True
                    seen[g] = r
                elif g in seen:
                    if order is queue:
                        self.lo[i] = seen[g]
                    else:
                        self.hi[i] = seen[g]

    def _suffixes(self) -> None:
        """Per position of the queue: its options, and the least and most row use and the counts of the
        capacity-priced columns still to come. Plain Python lists: the search touches a few numbers
        per node, where numpy's per-call overhead would dominate."""
        n, nr, b = len(self.queue), len(self.rows), self.b
        self.priced = [int(j) for j in np.nonzero(b.mu > 0)[0]]
        self.opts: list[list[tuple[int, float, tuple[float, ...], int]]] = []
        lo, hi = [[0.0] * nr], [[0.0] * nr]
        cnt = [[0] * len(self.priced)]
        for p in range(n - 1, -1, -1):
            i = self.queue[p]
            rank = self.rank[i]
            opts = [(j, float(b.loss[i, j]), tuple(float(r.coef[i, j]) for r in self.rows),
                     -1 if rank is None else int(rank[j])) for j in self.choices[i]]
            self.opts.append(opts)
            lo.append([lo[-1][r] + min(o[2][r] for o in opts) for r in range(nr)])
            hi.append([np.inf if self.rows[r].protected else hi[-1][r] + max(o[2][r] for o in opts)
                       for r in range(nr)])
            cnt.append([c + any(o[0] == j for o in opts) for c, j in zip(cnt[-1], self.priced, strict=True)])
        self.opts.reverse()
        self.rest_lo, self.rest_hi, self.rest_cnt = lo[::-1], hi[::-1], cnt[::-1]
        self.rhs = [r.rhs for r in self.rows]
        self.tol = [r.tol for r in self.rows]
        self.mu = [float(b.mu[j]) for j in self.priced]
        self.nu = [float(v) for v in b.nu]
        self.cap = [int(c) for c in self.form.cap]

    def run(self) -> IntArray | None:
        """The best assignment (``None`` when the search gave up or found nothing feasible)."""
        if self.dead or any(len(c) == 0 for c in self.choices):
            return self.best
        self.load = [int(v) for v in self.base_load]
        fixed = np.array([len(c) == 1 for c in self.choices])
        i = np.nonzero(fixed)[0]
        self.side = [float(r.coef[i, self.cols[i]].sum()) for r in self.rows]
        self.last = [0] * (max(self.group, default=-1) + 1)
        completed = self._dfs(0, 0.0)
        return self.best if completed or self.stopped else None

    @property
    def nodes_used(self) -> int:
        return self.visited

    def _bound(self, pos: int, lost: float) -> float:
        """Upper bound on any completion of the queue's first ``pos`` decisions."""
        z = self.b.zub - lost
        for mu, j, c in zip(self.mu, self.priced, self.rest_cnt[pos], strict=True):
            z -= mu * max(self.cap[j] - self.load[j] - c, 0)
        for nu, rhs, side, hi, tol in zip(self.nu, self.rhs, self.side, self.rest_hi[pos], self.tol, strict=True):
            z -= nu * max(rhs - side - hi, -tol)
        return z

    def _dfs(self, pos: int, lost: float) -> bool:
        """Extend the partial assignment at ``pos``; ``False`` when the node budget ran out."""
        self.nodes_left -= 1
        self.visited += 1
        if self.visited % 256 == 1 and time.perf_counter() > self.deadline:
            self.nodes_left = -1  # out of time: give up (the caller's HiGHS gets what is left)
        if self.nodes_left < 0:
            return False
        if pos == len(self.queue):
            self._leaf()
            return True
        have = self.best is not None
        cut = self.best_value + self.eps
        if have and self._bound(pos, lost) <= cut:
            return True
        i = self.queue[pos]
        g = self.group[i]
        last = self.last[g]
        floor, ceil = max(last, self.lo[i]), self.hi[i]
        load, side, nr = self.load, self.side, len(self.rows)
        lo_next, limit = self.rest_lo[pos + 1], [r + t for r, t in zip(self.rhs, self.tol, strict=True)]
        for j, loss, delta, rank in self.opts[pos]:
            lj = lost + loss
            if have and self.b.zub - lj <= cut:
                break  # options are sorted by loss: the rest cannot do better either
            if load[j] >= self.cap[j] or rank >= 0 and not floor <= rank <= ceil:
                continue
            if any(side[r] + delta[r] + lo_next[r] > limit[r] for r in range(nr)):
                continue
            if rank >= 0:
                self.last[g] = rank
            self.cols[i] = j
            load[j] += 1
            for r in range(nr):
                side[r] += delta[r]
            ok = self._dfs(pos + 1, lj)
            load[j] -= 1
            for r in range(nr):
                side[r] -= delta[r]
            self.last[g] = last
            if not ok:
                return False
            if self.best is not None and not have:
                have, cut = True, self.best_value + self.eps
        return True

    def _leaf(self) -> None:
        """A complete assignment: keep it when it is feasible (exactly re-checked) and better."""
        cols = self.cols.copy()
        value = self.judge.value(cols)
        if value > self.best_value + (self.eps if self.best is not None else 0.0) and self.judge.feasible(cols):
            self.best, self.best_value = cols, value
            if self.b.zub - value < self.stop_below:
                self.stopped = True
                self.nodes_left = -1  # stop: the caller restarts with this incumbent


def staircase(form: LinearForm, choices: list[list[int]],
              key: FloatArray | None = None) -> tuple[list[int], list[int], list[IntArray | None]]:
    """Search order and symmetry breaking for queries whose quality rows are tied.

    Queries with identical ``key`` rows (quality, and robust's δ; one task under ``task_mean``) differ
    only in cost, which enters
    the objective or a side row as one linear function. Among assignments with the same number of a
    group's queries per column, one of least cost is then optimal (same quality and loads, least cost),
    and when the group's cost block is Monge — rows sorted by cost, columns by how fast their cost
    grows with the query (``c_ij = prompt_i · price_j + b_j`` is) — a least-cost one is a staircase: down
    the sorted rows, the column rank never decreases. So the search only builds staircases for such
    groups. The Monge check allows float noise (1e-12 of the block's largest cost), far below the
    checker's budget slack. Returns the queue (groups in turn, each in its sorted order), each query's
    group, and each query's column ranks (``None``: no symmetry breaking for it).
    """
    n = form.n
    _, inv = np.unique(form.quality if key is None else key, axis=0, return_inverse=True)
    inv = np.asarray(inv).ravel()
    cost = form.problem.cost / form.cost_scale
    if form.reject_col is not None:
        cost = np.hstack([cost, np.zeros((n, 1))])
    queue: list[int] = []
    rank: list[IntArray | None] = [None] * n
    groups = sorted(range(int(inv.max()) + 1 if n else 0),
                    key=lambda g: min(len(choices[i]) for i in np.nonzero(inv == g)[0]))
    for g in groups:
        members = np.nonzero(inv == g)[0]
        block = cost[members]
        rows = members[np.argsort(block.sum(axis=1), kind="stable")]
        block = cost[rows]
        cols = np.argsort(-(block[-1] - block[0]), kind="stable")
        m = block[:, cols]
        d = m[:-1, :-1] + m[1:, 1:] - m[:-1, 1:] - m[1:, :-1]
        if rows.size > 1 and np.all(d <= 1e-12 * max(float(np.abs(m).max()), 1e-300)):
            r = np.empty(form.k, dtype=np.int64)
            r[cols] = np.arange(form.k)
            for i in rows:
                rank[int(i)] = r
        queue += [int(i) for i in rows]
    return queue, [int(g) for g in inv], rank
