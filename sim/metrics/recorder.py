"""Per-request records kept as preallocated numpy columns (no per-request dicts, no god-object).

The dispatcher writes routing columns when a batch is decided; instances report finishes through
:meth:`RequestRecorder.on_finish`. :meth:`columns` gives the tidy table written to requests.parquet
(numpy columns: pandas is not imported to run a simulation; see :mod:`sim.tables`).
"""

from __future__ import annotations

import numpy as np

from sim.engine.request import Request
from sim.tables import Columns

STATUS_PENDING = 0  # arrived, not yet routed (waiting in a batching window)
STATUS_IN_FLIGHT = 1  # routed to a model; queued or running
STATUS_DONE = 2
STATUS_REJECTED = 3
STATUS_LOST = 4  # was on (or queued for) a failed instance and could not be re-queued (docs/events.md)
STATUS_NAMES = {0: "pending", 1: "running", 2: "completed", 3: "rejected", 4: "lost"}

REASON_NONE = 0
REASON_POLICY = 1  # the policy chose not to serve it
REASON_CAPACITY = 2  # the policy over-filled a model; the dispatcher refused the surplus
REASON_TOO_LONG = 3  # its KV reservation fits no instance of the chosen model
REASON_NAMES = {0: "", 1: "policy", 2: "capacity", 3: "too_long"}
# Why a request was lost; kept out of REASON_NAMES, which keys the summary's rejected_by_reason.
REASON_NODE_FAILURE = 4
LOST_REASON_NAMES = {4: "node_failure"}


