# Size sweep: cold-start phases of several models (real or synthetic) against their
# file size, beside the lower bound "bytes / read bandwidth" measured on this host
# (with `platforms:`, on the first platform).


rule sweep_trace:
    output:
        trace=str(LAYOUT.sweep_trace),
    log:
        log_file("sweep", "trace"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        requests=SWEEP.get("requests", 3),
        spacing_s=SWEEP.get("spacing_s", 3),
        max_tokens=SWEEP.get("max_tokens", 8),
    script:
        "../scripts/sweep_trace.py"


rule read_bandwidth:
    input:
        model=model_file("{model}"),
    output:
        bandwidth=str(LAYOUT.sweep_bandwidth("{model}")),
    log:
        log_file("sweep", "bandwidth", "{model}"),
    conda:
        "../../envs/scalezero.yaml"
    threads: MEASUREMENT_THREADS  # a measurement: nothing else may read the disk meanwhile
    resources:
        **measured_rule_resources(),
    script:
        "../scripts/read_bandwidth.py"


rule sweep_run:
    input:
        model=model_file("{model}"),
        trace=str(LAYOUT.sweep_trace),
        policy=lambda wildcards: str(policy_source_file(SWEEP_STRATEGY["policy"])),
    output:
        **run_dir_files(sweep_run_dir("{model}")),
        page_cache=str(LAYOUT.sweep_page_cache("{model}")),
    log:
        log_file("sweep", "runs", "{model}"),
    conda:
        SERVING_ENV
    threads: MEASUREMENT_THREADS
    resources:
        **measured_rule_resources(),
    params:
        settings=sweep_settings,
        failed_dir=lambda wildcards: log_dir("sweep", "runs", wildcards.model),
    script:
        "../scripts/sweep_run.py"


rule sweep_summary:
    input:
        **sweep_inputs(),
    output:
        summary=str(LAYOUT.sweep_summary),
    log:
        log_file("sweep", "summary"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        models=SWEEP_MODELS,
    script:
        "../scripts/sweep_summary.py"


rule sweep_figure:
    input:
        summary=str(LAYOUT.sweep_summary),
    output:
        figure=report(
            str(LAYOUT.sweep_figure),
            caption="../../report/captions/size_sweep.rst",
            category="Cold starts",
        ),
    log:
        log_file("figures", "size_sweep"),
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/sweep_figure.py"
