"""Rule report: render results/report/report.html from summaries, projections, figures."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.report.build import build_report
from scalezero.report.config import report_settings
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)
    inputs = dict(snakemake.input.items())
    result = build_report(
        workload=snakemake.params.workload,
        summary_files={k: Path(inputs[k]) for k in ("summary", "requests", "cold_starts")},
        projection_files={k.removeprefix("proj_"): Path(v)
                          for k, v in inputs.items() if k.startswith("proj_")},
        figures={k.removeprefix("fig_"): Path(v)
                 for k, v in inputs.items() if k.startswith("fig_")},
        out_html=Path(snakemake.output.html),
        variables_out=Path(snakemake.output.variables),
        settings=report_settings({"report": snakemake.params.report}),
        run_dirs=[Path(p).parent for p in snakemake.input.run_json],
        trace=Path(snakemake.input.trace),
        trace_info=Path(inputs["trace_info"]) if "trace_info" in inputs else None,
        workload_spec=snakemake.params.workload_spec,
        slo_sets=snakemake.params.slo_sets,
        source_dir=Path(snakemake.params.source_dir),
        log=Path(snakemake.log[0]),
        scenarios=({k.removeprefix("scen_"): Path(v)
                    for k, v in inputs.items() if k.startswith("scen_")} or None),
        size_sweep=({"summary": Path(inputs["sweep_summary"]),
                     "figure": Path(inputs["sweep_figure"])}
                    if "sweep_summary" in inputs else None),
        simulation=({"validation": Path(inputs["sim_validation"]),
                     "profile": Path(inputs["sim_profile"]),
                     "figure": Path(inputs["sim_figure"])}
                    if "sim_validation" in inputs else None),
        platforms=Path(inputs["platforms"]) if "platforms" in inputs else None,
        tiers=({k.removeprefix("tiers_"): Path(v)
                for k, v in inputs.items() if k.startswith("tiers_")} or None),
        sharing=({k.removeprefix("sharing_"): Path(v)
                  for k, v in inputs.items() if k.startswith("sharing_")} or None),
    )
    print(f"{result.html} ({result.renderer})")
