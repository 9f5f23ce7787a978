"""Run summaries, workload files, confidence intervals and the `aggregate` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import event_row, lifecycle, request_row, telemetry_frame, write_run

from scalezero.analysis import aggregate as ag
from scalezero.analysis import energy as en
from scalezero.analysis.stats import mean_ci, t_cdf, t_quantile
from scalezero.cli import main

WORKLOAD = "bursty"
REPLAY = (1000.0, 1020.0)
SENDS = (1001.0, 1006.0, 1011.0, 1016.0)
SAMPLES = np.arange(979.5, 1021.0, 1.0)  # 1 Hz, half a second off every phase boundary


def _meta(strategy: str, rep: int, order_index: int, policy: dict) -> dict:
    return {
        "workload": WORKLOAD, "strategy": strategy, "rep": rep, "order_index": order_index,
        "policy": {"name": strategy, **policy}, "device": "gpu",
        "model": {"name": "smollm2-135m", "path": "x.gguf", "sha256": "0", "bytes": 1},
        "windows": {"baseline_bare": [980.0, 990.0], "baseline_context": None,
                    "replay": list(REPLAY)},
        "telemetry": {"backend": "nvml", "rate_hz": 1},
        "clock": {"mono_s": 1000.0, "wall_iso": "2026-11-25T12:00:00+00:00"},
    }


def _tokens(request_id: int, first_s: float, step_s: float, n: int) -> list[dict]:
    return [{"request_id": request_id, "token_index": j, "t_s": first_s + j * step_s}
            for j in range(n)]


def _always_on(root: Path, rep: int) -> Path:
    # Started before the replay (not a cold start of the window), up throughout.
    events = lifecycle("i1", 992.0, runtime_ready_s=992.5, model_loaded_s=993.0, ready_s=994.0,
                       reason="min_instances")
    requests, tokens, power = [], [], [(992.0, 994.0, 10.0), (994.0, 1030.0, 5.0)]
    for k, s in enumerate(SENDS):
        # TTFT 125 ms, E2E 500 ms, 5 tokens 93.75 ms apart: TPOT (500 - 125) / 4 = 93.75
        requests.append(request_row(k, s, s, s + 0.125, s + 0.5, 5))
        tokens += _tokens(k, s + 0.125, 0.09375, 5)
        power.append((s, s + 0.5, 20.0))
    return write_run(root / WORKLOAD / "always_on" / str(rep),
                     meta=_meta("always_on", rep, rep * 3 - 3,
                                {"keep_warm_ttl_s": None, "min_instances": 1, "max_instances": 1}),
                     requests=requests, events=events, tokens=tokens,
                     telemetry=telemetry_frame(SAMPLES, power, 2.0, instance_mem_mib=200.0))


def _naive(root: Path, rep: int) -> Path:
    events, requests, tokens, power = [], [], [], []
    for k, s in enumerate(SENDS):
        iid = f"i{k + 1}"
        if rep == 2 and k == 2:  # this start fails, and so does its request
            events += [event_row(s, iid, "spawn", "on_demand"),
                       event_row(s + 1.0, iid, "start_failed")]
            requests.append(request_row(k, s, s, None, s + 1.0, 0, status=503,
                                        error="instance start failed", cold=True,
                                        instance_id=""))
            power.append((s, s + 1.0, 10.0))
            continue
        events += lifecycle(iid, s, runtime_ready_s=s + 0.25, model_loaded_s=s + 0.5,
                            ready_s=s + 1.0, first_token_s=s + 1.25, stopped_s=s + 1.75)
        # TTFT 1250 ms, E2E 1500 ms, TPOT (1500 - 1250) / 4 = 62.5 ms
        requests.append(request_row(k, s, s, s + 1.25, s + 1.5, 5, cold=True, instance_id=iid))
        tokens += _tokens(k, s + 1.25, 0.0625, 5)
        power += [(s, s + 1.0, 10.0), (s + 1.0, s + 1.5, 20.0), (s + 1.5, s + 1.75, 5.0)]
    return write_run(root / WORKLOAD / "naive" / str(rep),
                     meta=_meta("naive", rep, rep * 3 - 1,
                                {"keep_warm_ttl_s": 0, "min_instances": 0, "max_instances": 1}),
                     requests=requests, events=events, tokens=tokens,
                     telemetry=telemetry_frame(SAMPLES, power, 2.0, instance_mem_mib=200.0))


def _keep_warm(root: Path, rep: int) -> Path:
    events = lifecycle("i1", 1001.0, runtime_ready_s=1001.25, model_loaded_s=1001.5,
                       ready_s=1002.0, first_token_s=1002.25, stopped_s=1026.5)
    requests, tokens = [], []
    power = [(1001.0, 1002.0, 10.0), (1002.0, 1030.0, 5.0)]
    for k, s in enumerate(SENDS):
        first = s + 1.25 if k == 0 else s + 0.125
        end = first + 0.25 if k == 0 else s + 0.5
        requests.append(request_row(k, s, s, first, end, 5, cold=(k == 0)))
        tokens += _tokens(k, first, (end - first) / 4, 5)
        power.append((max(s, 1002.0), end, 20.0))
    telemetry = telemetry_frame(SAMPLES, power, 2.0, instance_mem_mib=200.0,
                                source="nvml_counter" if rep == 1 else "none")
    return write_run(root / WORKLOAD / "keep_warm" / str(rep),
                     meta=_meta("keep_warm", rep, rep * 3 - 2,
                                {"keep_warm_ttl_s": 10, "min_instances": 0, "max_instances": 1}),
                     requests=requests, events=events, tokens=tokens, telemetry=telemetry)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    return [make(root, rep) for rep in (1, 2) for make in (_naive, _always_on, _keep_warm)]


@pytest.fixture(scope="module")
def outputs(run_dirs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ag.aggregate_workload(run_dirs, tmp_path_factory.mktemp("summary"), WORKLOAD)


def _summary(outputs: dict[str, Path]) -> pd.DataFrame:
    return pd.read_csv(outputs["summary"]).set_index(["strategy", "rep"])


# --------------------------------------------------------------------------- stats


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706), (2, 4.303), (3, 3.182),
                                              (5, 2.571), (10, 2.228), (30, 2.042),
                                              (120, 1.980)])
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_closed_forms(p: float) -> None:
    # df = 1 is the Cauchy distribution; df = 2 has t = (2p - 1) / sqrt(2 p (1 - p)).
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    assert t_quantile(1 - p, 4) == pytest.approx(-t_quantile(p, 4))
    assert t_cdf(t_quantile(p, 7), 7) == pytest.approx(p, abs=1e-12)


def test_mean_ci() -> None:
    ci = mean_ci([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)  # sd of [1, 2, 3] is 1
    assert (ci.n, ci.mean, ci.sd) == (3, 2.0, pytest.approx(1.0))
    assert ci.low == pytest.approx(2.0 - half, abs=1e-3)
    assert ci.high == pytest.approx(2.0 + half, abs=1e-3)
    one = mean_ci([5.0, float("nan")])
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.low) and math.isnan(one.high)
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)


# --------------------------------------------------------------------- workload files


def test_files_and_columns(outputs: dict[str, Path]) -> None:
    assert {k: p.name for k, p in outputs.items()} == {
        "summary": "bursty.csv", "ci": "bursty_ci.csv", "requests": "bursty_requests.csv",
        "energy": "bursty_energy.csv", "cold_starts": "bursty_cold_starts.csv"}
    summary = pd.read_csv(outputs["summary"])
    assert list(summary.columns) == list(ag.SUMMARY_COLUMNS)
    assert list(zip(summary["strategy"], summary["rep"], strict=True)) == [
        ("always_on", 1), ("always_on", 2), ("keep_warm", 1), ("keep_warm", 2),
        ("naive", 1), ("naive", 2)]
    assert list(pd.read_csv(outputs["ci"]).columns) == list(ag.CI_FILE_COLUMNS)
    assert list(pd.read_csv(outputs["energy"]).columns) == list(ag.ENERGY_FILE_COLUMNS)
    assert list(pd.read_csv(outputs["cold_starts"]).columns) == list(ag.COLD_START_FILE_COLUMNS)
    requests = pd.read_csv(outputs["requests"])
    assert list(requests.columns) == ag.request_file_columns()
    # One energy row per run and phase: 6 runs.
    assert len(requests) == 24 and len(pd.read_csv(outputs["energy"])) == 6 * len(en.PHASES)


def test_policy_accounting_columns(outputs: dict[str, Path], tmp_path: Path) -> None:
    """From the policy's name and parameters when run.json predates policy.accounting;
    from policy.accounting when it has one (the parameters' names play no part)."""
    s = _summary(outputs)
    assert s["policy_always_on"].to_dict() == {("always_on", 1): True, ("always_on", 2): True,
                                               ("keep_warm", 1): False, ("keep_warm", 2): False,
                                               ("naive", 1): False, ("naive", 2): False}
    assert math.isinf(s.at[("always_on", 1), "policy_idle_ttl_s"])
    assert s.at[("keep_warm", 1), "policy_idle_ttl_s"] == 10
    assert s.at[("naive", 1), "policy_idle_ttl_s"] == 0
    run = _always_on(tmp_path / "runs", 1)
    meta = json.loads((run / "run.json").read_text())
    meta["policy"] = {"name": "custom_policy", "keep_warm_ttl_s": 5,
                      "accounting": {"always_on": False, "idle_ttl_s": 42.0}}
    (run / "run.json").write_text(json.dumps(meta))
    row = ag.summarize_run(run).row
    assert row["policy_always_on"] is False and row["policy_idle_ttl_s"] == 42.0
    assert row["keep_warm_ttl_s"] == 5  # the recorded parameter, as before
    meta["policy"] = {"name": "no_such_policy"}
    (run / "run.json").write_text(json.dumps(meta))
    row = ag.summarize_run(run).row
    assert math.isnan(row["policy_always_on"]) and math.isnan(row["policy_idle_ttl_s"])


def test_counts_and_cold_starts(outputs: dict[str, Path]) -> None:
    s = _summary(outputs)
    assert s["cold_starts"].to_dict() == {("always_on", 1): 0, ("always_on", 2): 0,
                                          ("keep_warm", 1): 1, ("keep_warm", 2): 1,
                                          ("naive", 1): 4, ("naive", 2): 4}
    assert s.at[("naive", 2), "failed_starts"] == 1 and s.at[("naive", 1), "failed_starts"] == 0
    assert s.at[("naive", 2), "errors"] == 1 and s.at[("naive", 2), "ok"] == 3
    assert s.at[("keep_warm", 1), "cold_requests"] == 1
    assert s.at[("keep_warm", 1), "cold_share"] == pytest.approx(0.25)
    assert s.at[("always_on", 1), "instance_s"] == pytest.approx(20.0)
    assert s.at[("keep_warm", 1), "instance_s"] == pytest.approx(19.0)
    assert s.at[("naive", 1), "instance_s"] == pytest.approx(4 * 1.75)
    assert s.at[("always_on", 1), "mem_mib_s"] == pytest.approx(200.0 * 20)
    starts = pd.read_csv(outputs["cold_starts"])
    assert len(starts) == 12  # naive 4 + 4, keep_warm 1 + 1, always_on 1 + 1 (pre-replay)
    always_on = starts[starts["strategy"] == "always_on"]
    assert not always_on["in_replay"].any()
    assert always_on["t_spawn_rel_s"].tolist() == [-8.0, -8.0]
    naive1 = starts[(starts["strategy"] == "naive") & (starts["rep"] == 1)]
    assert naive1["cold_start_s"].tolist() == pytest.approx([1.0] * 4)
    assert naive1["model_loaded_to_ready_s"].tolist() == pytest.approx([0.5] * 4)


def test_latency_and_goodput(outputs: dict[str, Path]) -> None:
    s = _summary(outputs)
    ao = s.loc[("always_on", 1)]
    assert ao["ttft_p50_ms"] == pytest.approx(125.0) and ao["e2e_p99_ms"] == pytest.approx(500)
    assert ao["tpot_p50_ms"] == pytest.approx(93.75)
    assert ao["itl_p99_ms"] == pytest.approx(93.75)
    assert math.isnan(ao["ttft_cold_p50_ms"])
    assert ao["output_tokens_per_s"] == pytest.approx(20 / 20)
    assert ao["goodput_mlperf_standard_rps"] == pytest.approx(4 / 20)
    assert ao["slo_attainment_mlperf_standard"] == pytest.approx(1.0)
    assert ao["goodput_mlperf_interactive_rps"] == 0.0  # TPOT 93.75 > 30
    kw = s.loc[("keep_warm", 1)]
    assert kw["ttft_cold_p50_ms"] == pytest.approx(1250.0)
    assert kw["ttft_warm_p99_ms"] == pytest.approx(125.0)
    naive2 = s.loc[("naive", 2)]
    assert naive2["tpot_p99_ms"] == pytest.approx(62.5)
    assert naive2["slo_attainment_mlperf_standard"] == pytest.approx(0.75)
    assert naive2["goodput_mlperf_standard_rps"] == pytest.approx(3 / 20)


def test_energy_columns(outputs: dict[str, Path]) -> None:
    s = _summary(outputs)
    ao = s.loc[("always_on", 1)]
    # 18 s idle at 5 W + 2 s active at 20 W; bare idle 2 W
    assert ao["energy_total_j"] == pytest.approx(130.0, abs=1e-6)
    assert ao["energy_above_baseline_j"] == pytest.approx(90.0, abs=1e-6)
    assert ao["bare_idle_power_w"] == pytest.approx(2.0)
    assert ao["energy_per_request_j"] == pytest.approx(32.5)
    assert ao["energy_per_output_token_j"] == pytest.approx(6.5)
    assert ao["energy_uncertainty_pct"] == 5.0 and ao["energy_source"] == "nvml_counter"
    assert ao["energy_coverage_pct"] == pytest.approx(100.0)
    kw = s.loc[("keep_warm", 1)]
    # empty 1 s x 2 W + cold 1 s x 10 W + active 2 s x 20 W + idle 16 s x 5 W
    assert kw["energy_total_j"] == pytest.approx(132.0, abs=1e-6)
    # Cold start [1001, 1002): half of the straddling 6 J and 15 J sample intervals.
    assert kw["cold_start_energy_mean_j"] == pytest.approx(10.5, abs=1e-6)
    assert kw["cold_start_above_baseline_mean_j"] == pytest.approx(8.5, abs=1e-6)
    # Idle 16 s x 5 W, plus 3.75 J from each of the three idle|active boundaries at
    # 1006, 1011, 1016 that split a sample interval in half: 91.25 J / 16 s.
    assert kw["idle_loaded_power_w"] == pytest.approx(91.25 / 16, abs=1e-9)
    assert kw["break_even_ttl_s"] == pytest.approx(8.5 / (91.25 / 16 - 2.0), abs=1e-9)
    assert kw["phase_active_s"] == pytest.approx(2.0)
    assert kw["cold_start_mean_s"] == pytest.approx(1.0)
    assert kw["ready_to_first_token_mean_s"] == pytest.approx(0.25)
    # No energy counter: energy columns empty, durations still there.
    no_energy = s.loc[("keep_warm", 2)]
    assert no_energy["energy_source"] == "none"
    for column in ("energy_total_j", "energy_above_baseline_j", "phase_active_energy_j",
                   "energy_per_request_j", "bare_idle_power_w", "cold_start_energy_mean_j",
                   "break_even_ttl_s", "energy_uncertainty_pct", "idle_loaded_power_w"):
        assert math.isnan(no_energy[column]), column
    assert no_energy["phase_idle_loaded_s"] == pytest.approx(16.0)
    energy = pd.read_csv(outputs["energy"])
    kw2 = energy[(energy["strategy"] == "keep_warm") & (energy["rep"] == 2)]
    assert kw2["energy_j"].isna().all() and kw2["duration_s"].sum() == pytest.approx(20.0)


def test_confidence_intervals(outputs: dict[str, Path]) -> None:
    ci = pd.read_csv(outputs["ci"]).set_index(["strategy", "metric"])
    ok = ci.loc[("naive", "ok")]  # 4 and 3: mean 3.5, sd 0.7071, half 12.706 x 0.5
    assert ok["n"] == 2 and ok["mean"] == pytest.approx(3.5)
    assert ok["ci95_low"] == pytest.approx(3.5 - 6.353, abs=1e-3)
    assert ok["ci95_high"] == pytest.approx(3.5 + 6.353, abs=1e-3)
    ttft = ci.loc[("always_on", "ttft_p50_ms")]
    assert (ttft["n"], ttft["mean"], ttft["ci95_low"], ttft["ci95_high"]) == (2, 125, 125, 125)
    one = ci.loc[("keep_warm", "energy_total_j")]
    assert one["n"] == 1 and one["mean"] == pytest.approx(132.0)
    assert math.isnan(one["ci95_low"])
    metrics = set(ci.index.get_level_values("metric"))
    assert "rep" not in metrics and "strategy" not in metrics
    assert "goodput_mlperf_standard_rps" in metrics


def test_output_is_deterministic(run_dirs: list[Path], outputs: dict[str, Path],
                                 tmp_path: Path) -> None:
    again = ag.aggregate_workload(list(reversed(run_dirs)), tmp_path, WORKLOAD)
    for key, path in outputs.items():
        assert again[key].read_bytes() == path.read_bytes(), key


def test_minimal_run_folder_keeps_every_column(tmp_path: Path) -> None:
    # Only requests.csv and a run.json without windows: replay window from the requests.
    run = tmp_path / "w" / "naive" / "1"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"workload": "w"}), encoding="utf-8")
    pd.DataFrame([request_row(0, 10.0, 10.0, 10.5, 12.0, 4)]).to_csv(run / "requests.csv",
                                                                    index=False)
    summary = ag.summarize_run(run, ag.mx.DEFAULT_SLO_SETS)
    assert list(summary.row) == list(ag.SUMMARY_COLUMNS)
    assert summary.row["strategy"] == "naive" and summary.row["rep"] == 1
    assert summary.row["duration_s"] == pytest.approx(2.0)
    assert summary.row["ttft_p50_ms"] == pytest.approx(500.0)
    assert math.isnan(summary.row["itl_p50_ms"]) and math.isnan(summary.row["instance_s"])
    assert math.isnan(summary.row["cold_starts"]) and math.isnan(summary.row["energy_total_j"])
    paths = ag.aggregate_workload([run], tmp_path / "out", "w")
    assert list(pd.read_csv(paths["summary"]).columns) == list(ag.SUMMARY_COLUMNS)
    assert pd.read_csv(paths["cold_starts"]).empty


