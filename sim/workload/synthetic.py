"""Synthetic query pool for the default scenario: no external data, every quantity known.

A pool is a :class:`~sim.workload.queryset.QuerySet` drawn from a simple item-response model, so the
simulator runs out of the box and routing policies can be checked against the true success
probabilities:

* each query belongs to a task (drawn by the tasks' weights) and has a difficulty d ~ Beta(a, b) on
  [0, 1];
* each model has a strength s on the same scale (plus an optional per-task bonus), and answers query i
  correctly with p_ij = sigmoid(slope · (s_j − d_i) + logit_offset_task): a 1-parameter logistic (Rasch)
  model, the standard shape of accuracy-vs-difficulty curves;
* realised quality is one Bernoulli(p_ij) draw per (query, model), made once when the pool is built, so
  every policy routed over the pool faces the same outcomes (``true_prob`` keeps p for oracles and
  calibration checks);
* prompt length is per query, output length per (query, model): a per-query lognormal draw (how much
  the query asks for) × the model's verbosity × a small per-(query, model) lognormal noise, so models
  agree on which answers are long without being identical. Lengths are clipped to [min, max].

Default lengths are fitted to published data (medians and standard deviations of log tokens):

* chat — Azure LLM inference trace 2023, conversation (Patel et al., "Splitwise", ISCA 2024;
  Azure/AzurePublicDataset): input median 1,020 tokens (sd of log 0.99, range 2–14,050), output
  median 129 (sd of log 0.86, max 1,000).
* code — same trace, code: input median 1,469 (sd of log 1.36, max 7,437), output median 13 (sd of log
  0.85, max 1,899): code completion, long context and short answers.
* math and knowledge QA — MMLU-Pro (Wang et al., NeurIPS 2024; TIGER-AI-Lab/MMLU-Pro) per-model
  outputs, characters / 4: math prompts median ≈ 65 tokens (sd of log ≈ 0.6), chain-of-thought
  outputs ≈ 85 (≈ 0.9); other categories prompts ≈ 129 (≈ 0.76), outputs ≈ 76 (≈ 0.74).

Difficulty shapes and strengths are not measured but chosen so that the default 4-model ladder spans
accuracy ≈ 0.45 → 0.85 on the default mix (close to the 8B → frontier spread on MMLU-Pro, 0.36 → 0.70,
shifted up because the mix includes easy chat), with math hardest and chat easiest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.workload.queryset import QuerySet


@dataclass(frozen=True)
class TokenDist:
    """Lognormal token count with the given median and log-space sd, rounded and clipped to [min, max]."""

    median: float
    sigma: float
    min: int = 1
    max: int = 32_768

    def __post_init__(self) -> None:
        if not (math.isfinite(self.median) and self.median > 0):
            raise ValueError(f"TokenDist: median must be > 0, got {self.median!r}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"TokenDist: sigma must be >= 0, got {self.sigma!r}")
        if not (1 <= self.min <= self.max):
            raise ValueError(f"TokenDist: need 1 <= min <= max, got min={self.min!r}, max={self.max!r}")


@dataclass(frozen=True)
class TaskSpec:
    """One kind of query: its share of the mix, difficulty distribution and lengths.

    Attributes:
        name: task name (becomes ``QuerySet.task_names``).
        weight: relative share of queries (normalised over the tasks).
        difficulty_a, difficulty_b: difficulty ~ Beta(a, b) on [0, 1] (mean a / (a + b)).
        prompt: prompt-token distribution.
        output: output-token distribution of a model with verbosity 1.
        logit_offset: added to every model's log-odds on this task (e.g. > 0 for multiple choice, where
            guessing helps); 0 by default.
    """

    name: str
    weight: float
    difficulty_a: float
    difficulty_b: float
    prompt: TokenDist
    output: TokenDist
    logit_offset: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"TaskSpec {self.name!r}: weight must be >= 0, got {self.weight!r}")
        for key in ("difficulty_a", "difficulty_b"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"TaskSpec {self.name!r}: {key} must be > 0, got {value!r}")
        if not math.isfinite(self.logit_offset):
            raise ValueError(f"TaskSpec {self.name!r}: logit_offset must be finite")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the ladder.

    Attributes:
        name: model name (becomes a ``QuerySet.model_names`` column).
        strength: ability on the difficulty scale: p = 1/2 on queries of difficulty = strength.
        verbosity: multiplier on output tokens (e.g. > 1 for a model that reasons at length).
        task_bonus: ((task name, extra strength), ...) for specialists, e.g. a coder model.
    """

    name: str
    strength: float
    verbosity: float = 1.0
    task_bonus: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not math.isfinite(self.strength):
            raise ValueError(f"ModelSpec {self.name!r}: strength must be finite")
        if not (math.isfinite(self.verbosity) and self.verbosity > 0):
            raise ValueError(f"ModelSpec {self.name!r}: verbosity must be > 0, got {self.verbosity!r}")
        bonus = self.task_bonus.items() if isinstance(self.task_bonus, Mapping) else self.task_bonus
        object.__setattr__(self, "task_bonus", tuple((str(t), float(b)) for t, b in bonus))


