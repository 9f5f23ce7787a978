#!/usr/bin/env bash
# Mutation testing of the analysis and report modules with mutmut (not part of CI).
#
#   .venv/bin/pip install mutmut==3.8.1      # once, into the project's virtualenv
#   tools/mutation.sh                        # the functions that compute the numbers
#   tools/mutation.sh --all                  # every mutant of the configured modules
#   tools/mutation.sh 'scalezero.analysis.projections.x_project*'   # mutants matching patterns
#   tools/mutation.sh --config other.cfg     # another [mutmut] section (modules, tests)
#
# By default only the functions of projections.py and the report modules that compute
# or place a number are mutated (DEFAULT_PATTERNS below): all of these modules is about
# 4,600 mutants, most of them in the report's prose, and takes well over an hour on two
# cores; the default set is about 1,800.
#
# mutmut works in a scratch copy of the working tree (tracked and untracked files,
# not the ignored ones), so the project's own folder gets no mutants/ or setup.cfg.
# It ends with the summary and the list of surviving mutants; inspect one with
#   cd "$MUTATION_DIR" && ../main/.venv/bin/mutmut show <name>
# (MUTATION_DIR defaults to /tmp/scalezero-mutation; a rerun there reuses its results
# unless --fresh is given.)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MUTMUT="$ROOT/.venv/bin/mutmut"
CONFIG="$ROOT/tools/mutation.cfg"
WORK="${MUTATION_DIR:-/tmp/scalezero-mutation}"
DEFAULT_PATTERNS=(
    # projections.py: per-run energy and cost, the pooled model, the sweep, the host model
    'scalezero.analysis.projections.x_run_energy_tables__mutmut_*'
    'scalezero.analysis.projections.x_projection_model__mutmut_*'
    'scalezero.analysis.projections.x_project_strategy__mutmut_*'
    'scalezero.analysis.projections.x_project__mutmut_*'
    'scalezero.analysis.projections.x_estimated_power_w__mutmut_*'
    'scalezero.analysis.projections.x__*'
    # analysis/numbers.py and the report modules: formatting, per-strategy values,
    # projections, generated tables
    'scalezero.analysis.numbers.x_*'
    'scalezero.report.format.x_fmt*'
    'scalezero.report.inputs.x_per_strategy__mutmut_*'
    'scalezero.report.variables.x__strategy_vars__mutmut_*'
    'scalezero.report.variables.x__sweep_at__mutmut_*'
    'scalezero.report.variables.x__rph_key__mutmut_*'
    'scalezero.report.variables.x__projection_vars__mutmut_*'
    'scalezero.report.facts.x_context_power_w__mutmut_*'
    'scalezero.report.facts.x__context_row__mutmut_*'
    'scalezero.report.format.x_markdown_table__mutmut_*'
    'scalezero.report.tables.x_summary_table__mutmut_*'
    'scalezero.report.tables.x_cold_start_table__mutmut_*'
    'scalezero.report.tables.x_energy_table__mutmut_*'
    'scalezero.report.tables.x_projections_table__mutmut_*'
)
FRESH=0
ALL=0
PATTERNS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        --all) ALL=1; shift ;;
        -*) echo "usage: tools/mutation.sh [--config FILE] [--fresh] [--all | PATTERN...]" >&2
            exit 2 ;;
        *) PATTERNS+=("$1"); shift ;;
    esac
done
if [ "$ALL" = 1 ]; then
    PATTERNS=()
elif [ ${#PATTERNS[@]} -eq 0 ]; then
    PATTERNS=("${DEFAULT_PATTERNS[@]}")
fi
if [ ! -x "$MUTMUT" ]; then
    echo "mutmut is not installed: $ROOT/.venv/bin/pip install mutmut==3.8.1" >&2
    exit 2
fi

if [ "$FRESH" = 1 ]; then rm -rf "$WORK"; fi
mkdir -p "$WORK"
# The working tree as it is now (mutants/ and the results cache are kept across runs).
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
    | tar --null -T - -cf -) | tar -C "$WORK" -xf -
cp "$CONFIG" "$WORK/setup.cfg"
cd "$WORK"
start=$(date +%s)
"$MUTMUT" run ${PATTERNS[@]+"${PATTERNS[@]}"} | tr '\r' '\n' | tail -n 3
echo "mutation run took $(( $(date +%s) - start )) s"
"$MUTMUT" results --all true > results.txt
# Summary per module over the mutants that were run (others are "not checked").
"$ROOT/.venv/bin/python" - results.txt <<'PY'
import collections
import sys

per_module = collections.defaultdict(collections.Counter)
for line in open(sys.argv[1], encoding="utf-8"):
    name, _, status = line.strip().rpartition(": ")
    if name and status != "not checked":
        per_module[name.split(".x_")[0].split(".xǁ")[0]][status] += 1
total = collections.Counter()
for module, counts in sorted(per_module.items()):
    total.update(counts)
    print(f"{module}: {sum(counts.values())} mutants, "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
print(f"total: {sum(total.values())} mutants, "
      + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
PY
echo "survivors (mutmut show NAME in $WORK):"
grep -E ": (survived|no tests)$" results.txt || true
