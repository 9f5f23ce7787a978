"""Rule workload: write the seeded trace of one workload."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.system.workflow_io import logged
from scalezero.workload import generate_trace, trace_summary, write_trace

with logged(snakemake.log[0]):
    trace = generate_trace(snakemake.wildcards.workload, snakemake.params.spec,
                           base_dir=Path.cwd())
    write_trace(trace, Path(snakemake.output.trace))
    summary = trace_summary(trace)
    print(f"{snakemake.wildcards.workload}: {summary['n_requests']} requests over "
          f"{summary['span_s']:.3f} s")
    if trace.attrs["workload"]["kind"] == "azure_llm":
        print(f"source: {json.dumps(trace.attrs['workload'])}")
