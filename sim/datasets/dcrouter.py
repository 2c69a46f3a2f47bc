"""LLMRouter's dcrouter split: JSON lists of ``{question, scores: {model: float}}``.

``path`` is one JSON file, or a directory whose ``train.json`` and/or ``test.json`` are loaded together.
The QuerySet has no split field, so the split is marked in the query ids: ``"train/0"``,
``"test/17"`` (file stem, then the 0-based position in that file's list); :func:`split_labels` reads it
back and :func:`load_dcrouter_splits` returns the two parts.

Tasks: dcrouter has no task field (``cluster_id`` exists only in train.json and its clusters mix
question types), so a coarse label is derived from the text by :func:`dcrouter_task`, whose patterns
are unambiguous in this data: ``logic_puzzle`` (the "There are N houses" zebra puzzles), ``code``
(HumanEval stubs, MBPP "Write a function"), ``word_list`` (comma-separated word lists to sort),
``math`` (LaTeX, or numeric word problems asking "how many / how much / what is the"), ``reading``
(passages over 1,000 characters), else ``qa``. ``task="single"`` puts everything in task
``"dcrouter"`` instead.

Tokens: prompt tokens are estimated from the question; there is no output text, so every model is
given ``output_tokens`` (default :data:`~sim.datasets.tokens.DEFAULT_OUTPUT_TOKENS`).
Errors name the file and the item (1-based position in the JSON list).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from sim.datasets.common import encode_tasks
from sim.datasets.tokens import DEFAULT_OUTPUT_TOKENS, check_token_option, estimate_tokens
from sim.datasets.validate import require_file, utf8_error_line
from sim.errors import DataError, read_error
from sim.workload.queryset import QuerySet
from sim.workload.traces import huge_json_integer

SPLIT_FILES = ("train.json", "test.json")
TASK_MODES = ("heuristic", "single")

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("logic_puzzle", re.compile(r"There (?:are|is) \d+ houses")),
    ("code", re.compile(r"^\s*(?:def |from \w+ import|import )|\bWrite a (?:python )?function\b", re.I)),
    ("word_list", re.compile(r"^\s*(?:[A-Za-z'-]+, ){5,}")),
    ("math", re.compile(r"\\\(|\\\[|\$[^$]+\$|\\frac")),
)
_NUMERIC_QUESTION = re.compile(r"\b(?:how (?:many|much|long|far|old)|what is the)\b", re.I)


def dcrouter_task(question: str) -> str:
    """The coarse task label of one question (rules in the module docstring, first match wins)."""
    for name, pattern in _PATTERNS:
        if pattern.search(question):
            return name
    if len(re.findall(r"\d+", question)) >= 2 and _NUMERIC_QUESTION.search(question):
        return "math"
    return "reading" if len(question) > 1000 else "qa"


def load_dcrouter(
    path: str | Path, *, task: str = "heuristic", output_tokens: int = DEFAULT_OUTPUT_TOKENS
) -> QuerySet:
    """Load one dcrouter JSON file or a directory holding train.json / test.json."""
    if task not in TASK_MODES:
        raise ValueError(f"task={task!r}: expected one of {', '.join(TASK_MODES)}")
    output_tokens = check_token_option("output_tokens", output_tokens)
    root = Path(path)
    if root.is_dir():
        files = [root / name for name in SPLIT_FILES if (root / name).is_file()]
        if not files:
            raise DataError(f"directory has neither {' nor '.join(SPLIT_FILES)}", file=root)
    else:
        files = [root]
    questions: list[str] = []
    ids: list[str] = []
    rows: list[NDArray[np.float64]] = []
    models: tuple[str, ...] | None = None
    for file in files:
        for i, item in enumerate(_read_list(file)):
            question, scores = _parse_item(item, i, file)
            if models is None:
                models = tuple(scores)
            rows.append(_score_row(scores, models, i, file))
            questions.append(question)
            ids.append(f"{file.stem}/{i}")
    if models is None or not rows:
        raise DataError("no items: expected a non-empty JSON list", file=files[0])
    labels = [dcrouter_task(q) if task == "heuristic" else "dcrouter" for q in questions]
    task_names, task_idx = encode_tasks(labels)
    n = len(rows)
    return QuerySet(
        model_names=models,
        task_names=task_names,
        task=task_idx,
        prompt_tokens=estimate_tokens(questions),
        quality=np.vstack(rows),
        output_tokens=np.full((n, len(models)), int(output_tokens), dtype=np.int64),
        query_ids=np.asarray(ids, dtype=object),
        prompts=tuple(questions),
    )


def split_labels(qs: QuerySet) -> NDArray[np.str_]:
    """The split ("train", "test", or the file stem) of each query of a dcrouter QuerySet."""
    return np.asarray([str(q).split("/", 1)[0] for q in qs.query_ids])


def load_dcrouter_splits(
    path: str | Path, *, task: str = "heuristic", output_tokens: int = DEFAULT_OUTPUT_TOKENS
) -> tuple[QuerySet, QuerySet]:
    """(train, test) of a dcrouter directory, as published (no re-splitting)."""
    qs = load_dcrouter(path, task=task, output_tokens=output_tokens)
    labels = split_labels(qs)
    for name in ("train", "test"):
        if not (labels == name).any():
            raise DataError(f"no {name}.json in the directory", file=path)
    return qs.subset(np.flatnonzero(labels == "train")), qs.subset(np.flatnonzero(labels == "test"))


def _read_list(file: Path) -> list[object]:
    require_file(file, "a dcrouter JSON file")
    try:
        with file.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"invalid JSON: {exc.msg}", file=file, where=f"line {exc.lineno}, column {exc.colno}"
        ) from exc
    except RecursionError:
        raise DataError("JSON nested too deeply; expected a list of {question, scores} objects", file=file,
                        where="line 1") from None
    except UnicodeDecodeError as exc:  # (a ValueError too: before the branch below)
        raise DataError(f"not UTF-8 text ({exc.reason})", file=file,
                        where=f"line {utf8_error_line(file)}") from None
    except ValueError:  # JSON that parses but for an integer too long for int() (4300 digits by default)
        raise _huge_integer(file) from None
    except OSError as exc:
        raise read_error(exc, file) from None
    if not isinstance(data, list):
        raise DataError(
            f"expected a JSON list of {{question, scores}} objects, got {type(data).__name__}", file=file,
            where=f"line {_first_value_line(file)}",
        )
    return data


def _huge_integer(file: Path) -> DataError:
    """The error for a file holding an integer too long for Python to read, at its line and key: the
    json module's message names neither, and no score or question needs such a number."""
    text = file.read_text(encoding="utf-8")
    found = huge_json_integer(text)
    if found is None:
        return DataError("a number too long to read; expected scores in [0, 1]", file=file, where="line 1")
    key, digits, at = found
    line = text.count("\n", 0, at) + 1
    return DataError(f"{f'{key!r} is ' if key else ''}an integer of {digits} digits; expected a score in [0, 1]",
                     file=file, where=f"line {line}")


