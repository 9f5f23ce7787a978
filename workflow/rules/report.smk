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
    log:
        log_file("projections", "{workload}"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        constants=_canonical(config.get("constants", {})),
        projections=_canonical(config.get("projections", {})),
    script:
        "../scripts/projections.py"


rule figure_latency:
    input:
        requests=lambda wildcards: summary_files(wildcards.workload)["requests"],
    output:
        figure=report(
            figure_file("{workload}", "latency"),
            caption="../../report/captions/latency.rst",
            category="Latency",
            subcategory="{workload}",
        ),
    log:
        log_file("figures", "{workload}", "latency"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        figure="latency",
        strategies=lambda wildcards: WORKLOAD_STRATEGIES[wildcards.workload],
        slo_sets=_canonical(config.get("slo_sets")),
    script:
        "../scripts/figure.py"


rule figure_cold_starts:
    input:
        cold_starts=lambda wildcards: summary_files(wildcards.workload)["cold_starts"],
        summary=lambda wildcards: summary_files(wildcards.workload)["summary"],
    output:
        figure=report(
            figure_file("{workload}", "cold_starts"),
            caption="../../report/captions/cold_starts.rst",
            category="Cold starts",
            subcategory="{workload}",
        ),
    log:
        log_file("figures", "{workload}", "cold_starts"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        figure="cold_starts",
        strategies=lambda wildcards: WORKLOAD_STRATEGIES[wildcards.workload],
    script:
        "../scripts/figure.py"


rule figure_frontier:
    input:
        summary=lambda wildcards: summary_files(wildcards.workload)["summary"],
    output:
        figure=report(
            figure_file("{workload}", "frontier"),
            caption="../../report/captions/frontier.rst",
            category="Cold starts",
            subcategory="{workload}",
        ),
    log:
        log_file("figures", "{workload}", "frontier"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        figure="frontier",
        strategies=lambda wildcards: WORKLOAD_STRATEGIES[wildcards.workload],
    script:
        "../scripts/figure.py"


rule figure_timeline:
    input:
        unpack(timeline_inputs),
    output:
        figure=report(
            figure_file("{workload}", timeline_key("{strategy}")),
            caption="../../report/captions/timeline.rst",
            category="Resources over time",
            subcategory="{workload}",
        ),
    log:
        log_file("figures", "{workload}", timeline_key("{strategy}")),
    conda:
        "../../envs/scalezero.yaml"
    params:
        figure="timeline",
        strategies=lambda wildcards: WORKLOAD_STRATEGIES[wildcards.workload],
    script:
        "../scripts/figure.py"


rule figure_energy:
    input:
        phases=lambda wildcards: projection_files(wildcards.workload)["phases"],
        runs=lambda wildcards: projection_files(wildcards.workload)["runs"],
    output:
        figure=report(
            figure_file("{workload}", "energy"),
            caption="../../report/captions/energy.rst",
            category="Energy",
            subcategory="{workload}",
        ),
    log:
        log_file("figures", "{workload}", "energy"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        figure="energy",
        strategies=lambda wildcards: WORKLOAD_STRATEGIES[wildcards.workload],
    script:
        "../scripts/figure.py"


rule figure_projections:
    input:
        sweep=lambda wildcards: projection_files(wildcards.workload)["sweep"],
        model=lambda wildcards: projection_files(wildcards.workload)["model"],
        constants=lambda wildcards: projection_files(wildcards.workload)["constants"],
    output:
        figure=report(
            figure_file("{workload}", "projections"),
            caption="../../report/captions/projections.rst",
            category="Projections",
            subcategory="{workload}",
        ),
    log:
        log_file("figures", "{workload}", "projections"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        figure="projections",
        strategies=lambda wildcards: WORKLOAD_STRATEGIES[wildcards.workload],
    script:
        "../scripts/figure.py"


rule report:
    input:
        unpack(report_inputs),
    output:
        html=report(
            str(LAYOUT.report_html),
            caption="../../report/captions/report.rst",
            category="Report",
        ),
        variables=str(LAYOUT.report_variables),
    log:
        log_file("report", "report"),
    conda:
        # Quarto on PATH under --use-conda; without conda the pandoc fallback renders.
        "../../envs/quarto.yaml"
    params:
        workload=REPORT_WORKLOAD,
        workload_spec=_canonical(config["workloads"][REPORT_WORKLOAD]),
        report=_canonical(config.get("report", {})),
        slo_sets=_canonical(config.get("slo_sets")),
        source_dir="report",
    script:
        "../scripts/report.py"