def default_tasks() -> list[TaskSpec]:
    """Four tasks, easiest to hardest: chat, knowledge QA, code, math (sources in the module doc)."""
    return [
        TaskSpec("chat", 0.40, 2.0, 4.0, TokenDist(1020, 0.99, 2, 14_050), TokenDist(129, 0.86, 1, 1000)),
        TaskSpec("knowledge_qa", 0.25, 3.0, 3.5, TokenDist(129, 0.76, 8, 4096), TokenDist(76, 0.74, 1, 2048)),
        TaskSpec("code", 0.20, 3.0, 3.0, TokenDist(1469, 1.36, 3, 7437), TokenDist(13, 0.85, 1, 1899)),
        TaskSpec("math", 0.15, 4.0, 2.5, TokenDist(65, 0.60, 8, 4096), TokenDist(85, 0.90, 1, 4096)),
    ]


def default_models() -> list[ModelSpec]:
    """A 4-model ladder, weakest to strongest: accuracy ≈ 0.45, 0.60, 0.70, 0.85 on the default mix.

    The 30B MoE is a code specialist (strength bonus on ``code``: it matches the 70B there, ≈ 0.65), so
    the best value differs by task; the frontier API model is the most verbose (it explains more).
    Per-task accuracy, weakest → strongest: chat 0.60 → 0.93, knowledge QA 0.42 → 0.85,
    code 0.37 → 0.82, math 0.22 → 0.69.
    """
    return [
        ModelSpec("llama-3.1-8b", 0.40, 1.0),
        ModelSpec("qwen3-30b-a3b", 0.49, 1.1, (("code", 0.12),)),
        ModelSpec("llama-3.3-70b", 0.60, 1.0),
        ModelSpec("frontier-api", 0.76, 1.3),
    ]


def _task_spec(spec: TaskSpec | Mapping[str, object]) -> TaskSpec:
    """Accept a TaskSpec or a plain dict (e.g. from YAML) with nested ``prompt``/``output`` dicts."""
    if isinstance(spec, TaskSpec):
        return spec
    fields = dict(spec)
    for key in ("prompt", "output"):
        if isinstance(fields.get(key), Mapping):
            fields[key] = TokenDist(**fields[key])  # type: ignore[arg-type]
    return TaskSpec(**fields)  # type: ignore[arg-type]


def _model_spec(spec: ModelSpec | Mapping[str, object]) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else ModelSpec(**spec)  # type: ignore[arg-type]


def _check_unique(kind: str, names: list[str]) -> None:
    if not names:
        raise ValueError(f"synthetic_pool: need at least one {kind}")
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise ValueError(f"synthetic_pool: duplicate {kind} name {dup[0]!r}")


def _strengths(models: list[ModelSpec], task_names: list[str]) -> NDArray[np.float64]:
    """(tasks, models) strength of each model on each task, bonuses included."""
    out = np.array([[mdl.strength for mdl in models]] * len(task_names), dtype=np.float64)
    for j, mdl in enumerate(models):
        for task, bonus in mdl.task_bonus:
            if task not in task_names:
                raise ValueError(f"ModelSpec {mdl.name!r}: task_bonus names unknown task {task!r}")
            out[task_names.index(task), j] += bonus
    return out


