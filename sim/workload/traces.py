"""Real arrival traces: loading (Azure LLM inference 2023 CSV, Mooncake JSONL) and replay.

Loaders turn a file into :class:`~sim.workload.arrivals.Arrivals` with the trace's own token counts,
times in seconds relative to the first row. Anything wrong with the file is a
:class:`~sim.errors.DataError` naming the file, the line (1-based; a CSV header is line 1) and what was
expected, because a trace is user input and a traceback from deep inside numpy helps nobody.

Order. A trace is a time series: rows must be in non-decreasing time. Out-of-order rows usually mean a
concatenated or hand-edited file, so by default they are an error naming the first offending line.
``sort=True`` accepts them and sorts stably (rows with equal times keep their file order), and times
are then relative to the earliest row.
"""

from __future__ import annotations

import array
import csv
import gzip
import io
import json
import math
import re
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import NDArray

from sim.errors import DataError
from sim.workload.arrivals import Arrivals
from sim.workload.prefix import MOONCAKE_BLOCK_TOKENS, PrefixHashes

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")
_AZURE_EXAMPLE = "2023-11-16 18:17:03.9799600"


# ---------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------


def _open_checked(path: Path, kind: str) -> None:
    """Fail early, with the file named, when the path cannot be read at all."""
    if not path.exists():
        raise DataError(f"file not found; expected {kind}", file=path)
    if path.is_dir():
        raise DataError(f"is a directory; expected {kind} file", file=path)


#: Largest token count a trace row may carry: ten times the longest context window of any public model
#: (1M tokens). Larger counts are corrupt data, and would overflow the engine's int64 token arithmetic.
MAX_TRACE_TOKENS = 10_000_000
TOKENS_EXPECTED = f"expected a non-negative integer token count (at most {MAX_TRACE_TOKENS:,})"


def _tokens(values: list[str], column: str, lines: list[int], path: Path) -> NDArray[np.int64]:
    """Parse non-negative integer token counts; on failure, find and name the first bad line."""
    try:
        out = np.array(values, dtype=np.str_).astype(np.int64)
    except (ValueError, OverflowError):
        out = None
    if out is not None and (len(out) == 0 or (out.min() >= 0 and out.max() <= MAX_TRACE_TOKENS)):
        return out
    for value, line in zip(values, lines, strict=True):
        try:
            ok = 0 <= int(value) <= MAX_TRACE_TOKENS
        except ValueError:
            ok = False
        if not ok:
            raise DataError(
                f"{column} = {repr(value)[:60]}; {TOKENS_EXPECTED}",
                file=path,
                where=f"line {line}",
            )
    raise AssertionError("unreachable: vectorised parse failed but every row parsed")  # pragma: no cover


def _order(keys: np.ndarray, shown: list[str], lines: list[int], path: Path, sort: bool) -> np.ndarray:
    """Permutation putting rows in time order: identity when sorted, else stable sort or DataError."""
    back = np.flatnonzero(keys[1:] < keys[:-1])  # not np.diff: int64 ns centuries apart would overflow
    if back.size == 0:
        return np.arange(len(keys))
    if not sort:
        i = int(back[0]) + 1
        raise DataError(
            f"time {shown[i]} is earlier than the previous row's {shown[i - 1]}; expected rows in "
            "non-decreasing time (sort the file by its time column; from Python, sort=True sorts it stably)",
            file=path,
            where=f"line {lines[i]}",
        )
    return np.argsort(keys, kind="stable")


#: Longest trace span accepted (s, ~31.7 years; the simulator's float horizon, sim.config.checks).
MAX_TRACE_SPAN_S = 1e9


def _check_span(times_s: np.ndarray, lines: np.ndarray, path: Path, column: str) -> None:
    """A request decades after the first one is a corrupt timestamp (e.g. -1 among 2023 dates): name the
    first line that far from the first request, rather than failing later on the simulated horizon."""
    far = np.flatnonzero(times_s - times_s[0] > MAX_TRACE_SPAN_S)
    if far.size:
        raise DataError(
            f"{column} is {times_s[far[0]] - times_s[0]:.3g} s after the first request (line {lines[0]}); a "
            f"trace may span at most {MAX_TRACE_SPAN_S:g} s (~31 years): is a timestamp corrupt?",
            file=path,
            where=f"line {lines[far[0]]}",
        )


