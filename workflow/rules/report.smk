# The report: projections from the summaries and the sourced constants, one figure per
# rule, and the HTML report (Quarto when on PATH, pandoc otherwise).
#
# Constants reach only the projections rule (as params); the projections then carry the
# numbers downstream. Changing a constant therefore reruns projections, the figures that
# read them and the report, and never a measured run or the aggregation.

report: "../../report/workflow.rst"


rule projections:
    input:
        summary=lambda wildcards: summary_files(wildcards.workload)["summary"],
        energy=lambda wildcards: summary_files(wildcards.workload)["energy"],
        # Run folders feed the energy estimate of runs without an energy counter.
        run_json=lambda wildcards: run_files(run_dirs(wildcards.workload))["run_json"],
        requests=lambda wildcards: run_files(run_dirs(wildcards.workload))["requests"],
        events=lambda wildcards: run_files(run_dirs(wildcards.workload))["events"],
        telemetry=lambda wildcards: run_files(run_dirs(wildcards.workload))["telemetry"],
    output:
        **projection_files("{workload}"),
    params:
        constants=_canonical(config.get("constants", {})),
        projections=_canonical(config.get("projections", {})),
    log:
        "logs/projections/{workload}.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/projections.py"


rule figure_latency:
    input:
        requests=lambda wildcards: summary_files(wildcards.workload)["requests"],
    output:
        figure=report(
            "results/figures/{workload}/latency.png",
            caption="../../report/captions/latency.rst",
            category="Latency",
            subcategory="{workload}",
        ),
    params:
        figure="latency",
        strategies=STRATEGIES,
        slo_sets=_canonical(config.get("slo_sets")),
    log:
        "logs/figures/{workload}/latency.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/figure.py"


rule figure_cold_starts:
    input:
        cold_starts=lambda wildcards: summary_files(wildcards.workload)["cold_starts"],
        summary=lambda wildcards: summary_files(wildcards.workload)["summary"],
    output:
        figure=report(
            "results/figures/{workload}/cold_starts.png",
            caption="../../report/captions/cold_starts.rst",
            category="Cold starts",
            subcategory="{workload}",
        ),
    params:
        figure="cold_starts",
        strategies=STRATEGIES,
    log:
        "logs/figures/{workload}/cold_starts.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/figure.py"


rule figure_timeline:
    input:
        unpack(timeline_inputs),
    output:
        figure=report(
            "results/figures/{workload}/timeline_{strategy}.png",
            caption="../../report/captions/timeline.rst",
            category="Resources over time",
            subcategory="{workload}",
        ),
    params:
        figure="timeline",
        strategies=STRATEGIES,
    log:
        "logs/figures/{workload}/timeline_{strategy}.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/figure.py"


rule figure_energy:
    input:
        phases=lambda wildcards: projection_files(wildcards.workload)["phases"],
        runs=lambda wildcards: projection_files(wildcards.workload)["runs"],
    output:
        figure=report(
            "results/figures/{workload}/energy.png",
            caption="../../report/captions/energy.rst",
            category="Energy",
            subcategory="{workload}",
        ),
    params:
        figure="energy",
        strategies=STRATEGIES,
    log:
        "logs/figures/{workload}/energy.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/figure.py"


rule figure_projections:
    input:
        sweep=lambda wildcards: projection_files(wildcards.workload)["sweep"],
        model=lambda wildcards: projection_files(wildcards.workload)["model"],
        constants=lambda wildcards: projection_files(wildcards.workload)["constants"],
    output:
        figure=report(
            "results/figures/{workload}/projections.png",
            caption="../../report/captions/projections.rst",
            category="Projections",
            subcategory="{workload}",
        ),
    params:
        figure="projections",
        strategies=STRATEGIES,
    log:
        "logs/figures/{workload}/projections.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/figure.py"


rule report:
    input:
        unpack(report_inputs),
    output:
        html=report(
            "results/report/report.html",
            caption="../../report/captions/report.rst",
            category="Report",
        ),
        variables="results/report/variables.yml",
    params:
        workload=REPORT_WORKLOAD,
        report=_canonical(config.get("report", {})),
        slo_sets=_canonical(config.get("slo_sets")),
        source_dir="report",
    log:
        "logs/report/report.log",
    conda:
        # Quarto on PATH under --use-conda; without conda the pandoc fallback renders.
        "../../envs/quarto.yaml"
    script:
        "../scripts/report.py"
