# One measured run per workload x strategy x repeat: gateway + telemetry sampler +
# open-loop replay, torn down whatever happens. A run takes every core Snakemake was
# given, so measured runs never overlap (they would share and skew the same GPU or
# CPU); a lock file keeps that true across concurrent Snakemake invocations too (on a
# cluster: per node). With `platforms:` each platform has runs of its own.


rule run:
    input:
        model=model_file(MODEL),
        trace=trace_file("{workload}"),
        history=trace_history_file("{workload}"),
        policy=policy_file,
    output:
        **run_dir_files(run_dir("{workload}", "{strategy}", "{rep}", *PLATFORM_PARTS)),
    log:
        log_file("runs", *PLATFORM_PARTS, "{workload}", "{strategy}", "{rep}"),
    # Earlier in the planned order = higher priority, so runs happen in that order.
    priority: lambda wildcards: len(RUN_ORDER) - order_index(wildcards.strategy, wildcards.rep)
    conda:
        SERVING_ENV
    threads: MEASUREMENT_THREADS
    resources:
        **measured_rule_resources(),
    params:
        settings=run_settings,
        failed_dir=lambda wildcards: log_dir(
            "runs",
            *[p for p in [platform_of(wildcards)] if p],
            wildcards.workload,
            wildcards.strategy,
            wildcards.rep,
        ),
    script:
        "../scripts/run.py"