def _lognormal_tokens(
    rng: np.random.Generator, medians: NDArray[np.float64], sigmas: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Unrounded lognormal draws, one per entry of ``medians`` (broadcast with ``sigmas``)."""
    return np.exp(np.log(medians) + sigmas * rng.standard_normal(medians.shape))


def _clip_round(x: NDArray[np.float64], lo: NDArray[np.int64], hi: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def synthetic_pool(
    n: int,
    tasks: Sequence[TaskSpec | Mapping[str, object]] | None,
    models: Sequence[ModelSpec | Mapping[str, object]] | None,
    rng: np.random.Generator,
    *,
    slope: float = 8.0,
    output_noise_sigma: float = 0.3,
) -> QuerySet:
    """Draw ``n`` queries (see the module doc for the model). ``None`` tasks/models mean the defaults.

    ``slope`` sets how sharply success falls with difficulty: with the default 8, a model 0.1 stronger
    than a query's difficulty succeeds with p ≈ 0.69, 0.3 stronger with p ≈ 0.92.
    ``output_noise_sigma`` is the log-space sd of the per-(query, model) length noise; its median is 1,
    so each model's median output stays ≈ task median × verbosity.
    Draws happen in a fixed order (task, difficulty, prompt, output, noise, outcomes), so a seed
    fixes the whole pool.
    """
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"synthetic_pool: n must be an integer >= 0, got {n!r}")
    if not (math.isfinite(slope) and slope > 0):
        raise ValueError(f"synthetic_pool: slope must be > 0, got {slope!r}")
    if not (math.isfinite(output_noise_sigma) and output_noise_sigma >= 0):
        raise ValueError(f"synthetic_pool: output_noise_sigma must be >= 0, got {output_noise_sigma!r}")
    task_specs = [_task_spec(t) for t in (default_tasks() if tasks is None else tasks)]
    model_specs = [_model_spec(m) for m in (default_models() if models is None else models)]
    task_names, model_names = [t.name for t in task_specs], [m.name for m in model_specs]
    _check_unique("task", task_names)
    _check_unique("model", model_names)
    weights = np.array([t.weight for t in task_specs], dtype=np.float64)
    if weights.sum() <= 0:
        raise ValueError("synthetic_pool: task weights must not all be 0")
    strength = _strengths(model_specs, task_names)
    n = int(n)

    def per_task(attr: str, sub: str | None = None) -> NDArray[np.float64]:
        values = [getattr(getattr(t, sub), attr) if sub else getattr(t, attr) for t in task_specs]
        return np.array(values, dtype=np.float64)[task]

    task = rng.choice(len(task_specs), size=n, p=weights / weights.sum()).astype(np.int64)
    difficulty = rng.beta(per_task("difficulty_a"), per_task("difficulty_b"))
    prompt = _clip_round(
        _lognormal_tokens(rng, per_task("median", "prompt"), per_task("sigma", "prompt")),
        per_task("min", "prompt").astype(np.int64),
        per_task("max", "prompt").astype(np.int64),
    )
    base_output = _lognormal_tokens(rng, per_task("median", "output"), per_task("sigma", "output"))
    verbosity = np.array([m.verbosity for m in model_specs], dtype=np.float64)
    noise = np.exp(output_noise_sigma * rng.standard_normal((n, len(model_specs))))
    output = _clip_round(
        base_output[:, None] * verbosity[None, :] * noise,
        per_task("min", "output").astype(np.int64)[:, None],
        per_task("max", "output").astype(np.int64)[:, None],
    )
    logit = slope * (strength[task] - difficulty[:, None]) + per_task("logit_offset")[:, None]
    true_prob = _sigmoid(logit)
    quality = (rng.random(true_prob.shape) < true_prob).astype(np.float64)
    return QuerySet(
        model_names=tuple(model_names),
        task_names=tuple(task_names),
        task=task,
        prompt_tokens=prompt,
        quality=quality,
        output_tokens=output,
        query_ids=np.arange(n, dtype=np.int64),
        true_prob=true_prob,
        difficulty=difficulty,
    )
