#!/usr/bin/env bash
# Set everything up and run the pipeline on config/config.yaml (the embedded default):
# fetch the model, generate the workload, measure always_on, naive and keep_warm, and
# render results/report/report.html. Extra arguments go to snakemake, e.g.
#   ./run.sh --configfile .test/config.yaml
set -euo pipefail
cd "$(dirname "$0")"
tools/setup-venv.sh
exec .venv/bin/snakemake --cores "${CORES:-4}" "$@"
