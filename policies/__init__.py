"""llmsim's routing policies: a pure library (numpy/scipy/networkx only).

>>> from policies import RoutingProblem, solve
>>> import numpy as np
>>> p = RoutingProblem(quality=np.array([[0.5, 0.9]]), cost=np.array([[1.0, 3.0]]), budget=2.0)
>>> solve(p, "cheapest").assignment.tolist()
[0]
"""

from typing import TYPE_CHECKING, Any

from policies.errors import InvalidParameterError, InvalidProblemError, PolicyError, UnknownPolicyError
from policies.problem import REJECT, ProblemForm, RoutingProblem
from policies.registry import (
    Policy,
    SpendKnob,
    available_policies,
    make_policy,
    policy_class,
    policy_parameters,
    register,
    solve,
)
from policies.result import (
    STATUS_FEASIBLE,
    STATUS_INFEASIBLE,
    STATUS_OPTIMAL,
    Evaluation,
    RoutingResult,
    check_assignment,
)

# Importing the implementation module registers the per-query policies; the batch policies (scipy,
# networkx) are imported on first use (registry.LAZY), and so is the allocation optimiser (below): start-up
# of a per-query run or of ``llmsim validate`` does not pay for scipy.optimize.
from policies import per_query as _per_query  # noqa: E402,F401  isort: skip

_ALLOCATION = ("AllocationProblem", "AllocationResult", "InfeasibleAllocationError", "InvalidAllocationError",
               "allocate_greedy", "allocate_milp", "allocate_proportional", "allocate_uniform",
               "balanced_share", "evaluate_allocation")


if TYPE_CHECKING:  # the same names, typed, for mypy and editors
    from policies.allocation import (  # noqa: F401
        AllocationProblem,
        AllocationResult,
        InfeasibleAllocationError,
        InvalidAllocationError,
        allocate_greedy,
        allocate_milp,
        allocate_proportional,
        allocate_uniform,
        balanced_share,
        evaluate_allocation,
    )


def __getattr__(name: str) -> Any:
    """``policies.allocate_milp`` & co. import :mod:`policies.allocation` when first asked for."""
    if name in _ALLOCATION:
        from policies import allocation

        return getattr(allocation, name)
    raise AttributeError(f"module 'policies' has no attribute {name!r}")

__all__ = [
    "REJECT",
    "AllocationProblem",
    "AllocationResult",
    "InfeasibleAllocationError",
    "InvalidAllocationError",
    "allocate_greedy",
    "allocate_milp",
    "allocate_proportional",
    "allocate_uniform",
    "balanced_share",
    "evaluate_allocation",
    "STATUS_FEASIBLE",
    "STATUS_INFEASIBLE",
    "STATUS_OPTIMAL",
    "Evaluation",
    "InvalidParameterError",
    "InvalidProblemError",
    "Policy",
    "PolicyError",
    "ProblemForm",
    "RoutingProblem",
    "RoutingResult",
    "SpendKnob",
    "UnknownPolicyError",
    "available_policies",
    "check_assignment",
    "make_policy",
    "policy_class",
    "policy_parameters",
    "register",
    "solve",
]
