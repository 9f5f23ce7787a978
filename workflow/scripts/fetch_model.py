"""Rule fetch_model: make one models: entry available as a verified GGUF."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from scalezero.models.gguf import gguf_info
from scalezero.models.sources import fetch_model
from scalezero.system.workflow_io import logged

with logged(snakemake.log[0]):
    out = fetch_model(snakemake.wildcards.model, snakemake.params.spec,
                      Path(snakemake.output.gguf))
    info = gguf_info(out)
    print(f"{out}: {info['file_bytes']:,} bytes, {info['architecture']}, "
          f"{info['file_type']}, {info['parameters']:,} parameters")
