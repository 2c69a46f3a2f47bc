"""A scenario's dataset pool: load it, pick the scenario's models, split it into train and test.

One function, :func:`load_pool`, so the workload builder and ``llmsim validate`` make the same checks:

- options: ``on_duplicate`` / ``on_missing_score`` go to the loaders that support them (routerbench,
  long_table); for the others anything but the default ``error`` is refused, naming the field;
- ``split: seeded`` draws ``test_fraction`` of the queries (task-stratified, stream ``split``);
  ``split: files`` keeps the dataset's own parts: the files whose names say ``test`` are simulated and
  those saying ``train`` train the predictor (routerbench: see :func:`sim.datasets.routerbench.split_of`;
  dcrouter: ``test.json`` / ``train.json``); ``test_fraction`` is then unused;
- a prompt also present in the test part leaves the train part (the predictor must not see the
  simulated queries' own labels);
- size: a test part of fewer than :data:`MIN_TEST_QUERIES` queries is refused (every arrival would
  replay the same one or two questions); fewer than :data:`FEW_TEST_QUERIES`, or more than
  :data:`MAX_REPLAYS` arrivals per test query, is a warning (accuracy then measures a handful of
  questions many times over).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sim import rng as rngs
from sim.config.checks import name_list, short
from sim.config.schema import DatasetPool
from sim.datasets import LOADERS
from sim.datasets.common import MISSING_POLICIES
from sim.datasets.dcrouter import TASK_MODES, split_labels
from sim.datasets.split import train_test_split
from sim.datasets.tokens import token_option_problem
from sim.errors import DataError, InputError, ScenarioError, warn_input
from sim.workload.queryset import QuerySet

MIN_TEST_QUERIES = 2
FEW_TEST_QUERIES = 20
MAX_REPLAYS = 50.0
ROW_OPTIONS = ("on_duplicate", "on_missing_score")
ROW_OPTION_KINDS = ("routerbench", "long_table")
"""Loaders that take ``on_duplicate`` / ``on_missing_score``."""


TOKEN_OPTIONS = ("output_tokens", "default_prompt_tokens", "default_output_tokens")
"""Loader options that are token counts (positive integers, :func:`token_option_problem`)."""
CHOICE_OPTIONS: dict[str, tuple[str, ...]] = {"task": TASK_MODES, "missing": MISSING_POLICIES}
"""Loader options that take one of a few words."""
PYTHON_ONLY = ("rng",)
"""Loader arguments that are Python objects, not scenario values."""


def accepted_options(kind: str) -> list[str]:
    """The ``workload.pool.options`` names the loader of ``kind`` takes (its keyword-only arguments)."""
    params = inspect.signature(LOADERS[kind]).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in PYTHON_ONLY]


def check_options(pool: DatasetPool) -> None:
    """ScenarioError naming ``workload.pool.options.<name>`` for an option the loader does not take or a
    value it cannot use, before the loader runs: its own failure (a TypeError, ``int('x')``) names
    neither the option nor what was expected, and a token count of 0 or -1 would be used as given."""
    if pool.kind not in LOADERS:
        return  # load_full names the kind
    accepted = accepted_options(pool.kind)
    for name, value in pool.options.items():
        where = f"workload.pool.options.{name}"
        if name in ROW_OPTIONS:
            continue  # the older spelling of the pool's own fields: loader_options decides
        if name not in accepted:
            raise ScenarioError(f"unknown option {name!r} for the {pool.kind} loader; its options are: "
                                f"{', '.join(accepted)}", where=where)
        problem = token_option_problem(value) if name in TOKEN_OPTIONS else None
        if name in CHOICE_OPTIONS and value not in CHOICE_OPTIONS[name]:
            problem = f"expected one of {', '.join(CHOICE_OPTIONS[name])}, got {short(value)}"
        if problem is not None:
            raise ScenarioError(problem, where=where)


def loader_options(pool: DatasetPool, names: list[str]) -> dict[str, Any]:
    """Keyword arguments for the pool's loader (ScenarioError for options its kind cannot honour)."""
    check_options(pool)
    opts: dict[str, Any] = dict(pool.options)
    for key in ROW_OPTIONS:
        # The field, unless left at its default while options names the key (the older spelling).
        value = getattr(pool, key) if getattr(pool, key) != "error" else opts.get(key, "error")
        if pool.kind in ROW_OPTION_KINDS:
            opts[key] = value
        elif value == "error":
            opts.pop(key, None)  # what a strict loader does anyway
        else:
            raise ScenarioError(
                f"{key}: {value} is not supported by the {pool.kind} loader (only by "
                f"{', '.join(ROW_OPTION_KINDS)}); {pool.kind} files are checked strictly",
                where=f"workload.pool.{key}",
            )
    if pool.kind == "routerbench":
        opts["trusted"] = pool.trusted
    if pool.kind == "mmlu_pro":
        opts.setdefault("models", names)
    return opts


