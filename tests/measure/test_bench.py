"""``scalezero bench-overhead``: its settings, and end to end runs (tiny counts: a smoke test,
not a timing)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scalezero.cli import build_parser, main
from scalezero.measure.bench import BENCH_N_CTX, bench_settings


@pytest.mark.slow
def test_bench_overhead_prints_warm_ratios_and_cold_overhead(
    real_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "bench.json"
    code = main([
        "bench-overhead", "--model", str(real_model), "--warm-requests", "3", "--warmup", "1",
        "--cold-starts", "1", "--max-tokens", "4", "--quiet", "--json", str(out_json),
    ])
    assert code == 0
    table = capsys.readouterr().out
    ratio = r"\d+\.\d{4} \([+-]\d+\.\d+ %\)"
    for label in ("warm TTFT", "warm E2E", "cold TTFT vs start+warm TTFT"):
        assert re.search(rf"^{re.escape(label)} .*{ratio}.*(ok|MISSED)$", table, re.M), table
    assert "< 2 ms and < 5 %" in table and "< 100 ms" in table
    assert re.search(r"per streamed token [+-]\d+\.\d{4} ms \(target < 0.05 ms: (ok|MISSED)\)",
                     table), table
    results = json.loads(out_json.read_text())
    for key in ("warm_ttft", "warm_e2e", "cold_vs_warm_ttft", "cold_vs_first_ttft"):
        assert results[key]["direct_ms"] > 0 and results[key]["gateway_ms"] > 0
    assert results["meta"]["tokens_per_request"] >= 1
    assert isinstance(results["warm_per_token"]["paired_added_ms"], float)
    warm = results["samples"]["warm"]
    assert [(row["pair"], row["path"]) for row in warm] == [
        (pair, path) for pair in range(3) for path in ("gateway", "direct")
    ]
    assert all(0 < row["ttft_ms"] <= row["e2e_ms"] and row["tokens"] >= 1 for row in warm)
    direct_ttft = sorted(row["ttft_ms"] for row in warm if row["path"] == "direct")
    assert results["warm_ttft"]["direct_ms"] == pytest.approx(direct_ttft[1])
    assert len(results["samples"]["cold"]) == 1


def test_bench_overhead_reports_a_missing_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench-overhead", "--model", "/no/such/model.gguf"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_bench_builds_its_settings_with_its_own_context_size(fake_model: Path) -> None:
    args = build_parser(only="bench-overhead").parse_args(
        ["bench-overhead", "--model", str(fake_model), "--instance-command", "srv --port {port}"])
    settings = bench_settings(args, fake_model)
    assert settings.instance.n_ctx == BENCH_N_CTX == 512
    assert settings.instance.command == ("srv", "--port", "{port}")
    spec = settings.instance_spec()
    assert spec.n_ctx == 512 and spec.health_path == "/v1/models"  # the engine's
    assert settings.instance.engine == "llama_cpp_python"
