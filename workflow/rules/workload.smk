# Seeded request traces: same configuration and seed, same file byte for byte.


rule workload:
    input:
        unpack(workload_inputs),
    output:
        trace="results/traces/{workload}.csv",
    params:
        spec=lambda wildcards: _canonical(config["workloads"][wildcards.workload]),
    log:
        "logs/workload/{workload}.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/workload.py"
