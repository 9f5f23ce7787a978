# Per-workload summaries: one row per strategy x repeat, with confidence intervals
# across repeats, plus long-format request, energy and cold-start detail.


rule aggregate:
    input:
        run_json=lambda wildcards: run_files(run_dirs(wildcards.workload))["run_json"],
        requests=lambda wildcards: run_files(run_dirs(wildcards.workload))["requests"],
        tokens=lambda wildcards: run_files(run_dirs(wildcards.workload))["tokens"],
        events=lambda wildcards: run_files(run_dirs(wildcards.workload))["events"],
        telemetry=lambda wildcards: run_files(run_dirs(wildcards.workload))["telemetry"],
    output:
        **summary_files("{workload}"),
    log:
        log_file("aggregate", "{workload}"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        slo_sets=_canonical(config.get("slo_sets")),
    script:
        "../scripts/aggregate.py"
