"""Scheduler and KV-capacity configuration (issue 10, items 1 and 4): the deployment's scheduler fields,
their defaults and errors, the activation reserve in the KV capacity, and what reaches the engine."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.config import load_scenario, schema
from sim.config.checks import kv_capacity_tokens, scheduler_for
from sim.config.load import parse_scenario
from sim.engine.scheduler import PAGED, RESERVE, SchedulerConfig
from tests.sim.conftest import REPO, SCENARIOS, cli, small_scenario
from tests.sim.test_bad_input import assert_clean_failure

GIB = 2**30




def with_deployment(index: int = 0, **fields: Any) -> dict[str, Any]:
    sc = copy.deepcopy(small_scenario())
    sc["deployments"][index].update(fields)
    return sc


def mooncake_trace(folder: Path, name: str = "trace.jsonl") -> Path:
    """A 3-request Mooncake trace whose second and third requests share their first 512-token block."""
    rows = [
        {"timestamp": 0, "input_length": 700, "output_length": 20, "hash_ids": [0, 1]},
        {"timestamp": 100, "input_length": 900, "output_length": 30, "hash_ids": [0, 2]},
        {"timestamp": 250, "input_length": 520, "output_length": 10, "hash_ids": [0, 3]},
    ]
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def trace_scenario(folder: Path, **arrivals: Any) -> dict[str, Any]:
    sc = small_scenario()
    del sc["num_queries"]
    sc["workload"]["arrivals"] = {"type": "trace", "path": str(mooncake_trace(folder)), **arrivals}
    return sc


# ----------------------------------------------------------------------------- defaults
def test_defaults_are_vllm_v1_paged(write_scenario) -> None:  # type: ignore[no-untyped-def]
    sc = load_scenario(write_scenario(small_scenario()))
    for dep in sc.deployments:
        assert (dep.scheduler, dep.block_size, dep.max_num_batched_tokens) == ("paged", 16, 8192)
        assert (dep.chunked_prefill, dep.prefix_cache, dep.watermark) == (True, False, 0.01)
        assert dep.activation_reserve_gib is None
        # no trace: prefix hashes would be Mooncake's 512-token blocks
        assert scheduler_for(dep, sc) == PAGED == SchedulerConfig(kind="paged", prefix_block_tokens=512)


def test_reserve_and_explicit_paged_fields_reach_the_scheduler_config(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sc = trace_scenario(tmp_path, prefix_block_tokens=256)
    sc["deployments"][0].update(scheduler="reserve")
    sc["deployments"][1].update(block_size=32, max_num_batched_tokens=2048, chunked_prefill=False,
                                prefix_cache=True, watermark=0.05)
    with pytest.warns(UserWarning, match="chunked_prefill: false: a request whose prompt"):
        loaded = load_scenario(write_scenario(sc))
    assert scheduler_for(loaded.deployments[0], loaded) == SchedulerConfig(kind="reserve", prefix_block_tokens=256)
    assert scheduler_for(loaded.deployments[0], loaded).kind == RESERVE.kind
    assert scheduler_for(loaded.deployments[1], loaded) == SchedulerConfig(
        kind="paged", block_size=32, max_num_batched_tokens=2048, chunked_prefill=False, prefix_cache=True,
        watermark=0.05, prefix_block_tokens=256,
    )


def test_resolved_reserve_scenario_round_trips(write_scenario) -> None:  # type: ignore[no-untyped-def]
    """A run folder's scenario.yaml is a full dump: a reserve deployment's dump leaves out the paged-only
    fields (listing them would make the file an error to load again), a paged one keeps them all."""
    sc = load_scenario(write_scenario(with_deployment(0, scheduler="reserve")))
    dumped = sc.model_dump(mode="json")
    assert not set(schema.PAGED_ONLY) & set(dumped["deployments"][0])
    assert set(schema.PAGED_ONLY) <= set(dumped["deployments"][1])
    again = parse_scenario(yaml.safe_dump(dumped, sort_keys=False))
    assert again.deployments == sc.deployments


# ----------------------------------------------------------------------------- errors
def _run_fails(write_scenario, tmp_path: Path, sc: dict[str, Any], *needles: str) -> None:  # type: ignore[no-untyped-def]
    path = write_scenario(sc)
    out = tmp_path / "run"
    assert_clean_failure(cli("run", str(path), "--out", str(out)), str(path), *needles)
    assert not out.exists()


NON_DEFAULT = {"block_size": 32, "max_num_batched_tokens": 4096, "chunked_prefill": False, "prefix_cache": True,
               "watermark": 0.05}


@pytest.mark.parametrize("field", schema.PAGED_ONLY)
def test_paged_only_field_with_reserve_is_an_error(write_scenario, tmp_path: Path, field: str) -> None:  # type: ignore[no-untyped-def]
    sc = with_deployment(1, scheduler="reserve", **{field: NON_DEFAULT[field]})
    _run_fails(write_scenario, tmp_path, sc, f"deployments[1].{field}", "paged-scheduler setting", "reserve", "line ")


def test_paged_scenario_switches_to_reserve(write_scenario) -> None:  # type: ignore[no-untyped-def]
    """A resolved paged scenario writes every paged field at its default: --set scheduler=reserve on it
    (or a sweep over the scheduler) must load, the defaults being harmless."""
    defaults = {f: schema.Deployment.model_fields[f].default for f in schema.PAGED_ONLY}
    sc = load_scenario(write_scenario(with_deployment(1, scheduler="reserve", **defaults)))
    assert scheduler_for(sc.deployments[1], sc).kind == "reserve"


ERRORS = [
    # (deployment 0's fields, expected substrings)
    ({"scheduler": "fifo"}, ["deployments[0].scheduler", "'paged' or 'reserve'"]),
    ({"block_size": 0}, ["deployments[0].block_size", "greater than or equal to 1"]),
    ({"block_size": 2048}, ["deployments[0].block_size", "less than or equal to 1024"]),
    ({"watermark": 0.6}, ["deployments[0].watermark", "less than or equal to 0.5"]),
    ({"watermark": -0.1}, ["deployments[0].watermark", "greater than or equal to 0"]),
    ({"chunked_prefill": "yes"}, ["deployments[0].chunked_prefill", "boolean"]),
    ({"max_num_batched_tokens": 31}, ["deployments[0].max_num_batched_tokens", "below max_seqs (32)"]),
    ({"max_seqs": 9000}, ["deployments[0].max_num_batched_tokens", "8192 is below max_seqs (9000)"]),
    ({"activation_reserve_gib": -1.0}, ["deployments[0].activation_reserve_gib", "greater than or equal to 0"]),
    ({"activation_reserve_gib": 60.0}, ["deployments[0]", "does not fit", "1 × 60 GiB", "activation_reserve_gib"]),
]


@pytest.mark.parametrize(("fields", "needles"), ERRORS, ids=[str(e[0]) for e in ERRORS])
def test_bad_scheduler_field_fails_cleanly(write_scenario, tmp_path: Path, fields, needles) -> None:  # type: ignore[no-untyped-def]
    _run_fails(write_scenario, tmp_path, with_deployment(0, **fields), *needles)


def test_prefix_block_size_must_tile_the_trace_hash_blocks(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sc = trace_scenario(tmp_path)
    sc["deployments"][0].update(prefix_cache=True, block_size=24)
    _run_fails(write_scenario, tmp_path, sc, "deployments[0].block_size", "divides the 512")


def test_prefix_cache_without_hashes_is_only_a_warning(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """No trace (or a trace replayed with pool token counts): nothing can hit; block_size is not checked."""
    with pytest.warns(UserWarning, match="no prefix hashes"):
        load_scenario(write_scenario(with_deployment(0, prefix_cache=True, block_size=24)))
    sc = trace_scenario(tmp_path, use_trace_tokens=False)
    sc["deployments"][0].update(prefix_cache=True)
    with pytest.warns(UserWarning, match="no prefix hashes"):
        load_scenario(write_scenario(sc))


def test_max_num_batched_tokens_equal_to_max_seqs_is_fine(write_scenario) -> None:  # type: ignore[no-untyped-def]
    sc = load_scenario(write_scenario(with_deployment(0, max_num_batched_tokens=32)))
    assert sc.deployments[0].max_num_batched_tokens == sc.deployments[0].max_seqs == 32


def test_default_reserve_makes_a_tight_deployment_not_fit(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """70B on 2 × 72 GiB usable: 130.4 GiB of weights leave 13.6 GiB, which the default reserve at tp 2
    (2 × 5.8 GiB) nearly eats; at 0.85 utilisation (136 GiB usable) nothing is left, and the message
    names the reserve; setting it to 0 restores the weights-only bound."""
    sc = with_deployment(1, gpu_memory_utilization=0.85)
    _run_fails(write_scenario, tmp_path, sc, "deployments[1]", "does not fit", "2 × 5.8 GiB", "default for its size")
    sc["deployments"][1]["activation_reserve_gib"] = 0.0
    assert load_scenario(write_scenario(sc)).deployments[1].activation_reserve_gib == 0.0


def test_prefix_block_tokens_must_be_tiled_by_block_size(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sc = trace_scenario(tmp_path, prefix_block_tokens=500)
    sc["deployments"][0]["prefix_cache"] = True
    _run_fails(write_scenario, tmp_path, sc, "deployments[0].block_size", "divides the 500", "prefix_block_tokens")
    sc["deployments"][0]["block_size"] = 20  # 500 = 25 × 20
    assert load_scenario(write_scenario(sc)).deployments[0].block_size == 20
    sc["workload"]["arrivals"]["prefix_block_tokens"] = 0
    _run_fails(write_scenario, tmp_path, sc, "workload.arrivals.prefix_block_tokens", "greater than or equal to 1")


def test_prefix_cache_without_prefix_hashes_warns(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Only a Mooncake trace carries prefix hashes: a prefix cache anywhere else can never hit (a
    warning, the run stays valid); with the trace, no warning."""
    warned = cli("validate", str(write_scenario(with_deployment(1, prefix_cache=True))))
    assert warned.exit_code == 0, warned.output
    assert "warning:" in warned.output and "deployments[1].prefix_cache" in warned.output
    assert "no prefix hashes" in warned.output
    sc = trace_scenario(tmp_path)
    sc["deployments"][1]["prefix_cache"] = True
    quiet = cli("validate", str(write_scenario(sc, "trace_scenario.yaml")))
    assert quiet.exit_code == 0, quiet.output
    assert "warning:" not in quiet.output
    plain = cli("validate", str(write_scenario(small_scenario(), "plain.yaml")))  # no prefix cache: no warning
    assert plain.exit_code == 0 and "warning:" not in plain.output


