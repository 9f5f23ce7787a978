# Size sweep: cold-start phases of several models (real or synthetic) against their
# file size, beside the lower bound "bytes / read bandwidth" measured on this host.


rule sweep_trace:
    output:
        trace="results/sweep/trace.csv",
    params:
        requests=SWEEP.get("requests", 3),
        spacing_s=SWEEP.get("spacing_s", 3),
        max_tokens=SWEEP.get("max_tokens", 8),
    log:
        "logs/sweep/trace.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/sweep_trace.py"


rule read_bandwidth:
    input:
        model="resources/models/{model}.gguf",
    output:
        bandwidth="results/sweep/bandwidth/{model}.json",
    threads: MEASUREMENT_THREADS  # a measurement: nothing else may read the disk meanwhile
    log:
        "logs/sweep/bandwidth/{model}.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/read_bandwidth.py"


rule sweep_run:
    input:
        model="resources/models/{model}.gguf",
        trace="results/sweep/trace.csv",
        policy=lambda wildcards: str(policy_source_file(SWEEP_STRATEGY["policy"])),
    output:
        requests="results/sweep/runs/{model}/requests.csv",
        tokens="results/sweep/runs/{model}/tokens.csv",
        events="results/sweep/runs/{model}/events.csv",
        telemetry="results/sweep/runs/{model}/telemetry.csv",
        run_json="results/sweep/runs/{model}/run.json",
        page_cache="results/sweep/page_cache/{model}.json",
    params:
        settings=sweep_settings,
        failed_dir=lambda wildcards: f"logs/sweep/runs/{wildcards.model}",
    threads: MEASUREMENT_THREADS
    log:
        "logs/sweep/runs/{model}.log",
    conda:
        SERVING_ENV
    script:
        "../scripts/sweep_run.py"


rule sweep_summary:
    input:
        models=expand("resources/models/{model}.gguf", model=SWEEP_MODELS),
        run_json=expand("results/sweep/runs/{model}/run.json", model=SWEEP_MODELS),
        events=expand("results/sweep/runs/{model}/events.csv", model=SWEEP_MODELS),
        requests=expand("results/sweep/runs/{model}/requests.csv", model=SWEEP_MODELS),
        bandwidth=expand("results/sweep/bandwidth/{model}.json", model=SWEEP_MODELS),
        page_cache=expand("results/sweep/page_cache/{model}.json", model=SWEEP_MODELS),
    output:
        summary="results/sweep/size_sweep.csv",
    params:
        models=SWEEP_MODELS,
    log:
        "logs/sweep/summary.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/sweep_summary.py"


rule sweep_figure:
    input:
        summary="results/sweep/size_sweep.csv",
    output:
        figure=report(
            "results/figures/size_sweep.png",
            caption="../../report/captions/size_sweep.rst",
            category="Cold starts",
        ),
    log:
        "logs/figures/size_sweep.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/sweep_figure.py"
