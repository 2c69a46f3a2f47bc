"""The failures the fuzz suite found, as fixed cases: checked on every run whatever hypothesis draws.

Each one broke the bad-input contract at some point while issue 8 was worked on (a traceback, an
accepted bad value, a message with no line or naming the wrong file, a 72 kB message).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.sim.fuzz_check import FuzzCase
from tests.sim.fuzz_data import csv_bytes, data_bases, mooncake_objects, tables
from tests.sim.fuzz_scenarios import LOCAL_SCENARIOS, dump, load_base


def _base(name: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    sc, files = next((sc, files) for n, sc, files in data_bases() if n == name)
    return copy.deepcopy(sc), dict(files)


def _mooncake(label: str, key: str, value: Any, line: int = 3) -> FuzzCase:
    objs = mooncake_objects()
    objs[line - 1][key] = value
    sc, _ = _base("mooncake")
    data = "".join(json.dumps(o) + "\n" for o in objs).encode()
    return FuzzCase(label, dump(sc), {"trace.jsonl": data}, "trace.jsonl", "fail")


def _table(name: str, label: str, data: bytes, expect: str = "fail") -> FuzzCase:
    t = next(t for t in tables() if t.name == name)
    return FuzzCase(f"{name}: {label}", dump(t.scenario), {t.file: data}, t.file, expect)


def _scenario_cases() -> list[FuzzCase]:
    quick = load_base(LOCAL_SCENARIOS[0])
    markup = copy.deepcopy(quick)
    markup["router"]["policy"] = "[/]"
    bomb = ("x_bomb:\n  - &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
            + "".join(f"  - &b{k} [" + ", ".join([f"*b{k - 1}"] * 10) + "]\n" for k in (1, 2, 3)))
    bombed = bomb + dump(quick).replace("type: poisson", "type: *b3")
    dup = dump(quick).replace("seed: 7\n", "seed: 7\nseed: 8\n")
    return [
        FuzzCase("markup in router.policy '[/]' (rich MarkupError)", dump(markup), expect="fail"),
        FuzzCase("alias bomb as workload.arrivals.type (72 kB message)", bombed, expect="fail"),
        FuzzCase("duplicate key seed (accepted, last won)", dup, expect="fail"),
        FuzzCase("scenario not UTF-8 (byte position, no line)", dump(quick).encode()[:40] + b"\xff\n", expect="fail"),
    ]


def _data_cases() -> list[FuzzCase]:
    az = next(t for t in tables() if t.name == "azure")
    az_rows = copy.deepcopy(az.rows)
    az_rows[0][0] = "-1"  # year -1: an 8.6e9 s trace, once blamed on the scenario
    rb = next(t for t in tables() if t.name == "routerbench")
    rb_keep = [h for h in rb.header if h != "gpt-4|total_cost"]
    lt = next(t for t in tables() if t.name == "long_table")
    dc_sc, dc_files = _base("dcrouter")
    return [
        _mooncake("mooncake: output_length 1e308 (accepted as 1 token)", "output_length", 1e308),
        _mooncake("mooncake: input_length 1e308 (simpy RuntimeError)", "input_length", 1e308),
        FuzzCase("mooncake: line nested 100k deep (RecursionError)", dump(_base("mooncake")[0]),
                 {"trace.jsonl": b"[" * 100_000 + b"]\n"}, "trace.jsonl", "fail"),
        FuzzCase("dcrouter: file nested 100k deep (RecursionError)", dump(dc_sc),
                 {**dc_files, "dc/test.json": b"[" * 100_000 + b"]"}, "dc/test.json", "fail"),
        FuzzCase("dcrouter: top level is an object (no line)", dump(dc_sc),
                 {**dc_files, "dc/test.json": b'{"question": "q"}'}, "dc/test.json", "fail"),
        FuzzCase("dcrouter: not UTF-8 (no line)", dump(dc_sc), {**dc_files, "dc/test.json": b"\xff[]"},
                 "dc/test.json", "fail"),
        _table("azure", "header only (no line)", csv_bytes(az.header, [])),
        _table("azure", "not UTF-8 (no line)", b"\xff\xfe" + csv_bytes(az.header, az.rows)),
        _table("azure", "TIMESTAMP -1 in row 1 (blamed on the scenario)", csv_bytes(az.header, az_rows), "either"),
        _table("long_table", "empty file (no line)", b""),
        _table("long_table", "one query only (blamed on the scenario)", csv_bytes(lt.header, lt.rows[:2])),
        _table("routerbench", "empty file (no line)", b""),
        _table("routerbench", "not UTF-8 (no line)", b"\xff" + csv_bytes(rb.header, rb.rows)),
        _table("routerbench", "gpt-4|total_cost dropped (misleading 'model not in dataset')",
               csv_bytes(rb_keep, [[r[rb.header.index(h)] for h in rb_keep] for r in rb.rows])),
    ]


def known_cases() -> list[FuzzCase]:
    return _scenario_cases() + _data_cases()


__all__ = ["known_cases"]