def _arrivals(
    times_s: np.ndarray,
    group_keys: np.ndarray | None,
    prompt: NDArray[np.int64],
    output: NDArray[np.int64],
) -> Arrivals:
    if group_keys is None:
        group = np.arange(len(times_s), dtype=np.int64)
    else:
        group = np.concatenate([[0], np.cumsum(np.diff(group_keys) != 0)]).astype(np.int64)
    return Arrivals(
        times=np.asarray(times_s, dtype=np.float64), group=group, prompt_tokens=prompt, output_tokens=output
    )


# ---------------------------------------------------------------------------------------------------
# Azure LLM inference trace 2023 (CSV)
# ---------------------------------------------------------------------------------------------------


#: The [timestamp, context, generated] columns of a trace's data rows as strings, and each row's 1-based
#: line number.
AzureColumns = tuple[list[list[str]], list[int]]


def _azure_rows(path: Path, max_rows: int | None = None) -> AzureColumns:
    """The data rows' :data:`AzureColumns`; only the first ``max_rows`` data rows when given (the rest of
    the file is not read).

    A whole file of plain fields (:func:`_plain_azure_rows`: no quotes, NULs or bare ``\\r``, the
    published traces) is split on commas directly, ~4× faster than the csv module on 19 k rows; anything
    else, and a prefix of a file, goes through :func:`_csv_azure_rows`. Both give the same rows, lines
    and errors (``test_plain_and_csv_readers_agree``)."""
    if max_rows is None:
        plain = _plain_azure_rows(path)
        if plain is not None:
            return plain
    return _csv_azure_rows(path, max_rows)


def _azure_header(header: list[str], path: Path) -> list[int]:
    """Positions of :data:`AZURE_COLUMNS` in a stripped header row (DataError when one is missing)."""
    expected = ",".join(AZURE_COLUMNS)
    if not any(header):
        raise DataError(f"empty file; expected a header {expected}", file=path, where="line 1")
    missing = [c for c in AZURE_COLUMNS if c not in header]
    if missing:
        raise DataError(f"missing column {missing[0]!r}; expected a header {expected}", file=path, where="line 1")
    return [header.index(c) for c in AZURE_COLUMNS]


def _data_rows(rows: Iterable[tuple[list[str], int]], header: list[str], pick: list[int], path: Path,
               max_rows: int | None = None) -> AzureColumns:
    """:data:`AzureColumns` of ``(fields, line number)`` rows: blank rows skipped, the picked fields
    stripped, a row of another width than the header a DataError; the first ``max_rows`` only, if given.
    Both readers' row loop (without quotes, a plain file's row is one line)."""
    picked, lines = [], []
    for row, line in rows:
        if not any(cell.strip() for cell in row):
            continue  # blank line (e.g. a trailing newline)
        if len(row) != len(header):
            raise DataError(f"{len(row)} fields; expected {len(header)} ({','.join(header)})", file=path,
                            where=f"line {line}")
        picked.append([row[i].strip() for i in pick])
        lines.append(line)
        if len(picked) == max_rows:
            break
    if not picked:
        raise DataError("no data rows; expected at least one request after the header", file=path, where="line 2")
    return [list(col) for col in zip(*picked, strict=True)], lines


