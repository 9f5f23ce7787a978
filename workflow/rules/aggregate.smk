# Per-workload summaries: one row per strategy x repeat, with confidence intervals
# across repeats, plus long-format request, energy and cold-start detail.


rule aggregate:
    input:
        run_json=lambda wildcards: [f"{d}/run.json" for d in run_dirs(wildcards.workload)],
        requests=lambda wildcards: [f"{d}/requests.csv" for d in run_dirs(wildcards.workload)],
        tokens=lambda wildcards: [f"{d}/tokens.csv" for d in run_dirs(wildcards.workload)],
        events=lambda wildcards: [f"{d}/events.csv" for d in run_dirs(wildcards.workload)],
        telemetry=lambda wildcards: [
            f"{d}/telemetry.csv" for d in run_dirs(wildcards.workload)
        ],
    output:
        **summary_files("{workload}"),
    params:
        slo_sets=_canonical(config.get("slo_sets")),
    log:
        "logs/aggregate/{workload}.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/aggregate.py"