def test_rejects_mixed_workloads_and_duplicates(run_dirs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ag.UserError, match="belongs to workload"):
        ag.aggregate_workload(run_dirs, tmp_path, "poisson")
    with pytest.raises(ag.UserError, match="both"):
        ag.aggregate_workload([run_dirs[0], run_dirs[0]], tmp_path, WORKLOAD)
    with pytest.raises(ag.UserError):
        ag.aggregate_workload(run_dirs, tmp_path, WORKLOAD, {"Bad Name": {"ttft_ms": 1}})


def test_summary_columns_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text(encoding="utf-8")
    missing = [c for c in ag.SUMMARY_COLUMNS if f"`{c}`" not in doc]
    assert not missing


# ------------------------------------------------------------------------------ CLI


def test_cli_aggregate(run_dirs: list[Path], tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    slo = json.dumps({"strict": {"ttft_ms": 200, "tpot_ms": 100}})
    code = main(["aggregate", *map(str, run_dirs), "--workload", WORKLOAD,
                 "--out-dir", str(tmp_path), "--slo-json", slo])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == str(tmp_path / "bursty.csv") and len(printed) == 5
    s = pd.read_csv(tmp_path / "bursty.csv").set_index(["strategy", "rep"])
    assert "goodput_mlperf_standard_rps" not in s.columns
    # strict: TTFT <= 200 ms; always_on all 4, keep_warm 3 (the cold one misses)
    assert s.at[("always_on", 1), "goodput_strict_rps"] == pytest.approx(0.2)
    assert s.at[("keep_warm", 1), "slo_attainment_strict"] == pytest.approx(0.75)


def test_cli_explain_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aggregate", "--explain"]) == 0
    out = capsys.readouterr().out
    assert all(column in out for column in ag.SUMMARY_COLUMNS)
    assert main(["aggregate", "--explain", "--slo-json", "{not json"]) == 2
    assert main(["aggregate", str(tmp_path / "missing"), "--workload", "w",
                 "--out-dir", str(tmp_path)]) == 2
    assert "run folder not found" in capsys.readouterr().err
