# The miniature world (docs/miniature.md): the world in resources/toy (pool, toy benchmarks, tokenizer,
# and the shipped base model resources/toy/model), models with `build: toy` pretrained by
# `rlvr pretrain-toy`, and the seed-aggregated report of runs evaluated on `toy`.
# The world itself must exist before the workflow starts (the registry checks `sources` and the
# toy benchmarks read resources/toy/eval), so `make_toy_world` only rebuilds it on request:
#   snakemake resources/toy/world.json --cores 1 --configfile config/miniature.yaml --forcerun make_toy_world
# make-toy-world refuses to overwrite a world without --overwrite; the rule passes it because
# Snakemake already removed the declared output and a forced rerun means "regenerate". It leaves
# resources/toy/model alone: a world of another seed needs a re-pretrained model (`build: toy`).
# One world per workflow: its seed and pool size come from the first `build: toy` model's `toy` block,
# else from the existing world.json (so a forced rerun on the shipped model reproduces the world).

# TOY_MODELS, TOY_WORLD, TOY_POOL, TOY_REPORT_MODELS, toy_option() and toy_world_option() are defined
# in common.smk.
if TOY_MODELS or TOY_POOL:

    rule make_toy_world:
        output:
            f"{TOY_WORLD}/world.json",
        log:
            f"results/{NAME}/logs/make_toy_world.log",
        localrule: True
        params:
            rlvr=RLVR,
            world=lambda wildcards, output: os.path.dirname(output[0]),
            seed=lambda wildcards: toy_world_option("world_seed", "seed"),
            pool_size=lambda wildcards: toy_world_option("pool_size", "pool_size"),
        conda:
            "../../envs/rlvr.yaml"
        shell:
            "{params.rlvr} make-toy-world --out {params.world} --seed {params.seed}"
            " --pool-size {params.pool_size} --overwrite > {log} 2>&1"


if TOY_MODELS:

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
        # its own thread count (toy.threads), not the training runs': every other job waits for this one
        threads: lambda wildcards: toy_option(wildcards.model, "threads") or 2
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


if TOY_REPORT_MODELS:
    # mean ± std over training seeds per condition (oneshot_rlvr.toy.report): the paper's tables know
    # only its own benchmarks, so for a toy-world config this is the table that has numbers in it
    TOY_REPORT_MODEL = config.get("report", {}).get("model") or TOY_REPORT_MODELS[0]

    rule toy_report:
        input:
            "results/{name}/metrics.csv",
        output:
            md="results/{name}/tables/miniature.md",
            runs="results/{name}/tables/runs.csv",
            curves="results/{name}/tables/curves.csv",
            png="results/{name}/tables/curves.png",
        log:
            "results/{name}/logs/toy_report.log",
        localrule: True
        params:
            model=TOY_REPORT_MODEL,
            grader=config.get("report", {}).get("grader", "qwen"),
            out=lambda wildcards, output: os.path.dirname(output.md),
        conda:
            "../../envs/rlvr.yaml"
        shell:
            "python -m oneshot_rlvr.toy.report --metrics {input} --out {params.out}"
            " --model {params.model} --grader {params.grader} > {log} 2>&1"

    REPORT_TARGETS = list(globals().get("REPORT_TARGETS", [])) + [
        f"results/{NAME}/tables/{f}" for f in ("miniature.md", "runs.csv", "curves.csv", "curves.png")
    ]
