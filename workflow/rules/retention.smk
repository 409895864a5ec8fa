# Checkpoint retention after evaluation (docs/pipeline.md "Retention"): one `rlvr prune` per run whose
# policy is not `all`, after select_best, i.e. after every evaluation of the run has completed.
# The policy of a run: its recipe/variant `keep_checkpoints` if set, else `retention.keep_checkpoints`
# (default `all`, which plans no prune job). Checkpoints are never declared outputs (train declares
# only done.json, evaluate its chunk markers), so deleting them makes no job look incomplete: nothing
# is retrained or re-evaluated. The declared output is the report runs/<m>/<run>/retention.json
# (policy, kept/deleted steps, bytes kept/freed). `retention.keep_optimizer: none` also deletes the
# finished run's resumable state (train/state/); it plans a prune job even under `all`.


# (model, run) -> policy, for every run of an experiment (the linter wants no functions here)
RETENTION_POLICY = {
    (m, r): PLAN.run(m, r).run_config.get(
        "keep_checkpoints", (config.get("retention") or {}).get("keep_checkpoints", "all")
    )
    for e in PLAN.experiments.values()
    for m, r in e
    if r != registry.BASE_RUN
}


KEEP_OPTIMIZER = (config.get("retention") or {}).get("keep_optimizer", "last")


rule prune:
    input:
        "results/{name}/runs/{model}/{run}/best.json",
    output:
        "results/{name}/runs/{model}/{run}/retention.json",
    log:
        "results/{name}/runs/{model}/{run}/logs/prune.log",
    wildcard_constraints:
        run=r"(?!base/)[A-Za-z0-9_.]+(--[A-Za-z0-9_.]+)?",
    localrule: True
    params:
        rlvr=RLVR,
        policy=lambda wildcards: RETENTION_POLICY.get((wildcards.model, wildcards.run), "all"),
        run_dir=lambda wildcards: f"results/{wildcards.name}/runs/{wildcards.model}/{wildcards.run}",
        benchmarks=lambda wildcards: ",".join(PLAN.run(wildcards.model, wildcards.run).benchmarks),
        keep_optimizer=KEEP_OPTIMIZER,
    conda:
        "../../envs/rlvr.yaml"
    shell:
        "{params.rlvr} prune --run-dir {params.run_dir} --policy {params.policy} "
        "--benchmarks {params.benchmarks} --keep-optimizer {params.keep_optimizer} --out {output} > {log} 2>&1"


# Extended into `rule all` by the Snakefile.
RETENTION_TARGETS = [
    f"{PLAN.run_dir(m, r)}/retention.json"
    for (m, r), p in RETENTION_POLICY.items()
    if (p != "all" or KEEP_OPTIMIZER != "last") and (m, r) in DEFAULT_RUNS
]
