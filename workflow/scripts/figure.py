"""Rules figure_*: draw one report figure (params.figure names it)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.report.figures import make_figure
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)
    name = snakemake.params.figure
    inputs = dict(snakemake.input.items())
    if name == "timeline":
        inputs = {"run_dir": Path(snakemake.input.run_json).parent}
    out = make_figure(name, inputs, Path(snakemake.output.figure),
                      strategies=snakemake.params.strategies,
                      slo_sets=snakemake.params.get("slo_sets"))
    print(out)