def _first_value_line(file: Path) -> int:
    """The line where the JSON document's top-level value starts (after leading blank lines)."""
    text = file.read_text(encoding="utf-8")
    return text[: len(text) - len(text.lstrip())].count("\n") + 1


def _parse_item(item: object, i: int, file: Path) -> tuple[str, dict[str, object]]:
    where = f"item {i + 1}"
    if not isinstance(item, dict):
        raise DataError(
            f"expected an object with 'question' and 'scores', got {type(item).__name__}",
            file=file,
            where=where,
        )
    for key in ("question", "scores"):
        if key not in item:
            raise DataError(
                f"missing key {key!r}; expected {{question, scores: {{model: score}}}}",
                file=file,
                where=f"{where}, {key}",
            )
    question, scores = item["question"], item["scores"]
    if not isinstance(question, str):
        raise DataError(
            f"expected question text, got {type(question).__name__}", file=file, where=f"{where}, question"
        )
    if not isinstance(scores, dict) or not scores:
        raise DataError(
            "expected scores to be a non-empty {model: score} object", file=file, where=f"{where}, scores"
        )
    return question, scores


def _score_row(scores: dict[str, object], models: tuple[str, ...], i: int, file: Path) -> NDArray[np.float64]:
    if set(scores) != set(models):
        extra = sorted(set(scores) - set(models))
        lacking = sorted(set(models) - set(scores))
        detail = f"no score for model {lacking[0]!r}" if lacking else f"unexpected model {extra[0]!r}"
        raise DataError(
            f"{detail}; every item must score the same models: {', '.join(models)}",
            file=file,
            where=f"item {i + 1}, scores",
        )
    row = np.empty(len(models))
    for j, model in enumerate(models):
        value = scores[model]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and 0.0 <= value <= 1.0)
        ):
            raise DataError(
                f"score {value!r}: expected a number in [0, 1] (items are 1-based)",
                file=file,
                where=f"item {i + 1}, scores.{model}",
            )
        row[j] = float(value)
    return row