# ----------------------------------------------------------------------------- KV capacity
def _kv(write_scenario, sc: dict[str, Any], k: int) -> int:  # type: ignore[no-untyped-def]
    loaded = load_scenario(write_scenario(sc))
    dep = loaded.deployments[k]
    model = next(m for m in loaded.models if m.name == dep.model)
    gpu = next(g for g in loaded.gpus if g.name == dep.gpu)
    return kv_capacity_tokens(model, gpu, dep)


def test_kv_capacity_of_70b_tp4_h100_by_hand(write_scenario) -> None:  # type: ignore[no-untyped-def]
    """Llama-70B (320 KiB of KV per token) on 4 × H100-80GB at 0.9 utilisation:
    usable 4 × 80 × 0.9 GiB = 309,237,645,312 B; weights 70e9 × 2 = 140,000,000,000 B; default reserve
    4 GPUs × (4 GiB for >= 50B + 1.8 GiB for tp > 1) = 23.2 GiB = 24,910,810,316.8 B; left
    144,326,834,995.2 B / 327,680 = 440,450.1 → 440,450 tokens = 27,528 blocks of 16 (weights-only:
    516,472 tokens, 17 % more)."""
    sc = small_scenario()
    sc["gpus"] = [{"name": "H100-80GB", "memory_gib": 80, "count": 8}]
    for m in sc["models"]:
        m["latency"] = {"H100-80GB": m["latency"]["A100"]}
    sc["deployments"] = [{"model": "small", "gpu": "H100-80GB", "tp": 1},
                         {"model": "big", "gpu": "H100-80GB", "tp": 4, "max_seqs": 64}]
    assert _kv(write_scenario, sc, 1) == 440_450
    assert PAGED.blocks(440_450) == 27_528
    sc["deployments"][1]["activation_reserve_gib"] = 0.0
    assert _kv(write_scenario, sc, 1) == 516_472
    sc["deployments"][1]["activation_reserve_gib"] = 10.0  # 40 GiB: 126,287,972,352 B / 327,680 → 385,400
    assert _kv(write_scenario, sc, 1) == 385_400


