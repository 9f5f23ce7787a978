"""`scalezero simulate run` and `bench` end to end on small inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scalezero.cli import main
from scalezero.serving.events import EVENT_COLUMNS
from scalezero.simulate.engine import SIM_REQUEST_COLUMNS
from scalezero.simulate.profile import PlatformProfile
from scalezero.workload.trace import write_trace


def test_simulate_run_writes_the_run_files(tmp_path: Path) -> None:
    trace = pd.DataFrame({"request_id": [0, 1, 2], "t_sched_s": [1.0, 2.0, 40.0],
                          "max_tokens": [11, 11, 11], "prompt": ["a b", "c d", "e"]})
    write_trace(trace, tmp_path / "t.csv")
    PlatformProfile(name="p", model="m", device="cpu", basis="assumed",
                    model_loaded_to_ready_s=4.0, ttft_base_s=0.1, tpot_s=0.01,
                    power_w={"bare_idle": 10.0, "idle_loaded": 30.0, "active": 100.0,
                             "cold_start": 50.0}).write(tmp_path / "p.json")
    out = tmp_path / "sim"
    code = main(["simulate", "run", "--trace", str(tmp_path / "t.csv"), "--profile",
                 str(tmp_path / "p.json"), "--strategy", "keep_warm", "--param",
                 "keep_warm_ttl_s=10", "--out", str(out), "--no-progress"])
    assert code == 0
    requests = pd.read_csv(out / "requests.csv")
    assert list(requests.columns) == list(SIM_REQUEST_COLUMNS)
    assert requests["status"].tolist() == [200, 200, 200]
    events = pd.read_csv(out / "events.csv")
    assert tuple(events.columns) == EVENT_COLUMNS
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cold_starts"] == 2 and summary["policy"]["keep_warm_ttl_s"] == 10
    assert summary["window"] == pytest.approx([0.0, 44.2])  # the third one cold


def test_simulate_bench_prints_its_rate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "bench", "--requests", "2000", "--policy", "naive",
                 "--no-progress"]) == 0
    assert "requests/s" in capsys.readouterr().out


def test_simulate_run_takes_measured_prompt_tokens(tmp_path: Path) -> None:
    trace = pd.DataFrame({"request_id": [0, 1], "t_sched_s": [1.0, 30.0],
                          "max_tokens": [1, 1], "prompt": ["a b", "c d"]})
    write_trace(trace, tmp_path / "t.csv")
    pd.DataFrame({"request_id": [0, 1], "tokens_in": [100, ""]}).to_csv(
        tmp_path / "measured.csv", index=False)
    PlatformProfile(name="p", model="m", device="cpu", basis="assumed",
                    ttft_s_per_prompt_token=0.01).write(tmp_path / "p.json")
    out = tmp_path / "sim"
    assert main(["simulate", "run", "--trace", str(tmp_path / "t.csv"), "--profile",
                 str(tmp_path / "p.json"), "--strategy", "always_on", "--tokens-in",
                 str(tmp_path / "measured.csv"), "--out", str(out), "--no-progress"]) == 0
    requests = pd.read_csv(out / "requests.csv")
    # 100 measured tokens for the first, the word count (2) for the second.
    assert (requests["t_first_s"] - requests["t_sched_s"]).tolist() == pytest.approx(
        [1.0, 0.02])
