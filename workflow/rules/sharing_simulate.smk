# The shared-budget simulation against the measured sharing runs: a profile and a memory
# figure per deployment fitted on the dedicated runs, each shared run's trace replayed
# with its budget and eviction policy, measured against simulated per deployment.
SHARING_RUNS_DIR = "results/sharing/runs"
# Every sharing variant: shared-<eviction> and the dedicated runs the fit reads.
SHARING_SIMULATE_VARIANTS = [
    f"shared-{eviction}"
    for eviction in (config.get("sharing") or {}).get(
        "evictions", ["lru", "longest_idle", "cost_aware"]
    )
] + ["dedicated-always_on", "dedicated-naive"]


rule sharing_simulate:
    input:
        run_json=[f"{SHARING_RUNS_DIR}/{variant}/run.json" for variant in SHARING_SIMULATE_VARIANTS],
    output:
        simulated="results/sharing/simulated.csv",
    log:
        log_file("sharing", "simulate"),
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/sharing_simulate.py"
