# One measured run per workload x strategy x repeat: gateway + telemetry sampler +
# open-loop replay, torn down whatever happens. A run takes every core Snakemake was
# given, so measured runs never overlap (they would share and skew the same GPU or
# CPU); a lock file keeps that true across concurrent Snakemake invocations too.


rule run:
    input:
        model=model_file(MODEL),
        trace="results/traces/{workload}.csv",
        policy=policy_file,
    output:
        requests="results/runs/{workload}/{strategy}/{rep}/requests.csv",
        tokens="results/runs/{workload}/{strategy}/{rep}/tokens.csv",
        events="results/runs/{workload}/{strategy}/{rep}/events.csv",
        telemetry="results/runs/{workload}/{strategy}/{rep}/telemetry.csv",
        run_json="results/runs/{workload}/{strategy}/{rep}/run.json",
    params:
        settings=run_settings,
        failed_dir=lambda wildcards: f"logs/runs/{wildcards.workload}/{wildcards.strategy}/{wildcards.rep}",
    threads: MEASUREMENT_THREADS
    # Earlier in the planned order = higher priority, so runs happen in that order.
    priority: lambda wildcards: len(RUN_ORDER) - order_index(wildcards.strategy, wildcards.rep)
    log:
        "logs/runs/{workload}/{strategy}/{rep}.log",
    conda:
        SERVING_ENV
    script:
        "../scripts/run.py"
