"""The replay client gets exactly the requested output length from a real model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scalezero.measure.replay import ReplayRequest, completion_payload
from scalezero.measure.runner import measured_run
from scalezero.measure.settings import RunSettings, TelemetrySettings
from scalezero.serving.settings import GatewaySettings, InstanceSettings
from scalezero.workload import write_history

pytestmark = pytest.mark.slow


def test_payload_streams_and_bans_end_of_generation_tokens() -> None:
    item = ReplayRequest(request_id=3, t_sched_s=0.0, prompt="hi", max_tokens=5)
    payload = completion_payload(item, "m", [2, 0])
    assert payload["stream"] is True and payload["max_tokens"] == 5
    assert payload["logit_bias"] == {"2": -100.0, "0": -100.0}
    assert payload["temperature"] == 0.0 and payload["seed"] == 3


def test_requested_length_is_produced_even_where_the_model_would_stop(
        tmp_path: Path, real_model: Path) -> None:
    # Unbiased, SmolLM2 answers this prompt with end-of-sequence as its first token.
    trace = tmp_path / "trace.csv"
    pd.DataFrame({
        "request_id": [0, 1],
        "t_sched_s": [0.1, 0.2],
        "max_tokens": [8, 12],
        "prompt": ["Write one sentence about the sea.", "The quick brown fox"],
    }).to_csv(trace, index=False)
    run = measured_run(RunSettings(
        gateway=GatewaySettings(model_path=real_model, policy="always_on",
                                instance=InstanceSettings(n_ctx=256)),
        trace_path=trace, out_dir=tmp_path / "run", log_dir=tmp_path / "logs",
        telemetry=TelemetrySettings(baseline_s=0.2), workload="w", strategy="always_on",
    ))
    assert run["status"] == "ok"
    assert run["policy"]["accounting"] == {"always_on": True, "idle_ttl_s": None}
    # The gateway ran with the settings the run wrote next to its log.
    gateway = GatewaySettings.model_validate_json(
        (tmp_path / "logs" / "gateway-settings.json").read_text())
    assert gateway.instance.n_ctx == 256 and gateway.events_csv == tmp_path / "run" / "events.csv"
    requests = pd.read_csv(tmp_path / "run" / "requests.csv")
    assert list(requests["status"]) == [200, 200]
    assert list(requests["tokens_out"]) == [8, 12]
    assert list(requests["finish_reason"]) == ["length", "length"]
    # The always-on instance was up before the replay: both found it loaded.
    assert list(requests["start_tier"]) == ["loaded", "loaded"]
    # Counted by the model's own tokenizer (SmolLM2 adds no BOS): 7 and 4 tokens.
    assert list(requests["tokens_in"]) == [7, 4]
    tokens = pd.read_csv(tmp_path / "run" / "tokens.csv")
    assert tokens.groupby("request_id").size().tolist() == [8, 12]


def test_the_workloads_history_reaches_the_gateways_policy(
        tmp_path: Path, real_model: Path) -> None:
    # A history of gaps of 1.5 s makes hybrid_histogram (1 s bins) representative before
    # the first request: after it, the instance stops at once and a pre-warm follows
    # 0.9 s after the idle start. Without the history it would keep the instance 600 s.
    trace = tmp_path / "trace.csv"
    pd.DataFrame({
        "request_id": [0, 1], "t_sched_s": [0.1, 8.0], "max_tokens": [4, 4],
        "prompt": ["The quick brown fox", "The quick brown fox"],
    }).to_csv(trace, index=False)
    history = tmp_path / "trace.history.csv"
    write_history([-15.0 + 1.5 * i for i in range(10)], history)
    params = {"bin_width_s": 1.0, "range_s": 60.0, "min_samples": 5}
    run = measured_run(RunSettings(
        gateway=GatewaySettings(model_path=real_model, policy="hybrid_histogram",
                                policy_params=params, instance=InstanceSettings(n_ctx=256)),
        trace_path=trace, history_path=history, out_dir=tmp_path / "run",
        log_dir=tmp_path / "logs", telemetry=TelemetrySettings(baseline_s=0.2),
        workload="w", strategy="hybrid",
    ))
    assert run["status"] == "ok"
    assert run["history"] == {"requests": 10, "span_s": 15.0}
    gateway = GatewaySettings.model_validate_json(
        (tmp_path / "logs" / "gateway-settings.json").read_text())
    assert gateway.history_s == tuple(-15.0 + 1.5 * i for i in range(10))
    events = pd.read_csv(tmp_path / "run" / "events.csv", keep_default_na=False)
    assert "prewarm" in set(events["reason"])
    requests = pd.read_csv(tmp_path / "run" / "requests.csv")
    assert list(requests["status"]) == [200, 200]
