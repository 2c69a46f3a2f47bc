"""llmsim's routing policies: a pure library (numpy/scipy/networkx only).

>>> from policies import RoutingProblem, solve
>>> import numpy as np
>>> p = RoutingProblem(quality=np.array([[0.5, 0.9]]), cost=np.array([[1.0, 3.0]]), budget=2.0)
>>> solve(p, "cheapest").assignment.tolist()
[0]
"""

from policies.allocation import (
    AllocationProblem,
    AllocationResult,
    InfeasibleAllocationError,
    InvalidAllocationError,
    allocate_greedy,
    allocate_milp,
    allocate_proportional,
    allocate_uniform,
    evaluate_allocation,
)
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

# Importing the implementation modules registers their policies.
from policies import per_query as _per_query  # noqa: E402,F401  isort: skip

from policies import batch as _batch  # noqa: E402,F401  isort: skip

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
