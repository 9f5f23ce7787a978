# Per-workload summaries: one row per strategy x repeat, with confidence intervals
# across repeats, plus long-format request, energy and cold-start detail. With
# `platforms:`, one set per platform, and a table comparing the platforms.


rule aggregate:
    input:
        run_json=lambda wildcards: aggregate_inputs(wildcards)["run_json"],
        requests=lambda wildcards: aggregate_inputs(wildcards)["requests"],
        tokens=lambda wildcards: aggregate_inputs(wildcards)["tokens"],
        events=lambda wildcards: aggregate_inputs(wildcards)["events"],
        telemetry=lambda wildcards: aggregate_inputs(wildcards)["telemetry"],
    output:
        **summary_files("{workload}", *PLATFORM_PARTS),
    log:
        log_file("aggregate", *PLATFORM_PARTS, "{workload}"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        slo_sets=_canonical(config.get("slo_sets")),
    script:
        "../scripts/aggregate.py"


rule platform_comparison:
    input:
        summaries=list(platform_summaries(REPORT_WORKLOAD).values()),
    output:
        comparison=str(LAYOUT.platform_comparison),
    log:
        log_file("aggregate", "platforms"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        platforms={p: _canonical(platform_spec(config, p)) for p in PLATFORMS},
    script:
        "../scripts/platform_comparison.py"
