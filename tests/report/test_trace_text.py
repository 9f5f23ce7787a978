"""The Setup section's paragraph on the workload's trace, from hand-written trace records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from simulated_runs import WORKLOAD, make_results

from scalezero.report.cli import make_report
from scalezero.report.trace_text import trace_paragraph

PATH = "data/azure-llm-inference-2023/AzureLLMInferenceTrace_code.csv"
SHA = "b17c1d2e3f4a5b6c7d8e9f00112233445566778899aabbccddeeff0011223344"
AZURE_SPEC = {"kind": "azure_llm", "seed": 7, "path": PATH, "window_start_s": 600,
              "window_s": 600, "target_rate_rps": 0.1, "time_scale": 3,
              "max_prompt_tokens": 448, "max_output_tokens": 32}


def _azure_record(**changes) -> dict:
    """A record as the workload step writes it for an azure_llm slice."""
    workload = {
        "name": "azure_code", "kind": "azure_llm", "path": PATH, "sha256": SHA,
        "rows_in_file": 8819, "window_start_s": 600.0, "window_s": 600.0,
        "window_length_s": 600.0, "rows_in_window": 1493, "window_rate_rps": 7.465,
        "target_rate_rps": 0.1, "keep_probability": 0.0669568, "kept_rows": 28,
        "requests": 28, "time_scale": 3.0, "token_mapping": "clamp",
        "max_prompt_tokens": 448, "max_output_tokens": 32, "prompt_clamped": 3,
        "output_clamped": 25, "prompt_scale": None, "output_scale": None,
        "prompt_raised_to_1": 0, "output_raised_to_1": 0, "duplicate_prompts": 0,
        **changes,
    }
    return {"workload": workload, "summary": {"n_requests": workload["requests"]}}


def test_a_clamped_azure_slice_is_described_with_its_numbers() -> None:
    text = trace_paragraph("azure_code", _azure_record(), AZURE_SPEC)
    assert text == (
        "The workload replays a slice of the Azure LLM inference trace 2023 (code service; "
        f"file {PATH}, sha256 b17c1d2e3f4a…): 600 s from 600 s into the file (1,493 "
        "requests), thinned with seed 7 to a target 0.1 req/s as replayed (each request "
        "kept with probability 0.067; 28 kept), 3 times faster than recorded. Token counts "
        "are clamped onto the model's context: prompt tokens to 448 (3 clamped), output "
        "tokens to 32 (25 clamped).\n")


def test_a_scaled_azure_slice_gives_its_factors_and_raised_counts() -> None:
    record = _azure_record(token_mapping="scale", prompt_clamped=None, output_clamped=None,
                           prompt_scale=0.0123456, output_scale=0.05, prompt_raised_to_1=2,
                           output_raised_to_1=0, target_rate_rps=None,
                           keep_probability=0.25, kept_rows=373, requests=100,
                           time_scale=0.5)
    spec = {**AZURE_SPEC, "token_mapping": "scale", "keep_probability": 0.25,
            "max_requests": 100}
    spec.pop("target_rate_rps")
    text = " ".join(trace_paragraph("azure_code", record, spec).split())
    assert "thinned with seed 7, each request kept with probability 0.25 (373 kept), of " \
           "which the first 100 are replayed, 2 times slower than recorded." in text
    assert "scaled onto the model's context" in text
    assert "prompt tokens by 0.0123 (to at most 448), output tokens by 0.05 (to at most " \
           "32); 2 prompt counts that came out below 1 were raised to 1." in text
    assert "clamped" not in text and "training" not in text


def test_a_training_part_is_stated_and_none_when_zero() -> None:
    # The workload step writes the training part's figures beside the "workload" part
    # (which keeps the file's own training_s, training_rows and training_length_s).
    trained = {**_azure_record(training_s=600.0, training_rows=1482,
                               training_length_s=600.0),
               "training_s": 600.0, "training_requests": 31, "training_span_s": 200.0}
    text = trace_paragraph("azure_code", trained, AZURE_SPEC)
    assert text.endswith("A training part of 600 s before the window (31 requests) was "
                         "given to adaptive policies to learn from.\n")
    untrained = {**_azure_record(training_s=0.0),
                 "training_s": 0.0, "training_requests": 0, "training_span_s": 0.0}
    assert "training" not in trace_paragraph("azure_code", untrained, AZURE_SPEC)


def test_a_window_to_the_end_of_the_file_and_an_unknown_service() -> None:
    record = _azure_record(path="traces/mine.csv", window_s=None, window_length_s=1234.4,
                           time_scale=1.0)
    text = trace_paragraph("azure_code", record, {**AZURE_SPEC, "window_s": None})
    assert "(file traces/mine.csv, sha256 b17c1d2e3f4a…): 1,234 s from 600 s into the " \
           "file to its end" in text
    assert "at the recorded pace" in text


def test_a_generated_kind_names_its_parameters() -> None:
    spec = {"kind": "bursty", "seed": 7, "bursts": 3, "burst_duration_s": 5,
            "burst_rate_rps": 1.0, "idle_gap_s": 7, "max_tokens": 8}
    record = {"workload": {"name": "smoke", "kind": "bursty"}, "summary": {}}
    assert trace_paragraph("smoke", record, spec) == (
        "The workload is generated (kind bursty, seed 7): 3 bursts of 5 s with Poisson "
        "arrivals at 1 req/s, separated by 7 s idle gaps.\n")
    poisson = {"kind": "poisson", "seed": 2, "rate_rps": 0.5, "duration_s": 120,
               "max_requests": 10}
    assert trace_paragraph("p", None, poisson) == (
        "The workload is generated (kind poisson, seed 2): Poisson arrivals at 0.5 req/s "
        "for 120 s. Only the first 10 requests are kept.\n")


def test_recorded_kinds_name_their_file() -> None:
    csv = {"workload": {"name": "t", "kind": "trace_csv", "path": "my/trace.csv"}}
    assert trace_paragraph("t", csv, {"kind": "trace_csv", "seed": 1, "path": "my/trace.csv",
                                      "time_scale": 10}) == (
        "The workload replays the recorded trace in file my/trace.csv from 0 s, 10 times "
        "faster than recorded.\n")
    functions = {"workload": {"name": "f", "kind": "azure_functions", "path": "d01.csv",
                              "function": "abc", "app": "xyz"}}
    text = trace_paragraph("f", functions, {"kind": "azure_functions", "seed": 3,
                                            "path": "d01.csv", "start_minute": 10,
                                            "minutes": 5, "time_compression": 60})
    assert text == ("The workload replays the per-minute invocation counts of function abc "
                    "(app xyz) from an Azure Functions trace (file d01.csv): minutes 10 to "
                    "14, compressed 60 times, arrivals within a minute uniform with seed 3.\n")


@pytest.mark.parametrize(("info", "spec", "expected"), [
    (None, {}, "not recorded here"),
    (None, AZURE_SPEC, f"replays {PATH} (kind azure_llm, seed 7); what was taken"),
])
def test_without_a_record_the_paragraph_says_so(info, spec, expected: str) -> None:
    assert expected in trace_paragraph("w", info, spec)


def test_the_rendered_setup_section_states_the_slice(tmp_path: Path) -> None:
    results = make_results(tmp_path, gpu=False, reps=1)
    info = tmp_path / "traces" / f"{WORKLOAD}.json"
    info.write_text(json.dumps(_azure_record(name=WORKLOAD)), encoding="utf-8")
    html = make_report(
        workload=WORKLOAD, config={"workloads": {WORKLOAD: AZURE_SPEC}},
        summary_dir=tmp_path / "summary", run_dirs=results["run_dirs"],
        trace=results["trace"], trace_info=info, projections_dir=tmp_path / "projections",
        figures_dir=tmp_path / "figures" / WORKLOAD, out_html=tmp_path / "report.html",
        variables_out=tmp_path / "variables.yml", renderer="pandoc")
    text = " ".join(re.sub(r"<[^>]+>", "", html.read_text(encoding="utf-8")).split())
    setup = text.split("Hardware, software and workload", 1)[1]
    assert "The workload replays a slice of the Azure LLM inference trace 2023 (code " \
           "service;" in setup
    assert "28 kept), 3 times faster than recorded." in setup
    assert yaml.safe_load((tmp_path / "variables.yml").read_text())["workload"]["name"] \
        == WORKLOAD
