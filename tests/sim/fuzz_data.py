"""Small trace and dataset fixtures, the short scenarios that read them, and strategies that corrupt them.

Every fixture is valid as written (a test checks that it runs). A corruption knows whether the result
must be refused (``expect='fail'``: a missing column, NaN in a score, unsorted trace times, garbage...)
or must be accepted (``'pass'``: a byte-order mark, CRLF line ends, shuffled table rows), else 'either'.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from hypothesis import strategies as st

from tests.sim.conftest import small_scenario
from tests.sim.fuzz_check import FuzzCase
from tests.sim.fuzz_scenarios import NUM_QUERIES, dump

ROWS = 40
NAN_CELLS = ("nan", "NaN", "inf", "-inf", "Infinity", "", "NA", "null")


# ----------------------------------------------------------------------------- fixtures
def azure_rows() -> tuple[list[str], list[list[str]]]:
    t0 = datetime(2023, 11, 16, 18, 17, 3)
    rows = [[(t0 + timedelta(seconds=0.4 * i)).strftime("%Y-%m-%d %H:%M:%S.%f") + "0",
             str(100 + 37 * i % 900), str(5 + 11 * i % 200)] for i in range(ROWS)]
    return ["TIMESTAMP", "ContextTokens", "GeneratedTokens"], rows


def mooncake_objects() -> list[dict[str, Any]]:
    return [{"timestamp": 1000 * (i // 3), "input_length": 200 + 53 * i % 3000,
             "output_length": 10 + 7 * i % 300, "hash_ids": [i, i + 1]} for i in range(ROWS)]


def long_table_rows() -> tuple[list[str], list[list[str]]]:
    header = ["query_id", "task", "model", "score", "prompt", "input_tokens", "output_tokens", "cost_usd"]
    rows = []
    for q in range(ROWS // 2):
        for j, model in enumerate(("small", "big")):
            rows.append([f"q{q}", "ab"[q % 2], model, str(((q + j) % 3) / 2), f"question number {q}",
                         str(20 + q), str(30 + 5 * j + q), f"{(1 + 9 * j) * 1e-4 * (q + 1):.6g}"])
    return header, rows


def routerbench_rows() -> tuple[list[str], list[list[str]]]:
    header = ["sample_id", "prompt", "eval_name", "oracle_model_to_route_to", "gpt-4", "gpt-4|model_response",
              "gpt-4|total_cost", "llama", "llama|model_response", "llama|total_cost"]
    rows = [[f"mmlu.{i}", f"['What is {i} plus {i}?']", "mmlu" if i % 2 else "gsm8k", "llama",
             str(float(i % 3 != 0)), "x" * (10 + i), f"{3e-3 + 1e-5 * i:.6g}", str(float(i % 2)),
             "y" * (5 + i), f"{1e-4 + 1e-6 * i:.6g}"] for i in range(ROWS)]
    return header, rows


def dcrouter_items() -> list[dict[str, Any]]:
    return [{"question": f"who wrote book number {i}", "scores": {"m1": (i % 3) / 2, "m2": float(i % 2)}}
            for i in range(ROWS)]


def csv_bytes(header: list[str], rows: list[list[str]], delimiter: str = ",") -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _dataset_scenario(kind: str, path: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    sc = small_scenario(num_queries=NUM_QUERIES)
    for m in sc["models"]:
        m.pop("strength")
        if names:
            m["dataset_model"] = names[m["name"]]
    sc["workload"]["pool"] = {"type": "dataset", "kind": kind, "path": path, "test_fraction": 0.3}
    return sc


def trace_scenario(path: str) -> dict[str, Any]:
    sc = small_scenario(num_queries=NUM_QUERIES)
    sc["workload"]["arrivals"] = {"type": "trace", "path": path}
    return sc


@dataclass(frozen=True)
class Table:
    """A CSV fixture. ``roles`` says what each column holds (see :data:`MUST_FAIL`); ``required`` columns
    must not be dropped; ``unique_rows`` means a repeated row is a duplicate id; ``sorted_rows`` means
    the rows must stay in time order (a trace)."""

    name: str
    file: str
    header: list[str]
    rows: list[list[str]]
    scenario: dict[str, Any]
    roles: dict[str, str]
    required: tuple[str, ...]
    unique_rows: bool
    sorted_rows: bool


# Which cell corruptions a column of each role must refuse (anything else may go either way).
MUST_FAIL = {
    "time": {"nan", "text", "markup", "huge"},
    "int_tokens": {"nan", "text", "markup", "negative", "huge"},
    "tokens": {"nan", "text", "markup", "negative"},
    "opt_tokens": {"text", "markup", "negative"},
    "score": {"nan", "text", "markup", "negative", "huge", "above_one"},
    "cost": {"nan", "text", "markup", "negative"},
    "text": set(),
}
CELL_VALUES = {
    "nan": NAN_CELLS, "text": ("abc", "1.2.3", "🚀", "0x10", "1e"), "markup": ("[/]", "[bold]x"),
    "negative": ("-1", "-0.5", "-1e308"), "huge": ("1e308", "99999999999999999999999"), "above_one": ("1.5", "2.5"),
}


def tables() -> list[Table]:
    ah, ar = azure_rows()
    lh, lr = long_table_rows()
    rh, rr = routerbench_rows()
    rb_roles = {h: "score" if h in ("gpt-4", "llama") else "cost" if h.endswith("|total_cost") else "text" for h in rh}
    return [
        Table("azure", "trace.csv", ah, ar, trace_scenario("trace.csv"),
              {"TIMESTAMP": "time", "ContextTokens": "int_tokens", "GeneratedTokens": "int_tokens"},
              tuple(ah), False, True),
        Table("long_table", "table.csv", lh, lr, _dataset_scenario("long_table", "table.csv"),
              {"query_id": "text", "task": "text", "model": "text", "score": "score", "prompt": "text",
               "input_tokens": "tokens", "output_tokens": "opt_tokens", "cost_usd": "cost"},
              ("query_id", "task", "model", "score"), True, False),
        Table("routerbench", "bench.csv", rh, rr,
              _dataset_scenario("routerbench", "bench.csv", {"small": "llama", "big": "gpt-4"}), rb_roles,
              ("sample_id", "prompt", "eval_name", "gpt-4", "gpt-4|total_cost", "llama", "llama|total_cost"),
              True, False),
    ]


# ----------------------------------------------------------------------------- CSV corruption
def _case(t: Table, label: str, data: bytes, expect: str) -> FuzzCase:
    return FuzzCase(f"{t.name}: {label}", dump(t.scenario), {t.file: data}, blame=t.file, expect=expect)


@st.composite
def _cell(draw: st.DrawFn, t: Table) -> FuzzCase:
    """One cell set to NaN / text / markup / a negative, huge or above-one number."""
    rows = copy.deepcopy(t.rows)
    i, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(t.header) - 1))
    kind = draw(st.sampled_from(sorted(CELL_VALUES)))
    rows[i][c] = draw(st.sampled_from(CELL_VALUES[kind]))
    col = t.header[c]
    expect = "fail" if kind in MUST_FAIL[t.roles[col]] else "either"
    return _case(t, f"row {i + 1} {col} = {rows[i][c]!r}", csv_bytes(t.header, rows), expect)


@st.composite
def _structure(draw: st.DrawFn, t: Table) -> FuzzCase:
    """Column-, row- and byte-level damage."""
    good = csv_bytes(t.header, t.rows)
    kind = draw(st.sampled_from(["drop", "swap", "unsorted", "dup", "truncate", "empty", "header_only",
                                 "garbage", "garbage_line", "bom", "crlf", "delimiter", "shuffle"]))
    if kind == "drop":
        c = draw(st.integers(0, len(t.header) - 1))
        keep = [k for k in range(len(t.header)) if k != c]
        data = csv_bytes([t.header[k] for k in keep], [[r[k] for k in keep] for r in t.rows])
        return _case(t, f"column {t.header[c]!r} dropped", data, "fail" if t.header[c] in t.required else "either")
    if kind == "swap":
        numeric = [h for h in t.header if t.roles[h] not in ("text", "time")]
        a = draw(st.sampled_from(numeric))
        b = draw(st.sampled_from([h for h in t.header if t.roles[h] in ("text", "time")]))
        ia, ib = t.header.index(a), t.header.index(b)
        rows = [list(r) for r in t.rows]
        for r in rows:
            r[ia], r[ib] = r[ib], r[ia]
        return _case(t, f"columns {a!r} and {b!r} swapped", csv_bytes(t.header, rows), "fail")
    if kind in ("unsorted", "shuffle"):
        perm = draw(st.permutations(range(len(t.rows))).filter(lambda p: list(p) != sorted(p)))
        rows = [t.rows[k] for k in perm]
        expect = "either"
        if t.sorted_rows:
            expect = "fail" if any(rows[k][0] < rows[k - 1][0] for k in range(1, len(rows))) else "either"
        elif kind == "shuffle":
            expect = "pass"
        return _case(t, "rows shuffled", csv_bytes(t.header, rows), expect)
    if kind == "dup":
        i = draw(st.integers(0, len(t.rows) - 1))
        rows = t.rows[: i + 1] + [list(t.rows[i])] + t.rows[i + 1:]
        return _case(t, f"row {i + 1} repeated", csv_bytes(t.header, rows), "fail" if t.unique_rows else "either")
    if kind == "truncate":
        cut = draw(st.integers(0, len(good) - 1))
        return _case(t, f"truncated at byte {cut}", good[:cut], "fail" if cut <= len(t.header[0]) else "either")
    return _case(t, *_bytes_damage(draw, kind, good))


def _bytes_damage(draw: st.DrawFn, kind: str, good: bytes) -> tuple[str, bytes, str]:
    if kind == "empty":
        return "empty file", b"", "fail"
    if kind == "header_only":
        return "header only", good.split(b"\n")[0] + b"\n", "fail"
    if kind == "garbage":
        return "binary garbage", b"\xff\xfe\x00" + draw(st.binary(max_size=200)), "fail"
    if kind == "garbage_line":
        lines = good.split(b"\n")
        i = draw(st.integers(1, len(lines) - 2))
        junk = b"\xff\x00" + draw(st.binary(max_size=40)).replace(b"\n", b"")
        return f"garbage line {i + 1}", b"\n".join(lines[:i] + [junk] + lines[i:]), "fail"
    if kind == "bom":
        return "byte-order mark", b"\xef\xbb\xbf" + good, "pass"
    if kind == "crlf":
        return "CRLF line ends", good.replace(b"\n", b"\r\n"), "pass"
    delim = draw(st.sampled_from([b";", b"\t", b"|"]))
    return f"delimiter {delim!r}", good.replace(b",", delim), "fail"


def csv_cases(t: Table) -> st.SearchStrategy[FuzzCase]:
    return st.one_of(_cell(t), _structure(t))


# ----------------------------------------------------------------------------- Mooncake JSONL
def _jsonl(objs: list[Any]) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objs).encode()


@st.composite
def mooncake_cases(draw: st.DrawFn) -> FuzzCase:
    objs = mooncake_objects()
    good = _jsonl(objs)
    kind = draw(st.sampled_from(["delete", "retype", "nonfinite", "negative_len", "shift", "unsorted",
                                 "not_object", "deep", "truncate", "gzip_cut", "empty", "garbage", "bom",
                                 "huge"]))
    i = draw(st.integers(0, len(objs) - 1))
    key = draw(st.sampled_from(["timestamp", "input_length", "output_length"]))
    expect, label = "fail", f"{kind} line {i + 1} {key}"
    bad = copy.deepcopy(objs)
    if kind == "delete":
        del bad[i][key]
    elif kind == "retype":
        bad[i][key] = draw(st.sampled_from(["12", None, [1], {"a": 1}, True, "abc"]))
    elif kind == "nonfinite":
        bad[i][key] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    elif kind == "negative_len":
        bad[i][draw(st.sampled_from(["input_length", "output_length"]))] = -draw(st.integers(1, 10**6))
    elif kind == "huge":
        bad[i][key] = draw(st.sampled_from([1e308, 10**30, 2**63]))
        expect = "either" if key == "timestamp" else "fail"
    elif kind == "shift":  # negative timestamps throughout; relative times are unchanged
        for o in bad:
            o["timestamp"] -= 10**9
        expect = "either"
    elif kind == "unsorted":
        j = draw(st.integers(0, len(objs) - 1).filter(lambda j: objs[j]["timestamp"] != objs[i]["timestamp"]))
        bad[i], bad[j] = bad[j], bad[i]
    elif kind == "not_object":
        bad[i] = draw(st.sampled_from([[1, 2], "text", 3, None]))
    data = _jsonl(bad)
    if kind == "deep":
        lines = good.split(b"\n")
        lines[i] = b"[" * draw(st.integers(1000, 200000)) + b"]" * 3
        data = b"\n".join(lines)
    elif kind == "truncate":
        data, expect = good[: draw(st.integers(0, len(good) - 1))], "either"
    elif kind == "gzip_cut":
        z = gzip.compress(good)
        data = z[: draw(st.integers(0, len(z) - 9))]  # the 8-byte trailer always goes
    elif kind in ("empty", "garbage", "bom"):
        label, data, expect = _bytes_damage(draw, kind, good)
        expect = "either" if kind == "bom" else expect
    sc = trace_scenario("trace.jsonl")
    return FuzzCase(f"mooncake: {label}", dump(sc), {"trace.jsonl": data}, blame="trace.jsonl", expect=expect)


# ----------------------------------------------------------------------------- dcrouter JSON
@st.composite
def dcrouter_cases(draw: st.DrawFn) -> FuzzCase:
    """Corrupt test.json of a dcrouter folder (train.json stays valid)."""
    items = dcrouter_items()
    train, test = items[: ROWS // 2], items[ROWS // 2:]
    kind = draw(st.sampled_from(["delete", "retype", "score", "empty_list", "not_list", "deep", "truncate",
                                 "garbage", "bom", "dup_item", "dup_key", "empty"]))
    i = draw(st.integers(0, len(test) - 1))
    bad = copy.deepcopy(test)
    expect, label = "fail", f"{kind} item {i + 1}"
    data: bytes | None = None
    if kind == "delete":
        del bad[i][draw(st.sampled_from(["question", "scores"]))]
    elif kind == "retype":
        key = draw(st.sampled_from(["question", "scores"]))
        bad[i][key] = draw(st.sampled_from([None, 3, [1], True] + ([{"a": 1}] if key == "question" else ["x"])))
    elif kind == "score":
        bad[i]["scores"]["m1"] = draw(st.sampled_from([float("nan"), float("inf"), -0.5, 1.5, "high", None]))
    elif kind == "empty_list":  # train.json still has items: may be fine
        bad, expect = [], "either"
    elif kind == "not_list":
        bad = draw(st.sampled_from([{"question": "q"}, "text", 3]))  # type: ignore[assignment]
    elif kind == "dup_item":
        bad.append(copy.deepcopy(bad[i]))
        expect = "either"
    good = json.dumps(test).encode()
    if kind == "deep":
        data = b"[" * draw(st.integers(1000, 200000)) + b"]"
    elif kind == "truncate":
        data = good[: draw(st.integers(0, len(good) - 2))]
    elif kind == "dup_key":
        data, expect = good.replace(b'"m1": ', b'"m1": 0.0, "m1": ', 1), "either"
    elif kind in ("garbage", "bom", "empty"):
        label, data, expect = _bytes_damage(draw, kind, good)
        expect = "either" if kind == "bom" else expect
    files = {"dc/train.json": json.dumps(train).encode(), "dc/test.json": json.dumps(bad).encode() if data is None else data}
    sc = _dataset_scenario("dcrouter", "dc", {"small": "m1", "big": "m2"})
    return FuzzCase(f"dcrouter: {label}", dump(sc), files, blame="dc/test.json", expect=expect)


# ----------------------------------------------------------------------------- long table, Parquet
@st.composite
def parquet_cases(draw: st.DrawFn) -> FuzzCase:
    header, rows = long_table_rows()
    df = pd.DataFrame(rows, columns=header).astype({"score": float, "input_tokens": int, "cost_usd": float})
    kind = draw(st.sampled_from(["truncate", "garbage", "nan_score", "text_score", "drop_model", "empty"]))
    expect = "fail"
    if kind == "nan_score":
        df.loc[draw(st.integers(0, len(df) - 1)), "score"] = draw(st.sampled_from([float("nan"), float("inf"), 2.0]))
    elif kind == "text_score":
        df["score"] = df["score"].astype(str)
        df.loc[draw(st.integers(0, len(df) - 1)), "score"] = draw(st.sampled_from(["high", "", "[/]"]))
    elif kind == "drop_model":
        df = df.drop(columns=["model"])
    elif kind == "empty":
        df = df.iloc[:0]
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    data = buf.getvalue()
    if kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "garbage":
        cut = draw(st.integers(0, len(data) - 1))
        data = data[:cut] + b"\xff" * 64 + data[cut + 64:]
        expect = "either"  # garbage in unused bytes of a page may go unnoticed
    sc = _dataset_scenario("long_table", "table.parquet")
    # A binary file damaged as a whole has no line or field to name.
    return FuzzCase(f"parquet: {kind}", dump(sc), {"table.parquet": data}, blame="table.parquet", expect=expect,
                    located=kind not in ("truncate", "garbage"))


def data_bases() -> list[tuple[str, dict[str, Any], dict[str, bytes]]]:
    """(name, scenario, files) of every fixture, uncorrupted: the scenario reads the files."""
    header, rows = long_table_rows()
    buf = io.BytesIO()
    pd.DataFrame(rows, columns=header).astype({"score": float, "input_tokens": int}).to_parquet(buf)
    items = dcrouter_items()
    out = [(t.name, t.scenario, {t.file: csv_bytes(t.header, t.rows)}) for t in tables()]
    out.append(("mooncake", trace_scenario("trace.jsonl"), {"trace.jsonl": _jsonl(mooncake_objects())}))
    out.append(("dcrouter", _dataset_scenario("dcrouter", "dc", {"small": "m1", "big": "m2"}),
                {"dc/train.json": json.dumps(items[:20]).encode(), "dc/test.json": json.dumps(items[20:]).encode()}))
    out.append(("parquet", _dataset_scenario("long_table", "table.parquet"), {"table.parquet": buf.getvalue()}))
    return out


def valid_cases() -> list[FuzzCase]:
    """Every fixture uncorrupted: each must run (exit 0), or the corruption tests prove nothing."""
    return [FuzzCase(f"{name}: valid", dump(sc), files, sorted(files)[-1], "pass") for name, sc, files in data_bases()]


def bad_data_cases() -> list[FuzzCase]:
    """One plainly bad file per format (header only, a NaN score, unsorted times, broken JSON...)."""
    out = []
    for t in tables():
        rows = copy.deepcopy(t.rows)
        col = next(h for h in t.header if t.roles[h] in ("score", "int_tokens"))
        rows[3][t.header.index(col)] = "nan"
        out.append(_case(t, f"{col} = nan", csv_bytes(t.header, rows), "fail"))
        out.append(_case(t, "header only", csv_bytes(t.header, []), "fail"))
    objs = mooncake_objects()
    objs[5]["input_length"] = -3
    out.append(FuzzCase("mooncake: negative input_length", dump(trace_scenario("trace.jsonl")),
                        {"trace.jsonl": _jsonl(objs)}, "trace.jsonl", "fail"))
    items = dcrouter_items()
    out.append(FuzzCase("dcrouter: broken JSON", dump(_dataset_scenario("dcrouter", "dc", {"small": "m1", "big": "m2"})),
                        {"dc/train.json": json.dumps(items[:20]).encode(), "dc/test.json": b'[{"question": '},
                        "dc/test.json", "fail"))
    return out


__all__ = ["bad_data_cases", "csv_cases", "data_bases", "dcrouter_cases", "mooncake_cases", "parquet_cases", "tables", "valid_cases"]