def test_kv_capacity_of_8b_tp1_by_hand(write_scenario) -> None:  # type: ignore[no-untyped-def]
    """Llama-8B (128 KiB per token) on one 80 GiB GPU at 0.9: 77,309,411,328 − 16,000,000,000 weights −
    3 GiB reserve (3,221,225,472) = 58,088,185,856 B / 131,072 = 443,177.3 → 443,177 tokens (vLLM logs
    53.29 GiB = 436,551 tokens for Llama-3-8B on a real H100, which reports 79.22 GiB, not 80)."""
    sc = small_scenario()
    assert _kv(write_scenario, sc, 0) == 443_177
    # tp 2: 2 × (3 + 1.8) GiB reserve; 154,618,822,656 − 16e9 − 10,307,921,510.4 = 128,310,901,145.6 B → 978,934
    sc["deployments"][0]["tp"] = 2
    assert _kv(write_scenario, sc, 0) == 978_934


def test_build_cluster_uses_the_reserved_capacity(write_scenario) -> None:  # type: ignore[no-untyped-def]
    """The engine's instances get the same capacity as the load-time check (both schedulers)."""
    import simpy

    from sim.engine.build import build_cluster

    sc = with_deployment(0, scheduler="reserve")
    loaded = load_scenario(write_scenario(sc))
    _, deps = build_cluster(simpy.Environment(), loaded, lambda r: None)
    assert deps[0].kv_capacity_tokens == 443_177
    assert deps[1].kv_capacity_tokens == _kv(write_scenario, sc, 1)
    assert [inst.kv_capacity_tokens for inst in deps[0].instances] == [443_177]
    # and each deployment runs the scheduler its fields describe
    assert [d.scheduler for d in deps] == [scheduler_for(d, loaded) for d in loaded.deployments]
    assert [d.scheduler.kind for d in deps] == ["reserve", "paged"]
    assert type(deps[0].instances[0]).__name__ == "Instance"
    assert type(deps[1].instances[0]).__name__ == "PagedInstance"


