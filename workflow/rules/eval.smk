# Evaluation of every saved step (step 0 = the base model, as the paper), best-step selection and
# the collected long table. One evaluate job covers `evaluation.steps_per_job` checkpoints of a run
# (one `rlvr evaluate` call per checkpoint, all of the run's benchmarks); its declared output is a
# small marker, the per-benchmark summaries eval/step_<k>/<bench>/summary.json are written by
# `rlvr evaluate` (docs/contracts.md). Chunking keeps the paper's ~5,000 evaluations at ~570 jobs.
# Step 0 is the base model: evaluated once per model (run "base") and copied into every run.


rule evaluate:
    input:
        unpack(evaluate_input),
    output:
        "results/{name}/runs/{model}/{run}/eval/chunk_{chunk}.json",
    log:
        "results/{name}/runs/{model}/{run}/logs/evaluate/chunk_{chunk}.log",
    benchmark:
        "results/{name}/runs/{model}/{run}/benchmarks/evaluate_chunk_{chunk}.tsv"
    threads: EVAL_RESOURCES["threads"]
    resources:
        # global, not per model: fewer callables per job keep `snakemake -n` fast
        gpu=EVAL_RESOURCES["gpus"],
        mem_mb=scaled("evaluate", "mem_mb"),
        runtime=scaled("evaluate", "runtime"),
    params:
        calls=evaluate_commands,
        marker=evaluate_marker,
    conda:
        "../../envs/rlvr-gpu.yaml"
    shell:
        "({params.calls}) > {log} 2>&1 && echo {params.marker:q} > {output}"


rule select_best:
    input:
        lambda wildcards: eval_markers(wildcards.model, wildcards.run),
    output:
        "results/{name}/runs/{model}/{run}/best.json",
    log:
        "results/{name}/runs/{model}/{run}/logs/select_best.log",
    localrule: True
    params:
        rlvr=RLVR,
        run_dir=lambda wildcards: f"results/{wildcards.name}/runs/{wildcards.model}/{wildcards.run}",
        graders=lambda wildcards: ",".join(PLAN.select_graders(wildcards.model)),
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} select-best --run-dir {params.run_dir} --grader {params.graders} --out {output} > {log} 2>&1"


rule collect:
    input:
        all_run_targets(),
    output:
        "results/{name}/metrics.csv",
    log:
        "results/{name}/logs/collect.log",
    localrule: True
    params:
        rlvr=RLVR,
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} collect --results results/{wildcards.name} --out {output} > {log} 2>&1"


rule collect_experiment:
    input:
        lambda wildcards: experiment_targets(wildcards.experiment),
    output:
        "results/{name}/experiments/{experiment}/metrics.csv",
    log:
        "results/{name}/logs/collect_{experiment}.log",
    localrule: True
    params:
        rlvr=RLVR,
        runs=experiment_runs_arg,
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} collect --results results/{wildcards.name} --runs {params.runs} --out {output} > {log} 2>&1"
