"""Rule sweep_run: one size-sweep run, with the model file's page-cache residency
recorded when the run begins and when it ends (whether its loads could read the file
from memory is measured, not assumed)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.measure.runner import run_from_settings
from scalezero.system.pagecache import page_cache_residency
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    model = Path(snakemake.input.model)
    before = page_cache_residency(model)
    print("page cache before the run:", json.dumps(before))
    run_from_settings(
        settings=snakemake.params.settings,
        model_path=model,
        trace_path=Path(snakemake.input.trace),
        out_dir=Path(snakemake.output.run_json).parent,
        keep_failed_in=Path(snakemake.params.failed_dir),
    )
    after = page_cache_residency(model)
    print("page cache after the run:", json.dumps(after))
    out = Path(snakemake.output.page_cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"before": before, "after": after}, indent=2) + "\n")