def _plain_azure_rows(path: Path) -> AzureColumns | None:
    """:func:`_csv_azure_rows` of a whole file, for text the csv module would split exactly like
    ``str.split``: no quote character, no NUL, no ``\\r`` outside ``\\r\\n``, no line longer than the
    csv field size limit. None (nothing decided) for any other file, including one that is not UTF-8.
    The header line is read and checked first, so a file that is not a trace fails before the rest is
    read."""
    limit = csv.field_size_limit()
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            first = f.readline()
            head = first.removesuffix("\n").removesuffix("\r")
            if first.endswith("\r") or '"' in head or "\x00" in head or len(head) > limit:
                return None
            header = [h.strip() for h in head.split(",")]
            pick = _azure_header(header, path)
            text = f.read()
    except UnicodeDecodeError:
        return None
    text = text.replace("\r\n", "\n")
    if '"' in text or "\r" in text or "\x00" in text:
        return None
    lines = text.split("\n")
    del text
    if max(map(len, lines)) > limit:
        return None
    width = len(header)
    regular = _regular_columns(lines, width, pick)
    if regular is not None:
        return regular
    return _data_rows(((line.split(","), number) for number, line in enumerate(lines, 2)), header, pick, path)


def _regular_columns(body: list[str], width: int, pick: list[int]) -> AzureColumns | None:
    """The columns of data lines that all (but a last empty one) have ``width`` fields and a timestamp,
    split and stripped a column at a time; None for any other body (the row loop decides, e.g. a blank
    line to skip or a row to refuse)."""
    if body and not body[-1]:
        body = body[:-1]  # the file's final newline
    rows = [line.split(",") for line in body]
    if not rows or set(map(len, rows)) != {width}:
        return None
    fields = list(zip(*rows, strict=True))
    columns = [list(map(str.strip, fields[i])) for i in pick]
    if "" in columns[0]:  # a row without a timestamp may be blank
        return None
    return columns, list(range(2, 2 + len(rows)))


