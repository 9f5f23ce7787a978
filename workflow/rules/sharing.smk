# The model-sharing experiment (`sharing:`): one measured run per variant over the
# sharing workload, several models behind one gateway under a memory budget
# (shared-<eviction>) against each model on its own (dedicated-<policy>), then the
# tables and the memory figure the report reads. Its runs take every core and the
# measurement lock, like the strategy runs: measured runs never overlap.

if SHARING_VARIANTS:

    localrules:
        sharing_deployments,
        sharing_analysis,
        sharing_figure,

    rule sharing_deployments:
        output:
            deployments=sharing_deployments_file("{variant}"),
        log:
            log_file("sharing", "deployments", "{variant}"),
        conda:
            "../../envs/scalezero.yaml"
        params:
            data=sharing_deployments_data,
        script:
            "../scripts/sharing_deployments.py"

    rule sharing_run:
        input:
            deployments=sharing_deployments_file("{variant}"),
            models=sharing_model_files(),
            trace=trace_file(SHARING["workload"]),
            history=trace_history_file(SHARING["workload"]),
            policies=sharing_policy_files,
        output:
            **run_dir_files(sharing_run_dir("{variant}")),
        log:
            log_file("sharing", "runs", "{variant}"),
        # After the strategy runs (which have priorities from 1 up), in variant order.
        priority: lambda wildcards: -SHARING_VARIANTS.index(wildcards.variant)
        conda:
            SERVING_ENV
        threads: MEASUREMENT_THREADS
        resources:
            **measured_rule_resources(),
        params:
            settings=sharing_run_settings,
            failed_dir=lambda wildcards: log_dir("sharing", "runs", wildcards.variant),
        script:
            "../scripts/sharing_run.py"

    rule sharing_analysis:
        input:
            run_json=run_files(sharing_run_dirs())["run_json"],
            requests=run_files(sharing_run_dirs())["requests"],
            tokens=run_files(sharing_run_dirs())["tokens"],
            events=run_files(sharing_run_dirs())["events"],
            telemetry=run_files(sharing_run_dirs())["telemetry"],
            trace=trace_file(SHARING["workload"]),
        output:
            summary=sharing_outputs()["summary"],
            per_deployment=sharing_outputs()["per_deployment"],
        log:
            log_file("sharing", "analysis"),
        conda:
            "../../envs/scalezero.yaml"
        params:
            # The energy estimate of runs without a counter uses the constants.
            constants=_canonical(config.get("constants", {})),
            projections=_canonical(config.get("projections", {})),
        script:
            "../scripts/sharing_analysis.py"

    rule sharing_figure:
        input:
            run_json=run_files(sharing_run_dirs())["run_json"],
            requests=run_files(sharing_run_dirs())["requests"],
            telemetry=run_files(sharing_run_dirs())["telemetry"],
        output:
            figure=report(
                sharing_outputs()["figure"],
                caption="../../report/captions/sharing_memory.rst",
                category="Model sharing",
            ),
        log:
            log_file("figures", "sharing_memory"),
        conda:
            "../../envs/scalezero.yaml"
        script:
            "../scripts/sharing_figure.py"
