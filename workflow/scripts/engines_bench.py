"""Rule engines_bench: each engine always-on under concurrent closed-loop clients."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.measure.tiers import run_engines
from scalezero.serving.settings import ENGINES
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    engines_csv = run_engines(
        Path(snakemake.input.model),
        Path(snakemake.output.engines).parent,
        clients=[int(c) for c in snakemake.params.clients],
        requests_per_client=int(snakemake.params.requests_per_client),
        max_tokens=int(snakemake.params.max_tokens),
        device=snakemake.params.device,
        gpu_index=snakemake.params.gpu_index,
        n_threads=snakemake.params.n_threads,
        engines=ENGINES,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(engines_csv)
