"""Per-step reference simulator of the ``paged`` scheduler: the executable specification of
``sim.engine.paged.PagedInstance``.

Plain Python, no SimPy, no closed forms: every step is scheduled one at a time, exactly as written
below. Deliberately slow and simple.

Per sequence: ``prompt`` (the prompt to prefill: the original prompt, or after a preemption the original
prompt plus every token generated so far), ``computed`` (tokens whose KV is stored), ``out`` (tokens
generated so far, across preemptions) and ``output`` (tokens to generate in all). A sequence is in
*prefill* while ``computed < prompt`` and in *decode* after. KV lives in blocks of ``block_size`` tokens;
a sequence holds ``ceil(allocated / block_size)`` blocks, minus the prefix-cache units it shares.

A step at a boundary ``t`` of one instance (its previous step ended at ``t``, or it was idle):

1. budget ``B = max_num_batched_tokens``.
2. **Decodes**, in admission order: each needs its blocks for ``computed + 1`` tokens (one more block
   when ``computed`` is a multiple of ``block_size``). While the free blocks do not cover it, preempt the
   most recently admitted running sequence: it frees all its blocks and goes to the *front* of its
   queue, with ``prompt = original prompt + out`` and ``computed = 0``. If the victim is the sequence
   itself, it is not scheduled. Each scheduled decode takes one token of the budget.
3. **Partial prefills** (admitted, ``computed < prompt``), in admission order: a chunk of
   ``min(prompt - computed, B)`` tokens (none if ``B == 0``), blocks for ``computed + chunk``, preempting
   as in 2.
4. **Waiting**, only if nothing was preempted in this step: heads of the queue in FIFO order while
   running < ``max_seqs`` and ``B > 0``: on a shared queue each head goes to the first member (in index
   order) at a boundary at ``t`` that accepts it. With prefix caching the head first finds its cached
   leading units (``hits``; never its whole prompt); its chunk is ``min(prompt - hit tokens, B)`` (without
   chunked prefill: the whole rest of the prompt, and the head is not accepted unless it fits ``B``); it is
   accepted if the free blocks, minus the blocks of evictable cached units it would pin, minus the
   blocks its chunk needs, stay ≥ the watermark. A head no member accepts stops the queue.
5. The step lasts ``profile.step_time(Σ chunk, Σ chunk·(computed + chunk/2), decodes, Σ (computed + 1)
   over decodes)``. At its end: decodes gain a token; chunks add to ``computed`` and a chunk that
   completes the prompt produces a token (the first token, or after a preemption the next one); every
   prefix unit whose tokens are now all computed is registered in the cache (unless its hash is there
   already); a sequence with ``out == output`` finishes and frees its blocks.

Prefix cache (``prefix_cache``): ``prefix`` hashes cover units of ``prefix_block_tokens`` tokens
(``prefix_block_tokens / block_size`` blocks each); only units wholly inside the original prompt count.
A cached unit is shared by every sequence using it; with no user it is *evictable*: its blocks still
count as free, and allocation takes plain free blocks first, then evicts evictable units in least
recently released order (a sequence releases its units last-first). ``cached_tokens`` counts the hit
tokens of a request's first admission (a re-admission after preemption hits too, but is not counted, as
in vLLM's prefix-cache stats); ``recomputed_tokens`` the KV tokens discarded at each preemption.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from sim.engine.latency import LatencyProfile
from sim.engine.scheduler import SchedulerConfig


@dataclass(frozen=True)
class PagedRefConfig:
    profile: LatencyProfile
    max_seqs: int
    kv_capacity_tokens: int
    queue: Hashable
    sched: SchedulerConfig = SchedulerConfig()


@dataclass
class PagedRefResult:
    instance: int = -1
    start: float = float("nan")  # first admission
    first_token: float = float("nan")
    finish: float = float("nan")
    preemptions: int = 0
    recomputed_tokens: int = 0
    cached_tokens: int = 0
    max_gap: float = float("nan")
    last_token: float = float("nan")
    gaps: list[float] = field(default_factory=list)  # every gap between consecutive tokens


@dataclass
class _Seq:
    idx: int
    orig_prompt: int
    output: int
    prefix: tuple[int, ...]
    prompt: int = 0
    computed: int = 0
    out: int = 0
    own_blocks: int = 0
    units: list[int] = field(default_factory=list)  # hashes of cached units it shares, in order
    order: int = 0  # admission counter
    chunk: int = 0  # tokens scheduled in the current step
    decoding: bool = False  # scheduled as a decode in the current step


@dataclass
class _Step:
    start: float
    budget: int
    preempted: bool
    decodes: list[_Seq] = field(default_factory=list)
    chunks: list[_Seq] = field(default_factory=list)
    end: float = float("nan")


class _Inst:
    def __init__(self, iid: int, cfg: PagedRefConfig, results: list[PagedRefResult]) -> None:
        self.iid = iid
        self.cfg = cfg
        s = cfg.sched
        self.bs = s.block_size
        self.total_blocks = s.blocks(cfg.kv_capacity_tokens)
        self.watermark = s.watermark_blocks(cfg.kv_capacity_tokens)
        self.unit_blocks = s.prefix_block_tokens // s.block_size
        self.free = self.total_blocks  # plain free blocks
        self.cache: dict[int, int] = {}  # hash -> users
        self.evictable: OrderedDict[int, None] = OrderedDict()  # hashes with no user, LRU first
        self.results = results
        self.running: list[_Seq] = []  # admission order
        self.step: _Step | None = None
        self.counter = 0
        self.max_running = 0
        self.max_blocks_used = 0
        self.busy = 0.0
        self.boundaries: list[float] = []
        self.step_log: list[tuple[float, int, int]] = []  # (duration, prefill tokens, decodes)

    # -- blocks ----------------------------------------------------------------
    def available(self) -> int:
        return self.free + self.unit_blocks * len(self.evictable)

    def used_blocks(self) -> int:
        return self.total_blocks - self.available()

    def take(self, n: int) -> None:
        assert n <= self.available()
        while self.free < n:
            h, _ = self.evictable.popitem(last=False)
            del self.cache[h]
            self.free += self.unit_blocks
        self.free -= n

    def release(self, s: _Seq) -> None:
        self.free += s.own_blocks
        s.own_blocks = 0
        for h in reversed(s.units):
            self.cache[h] -= 1
            if self.cache[h] == 0:
                self.evictable[h] = None
        s.units = []

    def blocks_for(self, s: _Seq, tokens: int) -> int:
        """Blocks ``s`` must own for ``tokens`` tokens of KV, beyond those it owns and shares."""
        return max(0, -(-tokens // self.bs) - len(s.units) * self.unit_blocks - s.own_blocks)

    def hits(self, s: _Seq) -> list[int]:
        if not self.cfg.sched.prefix_cache:
            return []
        pbt = self.cfg.sched.prefix_block_tokens
        usable = min(len(s.prefix), s.orig_prompt // pbt, (s.prompt - 1) // pbt)
        out: list[int] = []
        for h in s.prefix[:usable]:
            if h not in self.cache:
                break
            out.append(h)
        return out

    # -- scheduling --------------------------------------------------------------
    def preempt(self, victim: _Seq, queue: deque[_Seq]) -> None:
        step = self.step
        assert step is not None
        if victim in step.decodes:  # scheduled earlier in this step (a decode, preempted for a prefill)
            step.decodes.remove(victim)
            step.budget += 1
        res = self.results[victim.idx]
        res.preemptions += 1
        res.recomputed_tokens += victim.computed
        self.running.remove(victim)
        self.release(victim)
        victim.prompt = victim.orig_prompt + victim.out
        victim.computed = 0
        queue.appendleft(victim)

    def schedule_running(self, t: float, queue: deque[_Seq]) -> None:
        """Steps 1-3 at boundary ``t``."""
        step = _Step(t, self.cfg.sched.max_num_batched_tokens, False)
        self.step = step
        for phase in ("decode", "prefill"):
            for s in list(self.running):
                if s not in self.running:
                    continue  # preempted earlier in this loop
                is_decode = s.computed >= s.prompt
                if is_decode != (phase == "decode"):
                    continue
                n_tok = 1 if is_decode else min(s.prompt - s.computed, step.budget)
                if n_tok == 0:
                    continue
                need = self.blocks_for(s, s.computed + n_tok)
                while need > self.available():
                    victim = self.running[-1]
                    self.preempt(victim, queue)
                    step.preempted = True
                    if victim is s:
                        break
                if s not in self.running:
                    continue
                self.take(need)
                s.own_blocks += need
                step.budget -= n_tok
                if is_decode:
                    step.decodes.append(s)
                else:
                    s.chunk = n_tok
                    step.chunks.append(s)

    def accepts(self, s: _Seq) -> bool:
        step = self.step
        assert step is not None
        if step.preempted or len(self.running) >= self.cfg.max_seqs or step.budget <= 0:
            return False
        hits = self.hits(s)
        done = len(hits) * self.cfg.sched.prefix_block_tokens
        chunk = s.prompt - done
        if self.cfg.sched.chunked_prefill:
            chunk = min(chunk, step.budget)
        elif chunk > step.budget:
            return False
        pinned = sum(1 for h in hits if h in self.evictable) * self.unit_blocks
        need = -(-(done + chunk) // self.bs) - len(hits) * self.unit_blocks
        return self.available() - pinned - need >= self.watermark

    def admit(self, s: _Seq, t: float) -> None:
        step = self.step
        assert step is not None
        res = self.results[s.idx]
        first = res.instance < 0
        if first:
            res.instance = self.iid
            res.start = t
        hits = self.hits(s)
        for h in hits:
            if self.cache[h] == 0:
                del self.evictable[h]
            self.cache[h] += 1
        s.units = hits
        s.computed = len(hits) * self.cfg.sched.prefix_block_tokens
        if first:
            res.cached_tokens = s.computed
        chunk = min(s.prompt - s.computed, step.budget)
        need = self.blocks_for(s, s.computed + chunk)
        self.take(need)
        s.own_blocks = need
        s.chunk = chunk
        step.budget -= chunk
        step.chunks.append(s)
        self.counter += 1
        s.order = self.counter
        self.running.append(s)
        self.max_running = max(self.max_running, len(self.running))
        self.max_blocks_used = max(self.max_blocks_used, self.used_blocks())

    def finalize(self, t: float) -> None:
        """Step 5: the step's duration, or no step when there is nothing to run."""
        step = self.step
        assert step is not None
        self.max_blocks_used = max(self.max_blocks_used, self.used_blocks())
        if not step.decodes and not step.chunks:
            self.step = None
            return
        ptok = sum(s.chunk for s in step.chunks)
        attn = sum(s.chunk * (s.computed + s.chunk / 2) for s in step.chunks)
        ctx = sum(s.computed + 1 for s in step.decodes)
        step.end = t + self.cfg.profile.step_time(ptok, attn, len(step.decodes), ctx)

    def token(self, s: _Seq, t: float) -> None:
        res = self.results[s.idx]
        s.out += 1
        if s.out == 1:
            res.first_token = t
        else:
            gap = t - res.last_token
            res.gaps.append(gap)
            res.max_gap = gap if not res.max_gap >= gap else res.max_gap
        res.last_token = t

    def complete_step(self, t: float) -> None:
        step = self.step
        assert step is not None and step.end == t
        self.step = None
        self.busy += t - step.start
        self.boundaries.append(t)
        self.step_log.append((t - step.start, sum(s.chunk for s in step.chunks), len(step.decodes)))
        pbt = self.cfg.sched.prefix_block_tokens
        for s in step.decodes:
            s.computed += 1
            self.token(s, t)
        for s in step.chunks:
            s.computed += s.chunk
            s.chunk = 0
            if self.cfg.sched.prefix_cache:
                self.register(s, pbt)
            if s.computed == s.prompt:
                self.token(s, t)
        for s in step.decodes + step.chunks:
            if s.out == s.output:
                self.results[s.idx].finish = t
                self.running.remove(s)
                self.release(s)

    def register(self, s: _Seq, pbt: int) -> None:
        """Units now wholly computed become cached (their blocks move from owned to shared)."""
        full = min(len(s.prefix), s.orig_prompt // pbt, s.computed // pbt)
        for i in range(len(s.units), full):
            h = s.prefix[i]
            if h in self.cache:
                return  # computed twice concurrently: keep its own copy; later units stay own too
            self.cache[h] = 1
            s.units.append(h)
            s.own_blocks -= self.unit_blocks


def simulate(
    configs: Sequence[PagedRefConfig],
    arrivals: Sequence[tuple[float, Hashable, int, int]] | Sequence[tuple[float, Hashable, int, int, tuple[int, ...]]],
) -> tuple[list[PagedRefResult], list[_Inst]]:
    """Run ``arrivals`` = [(time, queue key, prompt, output >= 1[, prefix hashes])] on the instances."""
    results = [PagedRefResult() for _ in arrivals]
    insts = [_Inst(i, cfg, results) for i, cfg in enumerate(configs)]
    queues: dict[Hashable, deque[_Seq]] = {}
    members: dict[Hashable, list[_Inst]] = {}
    for inst in insts:
        queues.setdefault(inst.cfg.queue, deque())
        members.setdefault(inst.cfg.queue, []).append(inst)
    order = sorted(range(len(arrivals)), key=lambda i: arrivals[i][0])
    pos = 0
    while True:
        candidates = [inst.step.end for inst in insts if inst.step is not None]
        if pos < len(order):
            candidates.append(arrivals[order[pos]][0])
        if not candidates:
            break
        t = min(candidates)
        while pos < len(order) and arrivals[order[pos]][0] == t:
            a = arrivals[order[pos]]
            prefix = tuple(a[4]) if len(a) > 4 else ()  # type: ignore[misc]
            s = _Seq(order[pos], int(a[2]), max(1, int(a[3])), prefix)
            s.prompt = s.orig_prompt
            queues[a[1]].append(s)
            pos += 1
        _instant(t, insts, queues, members)
    return results, insts


def _instant(
    t: float, insts: list[_Inst], queues: dict[Hashable, deque[_Seq]], members: dict[Hashable, list[_Inst]]
) -> None:
    """Everything that happens at ``t``: steps ending, new steps scheduled, heads handed out."""
    while True:
        for inst in insts:
            if inst.step is not None and inst.step.end == t:
                inst.complete_step(t)
        fresh = [inst for inst in insts if inst.step is None]
        for inst in fresh:
            inst.schedule_running(t, queues[inst.cfg.queue])
        for key, q in queues.items():
            while q:
                taker = next(
                    (m for m in members[key] if m in fresh and m.accepts(q[0])),
                    None,
                )
                if taker is None:
                    break
                taker.admit(q.popleft(), t)
        for inst in fresh:
            inst.finalize(t)
        if not any(inst.step is not None and inst.step.end == t for inst in insts):
            break