def _csv_azure_rows(path: Path, max_rows: int | None) -> AzureColumns:
    """:func:`_azure_rows` through the csv module (quoted fields, any line ending, a file's prefix)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            pick = _azure_header(header, path)
            return _data_rows(((row, reader.line_num) for row in reader), header, pick, path, max_rows)
    except UnicodeDecodeError as e:
        from sim.datasets.validate import utf8_error_line  # with pandas: only for this error (start-up)

        raise DataError(f"not UTF-8 text ({e.reason}); expected a CSV file", file=path,
                        where=f"line {utf8_error_line(path)}") from None
    except csv.Error as e:
        raise DataError(f"malformed CSV ({e})", file=path, where=f"line {reader.line_num}") from None


_TZ_SUFFIX = re.compile(r"(?<=\d)(Z|[+-]\d{2}(?::?\d{2})?)$")
"""A UTC designator or offset after a time of day: ``…46.68Z``, ``…46+01:00``, ``…46-0530``."""


#: Largest UTC offset accepted (real zones span -12:00 .. +14:00; ISO 8601 allows up to 24:00).
MAX_ZONE_MINUTES = 24 * 60


def _split_zone(stamp: str) -> tuple[str, int]:
    """``(naive datetime text, offset in ns)`` of one timestamp; naive text has offset 0.

    numpy parses zone-aware strings only with a deprecation warning (a ``UserWarning`` on stderr), so the
    zone is split off here and applied exactly: a time with offset +01:00 is one hour ahead of UTC.
    ValueError for an offset no clock has (``+99:99``): applied as is, it would move the row by days.
    """
    text = stamp.strip()
    match = _TZ_SUFFIX.search(text) if (" " in text or "T" in text) else None
    if match is None:
        return text, 0
    zone = match.group(1)
    naive = text[: match.start()]
    if zone == "Z":
        return naive, 0
    digits = zone[1:].replace(":", "")
    hours, mins = int(digits[:2]), (int(digits[2:]) if len(digits) > 2 else 0)
    if mins > 59 or hours * 60 + mins > MAX_ZONE_MINUTES:
        raise ValueError(f"zone offset {zone} is not a UTC offset; expected one within ±24:00, like +01:00")
    return naive, (1 if zone[0] == "+" else -1) * (hours * 60 + mins) * 60 * 10**9


_ZONE_MARK = re.compile(r"-[\d:]{0,5}$", re.MULTILINE)
"""A ``-`` within a line's last six characters: where a negative UTC offset (``-05``, ``-0530``,
``-05:30``) would be."""


def _no_zone(stamps: list[str]) -> bool:
    """Whether no stripped timestamp has a zone :data:`_TZ_SUFFIX` would split off, decided on the joined
    text in three C-level scans (``Z``, ``+``, :data:`_ZONE_MARK`) rather than a regex per row. False
    only means "maybe": the caller then splits row by row."""
    text = "\n".join(stamps)
    return "Z" not in text and "+" not in text and _ZONE_MARK.search(text) is None


_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_BARE_NUMBER = re.compile(_NUMBER)
"""A timestamp that is only a number (``0``, ``1700000000``, ``1.5e9``): numpy reads ``0`` .. ``9999`` as
calendar *years* and longer ones wrap, so relative or epoch times would pass as a decades-long trace."""
_YEAR = re.compile(r"([+-]?\d{1,9})-")
"""The year a datetime starts with (``2023-11-16 …``)."""
NS_RANGE = "1677-09-21 .. 2262-04-11"
"""What ``datetime64[ns]`` holds; numpy wraps years outside it silently (1600 reads as 2185)."""


def _stamp_ns(value: str, line: int, path: Path) -> int:
    """One timestamp → UTC nanoseconds, or a DataError naming the line (:func:`_one_stamp_ns`)."""
    try:
        return _one_stamp_ns(value)
    except ValueError as e:
        raise DataError(f"TIMESTAMP = {value!r}; {e}", file=path, where=f"line {line}") from None


def _one_stamp_ns(value: str) -> int:
    """One timestamp → UTC nanoseconds; ValueError saying what was expected. This is the definition of a
    valid TIMESTAMP: :func:`_fast_timestamps` only accepts files whose every row this accepts."""
    expected = f"expected a datetime like {_AZURE_EXAMPLE!r}"
    if _BARE_NUMBER.fullmatch(value):
        raise ValueError(f"a bare number; {expected} (relative seconds or epoch numbers are not the Azure format)")
    naive, offset = _split_zone(value)
    year = _YEAR.match(naive)
    parsed = _datetime_ns(naive)
    if year is None or (parsed is None and 1678 <= int(year.group(1)) <= 2261):
        raise ValueError(expected)
    if parsed is None or int(year.group(1)) != _year_of(np.array([parsed]))[0]:
        raise ValueError(f"year {year.group(1)} is outside {NS_RANGE}, the range of nanosecond times; {expected}")
    return parsed - offset


def _datetime_ns(naive: str) -> int | None:
    """numpy's reading of one zone-free datetime as (possibly wrapped) nanoseconds; None if it is none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unrecognised zone: numpy warns, then fails or parses
            parsed = np.datetime64(naive, "ns")
    except ValueError:
        return None
    return None if np.isnat(parsed) else int(parsed.view(np.int64))


def _year_of(ns: NDArray[np.int64]) -> NDArray[np.int64]:
    """Calendar year of each nanosecond time."""
    return ns.view("datetime64[ns]").astype("datetime64[Y]").astype(np.int64) + 1970


def _years_as_written(naive: list[str], ns: NDArray[np.int64]) -> bool:
    """Whether every datetime starts ``YYYY-`` and was read as that year, checked on the code points of
    the first five characters at once: a year outside :data:`NS_RANGE` is read as another year, and a
    bare number (no ``-`` after four digits) fails too."""
    codes = np.array(naive, dtype="U5").view(np.uint32).reshape(len(naive), 5)
    digits = codes[:, :4] - np.uint32(ord("0"))  # unsigned: a code point below '0' wraps above 9
    if not ((codes[:, 4] == ord("-")).all() and (digits <= 9).all()):
        return False
    year = ((digits[:, 0] * 10 + digits[:, 1]) * 10 + digits[:, 2]) * 10 + digits[:, 3]
    return bool(np.array_equal(year, _year_of(ns)))


