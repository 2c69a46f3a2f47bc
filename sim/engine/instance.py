"""One model instance doing continuous batching, advanced in closed form.

Semantics (``tests/engine/reference.py`` is the executable specification, iteration by iteration):

* The instance works in steps. At a step boundary (or at once when idle) it admits requests from the
  head of its FIFO queue while a slot is free (``running < max_seqs``) and the request's KV reservation
  (``prompt + output`` tokens) fits; it stops at the first head that does not fit (head-of-line
  blocking, no skipping).
* If it admitted anything, the next step is one PREFILL of all newly admitted prompts
  (``profile.prefill_time(sum of prompts)``); running decodes are paused meanwhile. At its end each
  admitted request has its first token; one-token requests finish there, the others join the decode
  batch with context ``prompt + 1``.
* Otherwise, if the decode batch is not empty, one DECODE iteration of
  ``profile.iteration_time(n, total context)``; every running sequence gains one token; those that got
  their last token finish at the end of the iteration and free their slot and KV reservation.
* Requests that arrive during a step wait for its end. An instant is one boundary: whatever reaches the
  head of the queue at a time ``t`` at which the instance is at a boundary (its current step *began*
  at ``t``, or it is idle) is admitted at ``t`` -- a request submitted exactly at a boundary is admitted
  there, whatever order SimPy happens to fire same-time events in.
* Several instances may share one ``deque`` (a central queue). At one instant, steps ending then are
  completed first, then each head goes to the first instance, in construction order, that is at a
  boundary and fits it. That rule makes the outcome independent of SimPy's event order.
  (Caveat, degenerate profiles only -- all prefill or all decode coefficients zero: a zero-length step
  completes when its own SimPy wake fires, so same-instant arrivals fired before that wake join it and
  later ones do not; and on a shared queue the zero-length steps of different instances complete one at
  a time, where the reference completes them together, so a head may go to another instance.)

Cost: decode iterations are not simulated one by one. Between two changes of batch membership the
batch has ``n`` sequences and its total context grows by ``n`` per iteration, so with ``alpha`` the
first iteration's duration, ``k`` iterations take ``T(k) = k*alpha + c*n*k*(k-1)/2`` (an arithmetic
series). The next completion is after ``k* = min(tokens left)`` iterations, found in O(log n) with a heap
keyed by a per-instance iteration counter. SimPy events therefore only happen when membership changes
(prefill ends, completions) and when a queued request can be admitted at the end of the iteration in
progress: a few events per request, no per-token or per-iteration Python work.
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from collections.abc import Callable
from heapq import heappop, heappush

import simpy

from sim.engine.closedform import Settling, Wakes, first_boundary, steps_until
from sim.engine.latency import LatencyProfile
from sim.engine.request import Request
from sim.engine.steplog import StepLog

__all__ = ["Instance"]

_IDLE = 0
_PREFILL = 1
_DECODE = 2
_INF = math.inf


class _QueueGroup(Settling):
    """The instances admitting from one deque, in construction order (the tie-break order).

    Admission decisions are taken here, for all members at once, because with a shared queue who gets
    the head depends on every member's state at that instant. A private queue is a group of one.
    """

    __slots__ = (
        "queue",
        "members",
        "solo",
        "max_kv_capacity",
        "_settling",
        "_again",
        "_cover_head",
        "_cover_m",
        "_cover_t",
    )

    def __init__(self, queue: deque[Request]) -> None:
        self.queue = queue
        self.members: list[Instance] = []
        self.solo: Instance | None = None  # the only member of a group of one (see _settle_solo)
        self.max_kv_capacity = 0
        self._settling = False
        self._again = False
        # the head last covered, by which member, at which boundary (see _cover)
        self._cover_head = None  # Request | None (typed by Settling)
        self._cover_m = None  # Instance | None (typed by Settling)
        self._cover_t = _INF

    def join(self, m: Instance) -> None:
        """Add ``m`` as the last member (tie-break order); the cover is chosen again."""
        self.members.append(m)
        self.solo = m if len(self.members) == 1 else None
        self.max_kv_capacity = max(self.max_kv_capacity, m.kv_capacity_tokens)
        self._cover_head = self._cover_m = None

    def settle(self, now: float, woken: Instance | None = None) -> None:
        """:meth:`Settling.settle`; a group of one goes straight to :meth:`_settle_solo` (one call less
        on the commonest path: a wake or a submission to an instance with its own queue)."""
        m = self.solo
        if m is None or self._settling:
            Settling.settle(self, now, woken)
            return
        self._settling = True
        try:
            self._settle_solo(m, now, woken)
            while self._again:
                self._again = False
                self._settle_solo(m, now, None)
        finally:
            self._settling = False

    def _settle_once(self, now: float, woken: Instance | None) -> None:
        if self.solo is not None:
            self._settle_solo(self.solo, now, woken)
            return
        members = self.members
        q = self.queue
        to_arm: list[Instance] = []
        # 1. complete the steps that end now (finishes free slots/KV before anyone admits). A zero-length
        # step that began now stays open to same-instant arrivals until its own wake fires.
        for m in members:
            if m._wake_t == now and (m is woken or not m._began_at(now)):
                m._complete(now)
        # 2. hand out heads, in FIFO order, each to the first member at a boundary that fits it
        while q:
            head = q[0]
            kv = head.prompt_tokens + head.output_tokens
            for m in members:
                if (
                    m.running < m.max_seqs
                    and m.kv_used_tokens + kv <= m.kv_capacity_tokens
                    and not m.down
                    and m._open_at(now)
                ):
                    break
            else:
                break
            q.popleft()
            m._admit(head, now)
        # 3. plan the next step of every member whose state changed
        for m in members:
            if m._dirty:
                m._plan(now)
                to_arm.append(m)
        if q:
            head = q[0]
            cm = self._cover_m
            if (
                head is self._cover_head
                and cm is not None
                and cm._wake_t == self._cover_t
                and cm not in to_arm
            ):
                # Same head, cover still pending. The members re-planned just now are at a boundary,
                # so the head does not fit them (they would have taken it); the others' runs are as
                # they were when the cover was chosen. Nothing to do.
                pass
            else:
                best = self._cover(head, now)
                if best is not None:
                    to_arm.append(best)
        else:
            self._cover_head = self._cover_m = None
        for m in to_arm:
            m._arm_at(now)

    def _settle_solo(self, m: Instance, now: float, woken: Instance | None) -> None:
        """:meth:`_settle_once` for a group of one member (per-instance queues, the default), without
        member loops or cover bookkeeping. The same steps, fused: a head that fits a decode run between
        boundaries is covered by that run's next boundary, which is also what decides whether the member
        is at a boundary now (so the boundary is found once, not estimated first and then found); a
        prefill's cover is its end, already its wake. A member that completed or admitted now is at a
        boundary, so the head left over does not fit it and needs no cover.
        ``test_solo_settle_matches_group_settle`` compares the two paths bit for bit."""
        if m._wake_t == now and (m is woken or not m._began_at(now)):
            m._complete(now)
        q = self.queue
        while q:
            head = q[0]
            if (
                m.running >= m.max_seqs
                or m.kv_used_tokens + head.prompt_tokens + head.output_tokens > m.kv_capacity_tokens
                or m.down
            ):
                break
            ph = m._phase
            if ph == _DECODE and m._t0 != now:
                j, t = m._next_boundary(now)
                if t != now:  # wake at the next boundary: the head fits there (cover)
                    if t != m._wake_t:
                        m._wake_t = t
                        m._wake_j = j
                        m._arm_at(now)
                    break
                m._advance(j, now)  # j < k*: a completion boundary now would have been completed
            elif ph == _PREFILL and m._pf_start != now:
                break
            q.popleft()
            m._admit(head, now)
        if m._dirty:
            m._plan(now)
            m._arm_at(now)

    def _cover(self, head: Request, now: float) -> Instance | None:
        """Make sure the member that will be first at a boundary where ``head`` fits wakes up there.

        A member's resources only change at its own boundaries, so if the head fits it now, it fits at
        its next boundary; the earliest such member is certain to take the head unless another member
        frees resources and takes it earlier -- which happens in that member's completion wake, after
        which the group settles again. So one admission wake per head change is enough. Members the
        head does not fit are woken by their next completion anyway.

        Returns the member whose wake must be (re)armed, if any.
        """
        kv = head.prompt_tokens + head.output_tokens
        best: Instance | None = None
        best_t = _INF
        best_j = 0
        for m in self.members:
            if m.running < m.max_seqs and m.kv_used_tokens + kv <= m.kv_capacity_tokens and not m.down:
                if m._phase == _PREFILL:
                    t, j = m._pf_end, 0
                elif m._phase == _DECODE:
                    j, t = m._next_boundary(now)
                else:  # an idle member that fits would have taken the head
                    continue
                if t < best_t:
                    best, best_t, best_j = m, t, j
        self._cover_head, self._cover_m, self._cover_t = head, best, best_t
        if best is not None and best._wake_t != best_t:
            best._wake_t = best_t
            best._wake_j = best_j
            return best
        return None


# Instances constructed with the same deque object share a group. The groups live on the SimPy environment
# they run in (made with it, gone with it), keyed by id(queue): a group keeps its queue alive, so the id
# cannot be reused while its entry exists. Not one module-level weak dictionary of groups: a group compiled
# by mypyc (setup.py, issue 14) cannot be weakly referenced. The environment each queue belongs to is
# remembered weakly (an entry lives as long as that environment, hence as long as its queue), so a queue
# shared across two environments is still refused.
_QUEUE_ENV: weakref.WeakValueDictionary[int, simpy.Environment] = weakref.WeakValueDictionary()
_ENV_GROUPS = "_llmsim_queue_groups"


def _group_of(env: simpy.Environment, queue: deque[Request]) -> _QueueGroup:
    """The group of the instances admitting from ``queue`` in ``env`` (made by the first of them)."""
    key = id(queue)
    owner = _QUEUE_ENV.get(key)
    if owner is not None and owner is not env:
        raise ValueError("instances sharing a queue must share the SimPy environment")
    groups: dict[int, _QueueGroup] = env.__dict__.setdefault(_ENV_GROUPS, {})
    group = groups.get(key)
    if group is None:
        group = groups[key] = _QueueGroup(queue)
        _QUEUE_ENV[key] = env
    return group


class Instance(Wakes):
    """A model replica: admission queue + continuous batching, advanced in closed form.

    Args:
        env: the SimPy environment.
        iid: this instance's id, written into ``Request.instance`` at admission.
        profile: prefill and decode-iteration latency.
        max_seqs: maximum concurrent sequences (in prefill or decode).
        kv_capacity_tokens: KV-cache tokens; a request reserves ``prompt + output`` at admission.
        queue: the admission deque. Pass the same deque to several instances for a central queue (they
            then admit from it in construction order on ties); ``None`` creates a private one.
        on_finish: called with a request when it finishes (all its timestamps set).
        on_admit: called with a request when it is admitted (``instance`` and ``start_time`` set).

    Read-only state (for dispatchers and metrics): ``running``, ``kv_used_tokens``, ``queue_len``,
    ``free_slots``, ``busy_time``, ``max_running_seen``, ``max_kv_used_seen``.
    """

    def __init__(
        self,
        env: simpy.Environment,
        iid: int,
        profile: LatencyProfile,
        max_seqs: int,
        kv_capacity_tokens: int,
        queue: deque[Request] | None = None,
        on_finish: Callable[[Request], None] | None = None,
        on_admit: Callable[[Request], None] | None = None,
    ) -> None:
        if max_seqs < 1:
            raise ValueError(f"max_seqs must be >= 1, got {max_seqs}")
        if kv_capacity_tokens < 1:
            raise ValueError(f"kv_capacity_tokens must be >= 1, got {kv_capacity_tokens}")
        self.env = env
        self.iid = iid
        self.profile = profile
        self.max_seqs = int(max_seqs)
        self.kv_capacity_tokens = int(kv_capacity_tokens)
        self.on_finish = on_finish
        self.on_admit = on_admit

        self.queue: deque[Request] = deque() if queue is None else queue
        group = _group_of(env, self.queue)
        group.join(self)
        self._group = group
        self._qg = group  # the same, typed as its class (``_group`` is typed by the base, Wakes)

        self.down = False  # failed (sim/engine/faults.py): admits nothing until recover()
        self.running = 0
        self.kv_used_tokens = 0
        self.max_running_seen = 0
        self.max_kv_used_seen = 0
        self._busy = 0.0
        # time between tokens: every step, and for decodes paused by prefill steps the longer gap of
        # their next token -- (time of their last token, how many) since the last decode iteration
        self.step_log = StepLog()
        self._cohorts: list[tuple[float, int]] = []

        self._phase = _IDLE
        self._dirty = False
        # prefill step
        self._pf_group: list[Request] = []
        self._pf_prompt = 0
        self._pf_start = 0.0
        self._pf_end = 0.0
        # decode batch: heap of (iteration counter value at which the request finishes, seq, request)
        self._heap: list[tuple[int, int, Request]] = []
        self._seq = 0
        self._tok = 0  # decode iterations done by this instance so far
        self._ctx = 0  # total context of the decode batch
        # current decode run: started at _t0 with first-iteration time _alpha, growing by _cn per iteration
        self._t0 = 0.0
        self._alpha = 0.0
        self._cn = 0.0
        # memo of _next_boundary: valid while the run is unchanged and time has not passed _nb_t
        self._nb_j = 0
        self._nb_t = -_INF
        # next boundary this instance must be woken at (its end of step, or an admission boundary)
        self._wake_t = _INF
        self._wake_j = 0  # decode iterations from _t0 to _wake_t
        self._pending: set[float] = set()  # times of scheduled SimPy wakes not yet fired
        self._cb = self._on_wake

    # ------------------------------------------------------------------ public API

    def submit(self, req: Request) -> None:
        """Queue ``req`` (``enqueue_time = now``) and admit it at once if this instance (or a sibling on a
        shared queue) is idle or at a boundary, else at the first boundary where it can be admitted."""
        group = self._qg
        if req.prompt_tokens + req.output_tokens > group.max_kv_capacity:
            raise ValueError(
                f"request {req.rid} needs {req.kv_tokens} KV tokens, more than the "
                f"{group.max_kv_capacity} any instance of its queue has: it would block the queue forever"
            )
        req.enqueue_time = now = self.env.now
        q = self.queue
        q.append(req)
        if len(q) == 1 or group._settling:
            if (
                self._phase == _PREFILL
                and self._pf_start != now
                and self._wake_t != now
                and group.solo is self
                and not group._settling
            ):
                return  # the prefill in progress admits the new head at its end, its wake (= _settle_solo)
            group.settle(now)
        # else the head is unchanged and already taken care of

    def poke(self) -> None:
        """The queue may have something new at its head (e.g. a request appended to a shared deque by
        someone else): re-examine admission now. Cheap when nothing can be admitted before the next
        scheduled boundary."""
        if self.queue:
            self._group.settle(self.env.now)

    @property
    def queue_len(self) -> int:
        return len(self.queue)

    @property
    def free_slots(self) -> int:
        return 0 if self.down else self.max_seqs - self.running

    # ------------------------------------------------------------------ failures

    def fail(self, drain_queue: bool) -> list[tuple[Request, int]]:
        """The node goes away now: return its running requests (decode batch in admission order, then a
        prefill group in progress), each with this instance's id, and, with ``drain_queue`` (a private
        queue), its queued ones (id -1), all restarted (:meth:`Request.restart`); then admit nothing
        until :meth:`recover`.

        The step in progress counts as busy up to now; its pending SimPy wakes stay in the heap and are
        ignored when they fire (``_wake_t`` is infinite, so no fired time equals it)."""
        self._busy = self.busy_time
        running = [r for _, _, r in sorted(self._heap, key=lambda e: e[1])] + self._pf_group
        queued: list[Request] = []
        if drain_queue:
            queued = list(self.queue)
            self.queue.clear()
        self.down = True
        self.running = 0
        self.kv_used_tokens = 0
        self._phase = _IDLE
        self._dirty = False
        self._pf_group = []
        self._pf_prompt = 0
        self._heap = []
        self._ctx = 0
        self._cohorts = []
        self._nb_t = -_INF
        self._wake_t = _INF
        return self._hand_back(running, queued)

    @property
    def busy_time(self) -> float:
        """Total time spent in prefill or decode steps up to now (for utilisation)."""
        if self._phase == _PREFILL:
            return self._busy + (self.env.now - self._pf_start)
        if self._phase == _DECODE:
            return self._busy + (self.env.now - self._t0)
        return self._busy

    @property
    def decode_batch(self) -> int:
        """Sequences in the decode batch (excludes a prefill group in progress)."""
        return len(self._heap)

    def __repr__(self) -> str:
        return (
            f"Instance(iid={self.iid}, running={self.running}/{self.max_seqs}, "
            f"kv={self.kv_used_tokens}/{self.kv_capacity_tokens}, queue={len(self.queue)})"
        )

    # ------------------------------------------------------------------ closed form

    def _T(self, k: int) -> float:
        """Duration of the first ``k`` iterations of the current decode run."""
        return k * self._alpha + self._cn * (k * (k - 1) // 2)  # closedform.run_time, inlined: hot path

    def _iterations_until(self, tau: float) -> float:
        """Real root ``x >= 0`` of ``T(x) = tau`` for the current decode run (``nan`` if all-zero costs)."""
        return steps_until(self._alpha, self._cn, tau)

    def _next_boundary(self, now: float) -> tuple[int, float]:
        """Smallest ``j >= 0`` with ``t0 + T(j) >= now`` in the current decode run, and that time
        (:func:`sim.engine.closedform.first_boundary`), memoised while it still brackets ``now``."""
        if now <= self._nb_t:  # the answer for an earlier time of this run still brackets now
            return self._nb_j, self._nb_t
        if now <= self._t0:
            return 0, self._t0
        j, t = first_boundary(self._t0, self._alpha, self._cn, self._heap[0][0] - self._tok, now)
        self._nb_j = j
        self._nb_t = t
        return j, t

    # ------------------------------------------------------------------ group-driven transitions

    def _began_at(self, now: float) -> bool:
        """Did the current step begin at ``now``?"""
        ph = self._phase
        return (ph == _PREFILL and self._pf_start == now) or (ph == _DECODE and self._t0 == now)

    def _open_at(self, now: float) -> bool:
        """Is this instance at a boundary at ``now`` (so it may admit now)? A decode run that has an
        iteration boundary exactly at ``now`` is brought to it."""
        ph = self._phase
        if ph == _IDLE:
            return True
        if ph == _PREFILL:
            return self._pf_start == now
        if self._t0 == now:
            return True
        if now <= self._nb_t:
            if now != self._nb_t:
                return False
        else:
            # Fast rejection, the common case: ``now`` is nowhere near a whole number of iterations.
            # The float error of the root is ~1e-15 relative, far below this margin.
            est = self._iterations_until(now - self._t0)
            if abs(est - round(est)) * self._alpha > 1e-9 * (1.0 + abs(now)):
                return False
        j, t = self._next_boundary(now)
        if t == now:
            self._advance(j, now)  # j < k* here: the completion boundary would be due, and completed
            return True
        return False

    def _admit(self, req: Request, now: float) -> None:
        req.instance = self.iid
        req.start_time = now
        p = req.prompt_tokens
        self.running = running = self.running + 1
        self.kv_used_tokens = kv = self.kv_used_tokens + p + req.output_tokens
        if running > self.max_running_seen:
            self.max_running_seen = running
        if kv > self.max_kv_used_seen:
            self.max_kv_used_seen = kv
        if self._phase == _PREFILL:  # the prefill began now: extend its group
            self._pf_group.append(req)
            self._pf_prompt += p
        else:  # idle, or a decode run at a boundary now: pause it for a prefill
            self._phase = _PREFILL
            self._pf_start = now
            self._pf_group = [req]
            self._pf_prompt = p
        self._dirty = True
        if self.on_admit is not None:
            self.on_admit(req)

    def _complete(self, now: float) -> None:
        """End the step due at ``now`` (prefill end, completion, or admission boundary of a decode run)."""
        self._wake_t = _INF
        self._dirty = True
        if self._phase == _PREFILL:
            step = now - self._pf_start
            self._busy += step
            self.step_log.add_steps(step, 0.0, 1, 0)
            group, self._pf_group = self._pf_group, []
            heap = self._heap
            before = len(heap)
            last = self._tok - 1  # a request of o tokens has its last at counter value tok + o - 1
            for r in group:
                r.first_token_time = now
                out = r.output_tokens
                if out == 1:
                    self._finish(r, now)
                else:
                    r._finish_at = fa = last + out
                    heappush(heap, (fa, self._seq, r))
                    self._seq += 1
                    self._ctx += r.prompt_tokens + 1
            if len(heap) > before:
                self._cohorts.append((now, len(heap) - before))
            self._phase = _DECODE
            self._t0 = now
            self._nb_t = -_INF
        else:
            self._advance(self._wake_j, now)

    def _advance(self, j: int, now: float) -> None:
        """Account ``j`` decode iterations ending at ``now``; finish the requests whose last token it was."""
        heap = self._heap
        if j:
            self._log_run(j, now)
        self._tok = tok = self._tok + j
        self._ctx += len(heap) * j
        self._busy += now - self._t0
        self._t0 = now
        self._nb_t = -_INF
        while heap and heap[0][0] <= tok:
            r = heappop(heap)[2]
            kv = r.prompt_tokens + r.output_tokens  # its reservation, and its final context
            self._ctx -= kv
            r.finish_time = now  # _finish, inlined (one call per request)
            self.running -= 1
            self.kv_used_tokens -= kv
            if self.on_finish is not None:
                self.on_finish(r)
        if j:  # every sequence still decoding got its last token now
            self._cohorts = [(now, len(heap))] if heap else []

    def _log_run(self, j: int, now: float) -> None:
        """Record ``j`` decode iterations of the current run in the step log. Sequences whose last token
        came before the run began (paused by prefill steps) get ``alpha`` plus the pause as their gap."""
        n = len(self._heap)
        alpha, cn, t0 = self._alpha, self._cn, self._t0
        log = self.step_log
        paused = 0
        for t_last, c in self._cohorts:
            if t_last < t0:
                log.add_gap(alpha + (t0 - t_last), c)
                paused += c
        log.add_steps(alpha, cn, 1, n - paused)
        if j > 1:
            log.add_steps(alpha + cn, cn, j - 1, n)

    def _finish(self, r: Request, now: float) -> None:
        r.finish_time = now
        self.running -= 1
        self.kv_used_tokens -= r.prompt_tokens + r.output_tokens
        if self.on_finish is not None:
            self.on_finish(r)

    def _plan(self, now: float) -> None:
        """Choose the step starting at ``now``: prefill of the new group, else a decode run, else idle."""
        self._dirty = False
        if self._phase == _PREFILL:
            self._pf_end = self._wake_t = now + self.profile.prefill_time(self._pf_prompt)
        elif heap := self._heap:
            n = len(heap)
            prof = self.profile
            self._alpha = alpha = prof.iteration_time(n, self._ctx)
            self._cn = cn = prof.decode_per_ctx_token_s * n
            self._nb_t = -_INF
            k = heap[0][0] - self._tok
            self._wake_j = k
            self._wake_t = now + (k * alpha + cn * (k * (k - 1) // 2))  # _T(k), inlined
        else:
            self._phase = _IDLE
            self._wake_t = _INF
