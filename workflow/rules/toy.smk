# The miniature world (docs/miniature.md): models with `build: toy` are pretrained by
# `rlvr pretrain-toy` on the world in resources/toy (pool, toy benchmarks, tokenizer).
# The world itself must exist before the workflow starts (the registry checks `sources` and the
# toy benchmarks read resources/toy/eval), so `make_toy_world` only rebuilds it on request:
#   snakemake --configfile config/miniature.yaml --forcerun make_toy_world resources/toy/world.json
# make-toy-world refuses to overwrite a world without --overwrite; the rule passes it because
# Snakemake already removed the declared output and a forced rerun means "regenerate".
# One world per workflow: its seed and pool size are read from the first `build: toy` model.

# TOY_MODELS, TOY_WORLD and toy_option() are defined in common.smk.
if TOY_MODELS:

    rule make_toy_world:
        output:
            f"{TOY_WORLD}/world.json",
        log:
            f"results/{NAME}/logs/make_toy_world.log",
        localrule: True
        params:
            rlvr=RLVR,
            world=lambda wildcards, output: os.path.dirname(output[0]),
            seed=toy_option(TOY_MODELS[0], "world_seed"),
            pool_size=toy_option(TOY_MODELS[0], "pool_size"),
        conda:
            "../../envs/rlvr.yaml"
        shell:
            "{params.rlvr} make-toy-world --out {params.world} --seed {params.seed}"
            " --pool-size {params.pool_size} --overwrite > {log} 2>&1"

    rule pretrain_toy:
        input:
            world=f"{TOY_WORLD}/world.json",
        output:
            directory("results/{name}/models/{model}"),
        log:
            "results/{name}/logs/pretrain_toy/{model}.log",
        benchmark:
            "results/{name}/benchmarks/pretrain_toy/{model}.tsv"
        wildcard_constraints:
            model=_alternatives(TOY_MODELS),
        threads: lambda wildcards: PLAN.resources(wildcards.model, "train")["threads"]
        resources:
            mem_mb=lambda wildcards: PLAN.resources(wildcards.model, "train")["mem_mb"],
            runtime=lambda wildcards: PLAN.resources(wildcards.model, "train")["runtime"],
        params:
            rlvr=RLVR,
            world=lambda wildcards, input: os.path.dirname(input.world),
            seed=lambda wildcards: config["models"][wildcards.model]["seed"],
            steps=lambda wildcards: toy_option(wildcards.model, "steps"),
        conda:
            "../../envs/rlvr.yaml"
        shell:
            "{params.rlvr} pretrain-toy --world {params.world} --out {output} --seed {params.seed}"
            " --steps {params.steps} --threads {threads} --no-progress > {log} 2>&1"
