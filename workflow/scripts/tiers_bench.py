"""Rule tiers_bench: each warm tier of each engine, and the model file's read bandwidth."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.measure.tiers import run_tiers
from scalezero.serving.settings import ENGINES
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    tiers_csv, bandwidth_json = run_tiers(
        Path(snakemake.input.model),
        Path(snakemake.output.tiers).parent,
        repeats=int(snakemake.params.repeats),
        device=snakemake.params.device,
        gpu_index=snakemake.params.gpu_index,
        n_threads=snakemake.params.n_threads,
        engines=ENGINES,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(tiers_csv, bandwidth_json)
