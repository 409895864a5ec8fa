# Training: RUN.yaml from the registry, then one `rlvr train` job per run.
# Only done.json is declared: Snakemake deletes declared outputs before a job, and the resumable
# train/state/ and train/checkpoints/ must survive a requeue or --retries (snakemake.md §1.10).


rule run_config:
    output:
        "results/{name}/runs/{model}/{run}/RUN.yaml",
    log:
        "results/{name}/runs/{model}/{run}/logs/run_config.log",
    localrule: True
    params:
        rlvr=RLVR,
        values=run_config_values,
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} run-config --values {params.values:q} --out {output} > {log} 2>&1"


rule train:
    input:
        unpack(train_input),
    output:
        "results/{name}/runs/{model}/{run}/train/done.json",
    log:
        "results/{name}/runs/{model}/{run}/logs/train.log",
    benchmark:
        "results/{name}/runs/{model}/{run}/benchmarks/train.tsv"
    wildcard_constraints:
        run=r"(?!base/)[A-Za-z0-9_.]+(--[A-Za-z0-9_.]+)?",
    threads: lambda wildcards: PLAN.resources(wildcards.model, "train")["threads"]
    resources:
        gpu=resource("train", "gpus"),
        mem_mb=scaled("train", "mem_mb"),
        runtime=scaled("train", "runtime"),
    params:
        train=train_command,
        out=lambda wildcards: f"results/{wildcards.name}/runs/{wildcards.model}/{wildcards.run}/train",
    conda:
        "../../envs/rlvr-gpu.yaml"
    shell:
        "{params.train} --config {input.config} --out {params.out} --restart-stale > {log} 2>&1"