def _fast_timestamps(stamps: list[str]) -> NDArray[np.int64] | None:
    """All timestamps at once, for files whose every row :func:`_stamp_ns` would accept (the published
    traces); None when any row might not be (that function then decides, row by row)."""
    if _no_zone(stamps):  # the published traces: nothing to split off (_split_zone would return each as is)
        naive, offsets = stamps, None
    else:
        try:
            split = [_split_zone(s) for s in stamps]
        except ValueError:
            return None
        naive, offsets = [t for t, _ in split], np.array([o for _, o in split], dtype=np.int64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zones are split off above; what is left must not warn
            ns = np.array(naive, dtype="datetime64[ns]").view(np.int64)
    except ValueError:
        return None
    if np.any(ns == np.iinfo(np.int64).min) or not _years_as_written(naive, ns):  # NaT; a wrapped year
        return None
    return ns if offsets is None else ns - offsets


def _azure_timestamps(stamps: list[str], lines: list[int], path: Path) -> NDArray[np.int64]:
    """Datetime strings → int64 UTC nanoseconds (exact: 7 fractional digits are 100 ns ticks).

    Naive times are taken as they are (the published traces are naive UTC); zone-aware ones (``Z``,
    ``+01:00``) are converted to UTC, so a trace mixing both stays in one time base. Bare numbers, years
    outside :data:`NS_RANGE` and impossible zone offsets are errors naming the first such line.
    """
    ns = _fast_timestamps(stamps)
    if ns is not None:
        return ns
    return np.array([_stamp_ns(v, line, path) for v, line in zip(stamps, lines, strict=True)], dtype=np.int64)


def load_azure_csv(path: str | Path, *, sort: bool = False, max_rows: int | None = None) -> Arrivals:
    """Load an Azure LLM inference 2023 trace (``TIMESTAMP,ContextTokens,GeneratedTokens``).

    TIMESTAMP is a datetime string with up to 9 fractional digits (the published files have 7). It is
    parsed to integer nanoseconds before subtracting the first row, so requests 100 ns apart stay
    distinct and ordered; seconds are then float64, exact to well under 1 ns over a 100-day trace.
    Every request is its own group. Extra columns are ignored; blank lines are skipped.

    ``max_rows``: read only the first that many data rows (a run that needs 10 k rows of a 1 M-row file
    reads 10 k); rows after them are neither parsed nor checked. Not with ``sort`` (the first rows of an
    unsorted file are not the earliest).
    """
    if sort and max_rows is not None:
        raise ValueError("max_rows needs the file's own order (sort=False)")
    path = Path(path)
    _open_checked(path, "an Azure LLM inference trace CSV")
    (stamps, context, generated), lines = _azure_rows(path, max_rows)
    ns = _azure_timestamps(stamps, lines, path)
    prompt = _tokens(context, "ContextTokens", lines, path)
    output = _tokens(generated, "GeneratedTokens", lines, path)
    order = _order(ns, stamps, lines, path, sort)
    ns, prompt, output = ns[order], prompt[order], output[order]
    # in float first: rows centuries apart (1700 and 2200 both fit datetime64[ns]) overflow an int64 difference
    _check_span((ns - float(ns[0])) / 1e9, np.asarray(lines)[order], path, "TIMESTAMP")
    times = (ns - ns[0]) / 1e9
    return _arrivals(times, None, prompt, output)


# ---------------------------------------------------------------------------------------------------
# Mooncake trace (JSON lines, optionally gzipped)
# ---------------------------------------------------------------------------------------------------


def _text_lines(path: Path) -> Iterator[str]:
    """Lines of a text or gzip file (recognised by its magic bytes, whatever the name says)."""
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    stream: IO[str]
    if gzipped:
        stream = io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    else:
        stream = path.open(encoding="utf-8")
    with stream:
        yield from stream


def _mooncake_number(obj: dict[str, object], key: str, path: Path, line: int, integer: bool) -> float:
    value = obj[key]
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = math.inf if isinstance(value, int) and abs(value) >= 2**53 else float(value)
        if math.isfinite(number) and (not integer or (number.is_integer() and 0 <= number <= MAX_TRACE_TOKENS)):
            return number
    what = TOKENS_EXPECTED if integer else "expected a finite number of milliseconds"
    raise DataError(f"{key} = {repr(value)[:60]}; {what}", file=path, where=f"line {line}")


#: Largest hash a trace may carry (numpy int64; Mooncake's ids are small sequence numbers).
MAX_HASH = 2**63 - 1
#: Extra hashes allowed beyond one per prompt block. Both published Mooncake traces have exactly
#: ``ceil(input_length / 512)`` hashes per row (the conversation trace on all 12,031 rows; the last block
#: is partial); one spare tolerates an exporter that also hashes an empty trailing block, whose hash
#: covers no prompt token. Fewer hashes than blocks are fine: only the leading blocks are then known.
SPARE_HASHES = 1
HASHES_EXPECTED = "expected a list of non-negative integers (at most 2**63 - 1), one per prompt block"


def _mooncake_hashes(value: object, path: Path, line: int) -> list[int]:
    """Validate one row's ``hash_ids``: a list of int64-sized non-negative ints (their count is checked
    against the prompt's blocks for the whole file at once, :func:`_check_hash_counts`)."""
    if not (isinstance(value, list) and all(type(x) is int for x in value)  # bool and float excluded
            and (not value or (min(value) >= 0 and max(value) <= MAX_HASH))):
        raise DataError(f"hash_ids = {repr(value)[:60]}; {HASHES_EXPECTED}", file=path, where=f"line {line}")
    return value


def _check_hash_counts(counts: NDArray[np.int64], prompt: NDArray[np.int64], block_tokens: int,
                       lines: list[int], path: Path) -> None:
    """At most one hash per ``block_tokens``-token block of the prompt (+ :data:`SPARE_HASHES`); more
    means hashes and lengths disagree (or the block size is wrong): name the first such line."""
    blocks = -(-prompt // block_tokens)
    bad = np.flatnonzero(counts > blocks + SPARE_HASHES)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"hash_ids has {counts[i]} hashes but input_length = {prompt[i]} spans {blocks[i]} blocks of "
            f"{block_tokens} tokens; expected at most {blocks[i] + SPARE_HASHES} (one hash per block; is "
            "workload.arrivals.prefix_block_tokens right?)",
            file=path, where=f"line {lines[i]}",
        )


def _mooncake_row(text: str, path: Path, line: int) -> tuple[tuple[float, float, float], list[int] | None]:
    """One line → ``(timestamp ms, input_length, output_length)`` and its ``hash_ids`` (None if absent)."""
    keys = ", ".join(MOONCAKE_KEYS)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"invalid JSON ({e.msg} at column {e.colno}); expected one object per line with keys {keys}",
            file=path,
            where=f"line {line}",
        ) from None
    except RecursionError:
        raise DataError(f"JSON nested too deeply; expected one flat object per line with keys {keys}",
                        file=path, where=f"line {line}") from None
    except ValueError:  # an integer too long for int() (sys.get_int_max_str_digits, 4300 by default)
        raise DataError(_huge_integer(text), file=path, where=f"line {line}") from None
    if not isinstance(obj, dict):
        raise DataError(f"a JSON {type(obj).__name__}; expected an object", file=path, where=f"line {line}")
    for key in MOONCAKE_KEYS:
        if key not in obj:
            raise DataError(f"missing key {key!r}; expected keys {keys}", file=path, where=f"line {line}")
    row = (
        _mooncake_number(obj, "timestamp", path, line, integer=False),
        _mooncake_number(obj, "input_length", path, line, integer=True),
        _mooncake_number(obj, "output_length", path, line, integer=True),
    )
    if "hash_ids" not in obj:
        return row, None
    return row, _mooncake_hashes(obj["hash_ids"], path, line)


