"""Rule workload: write the seeded trace of one workload, its source record and its
history (the training part's arrivals; header only when there is none)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.models.files import atomic_output
from scalezero.system.workflow_io import logged
from scalezero.workload import generate_trace, write_trace
from scalezero.workload.trace import trace_record, write_history

with logged(snakemake.log[0]):
    name = snakemake.wildcards.workload
    trace = generate_trace(name, snakemake.params.spec, base_dir=Path.cwd())
    write_trace(trace, Path(snakemake.output.trace))
    write_history(trace.attrs["history_s"], Path(snakemake.output.history))
    record = trace_record(trace, base_dir=Path.cwd())
    with atomic_output(Path(snakemake.output.info)) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    summary = record["summary"]
    print(f"{name}: {summary['n_requests']} requests over {summary['span_s']:.3f} s")
    if record["training_requests"]:
        print(f"history: {record['training_requests']} requests over the "
              f"{record['training_span_s']:.3f} s before the replay start")
    if trace.attrs["workload"]["kind"] == "azure_llm":
        print(f"source: {json.dumps(record['workload'])}")
