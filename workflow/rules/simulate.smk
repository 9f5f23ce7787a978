# The simulator against the measurements: a platform profile fitted from a workload's
# runs, and every run simulated on a profile fitted from the others (leave one out),
# compared with its measured summary; the figure shows simulated against measured.


rule fit_profile:
    input:
        unpack(simulation_run_inputs),
    output:
        profile=simulation_files("{workload}")["profile"],
    log:
        log_file("simulation", "{workload}", "fit_profile"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        gateway=_canonical(config.get("gateway", {})),
        constants=_canonical(config.get("constants", {})),
    script:
        "../scripts/fit_profile.py"


rule validate_simulation:
    input:
        unpack(simulation_run_inputs),
        summary=lambda wildcards: summary_files(wildcards.workload)["summary"],
        history=trace_history_file("{workload}"),
    output:
        validation=simulation_files("{workload}")["validation"],
    log:
        log_file("simulation", "{workload}", "validate"),
    conda:
        "../../envs/scalezero.yaml"
    # No constants: energy is compared only where a counter measured it, never estimated.
    params:
        gateway=_canonical(config.get("gateway", {})),
    script:
        "../scripts/validate_simulation.py"


rule figure_simulation:
    input:
        validation=lambda wildcards: simulation_files(wildcards.workload)["validation"],
    output:
        figure=report(
            figure_file("{workload}", "simulation"),
            caption="../../report/captions/simulation.rst",
            category="Simulation",
            subcategory="{workload}",
        ),
    log:
        log_file("figures", "{workload}", "simulation"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        figure="simulation",
        strategies=STRATEGIES,
    script:
        "../scripts/figure.py"