_HUGE_INT = re.compile(r'(?:"((?:[^"\\]|\\.)*)"\s*:\s*(?:\[[\d\s,]*?)?)?-?(\d{1000,})')
"""A JSON integer of at least 1000 digits, and the key whose value (or list item) it is, if any."""


def huge_json_integer(text: str) -> tuple[str | None, int, int] | None:
    """The first JSON integer in ``text`` too long for ``int()`` to read (the json module then raises a
    ValueError that names neither key nor place): ``(its key or None, its digits, its offset)``."""
    found = _HUGE_INT.search(text)
    return None if found is None else (found.group(1), len(found.group(2)), found.start(2))


def _huge_integer(text: str) -> str:
    """What is wrong with a JSON line that parses but for an integer too long for Python to read, naming
    the key and the expected value (no timestamp, length or hash needs more than 20 digits)."""
    found = huge_json_integer(text)
    if found is None:
        return "a number too long to read; expected one object per line with keys " + ", ".join(MOONCAKE_KEYS)
    key, digits, _ = found
    what = {"timestamp": "expected a finite number of milliseconds", "input_length": TOKENS_EXPECTED,
            "output_length": TOKENS_EXPECTED, "hash_ids": HASHES_EXPECTED}.get(key or "", "expected a smaller number")
    return f"{f'{key} is ' if key else ''}an integer of {digits} digits; {what}"


