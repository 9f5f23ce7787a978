# Simulated scenarios: the shipped Azure LLM trace's whole production hour (and thinned
# variants) under every strategy, a traffic-rate x keep-warm TTL grid, and yearly
# projections by simulation beside the closed form, on the profile fitted from the
# workload's measured runs and on published GPU profiles ("published, not measured").


rule simulate_hour:
    input:
        unpack(scenario_inputs),
    output:
        hour=scenario_files("{workload}")["hour"],
    log:
        log_file("simulation", "{workload}", "hour"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        strategies=_canonical(config["strategies"]),
        gateway=_canonical(config.get("gateway", {})),
        simulation=SIMULATION.record(),
    script:
        "../scripts/simulate_scenarios.py"


rule simulate_grid:
    input:
        unpack(scenario_inputs),
    output:
        grid=scenario_files("{workload}")["grid"],
    log:
        log_file("simulation", "{workload}", "grid"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        gateway=_canonical(config.get("gateway", {})),
        simulation=SIMULATION.record(),
        projections=_canonical(config.get("projections", {})),
    script:
        "../scripts/simulate_scenarios.py"


rule simulate_projections:
    input:
        unpack(scenario_inputs),
    output:
        projections=scenario_files("{workload}")["projections"],
    log:
        log_file("simulation", "{workload}", "projections"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        strategies=_canonical(config["strategies"]),
        gateway=_canonical(config.get("gateway", {})),
        simulation=SIMULATION.record(),
        constants=_canonical(config.get("constants", {})),
        projections=_canonical(config.get("projections", {})),
    script:
        "../scripts/simulate_scenarios.py"


rule figure_scenario_heatmap:
    input:
        grid=lambda wildcards: scenario_files(wildcards.workload)["grid"],
    output:
        figure=report(
            str(LAYOUT.scenario_heatmap("{workload}")),
            caption="../../report/captions/scenario_heatmap.rst",
            category="Simulation",
            subcategory="{workload}",
        ),
    log:
        log_file("figures", "{workload}", "scenario_heatmap"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        figure="scenario_heatmap",
        strategies=STRATEGIES,
    script:
        "../scripts/figure.py"