def tpot(first_token: np.ndarray, finish: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    """Time per output token after the first, ``(finish - first_token) / (output - 1)``, per request.

    NaN for a one-token output (no second token to time) and for unfinished requests (NaN times).
    """
    steps = np.asarray(output_tokens, dtype=np.float64) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(steps > 0, (finish - first_token) / np.where(steps > 0, steps, 1.0), np.nan)


class RequestRecorder:
    """Columns indexed by request id (= arrival index)."""

    def __init__(self, n: int) -> None:
        nan = np.full(n, np.nan)
        self.n = n
        self.arrival = nan.copy()
        self.decision = nan.copy()
        self.start = nan.copy()
        self.first_token = nan.copy()
        self.finish = nan.copy()
        # int32 (4 bytes a request each, not 8: a million-request run keeps ~16 MB less); the table
        # written to requests.parquet casts back to int64, so files are as before
        self.model = np.full(n, -1, dtype=np.int32)
        self.instance = np.full(n, -1, dtype=np.int32)
        self.batch = np.full(n, -1, dtype=np.int32)
        self.output_tokens = np.zeros(n, dtype=np.int32)
        self.cost = np.zeros(n)
        self.predicted_cost = np.zeros(n)
        self.predicted_quality = np.zeros(n)
        self.quality = np.zeros(n)
        self.status = np.zeros(n, dtype=np.int8)
        self.reason = np.zeros(n, dtype=np.int8)
        # Paged-scheduler counters (zero / NaN under reserve), set at finish; 16 bytes a request.
        self.preemptions = np.zeros(n, dtype=np.int32)
        self.recomputed_tokens = np.zeros(n, dtype=np.int32)
        self.cached_tokens = np.zeros(n, dtype=np.int32)
        self.max_gap = np.full(n, np.nan, dtype=np.float32)
        # The latency estimator's prediction for the chosen model at decision time (NaN: none made); None
        # until the dispatcher keeps estimates (keep_estimates): most runs make none, 8 bytes a request
        self.pred_ttft: np.ndarray | None = None
        self.pred_e2e: np.ndarray | None = None
        self.retries = np.zeros(n, dtype=np.int32)  # restarts after node failures
        self.completed = 0
        self.lost = 0

    def keep_estimates(self) -> None:
        """Make room for latency predictions (``pred_ttft`` / ``pred_e2e``, NaN until one is made)."""
        if self.pred_ttft is None or self.pred_e2e is None:
            self.pred_ttft = np.full(self.n, np.nan, dtype=np.float32)
            self.pred_e2e = np.full(self.n, np.nan, dtype=np.float32)

    def decide_at_arrival(self) -> None:
        """Every routing decision is made when its query arrives (no batching window): one column then
        holds both times (``decision`` is ``arrival``; 8 bytes a request less, issue 14). Writing a
        decision time writes the arrival time it equals."""
        self.decision = self.arrival

    def on_lost(self, req: Request, instance: int) -> None:
        """``req`` is lost to a node failure (``instance``: the failed instance it ran on, -1 if none)."""
        rid = req.rid
        self.instance[rid] = instance
        self.retries[rid] = req.retries
        self.status[rid] = STATUS_LOST
        self.reason[rid] = REASON_NODE_FAILURE
        self.cost[rid] = 0.0  # not billed and no answer, as for a rejected query (the table sums right)
        self.quality[rid] = 0.0
        self.lost += 1

    def on_finish(self, req: Request) -> None:
        rid = req.rid
        self.start[rid] = req.start_time
        self.first_token[rid] = req.first_token_time
        self.finish[rid] = req.finish_time
        self.instance[rid] = req.instance
        self.preemptions[rid] = req.preemptions
        self.recomputed_tokens[rid] = req.recomputed_tokens
        self.cached_tokens[rid] = req.cached_tokens
        self.max_gap[rid] = req.max_gap
        self.retries[rid] = req.retries
        self.status[rid] = STATUS_DONE
        self.completed += 1

    def columns(
        self,
        *,
        query_ids: np.ndarray,
        task: np.ndarray,
        task_names: tuple[str, ...],
        prompt_tokens: np.ndarray,
        model_names: tuple[str, ...],
    ) -> Columns:
        """One row per request (requests.parquet), from the recorded columns and the inputs named."""
        models = np.array(list(model_names) + [""], dtype=object)
        none = np.full(self.n, np.nan, dtype=np.float32)  # no estimates kept
        tasks = np.array(list(task_names), dtype=object)
        return {
            "request_id": np.arange(self.n, dtype=np.int64),
            "query_id": _id_text(np.asarray(query_ids)),
            "task": tasks[task],
            "arrival_s": self.arrival,
            "decision_s": self.decision,
            "start_s": self.start,
            "first_token_s": self.first_token,
            "finish_s": self.finish,
            "batch": self.batch.astype(np.int64),
            "model": models[self.model],  # -1 indexes the trailing "" (not routed)
            "instance": self.instance.astype(np.int64),
            "prompt_tokens": np.asarray(prompt_tokens, dtype=np.int64),
            "output_tokens": self.output_tokens.astype(np.int64),
            "tpot_s": tpot(self.first_token, self.finish, self.output_tokens),
            "max_tbt_s": self.max_gap,
            "preemptions": self.preemptions,
            "recomputed_tokens": self.recomputed_tokens,
            "cached_tokens": self.cached_tokens,
            "retries": self.retries,
            "predicted_ttft_s": none if self.pred_ttft is None else self.pred_ttft,
            "predicted_e2e_s": none if self.pred_e2e is None else self.pred_e2e,
            "cost_usd": self.cost,
            "predicted_cost_usd": self.predicted_cost,
            "predicted_quality": self.predicted_quality,
            "quality": self.quality,
            "status": np.array([STATUS_NAMES[s] for s in range(5)], dtype=object)[self.status],
            "reject_reason": np.array([{**REASON_NAMES, **LOST_REASON_NAMES}[r] for r in range(5)],
                                      dtype=object)[self.reason],
        }


def _id_text(ids: np.ndarray) -> np.ndarray:
    """Query ids as text, as ``ids.astype(str)`` gives them but, for integer ids, as wide as the longest
    (numpy makes every int64 21 characters: 84 MB for a million ids, issue 14)."""
    if ids.dtype.kind in "iu" and ids.size:
        return ids.astype(f"U{max(len(str(ids.min())), len(str(ids.max())))}")
    return ids.astype(str)