@dataclass
class _MooncakeRows:
    """What :func:`_mooncake_rows` collects: parsed rows, their line numbers, and the hashes (flat,
    8 bytes each from the start: a large trace never holds a Python int object per hash)."""

    rows: list[tuple[float, float, float]]
    lines: list[int]
    hashes: array.array[int] | None
    hash_counts: array.array[int]


def _add_hashes(out: _MooncakeRows, hashes: list[int] | None, path: Path, line: int) -> None:
    """Append one row's hashes. ``hash_ids`` is all-or-nothing, set by the first row: a file mixing rows
    with and without it is more likely mangled than meant (and a missing list would silently turn off
    caching for that request), so the first row that breaks the pattern is named."""
    if not out.lines:
        out.hashes = None if hashes is None else array.array("q")
    if (hashes is None) != (out.hashes is None):
        this, first = ("has no", "has them") if hashes is None else ("has", "has none")
        raise DataError(f"{this} 'hash_ids' but line {out.lines[0]} {first}; expected 'hash_ids' on every "
                        "row or on none", file=path, where=f"line {line}")
    if out.hashes is not None and hashes is not None:
        out.hashes.extend(hashes)
        out.hash_counts.append(len(hashes))


def _mooncake_rows(path: Path) -> _MooncakeRows:
    out = _MooncakeRows([], [], None, array.array("q"))
    line = 0
    try:
        for line, text in enumerate(_text_lines(path), start=1):
            if text.strip():
                row, hashes = _mooncake_row(text, path, line)
                _add_hashes(out, hashes, path, line)
                out.rows.append(row)
                out.lines.append(line)
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason})", file=path, where=f"line {line + 1}") from None
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile: OSError; truncated: EOFError; corrupt: zlib
        raise DataError(f"unreadable gzip data ({e})", file=path, where=f"line {line + 1}") from None
    if not out.rows:
        raise DataError("no requests; expected one JSON object per line", file=path, where="line 1")
    return out


