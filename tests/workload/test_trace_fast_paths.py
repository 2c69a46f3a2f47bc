"""The Azure trace reader's fast paths against the straightforward ones they skip (issue 14).

A whole file of plain fields is split on commas instead of going through the csv module
(``_plain_azure_rows`` vs ``_csv_azure_rows``), and timestamps without a zone skip the per-row zone split
(``_no_zone`` vs ``_split_zone``). Hypothesis writes files mixing everything the two readers could
disagree on (quotes, bare and CRLF line ends, blank and whitespace-only lines, wrong field counts, a
BOM, NULs, extra and reordered columns, zones) and requires the same rows, line numbers and errors, or
the fast path to step aside.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.errors import DataError
from sim.workload.traces import (
    _TZ_SUFFIX,
    _azure_rows,
    _azure_timestamps,
    _csv_azure_rows,
    _no_zone,
    _plain_azure_rows,
    _split_zone,
    load_azure_csv,
)

CELLS = st.sampled_from([
    "2024-01-01 00:00:00.1234567", " 2024-01-01 00:00:01 ", "2024-01-01T00:00:02Z", "2024-01-01 00:00:03+01:00",
    "2024-01-01 00:00:04-0530", "12", " 7 ", "", "  ", "x", '"3"', '"a,b"', "\x00", "1\r2", "-5",
    "1\x0b", "\x0c", "\x1c", "2\x85", "\u2028", "\xa0",  # what str.splitlines would break a line at
])
LINE = st.one_of(
    st.lists(CELLS, min_size=0, max_size=5).map(",".join),
    st.sampled_from([",,", " , ,\t", ",,,", "   ", "\u2003,,", "2024-01-01 00:00:09,5,6",  # blank rows, a good one
                     ",,,x", " ,,, x", "x,,,"]),  # only an extra column filled (a row, not a blank line)
)
HEADERS = st.sampled_from([
    "TIMESTAMP,ContextTokens,GeneratedTokens", " GeneratedTokens ,TIMESTAMP,ContextTokens,extra",
    "TIMESTAMP,ContextTokens", "", "\ufeffTIMESTAMP,ContextTokens,GeneratedTokens", '"TIMESTAMP",ContextTokens,GeneratedTokens',
])
ENDS = st.sampled_from(["\n", "\r\n", "\r"])


def outcome(read, path: Path) -> object:  # type: ignore[no-untyped-def]
    try:
        return read(path)
    except DataError as e:
        return ("error", str(e))


@settings(max_examples=400, deadline=None)
@given(header=HEADERS, lines=st.lists(st.tuples(LINE, ENDS), max_size=8), last_end=st.booleans())
def test_plain_and_csv_readers_agree(tmp_path_factory, header: str, lines: list[tuple[str, str]],  # type: ignore[no-untyped-def]
                                     last_end: bool) -> None:
    text = header + "".join(end + line for line, end in lines) + ("\n" if last_end else "")
    path = tmp_path_factory.mktemp("t") / "t.csv"
    path.write_bytes(text.encode("utf-8"))
    plain = outcome(_plain_azure_rows, path)
    reference = outcome(lambda p: _csv_azure_rows(p, None), path)
    if plain is not None:
        assert plain == reference
    assert outcome(_azure_rows, path) == reference
    if '"' not in text and "\x00" not in text and "\r" not in text.replace("\r\n", ""):
        assert plain is not None  # the fast path is taken for every plain file


def test_plain_reader_steps_aside_for_non_utf8_and_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,\xff,3\n")
    assert _plain_azure_rows(path) is None
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,1," + "9" * 200_000 + "\n")
    assert _plain_azure_rows(path) is None
    try:
        _azure_rows(path)
    except DataError as e:
        assert "malformed CSV" in str(e)  # the csv module's field limit, as before
    else:  # pragma: no cover
        raise AssertionError("a 200 k-character field must be refused")


STAMP_CHARS = st.sampled_from(list("0123456789-:+Z T.\n"))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(STAMP_CHARS, max_size=12).map(str.strip), min_size=1, max_size=6))
def test_no_zone_only_when_no_row_has_one(stamps: list[str]) -> None:
    if _no_zone(stamps):
        assert all(_split_zone(s) == (s, 0) for s in stamps)
        assert not any(_TZ_SUFFIX.search(s) for s in stamps)


def test_zoned_and_naive_timestamps_parse_as_before(tmp_path: Path) -> None:
    stamps = ["2024-01-01 00:00:00.1234567", "2024-01-01 01:00:00+01:00", "2024-01-01 00:00:01Z",
              "2024-01-01 00:00:02-0530", "2024-01-01 00:00:03-05:30", "2024-01-01 00:00:04-05"]
    assert not any(_no_zone([s]) for s in stamps[1:])
    lines = list(range(2, 2 + len(stamps)))
    got = _azure_timestamps(stamps, lines, tmp_path / "t.csv")
    naive = np.array([_split_zone(s)[0] for s in stamps], dtype="datetime64[ns]").view(np.int64)
    assert got.tolist() == (naive - np.array([_split_zone(s)[1] for s in stamps])).tolist()
    assert got[1] == got[0] - 123456700  # 01:00+01:00 is midnight UTC
    plain = stamps[:1] + ["2024-01-01 00:00:03.5"]
    assert _no_zone(plain)
    assert _azure_timestamps(plain, [2, 3], tmp_path / "t.csv").tolist() == \
        np.array(plain, dtype="datetime64[ns]").view(np.int64).tolist()


def test_published_trace_reads_the_same_both_ways(tmp_path: Path) -> None:
    rows = ["2023-11-16 18:15:46.6805900,374,44", "2023-11-16 18:15:50.9951690,396,109", "",
            "2023-11-16 18:15:51.2000000, 879 ,31"]
    path = tmp_path / "t.csv"
    path.write_bytes(("TIMESTAMP,ContextTokens,GeneratedTokens\r\n" + "\r\n".join(rows) + "\r\n").encode())
    assert _plain_azure_rows(path) == _csv_azure_rows(path, None)
    full = load_azure_csv(path)
    assert full.prompt_tokens.tolist() == [374, 396, 879]
    assert np.allclose(full.times, [0.0, 4.314579, 4.5194100])
