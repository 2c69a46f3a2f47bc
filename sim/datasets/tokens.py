"""Token counts when a source does not give them.

Most routing datasets record correctness but not token counts, yet cost (and so every budgeted routing
problem) is priced per token. One rule estimates tokens from text everywhere, so two loaders never
disagree about the same prompt:

    tokens = max(1, ceil(characters / 4))

Four characters per token is the usual average for English with BPE tokenizers (GPT-2 … Llama 3); it is
off by maybe ±30 % per text, which matters less than being consistent across models and loaders.

Missing *output* lengths (e.g. the API models of MMLU-Pro, whose published output text is empty) are
filled by :func:`fill_output_tokens`, whose rule is documented there.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from sim.config.schema import MAX_TOKENS  # the scenario's own bound on a token count

CHARS_PER_TOKEN = 4
"""Characters per token of the estimate (see the module docstring)."""

DEFAULT_OUTPUT_TOKENS = 256
"""Output length used when nothing at all is known (no text, no counts for any model or task)."""

DEFAULT_PROMPT_TOKENS = 512
"""Prompt length used by the long-table loader when the file has neither prompts nor input_tokens."""


def token_option_problem(value: object) -> str | None:
    """What is wrong with a loader's token-count option (``output_tokens``, ``default_prompt_tokens``,
    ...), or None: 0 or a negative count would bill nothing (or less than nothing), a fraction would be
    truncated silently, and null or text would fail deep inside the loader."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= MAX_TOKENS:
        shown = "null" if value is None else repr(value)[:60]
        return f"expected a positive integer token count (1 to {MAX_TOKENS:,}), got {shown}"
    return None


def check_token_option(name: str, value: object) -> int:
    """The option as an int, or a ValueError naming it (:func:`token_option_problem`)."""
    problem = token_option_problem(value)
    if problem is not None:
        raise ValueError(f"{name}: {problem}")
    return int(value)  # type: ignore[call-overload]  # an int or numpy integer, checked above


def tokens_from_chars(n_chars: NDArray[np.floating] | NDArray[np.integer]) -> NDArray[np.float64]:
    """``max(1, ceil(chars / 4))`` elementwise; NaN stays NaN (unknown length stays unknown)."""
    chars = np.asarray(n_chars, dtype=np.float64)
    out = np.maximum(1.0, np.ceil(chars / CHARS_PER_TOKEN))
    out[np.isnan(chars)] = np.nan
    return out


def unwrap_list_literal(text: str) -> str:
    """The text inside a Python list literal of strings (``"['A']"`` → ``"A"``), else ``text`` unchanged.

    RouterBench publishes prompts and responses as ``str(list_of_turns)``; counting the brackets and
    quotes makes a one-letter answer 2 tokens and inflates every prompt, so loaders of such sources
    unwrap first. Turns are joined with a newline. Only a literal that parses as a list of strings
    (``ast.literal_eval``, which evaluates no code) is unwrapped; ``"[1, 2]"`` or ``"[draft]"`` stay.
    """
    stripped = text.strip()
    if len(stripped) < 2 or stripped[0] != "[" or stripped[-1] != "]":
        return text
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return text
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    return text


def estimate_tokens(texts: Iterable[str]) -> NDArray[np.int64]:
    """Estimated token count of each text: ``max(1, ceil(len(text) / 4))`` (the project-wide rule).

    A single string counts as one text (not as a sequence of characters)."""
    if isinstance(texts, str):
        texts = [texts]
    lengths = np.fromiter((len(t) for t in texts), dtype=np.float64)
    return tokens_from_chars(lengths).astype(np.int64)


def fill_output_tokens(
    tokens: NDArray[np.float64], task: NDArray[np.int64], default: int = DEFAULT_OUTPUT_TOKENS
) -> NDArray[np.int64]:
    """Replace NaN cells of an (n, m) output-token array, most specific known estimate first.

    For a missing cell (query i of task t, model j) the first that exists of:

    1. the median of model j on the other queries of task t (models are consistent within a task);
    2. the median of model j over all queries;
    3. the median of all models on task t (a model with no lengths at all, e.g. an API model, is
       assumed to answer like the average model on that task);
    4. the median of everything known, then ``default``.

    Returns positive integers (rounded, at least 1).
    """
    tokens = np.array(tokens, dtype=np.float64, copy=True)
    missing = np.isnan(tokens)
    if not missing.any():
        return np.maximum(1, np.rint(tokens)).astype(np.int64)
    n_tasks = int(task.max()) + 1 if len(task) else 0
    m = tokens.shape[1]
    known_all = tokens[~missing]
    overall = float(np.median(known_all)) if known_all.size else float(default)
    per_model = np.full(m, np.nan)
    per_task = np.full(n_tasks, np.nan)
    per_task_model = np.full((n_tasks, m), np.nan)
    for j in range(m):
        col = tokens[:, j]
        if np.isfinite(col).any():
            per_model[j] = np.nanmedian(col)
    for t in range(n_tasks):
        rows = tokens[task == t]
        if rows.size and np.isfinite(rows).any():
            per_task[t] = np.nanmedian(rows)
            for j in range(m):
                if np.isfinite(rows[:, j]).any():
                    per_task_model[t, j] = np.nanmedian(rows[:, j])
    qi, mj = np.nonzero(missing)
    fill = per_task_model[task[qi], mj]
    for candidate in (per_model[mj], per_task[task[qi]]):
        fill = np.where(np.isnan(fill), candidate, fill)
    fill = np.where(np.isnan(fill), overall, fill)
    tokens[qi, mj] = fill
    return np.maximum(1, np.rint(tokens)).astype(np.int64)
