# Warm tiers and engines (`tiers:`): starts from storage and from the page cache, wakes
# of a process that gave up its model, the memory and idle power of each tier, and the
# two engines always-on under concurrent clients. Both benches are measurements: they
# take every core (MEASUREMENT_THREADS), so nothing else runs beside them.


rule tiers_bench:
    input:
        model=model_file(MODEL),
    output:
        tiers=str(LAYOUT.tiers_files()["tiers"]),
        bandwidth=str(LAYOUT.tiers_files()["bandwidth"]),
    log:
        log_file("tiers", "tiers"),
    conda:
        SERVING_ENV
    threads: MEASUREMENT_THREADS
    resources:
        **measured_rule_resources(),
    params:
        repeats=TIERS.get("repeats", 3),
        device=config.get("device", "cpu"),
        gpu_index=config.get("gpu_index", 0) if config.get("device") == "cuda" else None,
        n_threads=config.get("instance", {}).get("n_threads"),
    script:
        "../scripts/tiers_bench.py"


rule engines_bench:
    input:
        model=model_file(MODEL),
        # After the tier bench: the two never measure at the same time.
        tiers=str(LAYOUT.tiers_files()["tiers"]),
    output:
        engines=str(LAYOUT.tiers_files()["engines"]),
    log:
        log_file("tiers", "engines"),
    conda:
        SERVING_ENV
    threads: MEASUREMENT_THREADS
    resources:
        **measured_rule_resources(),
    params:
        clients=TIERS.get("clients", [1, 4, 8]),
        requests_per_client=TIERS.get("requests_per_client", 3),
        max_tokens=TIERS.get("max_tokens", 16),
        device=config.get("device", "cpu"),
        gpu_index=config.get("gpu_index", 0) if config.get("device") == "cuda" else None,
        n_threads=config.get("instance", {}).get("n_threads"),
    script:
        "../scripts/engines_bench.py"


rule tiers_summary:
    input:
        tiers=str(LAYOUT.tiers_files()["tiers"]),
        bandwidth=str(LAYOUT.tiers_files()["bandwidth"]),
        engines=str(LAYOUT.tiers_files()["engines"]),
    output:
        summary=str(LAYOUT.tiers_files()["summary"]),
    log:
        log_file("tiers", "summary"),
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/tiers_summary.py"
