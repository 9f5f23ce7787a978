# scalezero: always-on vs naive scale-to-zero vs keep-warm serving of an LLM.
# Entry point of the workflow; the steps live in workflow/rules/, one file each.
# Run: snakemake --cores 4 (add --use-conda for the pinned conda environments).

from snakemake.utils import min_version

min_version("9.0")


# A --configfile on the command line replaces the default instead of being merged into
# it: the smoke configuration must not inherit the default's workloads and strategies.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/workload.smk"
include: "workflow/rules/run.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/tiers.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/scenarios.smk"
include: "workflow/rules/sharing.smk"
include: "workflow/rules/sharing_simulate.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