# ----------------------------------------------------------------------------- docs and scenarios
def test_schema_command_lists_the_scheduler_fields() -> None:
    out = cli("schema").output
    for field in ("scheduler", *schema.PAGED_ONLY, "activation_reserve_gib", "prefix_block_tokens"):
        assert f"| `{field}` |" in out, field
    assert "'paged' or 'reserve'" in out and "Range: [0, 0.5]" in out and "Range: [1, 1024]" in out
    assert "## KV capacity of a deployment" in out
    for _below, gib in schema.ACTIVATION_RESERVE_BANDS_GIB:  # the table is the code's
        assert f"| {gib:g} | {gib + schema.ACTIVATION_RESERVE_TP_EXTRA_GIB:g} |" in out


def _scheduler_of(path: Path) -> list[str]:
    return [d.get("scheduler", "paged") for d in yaml.safe_load(path.read_text())["deployments"]]


def test_shipped_scenarios_choose_their_scheduler() -> None:
    """Queueing-theory and OmniRouter-style concurrency studies keep the reserve model explicitly; the
    default scenario (and its embedded copy) uses the paged default."""
    assert set(_scheduler_of(SCENARIOS / "mmc_validation.yaml")) == {"reserve"}
    assert set(_scheduler_of(SCENARIOS / "mmlu_pro.yaml")) == {"reserve"}
    assert set(_scheduler_of(SCENARIOS / "quickstart.yaml")) == {"paged"}
    assert set(_scheduler_of(REPO / "sim" / "scenarios" / "quickstart.yaml")) == {"paged"}


def test_mixed_step_coefficients_reach_the_engine_profile() -> None:
    """A calibrated mixed-step coefficient in YAML is used; the others stay derived from the pure ones."""
    from sim.config.checks import profile_for

    sc = small_scenario()
    lat = sc["models"][0]["latency"]["A100"]
    lat["mixed_attn_s"] = 3e-9
    parsed = parse_scenario(yaml.safe_dump(sc), file="mixed.yaml")
    prof = profile_for(parsed.models[0], parsed.deployments[0])
    coef = prof.mixed_coefficients()
    assert coef["mixed_attn_s"] == 3e-9
    assert coef["mixed_base_s"] == lat["decode_base_s"] and coef["mixed_compute_base_s"] == lat["prefill_base_s"]
    lat["mixed_attn_s"] = -1.0
    with pytest.raises(Exception, match="mixed_attn_s"):
        parse_scenario(yaml.safe_dump(sc), file="mixed.yaml")
