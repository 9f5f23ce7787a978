"""Rule sharing_deployments: write one sharing variant's deployments file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import yaml

from scalezero.models.files import atomic_output
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    with atomic_output(Path(snakemake.output.deployments)) as tmp:
        tmp.write_text(yaml.safe_dump(dict(snakemake.params.data), sort_keys=False),
                       encoding="utf-8")
    print(f"{snakemake.wildcards.variant}: {', '.join(snakemake.params.data['deployments'])}")
