"""Rules simulate_hour, simulate_grid, simulate_projections: one scenario table each
(the rule's output names which)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.simulate.scenarios import (
    write_hour_scenarios,
    write_projections_table,
    write_rate_ttl_grid,
)
from scalezero.system.workflow_io import logged

WRITERS = {"hour": write_hour_scenarios, "grid": write_rate_ttl_grid,
           "projections": write_projections_table}

with logged(snakemake.log[0]):
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)
    outputs = dict(snakemake.output.items())
    (kind,) = [k for k in WRITERS if k in outputs]
    params = dict(snakemake.params.items())
    config = {k: params[k] for k in ("strategies", "gateway", "simulation", "constants",
                                     "projections") if k in params}
    # The data files as the rule names them (inputs), not as the settings spell them.
    config["simulation"] = {**config["simulation"], "trace": snakemake.input.trace,
                            "published_file": snakemake.input.published}
    out = WRITERS[kind](snakemake.wildcards.workload, config, snakemake.input.profile,
                        Path(outputs[kind]))
    print(out)
