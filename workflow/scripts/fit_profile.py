"""Rule fit_profile: a platform profile fitted from every run of one workload."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.analysis.constants import projection_settings
from scalezero.simulate.fit import fit_profile
from scalezero.simulate.validate import run_limits
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)
    limits = run_limits({}, snakemake.params.gateway)
    profile = fit_profile(
        [Path(p).parent for p in snakemake.input.run_json],
        instance_concurrency=limits.instance_concurrency,
        settings=projection_settings({"constants": snakemake.params.constants}),
    )
    profile.write(Path(snakemake.output.profile))
    print(snakemake.output.profile)