def load_full(pool: DatasetPool, names: list[str], fields: list[str] | None = None) -> QuerySet:
    """The whole dataset, restricted to the scenario's models (``dataset_model`` names) in their order;
    ``fields`` names the scenario field each name came from (``dataset_model`` or ``name``) for errors."""
    path: Path | list[Path] = Path(pool.path) if isinstance(pool.path, str) else [Path(p) for p in pool.path]
    try:
        full = LOADERS[pool.kind](path, **loader_options(pool, names))
    except KeyError:
        raise ScenarioError(
            f"unknown dataset kind {pool.kind!r}; valid kinds: {', '.join(sorted(LOADERS))}",
            where="workload.pool.kind",
        ) from None
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        raise ScenarioError(str(exc), where="workload.pool") from None
    except TypeError as exc:
        raise ScenarioError(f"unsupported loader option: {exc}", where="workload.pool.options") from None
    try:
        return full.select_models(names)
    except KeyError as exc:
        # The scenario is at fault (the dataset is what it is): name the model's entry, and the dataset.
        missing = exc.args[0]
        i = names.index(missing) if missing in names else 0
        field = f".{fields[i]}" if fields else ""
        raise ScenarioError(
            f"model {short(missing)} is not in the dataset {path}; it has: {name_list(full.model_names)}",
            where=f"models[{i}]{field}",
        ) from None


def load_pool(pool: DatasetPool, names: list[str], seed: int, n_arrivals: int,
              fields: list[str] | None = None) -> tuple[QuerySet, QuerySet]:
    """(train, test) of the pool (rules in the module docstring); ``test.data_report`` says what was dropped."""
    full = load_full(pool, names, fields)
    if pool.split == "files":
        train, test = _file_split(full, Path(pool.paths[0]))
    else:
        _check_test_size(_seeded_test_size(full.n, pool.test_fraction), full.n, pool, n_arrivals)
        train, test = train_test_split(full, pool.test_fraction, rngs.stream(seed, "split"))
    if train.prompts is not None and test.prompts is not None:
        # Public routing sets repeat prompts (dcrouter: 119 of its 500 test prompts are in train.json);
        # a predictor must not see the simulated queries' own labels, so repeats leave the train side.
        seen = set(test.prompts)
        keep = np.array([p not in seen for p in train.prompts], dtype=bool)
        if not keep.all():
            _warn_if_no_training(keep, pool)
            train = train.subset(np.flatnonzero(keep))
    if pool.split == "files":
        _check_test_size(test.n, full.n, pool, n_arrivals)
    return train, test


def _warn_if_no_training(keep: NDArray[np.bool_], pool: DatasetPool) -> None:
    """Name the dataset when removing repeated prompts leaves the train part empty (every train prompt is
    also a test prompt, e.g. a file repeating one question): otherwise the first sign is a predictor
    failing on an empty training set, which names neither the file nor the cause. A warning, not an
    error: the noisy_oracle predictor needs no training set."""
    if keep.size and not keep.any():
        warn_input(
            f"all {keep.size} training queries repeat a prompt of the test part, so none is left to train "
            "the predictor on (a predictor must not see the simulated queries' own labels); task_mean and "
            "knn cannot be fitted: use a dataset with more distinct prompts",
            file=", ".join(pool.paths),
        )


def _seeded_test_size(n: int, fraction: float) -> int:
    """What :func:`train_test_split` will hold out (at least 1, at most n - 1)."""
    return min(max(int(round(fraction * n)), 1), max(n - 1, 0))


def _parts(full: QuerySet, path: Path) -> NDArray[np.str_]:
    if full.split is not None:
        return np.asarray(full.split, dtype=str)
    if all("/" in str(q) for q in full.query_ids):  # dcrouter marks its file in the id
        return np.asarray(split_labels(full), dtype=str)
    raise ScenarioError(
        "split: files needs a dataset published in parts (routerbench files or a folder whose names "
        "say train / test, or a dcrouter folder with train.json and test.json); this one is not; use "
        "split: seeded",
        file=path,
        where="workload.pool.split",
    )


def _file_split(full: QuerySet, path: Path) -> tuple[QuerySet, QuerySet]:
    parts = _parts(full, path)
    unknown = sorted(set(parts.tolist()) - {"train", "test"})
    if unknown:
        raise DataError(
            f"split: files, but some rows come from a file whose name says neither train nor test "
            f"({unknown[0]!r}); name the files e.g. arc_train.csv / arc_test.csv, or use split: seeded",
            file=path,
            where="workload.pool.split",
        )
    for name in ("train", "test"):
        if not (parts == name).any():
            raise DataError(f"split: files, but no {name} file (a file whose name has the word {name!r})",
                            file=path, where="workload.pool.split")
    return full.subset(np.flatnonzero(parts == "train")), full.subset(np.flatnonzero(parts == "test"))


def _check_test_size(n_test: int, n_full: int, pool: DatasetPool, n_arrivals: int) -> None:
    where = "workload.pool.split" if pool.split == "files" else "workload.pool.test_fraction"
    if n_full < MIN_TEST_QUERIES + 1:  # no split can help: the dataset itself is too small
        raise DataError(
            f"the dataset holds {n_full} distinct {'query' if n_full == 1 else 'queries'} in all its rows; at "
            f"least {MIN_TEST_QUERIES + 1} are needed (some to simulate, the rest to train the predictor on)",
            file=", ".join(pool.paths),
        )
    if n_test < MIN_TEST_QUERIES:
        raise ScenarioError(
            f"the test split would hold {n_test} of {n_full} queries: every arrival would replay the same "
            f"question(s); at least {MIN_TEST_QUERIES} are needed (raise test_fraction)",
            where=where,
        )
    if n_test < FEW_TEST_QUERIES or n_arrivals > MAX_REPLAYS * n_test:
        warn_input(
            f"the test split holds only {n_test} queries for {n_arrivals} arrivals "
            f"({n_arrivals / n_test:.3g} replays each): accuracy measures few distinct questions",
            where=where,
        )
