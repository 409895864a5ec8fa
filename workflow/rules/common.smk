# Shared Python for the workflow: config validation (schema + registry cross-checks), the Plan, and
# input/param functions. All decisions live in oneshot_rlvr.registry (unit-tested); this file only
# looks things up in the Plan.
import json
import re
import shlex

from snakemake.utils import validate

from oneshot_rlvr import registry

# Schema (unknown keys, types) + cross-references (models, datasets, variants, benchmarks, pi ranks,
# RunConfig keys): a ConfigError naming the key stops the workflow here, before any job is planned.
PLAN = registry.validate_workflow_config(config, root=".")
validate(config, schema="../schemas/config.schema.yaml")  # same schema; fills the same defaults

NAME = config["name"]
RLVR = config["commands"]["rlvr"]


def _alternatives(names):
    names = list(names)
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


# `build: tiny` models (data.smk); `build: toy` ones are pretrained by toy.smk
BUILT_MODELS = [m for m in config["models"] if config["models"][m].get("build") == "tiny"]
# the miniature world (toy.smk, docs/miniature.md): one world, in resources/ like every data source
TOY_MODELS = [m for m in config["models"] if config["models"][m].get("build") == "toy"]
TOY_WORLD = "resources/toy"
TOY_POOL = os.path.normpath(config["sources"][config["pool"]]).startswith(TOY_WORLD + os.sep)
# read at load time: a forced make_toy_world removes world.json before its job runs
TOY_MANIFEST = json.load(open(f"{TOY_WORLD}/world.json")) if os.path.exists(f"{TOY_WORLD}/world.json") else {}
# models evaluated on the toy benchmark: toy.smk's seed-aggregated report
TOY_REPORT_MODELS = [m for e in config["experiments"].values() if {"toy", "toy_all"} & set(e["benchmarks"])
                     for m in e["models"]]


def toy_option(model, key):
    return config["models"][model].get("toy", {}).get(key)


def toy_world_option(key, manifest_key):
    """The world's seed / pool size: the first `build: toy` model's `toy` block, else the committed
    world.json (a config on the shipped model), so that a forced make_toy_world reproduces the world."""
    if TOY_MODELS:
        return toy_option(TOY_MODELS[0], key)
    return TOY_MANIFEST[manifest_key]


RANK_DEPENDENT = [d for d in config["datasets"] if PLAN.needs_ranking(d)]


wildcard_constraints:
    name=re.escape(NAME),
    model=_alternatives(config["models"]),
    run=r"[A-Za-z0-9_.]+(--[A-Za-z0-9_.]+)?",
    chunk=r"\d+",
    dataset=_alternatives(config["datasets"]),
    source=_alternatives(config["sources"]),
    experiment=_alternatives(config["experiments"]),


def quoted(args):
    return " ".join(shlex.quote(str(a)) for a in args)


# ---------------------------------------------------------------- data
def score_pool_input(wildcards):
    sp = config["score_pool"]
    pool = PLAN.source_path(config["pool"])
    if sp["source"] == "paper":
        return {"history": sp["history"], "pool": pool}
    return {"done": f"{PLAN.run_dir(sp['model'], sp['run'])}/train/done.json", "pool": pool}


def score_pool_args(wildcards):
    sp = config["score_pool"]
    if sp["source"] == "paper":
        return quoted(["--history", sp["history"]])
    metrics = f"{PLAN.run_dir(sp['model'], sp['run'])}/train/metrics.jsonl"
    return quoted(["--metrics", metrics, "--up-to-step", sp["up_to_step"]])


def ranking_path():
    return f"{PLAN.results}/data/ranking.csv"


def train_set_input(wildcards):
    inputs = [PLAN.source_path(PLAN.dataset_source(wildcards.dataset))]
    if PLAN.needs_ranking(wildcards.dataset):
        # pi-sets are read off the ranking, a checkpoint: the DAG is re-evaluated once it exists
        inputs.append(checkpoints.rank_examples.get(name=wildcards.name).output[0])
    return inputs


def train_set_args(wildcards):
    # paths as params: while the checkpoint is pending, Snakemake replaces the job's input list
    args = ["--pool", PLAN.source_path(PLAN.dataset_source(wildcards.dataset))]
    if PLAN.needs_ranking(wildcards.dataset):
        args += ["--ranking", ranking_path()]
    return quoted(args + PLAN.make_train_set_args(wildcards.dataset))


# ---------------------------------------------------------------- training
def run_plan(wildcards):
    return PLAN.run(wildcards.model, wildcards.run)


