# Seeded request traces: same configuration and seed, same file byte for byte.


rule workload:
    input:
        unpack(workload_inputs),
    output:
        trace=trace_file("{workload}"),
        info=trace_info_file("{workload}"),
        history=trace_history_file("{workload}"),
    log:
        log_file("workload", "{workload}"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        spec=lambda wildcards: _canonical(config["workloads"][wildcards.workload]),
    script:
        "../scripts/workload.py"
