# The shared-budget simulation against the measured sharing runs: a profile and a memory
# figure per deployment fitted on the dedicated runs, each shared run's trace replayed
# with its budget and eviction policy, measured against simulated per deployment.

if SHARING_SIMULATED:

    localrules:
        sharing_simulate,

    rule sharing_simulate:
        input:
            run_json=run_files(sharing_run_dirs())["run_json"],
            requests=run_files(sharing_run_dirs())["requests"],
            events=run_files(sharing_run_dirs())["events"],
            telemetry=run_files(sharing_run_dirs())["telemetry"],
        output:
            simulated=sharing_outputs()["simulated"],
        log:
            log_file("sharing", "simulate"),
        conda:
            "../../envs/scalezero.yaml"
        script:
            "../scripts/sharing_simulate.py"
