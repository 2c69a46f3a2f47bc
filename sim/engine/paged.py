"""The ``paged`` scheduler: vLLM-v1-style continuous batching, advanced in closed form.

Semantics: ``tests/engine/paged_reference.py`` is the executable specification, step by step (paged KV
blocks, a token budget per step shared by decodes and prefill chunks, preemption of the most recently
admitted sequence by recompute when blocks run out, FIFO admission with a watermark, prefix caching
with LRU eviction). This module computes the same timestamps without simulating every step:

* A step that prefills anything (a chunk, a whole prompt), or right after a change of membership, is
  scheduled exactly as the reference does, and is one event.
* A step with decodes only repeats until something changes. With ``n`` sequences the total context
  grows by ``n`` per iteration, so ``k`` iterations take ``T(k) = k*alpha + cn*k*(k-1)/2``. The run ends at
  the first of: a sequence's last token (a heap keyed by the instance's iteration counter), the
  iteration whose block allocations exceed the free blocks (each sequence needs a new block every
  ``block_size`` iterations, at a residue of the counter fixed while it decodes; counts per residue give
  the exhausting iteration in O(block_size)), or a boundary at which a newly queued head can be admitted
  (free blocks only shrink during a run, so only the first boundary needs testing).
* Block allocations, LRU evictions and the time-between-tokens log of a run are applied lazily, in one
  go, when the run ends: nothing frees blocks in between, so the result is the same.

Caveat (degenerate profiles only, as for ``reserve``): zero-length steps complete when their own wake
fires.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Callable

import simpy

from sim.engine.closedform import Settling, Wakes, first_boundary
from sim.engine.latency import LatencyProfile
from sim.engine.request import Request
from sim.engine.scheduler import SchedulerConfig
from sim.engine.steplog import StepLog

__all__ = ["PagedGroup", "PagedInstance"]

_INF = math.inf


def fit_limit(sched: SchedulerConfig, kv_capacity_tokens: int) -> int:
    """The largest ``prompt + output`` that :meth:`SchedulerConfig.fits` accepts on ``kv_capacity_tokens``
    (0 if none): ``submit`` checks every request, so the answer is found once by bisection. Exact because
    ``fits`` depends on ``prompt + output`` only and is monotone in it (each of its tests bounds a
    non-decreasing function of that sum)."""
    lo, hi = 0, kv_capacity_tokens + 2  # invariant: fits(lo) (or lo = 0), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if sched.fits(kv_capacity_tokens, mid - 1, 1):
            lo = mid
        else:
            hi = mid
    return lo


class _Seq:
    """Engine state of one admitted request (one admission: a preempted request gets a new one)."""

    __slots__ = (
        "req", "prompt", "computed", "out", "own", "units", "chunk", "in_decode", "c_off", "o_off",
        "fin", "res", "seg0", "dead", "last_tok", "order",
    )

    def __init__(self, req: Request, prompt: int, out: int, last_tok: float) -> None:
        self.req = req
        self.prompt = prompt  # tokens to prefill (original prompt + tokens generated before preemption)
        self.computed = 0  # KV tokens stored (valid while not decoding; decoding: tok + c_off)
        self.out = out  # tokens generated so far (decoding: tok + o_off)
        self.own = 0  # blocks owned (valid while not decoding)
        self.units: list[int] = []  # prefix-cache units shared, in prompt order
        self.chunk = 0  # prompt tokens scheduled in the current step
        self.in_decode = False
        self.c_off = 0
        self.o_off = 0
        self.fin = 0  # iteration counter value at which its last token is out
        self.res = 0  # residue of the counter at which it needs a new block
        self.seg0 = 0  # first step segment it decodes in (for its longest gap)
        self.dead = False  # left the decode heap (lazy deletion)
        self.last_tok = last_tok  # time of its last token (NaN before the first)
        self.order = 0  # admission counter (release order of simultaneous finishes)


def _order(s: _Seq) -> int:  # sort key: admission order
    return s.order


class PagedGroup(Settling):
    """The paged instances admitting from one deque (construction order is the tie-break order).

    With a shared queue, who gets the head at an instant depends on every member's state then, so
    admission is decided here for all members at once; a private queue is a group of one.
    """

    def __init__(self, queue: deque[Request] | None = None) -> None:
        self.queue: deque[Request] = deque() if queue is None else queue
        self.members: list[PagedInstance] = []
        self._settling = False
        self._again = False
        self._cover_head = None  # Request | None (typed by Settling)
        self._cover_m = None  # PagedInstance | None (typed by Settling)
        self._cover_t = _INF

    def _settle_once(self, now: float, woken: PagedInstance | None) -> None:
        members = self.members
        if len(members) != 1:
            self._settle_many(now, woken)
            return
        # A group of one (a private queue, the common case): the steps of _settle_many without the loops.
        m = members[0]
        if m._wake_t == now and (m is woken or m._step_start != now):
            m._complete(now)
        q = self.queue
        if not m.down:
            if m._fresh:
                m._schedule_running(now)
            if q and m._open_at(now):  # stays open at ``now`` once it is (its step begins now)
                while q and m._accepts(q[0]):
                    m._admit(q.popleft(), now)
        arm = m._dirty
        if arm:
            m._plan(now)
        if q:
            head = q[0]
            if not (head is self._cover_head and self._cover_m is m and m._wake_t == self._cover_t and not arm):
                arm = self._cover(head, now) is not None or arm
        else:
            self._cover_head = self._cover_m = None
        if arm:
            m._arm_at(now)

    def _settle_many(self, now: float, woken: PagedInstance | None) -> None:
        members = self.members
        for m in members:  # 1. steps ending now (all of them before anyone schedules)
            if m._wake_t == now and (m is woken or m._step_start != now):
                m._complete(now)
        for m in members:  # 2. decodes and partial prefills of members at a boundary, with preemption
            if m._fresh and not m.down:
                m._schedule_running(now)
        q = self.queue
        while q:  # 3. heads, FIFO, each to the first member at a boundary that accepts it
            head = q[0]
            for m in members:
                if not m.down and m._open_at(now) and m._accepts(head):
                    break
            else:
                break
            q.popleft()
            m._admit(head, now)
        to_arm = []
        for m in members:
            if m._dirty:
                m._plan(now)
                to_arm.append(m)
        if q:
            head = q[0]
            cm = self._cover_m
            if not (head is self._cover_head and cm is not None and cm._wake_t == self._cover_t and cm not in to_arm):
                best = self._cover(head, now)
                if best is not None:
                    to_arm.append(best)
        else:
            self._cover_head = self._cover_m = None
        for m in to_arm:
            m._arm()

    def _cover(self, head: Request, now: float) -> PagedInstance | None:
        """Wake the member with the earliest boundary after ``now`` that accepts ``head`` (members whose
        next boundary ends their step are woken there anyway)."""
        best: PagedInstance | None = None
        best_t = _INF
        best_j = 0
        for m in self.members:
            if m.down:
                continue
            jt = m._first_accepting_boundary(head, now, best_t)
            if jt is not None:
                best_j, best_t = jt
                best = m
        self._cover_head, self._cover_m, self._cover_t = head, best, best_t
        if best is not None and best._wake_t != best_t:
            best._wake_t = best_t
            best._wake_j = best_j
            return best
        return None


class PagedInstance(Wakes):
    """A model replica running the ``paged`` scheduler (see the module docstring).

    Args:
        env: the SimPy environment.
        iid: instance id, written into ``Request.instance`` at (first) admission.
        profile: step latency (``step_time``; pure decode runs use ``iteration_time``).
        max_seqs: maximum running sequences (decoding or partly prefilled).
        kv_capacity_tokens: KV memory in tokens; ``kv_capacity_tokens // block_size`` blocks.
        sched: the paged scheduler's knobs.
        group: the :class:`PagedGroup` of instances sharing one queue (``None``: a private queue).
        on_finish / on_admit: callbacks (``on_admit`` at the first admission only).
        on_step: optional step log, called as each step or run of decode steps ends with
            ``(start, first duration, growth per step, steps, prefill tokens, decodes)``.

    Read-only state: ``running``, ``queue_len``, ``free_slots``, ``blocks_total``, ``blocks_used``,
    ``kv_used_tokens``, ``busy_time``, ``max_running_seen``, ``max_blocks_used_seen``, ``preemptions``,
    ``step_log`` (time between tokens).
    """

    def __init__(
        self,
        env: simpy.Environment,
        iid: int,
        profile: LatencyProfile,
        max_seqs: int,
        kv_capacity_tokens: int,
        sched: SchedulerConfig,
        group: PagedGroup | None = None,
        on_finish: Callable[[Request], None] | None = None,
        on_admit: Callable[[Request], None] | None = None,
        on_step: Callable[[float, float, float, int, int, int], None] | None = None,
    ) -> None:
        if max_seqs < 1:
            raise ValueError(f"max_seqs must be >= 1, got {max_seqs}")
        if sched.max_num_batched_tokens < max_seqs:
            raise ValueError("max_num_batched_tokens must be >= max_seqs")
        self.env = env
        self.iid = iid
        self.profile = profile
        self.max_seqs = int(max_seqs)
        self.kv_capacity_tokens = int(kv_capacity_tokens)
        self.sched = sched
        self.on_finish = on_finish
        self.on_admit = on_admit
        self.on_step = on_step
        self._group = PagedGroup() if group is None else group
        if self._group.members and self._group.members[0].env is not env:
            raise ValueError("instances sharing a queue must share the SimPy environment")
        self._group.members.append(self)
        self.queue = self._group.queue
        self.step_log = StepLog()

        bs = self._bs = sched.block_size
        self.blocks_total = sched.blocks(self.kv_capacity_tokens)
        if self.blocks_total < 1:
            raise ValueError(f"kv_capacity_tokens {kv_capacity_tokens} holds no block of {bs} tokens")
        self._wm = sched.watermark_blocks(self.kv_capacity_tokens)
        self._unit = sched.prefix_block_tokens // bs
        self._prefix = sched.prefix_cache
        self._fit_total = fit_limit(sched, self.kv_capacity_tokens)
        self._mnbt = sched.max_num_batched_tokens
        self._pbt = sched.prefix_block_tokens
        self._chunked = sched.chunked_prefill
        self.down = False  # failed (sim/engine/faults.py): admits nothing until recover()
        self._reset_state()
        self._segs_idx: list[int] = []  # monotone stack of step-segment maxima: (index, value)
        self._segs_val: list[float] = []
        self._nsegs = 0
        self._tok = 0  # decode iterations done (the counter)
        self._seqno = 0
        self._pending: set[float] = set()
        self._cb = self._on_wake

        self.max_running_seen = 0
        self.max_blocks_used_seen = 0
        self.preemptions = 0
        self._busy = 0.0

    def _reset_state(self) -> None:
        """An empty instance at a boundary: no blocks used, no cached prefix, no sequence, no step. Run at
        construction and when the node fails (its KV, cache included, is gone)."""
        self._free = self.blocks_total  # plain free blocks
        self._cache: dict[int, int] = {}  # prefix hash -> users
        self._evictable: OrderedDict[int, None] = OrderedDict()  # cached units without users, LRU first

        self._run: dict[_Seq, None] = {}  # running sequences in admission order
        # len(_run), kept as an attribute: read per routed request for every instance of a deployment
        # (its least-loaded member, ``DeploymentRuntime.next_instance``), where a property call cost ~10 %
        # of a 16-instance run (issue 14)
        self.running = 0
        self._partial: list[_Seq] = []  # running, prompt not fully computed (admission order)
        self._heap: list[tuple[int, int, _Seq]] = []  # decoding: (fin, seq no, seq)
        self._n = 0  # decoding sequences
        self._cnt = [0] * self._bs  # decoding sequences per block-crossing residue of the counter
        self._coff = 0  # sum of c_off over decoding sequences
        # decode blocks are allocated for the iterations before this counter value
        self._alloc = getattr(self, "_tok", 0)

        # current step
        self._fresh = True  # at a boundary with no step scheduled yet
        self._dirty = False
        self._step_start = -_INF
        self._budget = 0
        self._preempted = False
        self._chunks: list[_Seq] = []
        self._decoding_step = 0  # decodes in the current step
        # current run of decode-only steps (or the single step): start, first duration, growth
        self._t0 = 0.0
        self._alpha = 0.0
        self._cn = 0.0
        self._run_end_j = 0  # iterations to the run's own end (completion / exhaustion)
        self._is_run = False
        self._wake_t = _INF
        self._wake_j = 0
        self._nb_now = math.nan  # memo of _next_boundary: for this time (NaN: none) ...
        self._nb = (0, 0.0)  # ... this answer

    # ------------------------------------------------------------------ public API

    def submit(self, req: Request) -> None:
        """Queue ``req`` (``enqueue_time = now``); it is admitted at once or at the first boundary of a
        member of its queue that accepts it."""
        if req.prompt_tokens + req.output_tokens > self._fit_total:
            raise ValueError(f"request {req.rid} can never fit instance {self.iid}: it would block its queue")
        now = self.env.now
        req.enqueue_time = now
        q = self.queue
        q.append(req)
        if len(q) == 1 or self._group._settling:
            self._group.settle(now)

    def poke(self) -> None:
        if self.queue:
            self._group.settle(self.env.now)

    @property
    def queue_len(self) -> int:
        return len(self.queue)

    @property
    def free_slots(self) -> int:
        return 0 if self.down else self.max_seqs - len(self._run)

    # ------------------------------------------------------------------ failures

    def fail(self, drain_queue: bool) -> list[tuple[Request, int]]:
        """The node goes away now: return its running requests (admission order, each
        with this instance's id) and, with
        ``drain_queue`` (a private queue), its queued ones (id -1), all restarted (:meth:`Request.restart`: the
        KV is gone, prefix cache included); then admit nothing until :meth:`recover`.

        The step in progress counts as busy up to now and is not logged; pending SimPy wakes are
        ignored when they fire (``_wake_t`` is infinite)."""
        self._busy = self.busy_time
        running = [s.req for s in self._run]
        queued: list[Request] = []
        if drain_queue:
            queued = list(self.queue)
            self.queue.clear()
        self.down = True
        self._reset_state()
        return self._hand_back(running, queued)

    @property
    def blocks_used(self) -> int:
        """Blocks held by running sequences (cached units nobody uses count as free). Exact at events."""
        return self.blocks_total - self._available()

    @property
    def kv_used_tokens(self) -> int:
        return self.blocks_used * self._bs

    @property
    def busy_time(self) -> float:
        if self._wake_t == _INF and not self._run:
            return self._busy
        return self._busy + (self.env.now - self._t0)

    @property
    def max_kv_used_seen(self) -> int:
        """Most KV tokens ever held in blocks (block granularity)."""
        return self.max_blocks_used_seen * self._bs

    @property
    def decode_batch(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return (
            f"PagedInstance(iid={self.iid}, running={len(self._run)}/{self.max_seqs}, "
            f"blocks={self.blocks_used}/{self.blocks_total}, queue={len(self.queue)})"
        )

    # ------------------------------------------------------------------ blocks

    def _available(self) -> int:
        return self._free + self._unit * len(self._evictable)

    def _take(self, n: int) -> None:
        """Allocate ``n`` blocks: plain free blocks first, then evict cached units, LRU first."""
        free = self._free
        if free < n:
            ev, cache, unit = self._evictable, self._cache, self._unit
            while free < n:
                h, _ = ev.popitem(last=False)
                del cache[h]
                free += unit
        self._free = free - n

    def _owned(self, s: _Seq) -> int:
        """Blocks ``s`` owns now (a decoding sequence: from the counter; allocations through ``_alloc``)."""
        if s.in_decode:
            return -(-(self._alloc + s.c_off) // self._bs) - len(s.units) * self._unit
        return s.own

    def _release(self, s: _Seq) -> None:
        """Free ``s``'s blocks and unpin its cached units (it left the decode set first, if it was in it,
        so ``own`` is materialised)."""
        self._free += s.own
        s.own = 0
        units = s.units
        if units:
            cache, ev = self._cache, self._evictable
            for h in reversed(units):
                users = cache[h] - 1
                cache[h] = users
                if not users:
                    ev[h] = None
            s.units = []

    def _crossings(self, a: int, b: int) -> int:
        """Block allocations the decoding sequences need for iterations ``a <= tau < b``."""
        if b <= a or not self._n:
            return 0
        bs = self._bs
        r0 = a % bs
        if r0 + (b - a) <= bs:  # within one cycle of residues (a short run): one slice of _cnt
            return sum(self._cnt[r0 : r0 + (b - a)])
        full, rem = divmod(b - a, bs)
        total = full * self._n
        if rem:  # iterations a+full*bs .. b-1: residues r0 .. r0+rem-1 (mod bs), a cyclic slice of _cnt
            cnt = self._cnt
            end = r0 + rem
            total += sum(cnt[r0:end]) if end <= bs else sum(cnt[r0:]) + sum(cnt[: end - bs])
        return total

    def _exhaustion(self, avail: int) -> int:
        """First iteration after ``_tok`` whose allocations exceed ``avail`` free blocks: never before
        ``_tok + 1 + (avail // n) * block_size`` (each ``block_size`` iterations allocate ``n`` blocks)."""
        n = self._n
        bs = self._bs
        q, rem = divmod(avail, n)
        tau = self._tok + 1 + q * bs
        cnt = self._cnt
        while True:
            rem -= cnt[tau % bs]
            if rem < 0:
                return tau
            tau += 1

    # ------------------------------------------------------------------ prefix cache

    def _hits(self, s: Request, prompt: int, evicted: int = 0) -> list[int]:
        """Cached leading units of ``s`` (never its whole prompt), if ``evicted`` LRU units were gone."""
        prefix = s.prefix
        if not self._prefix or not prefix:
            return []
        pbt = self._pbt
        usable = min(len(prefix), s.prompt_tokens // pbt, (prompt - 1) // pbt)
        gone: set[int] = set()
        if evicted:
            for k, h in enumerate(self._evictable):
                if k >= evicted:
                    break
                gone.add(h)
        out: list[int] = []
        cache = self._cache
        for h in prefix[:usable]:
            if h not in cache or h in gone:
                break
            out.append(h)
        return out

    def _register(self, s: _Seq) -> None:
        """Units of ``s`` now wholly computed become cached (their blocks move from owned to shared)."""
        prefix = s.req.prefix
        if not prefix:
            return
        pbt = self._pbt
        full = min(len(prefix), s.req.prompt_tokens // pbt, s.computed // pbt)
        cache = self._cache
        units = s.units
        own, unit = s.own, self._unit
        for i in range(len(units), full):
            h = prefix[i]
            if h in cache:
                break
            cache[h] = 1
            units.append(h)
            own -= unit
        s.own = own

    # ------------------------------------------------------------------ decode set

    def _join_decode(self, s: _Seq) -> None:
        """``s`` finished its prompt at a boundary (counter ``_tok``, nothing allocated yet for it)."""
        tok = self._tok
        s.in_decode = True
        s.c_off = c_off = s.computed - tok
        s.o_off = s.out - tok
        s.fin = s.req.output_tokens - s.o_off
        s.res = (-c_off) % self._bs
        s.seg0 = self._nsegs
        s.dead = False
        self._cnt[s.res] += 1
        self._coff += c_off
        self._n += 1
        self._seqno += 1
        heapq.heappush(self._heap, (s.fin, self._seqno, s))

    def _leave_decode(self, s: _Seq) -> None:
        """Materialise ``s``'s counters (its tokens, KV, blocks, longest gap) and drop it from the run."""
        tok = self._tok
        c_off = s.c_off
        s.computed = tok + c_off
        s.out = tok + s.o_off
        s.own = -(-(self._alloc + c_off) // self._bs) - len(s.units) * self._unit  # _owned, decoding
        s.in_decode = False
        s.dead = True
        self._cnt[s.res] -= 1
        self._coff -= c_off
        self._n -= 1
        idx = self._segs_idx  # its longest step: the first maximum of the segments since it joined
        k = bisect.bisect_left(idx, s.seg0)
        if k < len(idx):
            gap = self._segs_val[k]
            r = s.req
            if gap == gap and not (r.max_gap >= gap):
                r.max_gap = gap

    # ------------------------------------------------------------------ one step, as the reference

    def _schedule_running(self, now: float) -> None:
        """Steps 1-3 of the reference at boundary ``now``: decodes, then partial prefills; preempt the
        most recently admitted sequence while blocks are short."""
        self._fresh = False
        self._dirty = True
        self._step_start = now
        self._budget = self._mnbt
        self._preempted = False
        self._chunks = []
        tok = self._tok
        if self._n:  # (no decodes: nothing to allocate)
            need = self._cnt[tok % self._bs]
            if need <= self._free:
                self._free -= need
            elif need <= self._free + self._unit * len(self._evictable):
                self._take(need)
            else:
                self._decode_shortage(tok)
        self._alloc = tok + 1
        n = self._decoding_step = self._n
        self._budget -= n
        if self._partial:
            run = self._run
            for s in list(self._partial):
                if s in run:
                    self._schedule_chunk(s)

    def _decode_shortage(self, tok: int) -> None:
        bs = self._bs
        for s in [s for s in self._run if s.in_decode]:
            if s.dead or (tok + s.c_off) % bs:
                continue
            while self._available() < 1:
                victim = next(reversed(self._run))
                self._preempt(victim)
                if victim is s:
                    break
            if not s.dead:
                self._take(1)

    def _schedule_chunk(self, s: _Seq) -> None:
        n_tok = min(s.prompt - s.computed, self._budget)
        if n_tok <= 0:
            return
        need = max(0, -(-(s.computed + n_tok) // self._bs) - len(s.units) * self._unit - s.own)
        while need > self._available():
            victim = next(reversed(self._run))
            self._preempt(victim)
            if victim is s:
                return
        self._take(need)
        s.own += need
        s.chunk = n_tok
        self._budget -= n_tok
        self._chunks.append(s)

    def _preempt(self, v: _Seq) -> None:
        """Recompute preemption: ``v`` frees its blocks and goes back to the front of the queue."""
        self._preempted = True
        self.preemptions += 1
        now = self.env.now
        if v.in_decode:
            scheduled = self._alloc > self._tok  # its decode of this step was already allocated
            self._leave_decode(v)
            if scheduled:
                self._decoding_step -= 1
                self._budget += 1
            v.last_tok = now
        else:
            self._partial.remove(v)
        del self._run[v]
        self.running -= 1
        r = v.req
        r.preemptions += 1
        r.recomputed_tokens += v.computed
        self._release(v)
        r._generated = v.out  # read back at re-admission
        r._last_tok = v.last_tok
        self.queue.appendleft(r)
        self._group._cover_head = None

    def _accepts(self, r: Request, ahead: int = 0) -> bool:
        """Would the current step (or, ``ahead`` iterations into the decode run, that boundary's step)
        admit ``r``? Step 4 of the reference."""
        if (self._preempted and not ahead) or len(self._run) >= self.max_seqs:
            return False
        budget = (self._mnbt - self._n) if ahead else self._budget
        if budget <= 0:
            return False
        avail = self._free + self._unit * len(self._evictable)
        evicted = 0
        if ahead:
            x = self._crossings(self._alloc, self._tok + ahead + 1)
            avail -= x
            if x > self._free and self._unit:
                evicted = -(-(x - self._free) // self._unit)
        prompt = r.prompt_tokens + r._generated
        if not self._prefix:  # nothing cached: the whole prompt is to compute (the general case below)
            if prompt > budget:
                if not self._chunked:
                    return False
                prompt = budget
            return avail + (-prompt // self._bs) >= self._wm  # avail - ceil(chunk / block_size)
        hits = self._hits(r, prompt, evicted)
        done = len(hits) * self._pbt
        chunk = prompt - done
        if chunk > budget:
            if not self._chunked:
                return False
            chunk = budget
        pinned = 0
        if hits:
            ev = self._evictable
            pinned = sum(1 for h in hits if h in ev) * self._unit
        need = -(-(done + chunk) // self._bs) - len(hits) * self._unit
        return avail - pinned - need >= self._wm

    def _admit(self, r: Request, now: float) -> None:
        """Admit ``r`` into the step beginning at ``now`` (a chunk of its prompt)."""
        out = r._generated
        s = _Seq(r, r.prompt_tokens + out, out, r._last_tok)
        first = r.instance < 0
        if first:
            r.instance = self.iid
            r.start_time = now
        if self._prefix:
            hits = self._hits(r, s.prompt)
            cache, ev = self._cache, self._evictable
            for h in hits:
                if cache[h] == 0:
                    del ev[h]
                cache[h] += 1
            s.units = hits
            s.computed = len(hits) * self._pbt
            if first:  # hits of a request re-admitted after preemption are not counted (as vLLM's stats)
                r.cached_tokens = s.computed
            chunk = min(s.prompt - s.computed, self._budget)
            need = -(-(s.computed + chunk) // self._bs) - len(hits) * self._unit
            self._take(need)
        else:  # no cache: no hits, nothing cached to evict
            if first:
                r.cached_tokens = 0
            chunk = min(s.prompt, self._budget)
            need = -(-chunk // self._bs)
            self._free -= need
        s.own = need
        s.chunk = chunk
        self._budget -= chunk
        self._chunks.append(s)
        self._partial.append(s)
        self._run[s] = None
        self.running = running = self.running + 1
        self._seqno += 1
        s.order = self._seqno
        self._dirty = True
        if running > self.max_running_seen:
            self.max_running_seen = running
        if first and self.on_admit is not None:
            self.on_admit(r)

    # ------------------------------------------------------------------ planning and completing steps

    def _plan(self, now: float) -> None:
        """The step beginning at ``now`` is fully scheduled: time it. Decodes only: a run of steps."""
        self._dirty = False
        self._t0 = now
        self._nb_now = math.nan  # a new run or step (see _next_boundary)
        n = self._n
        avail = self._free + self._unit * len(self._evictable)
        used = self.blocks_total - avail
        if used > self.max_blocks_used_seen:
            self.max_blocks_used_seen = used
        chunks = self._chunks
        if chunks:
            ptok = 0
            attn = 0.0
            for s in chunks:
                c = s.chunk
                ptok += c
                attn += c * (s.computed + c / 2)
            alpha = self._alpha = self.profile.step_time(ptok, attn, n, n * (self._tok + 1) + self._coff)
            self._cn = 0.0
            self._is_run = False
            self._run_end_j = self._wake_j = 1
            self._wake_t = now + alpha
        elif n:
            prof = self.profile
            tok = self._tok
            alpha = self._alpha = prof.iteration_time(n, n * (tok + 1) + self._coff)
            cn = self._cn = prof.decode_per_ctx_token_s * n
            self._is_run = True
            heap = self._heap  # the first finish (entries of sequences gone are dropped lazily)
            while heap[0][2].dead:  # n > 0: a live entry is in the heap
                heapq.heappop(heap)
            end = heap[0][0]
            if end > tok + 1 + (avail // n) * self._bs:  # else before any exhaustion (see _exhaustion)
                end = min(end, self._exhaustion(avail))
            self._run_end_j = self._wake_j = k = end - tok
            self._wake_t = now + (k * alpha + cn * (k * (k - 1) // 2))  # _T(k), inlined: hot path
        else:
            self._is_run = False
            self._wake_t = _INF
            self._step_start = -_INF
            self._fresh = True  # idle: at a boundary whenever asked

    def _T(self, k: int) -> float:
        return k * self._alpha + self._cn * (k * (k - 1) // 2)  # closedform.run_time, inlined: hot path

    def _complete(self, now: float) -> None:
        """End the step (or the run up to the boundary) due at ``now``."""
        self._wake_t = _INF
        self._advance(self._wake_j, now)
        heap = self._heap
        tok = self._tok
        done: list[_Seq] = []
        while heap and heap[0][0] <= tok:
            s = heapq.heappop(heap)[2]
            if not s.dead:
                self._leave_decode(s)
                done.append(s)
        if len(done) > 1:  # freed in scheduling order, as the reference (LRU order of cached units)
            done.sort(key=_order)
        chunks = self._chunks
        if chunks:
            self._chunks = []
            prefix = self._prefix
            for s in chunks:
                s.computed += s.chunk
                s.chunk = 0
                if prefix:
                    self._register(s)
                if s.computed == s.prompt:
                    self._partial.remove(s)
                    self._token(s, now)
                    if s.out == s.req.output_tokens:
                        done.append(s)
                    else:
                        self._join_decode(s)
        for s in done:
            self._finish(s, now)
        self._fresh = True

    def _advance(self, j: int, now: float) -> None:
        """Account ``j`` steps of the current run ending at ``now``: their decode tokens, the blocks
        they allocated, the time-between-tokens log."""
        n = self._n
        self._busy += now - self._t0
        tok = self._tok
        if j:
            alpha = self._alpha
            cn = self._cn
            if self.on_step is not None:
                self.on_step(self._t0, alpha, cn, j, sum(s.chunk for s in self._chunks), n)
            if n:
                if tok + j > self._alloc:
                    x = self._crossings(self._alloc, tok + j)
                    if x:
                        self._take(x)
                        # the only blocks taken since the last _plan recorded the peak
                        used = self.blocks_total - self._free - self._unit * len(self._evictable)
                        if used > self.max_blocks_used_seen:
                            self.max_blocks_used_seen = used
                self.step_log.add_steps(alpha, cn, j, n)
                longest = alpha + cn * (j - 1)  # a step segment: push on the monotone stack of maxima
                idx, val = self._segs_idx, self._segs_val
                while val and val[-1] <= longest:
                    val.pop()
                    idx.pop()
                idx.append(self._nsegs)
                val.append(longest)
                self._nsegs += 1
            else:
                self.step_log.add_steps(alpha, cn, j, 0)
            self._tok = tok = tok + j
        self._alloc = tok
        self._t0 = now
        self._nb_now = math.nan  # the run starts afresh (see _next_boundary)

    def _token(self, s: _Seq, now: float) -> None:
        """``s`` completed its prompt: its first token, or its next one after a preemption."""
        s.out += 1
        r = s.req
        if s.out == 1:
            r.first_token_time = now
        else:
            gap = now - s.last_tok
            self.step_log.add_gap(gap)
            if not r.max_gap >= gap:
                r.max_gap = gap
        s.last_tok = now

    def _finish(self, s: _Seq, now: float) -> None:
        del self._run[s]
        self.running -= 1
        self._release(s)
        r = s.req
        r.finish_time = now
        if self.on_finish is not None:
            self.on_finish(r)

    # ------------------------------------------------------------------ boundaries inside a run

    def _run_boundary_after(self, now: float) -> tuple[int, float] | None:
        """The first boundary strictly after ``now`` inside the current decode run that is not its end
        (``(iterations from its start, time)``), or ``None``."""
        if not self._is_run or self._wake_t == _INF:
            return None
        j, t = self._next_boundary(now)
        if t == now:
            j += 1
            t = self._t0 + self._T(j)
        if j >= self._run_end_j:
            return None
        return j, t

    def _first_accepting_boundary(self, head: Request, now: float, before: float) -> tuple[int, float] | None:
        """The first boundary strictly after ``now`` (and before ``before``) inside the current decode run
        at which ``head`` would be admitted, as ``(iterations from the run's start, time)``.

        During a run free blocks only shrink, so acceptance only shrinks -- except when the run's own
        allocations evict a cached unit the head would pin: then the head needs blocks only for its
        chunk. So the candidates are the first boundary and the boundaries at which each of the head's
        evictable cached units is evicted (found like the exhausting iteration)."""
        jt = self._run_boundary_after(now)
        if jt is None or jt[1] >= before:
            return None
        j0 = jt[0]
        if not (self._prefix and head.prefix and self._evictable):  # the first boundary is the only one
            return jt if self._accepts(head, ahead=j0) else None
        cands = [j0]
        ev = self._evictable
        hits = {h for h in self._hits(head, head.prompt_tokens + head._generated) if h in ev}
        left = len(hits)  # the head's cached units that the run may evict
        free, unit, n, bs, end_j = self._free, self._unit, self._n, self._bs, self._run_end_j
        for p, h in enumerate(ev):  # LRU first: the p-th is evicted once the run needs free + unit*p + 1
            if not left or 1 + ((free + unit * p) // n) * bs >= end_j:
                break  # that eviction, and any later one, is at or after the run's end (see _exhaustion)
            if h in hits:
                left -= 1
                j = self._exhaustion(free + unit * p) - self._tok
                if j0 < j < end_j:
                    cands.append(j)
        for j in sorted(cands):
            t = self._t0 + self._T(j)
            if t >= before:
                return None
            if self._accepts(head, ahead=j):
                return j, t
        return None

    def _next_boundary(self, now: float) -> tuple[int, float]:
        """Smallest ``j >= 0`` with ``t0 + T(j) >= now`` in the current run (``j <= run end``), and that
        time (:func:`sim.engine.closedform.first_boundary`). Remembered for the last ``now`` until the
        run changes (an arrival asks twice: may it be admitted now, and where is it covered)."""
        if now == self._nb_now:
            return self._nb
        self._nb = jt = first_boundary(self._t0, self._alpha, self._cn, self._run_end_j, now)
        self._nb_now = now
        return jt

    def _open_at(self, now: float) -> bool:
        """Is this instance at a boundary at ``now`` (so it may admit)? A decode run with a boundary
        exactly at ``now`` is brought to it and its step there scheduled."""
        if self._fresh:  # idle
            self._schedule_running(now)
            return True
        if self._step_start == now:
            return True
        if not self._is_run or now <= self._t0:
            return False
        j, t = self._next_boundary(now)
        if t != now or j >= self._run_end_j:
            return False
        self._advance(j, now)
        self._schedule_running(now)  # a decode-only step: no finish, no shortage before the run's end
        return True