def load_mooncake_jsonl(
    path: str | Path, *, group_same_timestamp: bool = False, sort: bool = False,
    block_tokens: int = MOONCAKE_BLOCK_TOKENS,
) -> Arrivals:
    """Load a Mooncake trace: one JSON object per line with ``timestamp`` (ms), ``input_length``,
    ``output_length`` and optionally ``hash_ids`` (other keys are ignored). ``.jsonl`` or gzipped.

    ``hash_ids`` (one hash per ``block_tokens``-token prompt block, Mooncake's 512; see
    :mod:`sim.workload.prefix`) become the arrivals' ``prefix``, each row's hashes kept with it through
    sorting; a file without them gives ``prefix=None``.

    Mooncake requests arrive in ticks (many rows share a timestamp). By default each row is still its
    own arrival (group = arange): they reach the router at the same instant but are not a batch.
    ``group_same_timestamp=True`` makes each tick one group, for batch-level routing experiments.
    """
    if isinstance(block_tokens, bool) or not (isinstance(block_tokens, int) and block_tokens >= 1):
        raise ValueError(f"block_tokens must be an integer >= 1, got {block_tokens!r}")
    path = Path(path)
    _open_checked(path, "a Mooncake trace (.jsonl or .jsonl.gz)")
    parsed = _mooncake_rows(path)
    lines = parsed.lines
    ms, prompt_f, output_f = (np.array(col, dtype=np.float64) for col in zip(*parsed.rows, strict=True))
    order = _order(ms, [f"{t:g} ms" for t in ms], lines, path, sort)
    ms = ms[order]
    prompt, output = prompt_f[order].astype(np.int64), output_f[order].astype(np.int64)
    times = (ms - ms[0]) / 1000.0
    _check_span(times, np.asarray(lines)[order], path, "timestamp")
    prefix = None
    if parsed.hashes is not None:
        counts = np.array(parsed.hash_counts, dtype=np.int64)
        _check_hash_counts(counts, prompt_f.astype(np.int64), block_tokens, lines, path)
        values = np.frombuffer(parsed.hashes, dtype=np.int64).copy() if parsed.hashes else np.zeros(0, np.int64)
        prefix = PrefixHashes.from_lengths(values, counts, block_tokens)
        if not np.array_equal(order, np.arange(len(order))):
            prefix = prefix.take(order)
    out = _arrivals(times, ms if group_same_timestamp else None, prompt, output)
    return replace(out, prefix=prefix)


# ---------------------------------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------------------------------


def replay(
    arrivals: Arrivals,
    time_scale: float = 1.0,
    start_s: float | None = None,
    duration_s: float | None = None,
    max_queries: int | None = None,
) -> Arrivals:
    """A trace run at ``time_scale``× its rate, optionally restricted to a window.

    The window is on the trace's own clock: arrivals with ``start_s <= t < start_s + duration_s``
    (start 0 and no end by default), then at most the first ``max_queries`` of them. Times become
    ``(t - start_s) / time_scale``, so the gap before the window's first arrival is kept. To fill a
    simulation of D seconds at k×, pass ``duration_s = D * k``.

    With the defaults the result is the trace itself: same count, same times, same mean rate; at k× the
    count is unchanged and every gap shrinks by k, so the mean rate is exactly k times the trace's.
    Groups are renumbered from 0; ``max_queries`` may cut the last group short.
    """
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time_scale must be finite and > 0, got {time_scale!r}")
    start = 0.0 if start_s is None else float(start_s)
    if not (math.isfinite(start) and start >= 0):
        raise ValueError(f"start_s must be finite and >= 0, got {start_s!r}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s!r}")
    if max_queries is not None and (isinstance(max_queries, bool) or max_queries < 0):
        raise ValueError(f"max_queries must be an integer >= 0, got {max_queries!r}")
    lo = int(np.searchsorted(arrivals.times, start, side="left"))
    hi = arrivals.n if duration_s is None else int(np.searchsorted(arrivals.times, start + duration_s))
    if max_queries is not None:
        hi = min(hi, lo + int(max_queries))
    hi = max(hi, lo)
    window = slice(lo, hi)
    group = arrivals.group[window]
    group = np.concatenate([[0], np.cumsum(np.diff(group) != 0)]).astype(np.int64) if len(group) else group
    times = arrivals.times[window] - start if start else arrivals.times[window]
    return Arrivals(
        times=times / time_scale if time_scale != 1.0 else times.copy(),
        group=group,
        prompt_tokens=None if arrivals.prompt_tokens is None else arrivals.prompt_tokens[window].copy(),
        output_tokens=None if arrivals.output_tokens is None else arrivals.output_tokens[window].copy(),
        prefix=None if arrivals.prefix is None else arrivals.prefix.slice(lo, hi),
    )