def train_input(wildcards):
    rp = run_plan(wildcards)
    inputs = {
        "config": f"{PLAN.run_dir(rp.model, rp.run)}/RUN.yaml",
        "train_set": PLAN.train_set_path(rp.dataset),
    }
    if PLAN.built_model_dir(rp.model):
        inputs["model"] = PLAN.built_model_dir(rp.model)
    return inputs


def run_config_values(wildcards):
    return json.dumps(run_plan(wildcards).run_config, sort_keys=True)


EVAL_RESOURCES = {**registry.DEFAULT_RESOURCES["evaluate"], **config["resources"].get("evaluate", {})}


def resource(kind, key):
    return lambda wildcards: PLAN.resources(wildcards.model, kind)[key]


def scaled(kind, key):
    """mem_mb / runtime grow with Snakemake's `attempt`: a resubmission after OOM or TIMEOUT
    (profile `retries:`) asks for more."""
    if kind == "evaluate":
        return lambda wildcards, attempt: EVAL_RESOURCES[key] * attempt
    return lambda wildcards, attempt: PLAN.resources(wildcards.model, kind)[key] * attempt


def train_command(wildcards):
    """commands.train with {gpus} filled in, e.g. `torchrun --standalone --nproc_per_node={gpus} ...`."""
    return config["commands"]["train"].format(gpus=PLAN.resources(wildcards.model, "train")["gpus"])


# ---------------------------------------------------------------- evaluation
def eval_chunk(wildcards):
    chunks = PLAN.eval_chunks(wildcards.model, wildcards.run)
    i = int(wildcards.chunk)
    if i >= len(chunks):
        raise ValueError(f"{wildcards.model}/{wildcards.run} has only {len(chunks)} evaluation chunks")
    return chunks[i]


def evaluate_input(wildcards):
    inputs = {}
    if wildcards.run != registry.BASE_RUN and 0 in eval_chunk(wildcards):
        inputs["base"] = PLAN.eval_marker(wildcards.model, registry.BASE_RUN, 0)
    if max(eval_chunk(wildcards)) > 0:
        inputs["done"] = f"{PLAN.run_dir(wildcards.model, wildcards.run)}/train/done.json"
    if PLAN.built_model_dir(wildcards.model):
        inputs["model"] = PLAN.built_model_dir(wildcards.model)
    return inputs


def evaluate_commands(wildcards):
    """One `rlvr evaluate` call per step of the chunk, chained with &&."""
    model, run = wildcards.model, wildcards.run
    common = PLAN.evaluate_args(model, run)
    extra = config["evaluation"]["extra_args"]
    calls = []
    for step in eval_chunk(wildcards):
        out = f"{PLAN.run_dir(model, run)}/eval/step_{step}"
        if step == 0 and run != registry.BASE_RUN:
            # the base model was evaluated once for all runs of this model: copy its summaries
            src = f"{PLAN.run_dir(model, registry.BASE_RUN)}/eval/step_0"
            benches = PLAN.run(model, run).benchmarks
            calls.append(f"mkdir -p {out} && cp -r {quoted(f'{src}/{b}' for b in benches)} {out}/")
            continue
        # No --overwrite: finished (checkpoint, benchmark) pairs of an interrupted chunk are skipped, and
        # a summary of a retrained checkpoint is redone (rlvr evaluate compares checkpoint fingerprints);
        # --replace-stale redoes one made with other settings (an edited config reran this job).
        args = ["evaluate", "--model", PLAN.evaluate_model(model, run, step), "--out", out, "--replace-stale"] + common
        args += ["--dtype", PLAN.evaluate_dtype(step)]
        calls.append(f"{RLVR} {quoted(args)}" + (f" {extra}" if extra else ""))
    return " && ".join(calls)


def evaluate_marker(wildcards):
    return json.dumps({"steps": eval_chunk(wildcards), "benchmarks": PLAN.run(wildcards.model, wildcards.run).benchmarks})


def eval_markers(model, run):
    return PLAN.eval_markers(model, run)


def run_targets(model, run):
    """Everything one run produces: its evaluations and, for trained runs, best.json."""
    rp = PLAN.run(model, run)
    out = eval_markers(model, run)
    if not rp.is_base:
        out += [f"{PLAN.run_dir(model, run)}/train/done.json", f"{PLAN.run_dir(model, run)}/best.json"]
    return out


def experiment_targets(experiment):
    return [t for m, r in PLAN.experiments[experiment] for t in run_targets(m, r)]


# (model, run) of every experiment the default target builds (optional experiments left out), in order
DEFAULT_RUNS = dict.fromkeys(mr for e in PLAN.default_experiments.values() for mr in e)


def all_run_targets():
    return [t for m, r in DEFAULT_RUNS for t in run_targets(m, r)]


def experiment_runs_arg(wildcards):
    return quoted(f"{m}/{r}" for m, r in PLAN.experiments[wildcards.experiment])
