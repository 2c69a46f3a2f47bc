"""Policy registry and the thin public entry point :func:`solve`.

Like networkx's algorithm dispatch: one public function, pluggable implementations looked up by name.
A policy is a class with keyword-only parameters and a ``route(problem) -> RoutingResult`` method;
instances may keep state between batches (``round_robin``'s cursor, ``random``'s generator), which is
why the simulator builds one instance per run with :func:`make_policy` rather than calling ``solve``.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from policies.errors import InvalidParameterError, UnknownPolicyError
from policies.one_query import OneQuery
from policies.problem import RoutingProblem
from policies.result import STATUS_FEASIBLE, RoutingResult


@dataclass(frozen=True)
class SpendKnob:
    """The parameter that moves a policy's spend, so experiments can compare policies at equal spend.

    ``path`` is a scenario field (``router.params.lam`` or ``router.budget_per_query``); ``increasing``
    says whether spend rises with it; [lo, hi] brackets the search (``hi=None``: the dearest predicted
    per-query cost, for budgets); ``log`` bisects on a log scale (λ spans decades).
    """

    path: str
    increasing: bool
    lo: float
    hi: float | None
    log: bool = False


class Policy:
    """Base class. Subclasses set ``name`` and implement :meth:`_route`."""

    name: ClassVar[str] = ""
    #: True when the policy looks at ``problem.true_quality`` (oracle); the simulator fills it only then.
    needs_true_quality: ClassVar[bool] = False
    #: True when the policy routes jointly over the batch (False: one query at a time).
    batch_level: ClassVar[bool] = False
    #: True when the policy reads ``problem.load`` (work in flight); callers may skip computing it otherwise.
    needs_load: ClassVar[bool] = False
    #: True when the policy reads ``problem.latency`` even without an SLO (latency-based routing):
    #: callers must then estimate latencies for every batch and cannot decide queries up front.
    needs_latency: ClassVar[bool] = False
    #: The parameter that trades spend for quality (None: the policy has no spend knob).
    spend_knob: ClassVar[SpendKnob | None] = None
    #: The status :meth:`route` gives a one-query batch that :meth:`route_one` answers (before the
    #: checker downgrades a violating answer to ``infeasible``): per-query rules claim ``feasible``.
    one_query_status: ClassVar[str] = STATUS_FEASIBLE

    @property
    def row_independent(self) -> bool:
        """True when, with no binding capacity or budget row, the choice for a query depends only on its
        own row (and, for stateful rules, on how many queries came before). Such a policy gives the same
        assignment whether it routes N batches one by one or all N queries in one call, which lets the
        simulator decide every query of a run in one vectorised call."""
        return False

    def route_one(self, query: OneQuery) -> int | None:
        """The model for a batch of one query given as Python scalars (-1: rejected), or ``None`` when
        this policy has no scalar path for it (the caller then builds the RoutingProblem and calls
        :meth:`route`). When it answers, it is ``route(problem).assignment[0]`` on the equivalent problem
        and leaves the policy's state (cursor, generator) as :meth:`route` would (:mod:`policies.one_query`)."""
        return None

    def route(self, problem: RoutingProblem) -> RoutingResult:
        """Route one batch; times the call and stores it in ``solve_time_s``."""
        t0 = time.perf_counter()
        result = self._route(problem)
        result.solve_time_s = time.perf_counter() - t0
        result.info.setdefault("policy", self.name)
        return result

    def _route(self, problem: RoutingProblem) -> RoutingResult:  # pragma: no cover - abstract
        raise NotImplementedError


P = TypeVar("P", bound=type[Policy])
_REGISTRY: dict[str, type[Policy]] = {}
#: Policies whose module is imported on first use: the batch policies pull in scipy.optimize, scipy.sparse
#: and networkx (most of a second), which a per-query run or ``llmsim validate`` never needs. A test checks
#: that this table names exactly what those modules register.
LAZY: dict[str, str] = {
    "lagrangian": "policies.batch.lagrangian",
    "milp": "policies.batch.milp",
    "min_cost_flow": "policies.batch.min_cost_flow",
    "oracle": "policies.batch.oracle",
    "robust": "policies.batch.robust",
}


def register(name: str) -> Callable[[P], P]:
    """Class decorator adding a policy to the registry under ``name``."""

    def deco(cls: P) -> P:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"policy name {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_policies() -> list[str]:
    """Sorted names of every policy, registered or importable on first use (:data:`LAZY`)."""
    return sorted(set(_REGISTRY) | set(LAZY))


def policy_class(name: str) -> type[Policy]:
    if name not in _REGISTRY and isinstance(name, str) and name in LAZY:
        importlib.import_module(LAZY[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownPolicyError(
            f"unknown policy {name!r}; valid names: {', '.join(available_policies())}"
        ) from None


def policy_parameters(name: str) -> list[str]:
    """Names of the keyword parameters policy ``name`` accepts."""
    sig = inspect.signature(policy_class(name).__init__)
    return [p for p in sig.parameters if p != "self"]


def make_policy(name: str, **params: Any) -> Policy:
    """Instantiate policy ``name``; an unknown or ill-typed parameter raises InvalidParameterError."""
    cls = policy_class(name)
    accepted = policy_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidParameterError(
            f"policy {name!r} does not accept parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or '(none)'}"
        )
    try:
        return cls(**params)
    except InvalidParameterError:
        raise
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"policy {name!r}: {exc}") from exc


def solve(problem: RoutingProblem, policy: str = "milp", **params: Any) -> RoutingResult:
    """Route one batch with the named policy (a fresh instance, so no state carries over)."""
    return make_policy(policy, **params).route(problem)
