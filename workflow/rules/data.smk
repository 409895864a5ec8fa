# Data: pool/full sets -> accuracy history -> ranking (checkpoint) -> training sets.


rule build_tiny_model:
    output:
        directory("results/{name}/models/{model}"),
    log:
        "results/{name}/logs/build_tiny_model/{model}.log",
    wildcard_constraints:
        model=_alternatives(BUILT_MODELS),
    params:
        rlvr=RLVR,
        seed=lambda wildcards: config["models"][wildcards.model]["seed"],
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} build-tiny-model --out {output} --seed {params.seed} > {log} 2>&1"


rule prepare_data:
    input:
        lambda wildcards: config["sources"][wildcards.source],
    output:
        "results/{name}/data/sources/{source}.jsonl",
    log:
        "results/{name}/logs/prepare_data/{source}.log",
    localrule: True
    params:
        rlvr=RLVR,
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} prepare-data --input {input} --out {output} > {log} 2>&1"


rule score_pool:
    input:
        unpack(score_pool_input),
    output:
        "results/{name}/data/history.json",
    log:
        "results/{name}/logs/score_pool.log",
    localrule: True
    params:
        rlvr=RLVR,
        source=score_pool_args,
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} score-pool {params.source} --pool {input.pool} --out {output} > {log} 2>&1"


checkpoint rank_examples:
    input:
        history="results/{name}/data/history.json",
        pool=lambda wildcards: PLAN.source_path(config["pool"]),
    output:
        "results/{name}/data/ranking.csv",
    log:
        "results/{name}/logs/rank_examples.log",
    localrule: True
    params:
        rlvr=RLVR,
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} rank --history {input.history} --pool {input.pool} --out {output} > {log} 2>&1"


rule make_train_set:
    input:
        train_set_input,
    output:
        "results/{name}/data/train_sets/{dataset}.jsonl",
    log:
        "results/{name}/logs/make_train_set/{dataset}.log",
    localrule: True
    params:
        rlvr=RLVR,
        args=train_set_args,
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} make-train-set {params.args} --out {output} > {log} 2>&1"
