#!/usr/bin/env bash
# Set everything up and run the tests (lint, unit tests, gateway tests with real
# llama.cpp servers, and the whole workflow on the smoke configuration).
# Extra arguments go to pytest, e.g. ./test.sh -k gateway
set -euo pipefail
cd "$(dirname "$0")"
tools/setup-venv.sh test
.venv/bin/ruff check src tests workflow
.venv/bin/snakefmt --check Snakefile workflow/
.venv/bin/mypy
exec .venv/bin/pytest "$@"
