"""Experiment registry: the workflow config (config/*.yaml) -> the runs, paths and RunConfigs it implies.

Pure functions, no Snakemake import: the Snakefile calls `validate_workflow_config(config)` once at
load and gets a `Plan` (every (model, run) with its RunConfig overrides, evaluation steps and
benchmarks); the rules' input functions only look things up in it. Everything that can be wrong in a
config (unknown keys, wrong types, unknown model/dataset/variant/benchmark names, pi ranks outside the
pool, RunConfig keys or values in recipes and variants) raises `ConfigError` naming the key path,
before any job is planned.

Vocabulary (docs/contracts.md): a run id is `<dataset>` (default recipe) or `<dataset>--<variant>`;
the untrained model is run `base`, evaluated at step 0 only.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from oneshot_rlvr import config as runconfig
from oneshot_rlvr.errors import ConfigError, RlvrError
from oneshot_rlvr.modeling import check_model_path

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
BENCHMARKS = ("math500", "aime24", "amc23", "minerva_math", "olympiadbench", "aime25", "arc_e", "arc_c")
RUN_SEP = "--"
# the graders of an rllm-protocol model's evaluations (the paper's R1-Distill numbers: DeepScaleR's grader
# after `</think>`, beside ours)
RLLM_GRADERS = ("qwen", "math_verify", "deepscaler_think")
BASE_RUN = "base"
# keys the registry sets itself; a recipe or variant that sets them would silently be ignored
OWNED_KEYS = ("model", "train_file")
# RunConfig key -> the model setting resolve_run_config takes it from (after the global recipe)
MODEL_SETTINGS = {"total_steps": "total_steps", "save_freq": "eval_every", "max_response_length": "max_response_length"}
# `rlvr evaluate` options the evaluate rule passes itself (extra_args come after them and would win)
EVAL_RULE_FLAGS = {"model": "models.<m>.path / the run's checkpoints", "out": "the run directory",
                   "benchmarks": "experiments.<e>.benchmarks",
                   "prompt": "models.<m>.prompt_type", "max_new_tokens": "models.<m>.eval_max_tokens",
                   "engine": "evaluation.engine", "protocol": "models.<m>.eval_protocol", "limit": "evaluation.limit",
                   "dtype": "evaluation.base_dtype / evaluation.checkpoint_dtype",
                   "max_func_call": "evaluation.max_func_call", "tool_timeout": "evaluation.tool_timeout"}
DEFAULT_RESOURCES = {
    "train": {"gpus": 1, "threads": 4, "mem_mb": 32000, "runtime": 600},
    "evaluate": {"gpus": 1, "threads": 4, "mem_mb": 32000, "runtime": 120},
}


# --------------------------------------------------------------------------------------- run ids
def parse_run_id(run: str) -> tuple[str, str | None]:
    """`pi1--t5r2` -> ("pi1", "t5r2"); `pi1` -> ("pi1", None)."""
    dataset, sep, variant = run.partition(RUN_SEP)
    return dataset, (variant if sep else None)


def make_run_id(dataset: str, variant: str | None = None) -> str:
    return f"{dataset}{RUN_SEP}{variant}" if variant else dataset


# --------------------------------------------------------------------------------------- plan
@dataclass
class RunPlan:
    model: str
    run: str
    dataset: str | None  # None for the base run
    variant: str | None
    benchmarks: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)
    run_config: dict[str, Any] = field(default_factory=dict)  # explicit RunConfig overrides -> RUN.yaml
    steps: list[int] = field(default_factory=lambda: [0])  # evaluated steps (0 = the base model)

    @property
    def is_base(self) -> bool:
        return self.run == BASE_RUN


@dataclass
class Plan:
    cfg: dict
    runs: dict[tuple[str, str], RunPlan]
    experiments: dict[str, list[tuple[str, str]]]
    pool_size: int
    harness_graders: list[str]  # `rlvr evaluate --graders` of harness-protocol models (evaluation.extra_args)

    @property
    def default_experiments(self) -> dict[str, list[tuple[str, str]]]:
        """The experiments the default target builds: all but those marked `optional: true`."""
        return {e: m for e, m in self.experiments.items() if not self.cfg["experiments"][e].get("optional")}

    # ---- paths (relative to the Snakemake working directory) ----
    @property
    def results(self) -> str:
        return f"results/{self.cfg['name']}"

    def source_path(self, source: str) -> str:
        return f"{self.results}/data/sources/{source}.jsonl"

    def train_set_path(self, dataset: str) -> str:
        return f"{self.results}/data/train_sets/{dataset}.jsonl"

    def run_dir(self, model: str, run: str) -> str:
        return f"{self.results}/runs/{model}/{run}"

    def eval_chunks(self, model: str, run: str) -> list[list[int]]:
        """The run's evaluated steps in groups of `evaluation.steps_per_job`: one evaluate job each."""
        steps, n = self.run(model, run).steps, self.cfg["evaluation"]["steps_per_job"]
        return [steps[i:i + n] for i in range(0, len(steps), n)]

    def eval_marker(self, model: str, run: str, chunk: int) -> str:
        return f"{self.run_dir(model, run)}/eval/chunk_{chunk}.json"

    def eval_markers(self, model: str, run: str) -> list[str]:
        return [self.eval_marker(model, run, i) for i in range(len(self.eval_chunks(model, run)))]

    def model_path(self, model: str) -> str:
        return self.cfg["models"][model]["path"]

    def built_model_dir(self, model: str) -> str | None:
        """The directory a rule builds for this model, or None for a hub id / existing directory."""
        return self.model_path(model) if self.cfg["models"][model].get("build") else None

    # ---- lookups used by input functions ----
    def run(self, model: str, run: str) -> RunPlan:
        try:
            return self.runs[(model, run)]
        except KeyError:
            raise ConfigError(f"no run '{run}' of model '{model}' in the registry of config '{self.cfg['name']}'") from None

    def trained_runs(self) -> list[RunPlan]:
        return [r for r in self.runs.values() if not r.is_base]

    def needs_ranking(self, dataset: str) -> bool:
        return "ranks" in self.cfg["datasets"][dataset]

    def dataset_source(self, dataset: str) -> str:
        return self.cfg["datasets"][dataset].get("source", self.cfg["pool"])

    def resources(self, model: str, kind: str) -> dict[str, int]:
        out = dict(DEFAULT_RESOURCES[kind])
        out.update(self.cfg.get("resources", {}).get(kind, {}))
        if kind == "train":  # evaluation resources are global (static in the rule, for planning speed)
            out.update(self.cfg["models"][model].get("resources", {}).get(kind, {}))
        return out

    def score_run(self) -> RunPlan | None:
        sp = self.cfg["score_pool"]
        return self.runs[(sp["model"], sp["run"])] if sp["source"] == "run" else None

    def make_train_set_args(self, dataset: str) -> list[str]:
        """`rlvr make-train-set` options for one dataset (everything but --pool/--ranking/--out)."""
        d = self.cfg["datasets"][dataset]
        args: list[str] = []
        if "ranks" in d:
            args += ["--ranks", ",".join(str(r) for r in d["ranks"])]
        if "random" in d:
            args += ["--random", str(d["random"]), "--seed", str(d.get("seed", 0))]
        if "first" in d:
            args += ["--first", str(d["first"])]
        if "ranks" in d or "random" in d:
            args += ["--batch-size", str(self.cfg["train_batch_size"])]
        if "label_override" in d:
            args += ["--label-override", d["label_override"]]
        if "label_noise" in d:
            args += ["--label-noise", str(d["label_noise"]), "--noise-seed", str(d.get("noise_seed", 0))]
        return args

    def evaluate_model(self, model: str, run: str, step: int) -> str:
        """Step 0 is the base model itself (as the paper reports it), later steps the saved checkpoints."""
        if step == 0:
            return self.model_path(model)
        return f"{self.run_dir(model, run)}/train/checkpoints/step_{step}"

    def evaluate_args(self, model: str, run: str) -> list[str]:
        m, ev = self.cfg["models"][model], self.cfg["evaluation"]
        args = ["--benchmarks", ",".join(self.run(model, run).benchmarks),
                "--prompt", m["prompt_type"],
                "--max-new-tokens", str(m.get("eval_max_tokens") or m["max_response_length"]),
                "--engine", ev["engine"]]
        if m.get("eval_protocol", "harness") != "harness":
            # the rllm evaluator (the paper's R1-Distill numbers) grades with DeepScaleR's grader after `</think>`
            args += ["--protocol", m["eval_protocol"], "--graders", ",".join(RLLM_GRADERS)]
        elif ev["max_func_call"]:
            # the Qwen2.5-Math harness's Python tool-call loop; the rllm evaluator has none
            args += ["--max-func-call", str(ev["max_func_call"]), "--tool-timeout", str(ev["tool_timeout"])]
        if ev.get("limit"):
            args += ["--limit", str(ev["limit"])]
        return args

    def select_graders(self, model: str) -> list[str]:
        """`rlvr select-best --grader`: the report's grader first, then every grader the model's runs are
        evaluated with, so that prune keeps the best checkpoint of each (Table 4's R1-Distill rows report
        `deepscaler_think`'s best step, the others `report.grader`'s)."""
        return list(dict.fromkeys([self.report_grader, *self.evaluated_graders(model)]))

    @property
    def report_grader(self) -> str:
        return (self.cfg.get("report") or {}).get("grader", "qwen")

    def evaluated_graders(self, model: str) -> list[str]:
        """The graders every `rlvr evaluate` of this model grades with (as evaluate_args passes them)."""
        if self.cfg["models"][model].get("eval_protocol", "harness") != "harness":
            return list(RLLM_GRADERS)
        return list(self.harness_graders)

    def evaluate_dtype(self, step: int) -> str:
        """`--dtype` of step `step`'s evaluation: the base model's (step 0) or the trained checkpoints'."""
        ev = self.cfg["evaluation"]
        return ev.get("base_dtype", "auto") if step == 0 else ev.get("checkpoint_dtype", "auto")


# --------------------------------------------------------------------------------------- schema
def _key_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _schema_validator(schema: dict):
    from jsonschema import Draft202012Validator, validators

    base = Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return validators.extend(base, {"properties": set_defaults})(schema)


def _schema_message(err) -> str:
    path = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        if extra:
            hint = difflib.get_close_matches(extra[0], allowed, n=1)
            more = f" (did you mean '{hint[0]}'?)" if hint else (f" (allowed: {', '.join(sorted(allowed))})" if allowed else "")
            return f"config key '{_key_path(path + [extra[0]])}': unknown key{more}"
    if err.validator == "required":
        return f"config key '{_key_path(path)}': {err.message}"
    if err.validator == "propertyNames":
        return f"config key '{_key_path(path + [err.instance])}': name not allowed ({err.message})"
    return f"config key '{_key_path(path)}': {err.message}"


def check_schema(cfg: dict, schema_path: str | Path | None = None) -> dict:
    """Validate against workflow/schemas/config.schema.yaml, filling defaults in place."""
    schema = yaml.safe_load(Path(schema_path or SCHEMA_PATH).read_text())
    validator = _schema_validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(list(e.absolute_path)), list(map(str, e.absolute_path))))
    if errors:
        # the deepest error is usually the informative one (anyOf/allOf wrap it)
        from jsonschema.exceptions import best_match

        raise ConfigError(_schema_message(best_match(errors)))
    return cfg


# --------------------------------------------------------------------------------------- checks
def _unknown(kind: str, key: str, name: str, known) -> ConfigError:
    hint = difflib.get_close_matches(name, list(known), n=1)
    if hint:
        extra = f" (did you mean '{hint[0]}'?)"
    else:
        extra = f" (known: {', '.join(sorted(known))})" if known else f" (the config defines no {kind}s)"
    return ConfigError(f"config key '{key}': unknown {kind} '{name}'{extra}")


def _count_rows(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _check_recipe(recipe: dict, key: str) -> None:
    """Keys and value types of a RunConfig fragment (the values are re-checked after merging)."""
    for k in recipe:
        if k in OWNED_KEYS:
            raise ConfigError(f"config key '{key}.{k}': set by the registry (models.<m>.path / the dataset); remove it")
    try:
        hints = get_type_hints(runconfig.RunConfig)
        known = set(hints)
        for k, v in recipe.items():
            if k not in known:
                hint = difflib.get_close_matches(k, known, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigError(f"unknown RunConfig key '{k}'{extra}")
            runconfig._check_type(k, v, hints[k])
    except RlvrError as exc:
        raise ConfigError(f"config key '{key}': {exc}") from None
    if isinstance(recipe.get("label_override"), str) and not recipe["label_override"].strip():
        # an empty label would reward exactly the responses without a \boxed{} (the prompt's own empty box is then
        # the last one): never a label anyone means (null = the dataset's labels)
        raise ConfigError(f"config key '{key}.label_override': must be a non-empty label or null")


TRAIN_PLACEHOLDERS = ("gpus",)


def _check_train_command(command: str) -> None:
    """commands.train is str.format-ed per job (common.smk): a typo like {gpu} must fail at plan time,
    not as a KeyError inside a Snakemake input function."""
    import string

    allowed = ", ".join(f"{{{p}}}" for p in TRAIN_PLACEHOLDERS)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(command) if f is not None]
        for f in fields:
            if f not in TRAIN_PLACEHOLDERS:
                raise ConfigError(f"config key 'commands.train': unknown placeholder {{{f}}} "
                                  f"(allowed: {allowed}; write {{{{ }}}} for a literal brace)")
        command.format(**{p: 1 for p in TRAIN_PLACEHOLDERS})
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(f"config key 'commands.train': not a valid command template ({exc}); "
                          f"placeholders allowed: {allowed}, write {{{{ }}}} for a literal brace") from None


def _check_eval_extra_args(cfg: dict) -> list[str]:
    """evaluation.extra_args is appended to every `rlvr evaluate` call: an unknown flag, a bad value or a flag
    the rule passes itself (the last one wins) must fail at plan time, not in hundreds of evaluate jobs.
    Returns the graders those calls grade with (harness-protocol models: the rllm ones get RLLM_GRADERS)."""
    import argparse
    import shlex

    from oneshot_rlvr.commands import evaluate as evaluate_cmd
    from oneshot_rlvr.evaluate import GRADERS

    extra = cfg["evaluation"].get("extra_args") or ""
    key = "config key 'evaluation.extra_args'"
    try:
        words = shlex.split(extra)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None

    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            raise ConfigError(f"{key}: {extra!r}: {message}")

    parser = _Parser(prog="rlvr evaluate", add_help=False)
    evaluate_cmd.add_arguments(parser)
    args = parser.parse_args(["--model", "m", "--benchmarks", "math500", "--out", "o", *words])
    bad = [g for g in (g.strip() for g in args.graders.split(",")) if g and g not in GRADERS]
    if bad:
        raise ConfigError(f"{key}: unknown grader(s) {', '.join(bad)} (known: {', '.join(GRADERS)})")
    # which options extra_args itself sets (argparse resolves abbreviations like --bench): no defaults
    for a in parser._actions:
        a.required, a.default = False, argparse.SUPPRESS
    given = vars(parser.parse_args(words))
    flag = {a.dest: a.option_strings[0] for a in parser._actions}
    for dest in given:
        if dest in EVAL_RULE_FLAGS:
            raise ConfigError(f"{key}: {flag[dest]} is passed by the evaluate rule itself and would be overridden; "
                              f"remove it (it comes from {EVAL_RULE_FLAGS[dest]})")
    rllm = [m for m, v in cfg["models"].items() if v.get("eval_protocol", "harness") != "harness"]
    if "graders" in given and rllm:  # the rule passes --graders for these models only
        raise ConfigError(f"{key}: --graders would override the graders the evaluate rule passes for "
                          f"models.{rllm[0]} (eval_protocol {cfg['models'][rllm[0]]['eval_protocol']})")
    # the values as `rlvr evaluate` checks them
    try:
        evaluate_cmd.options_from_args(args).validate()
    except RlvrError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return [g for g in (g.strip() for g in args.graders.split(",")) if g]


def _check_model_path(name: str, m: dict, root: Path) -> None:
    """A local model directory that nothing builds (build: null) must exist now, not only when a job
    loads it (the jobs' own rule, relative paths taken from the workflow directory)."""
    if not m.get("build"):
        check_model_path(m["path"], f"models.{name}.path", root,
                         hint=" (a hub id is 'org/name'; a model a rule builds needs 'build: tiny' or 'build: toy')")


def validate_workflow_config(cfg: dict, root: str | Path = ".", schema_path: str | Path | None = None) -> Plan:
    """Check a workflow config completely and return its Plan. `cfg` gets the schema defaults filled
    in (as Snakemake's `validate` does). `root` is the directory the `resources/` paths are relative to."""
    if not isinstance(cfg, dict):
        raise ConfigError("the workflow config must be a mapping (is --configfile set?)")
    check_schema(cfg, schema_path)
    root = Path(root)
    models, datasets, variants = cfg["models"], cfg["datasets"], cfg["variants"]
    _check_train_command(cfg["commands"]["train"])
    harness_graders = _check_eval_extra_args(cfg)

    # sources and the pool
    for name, rel in cfg["sources"].items():
        if not (root / rel).is_file():
            raise ConfigError(f"config key 'sources.{name}': file not found: {rel}")
    if cfg["pool"] not in cfg["sources"]:
        raise _unknown("source", "pool", cfg["pool"], cfg["sources"])
    pool_size = _count_rows(root / cfg["sources"][cfg["pool"]])
    counted: dict[str, int] = {cfg["pool"]: pool_size}

    def source_rows(source: str) -> int:
        if source not in counted:
            counted[source] = _count_rows(root / cfg["sources"][source])
        return counted[source]

    # models
    for name, m in models.items():
        if m.get("build") and Path(m["path"]).as_posix() != f"results/{cfg['name']}/models/{name}":
            raise ConfigError(f"config key 'models.{name}.path': a built model lives at "
                              f"'results/{cfg['name']}/models/{name}', got '{m['path']}'")
        _check_model_path(name, m, root)
        if m["eval_every"] > m["total_steps"]:
            raise ConfigError(f"config key 'models.{name}.eval_every': {m['eval_every']} > total_steps {m['total_steps']}")
        _check_recipe(m.get("recipe", {}), f"models.{name}.recipe")
    _check_recipe(cfg["recipe"], "recipe")
    # resolve_run_config applies the global recipe first: a key every run takes from elsewhere would be lost
    # (an equal value, as config/demo.yaml's max_response_length, is merely redundant)
    for k, v in cfg["recipe"].items():
        owners = ({"train_batch_size": cfg["train_batch_size"]} if k == "train_batch_size" else
                  {f"models.{n}.{MODEL_SETTINGS[k]}": m[MODEL_SETTINGS[k]] for n, m in models.items()}
                  if k in MODEL_SETTINGS else {})
        lost = [f"'{o}' ({x})" for o, x in owners.items() if x != v]
        if lost:
            raise ConfigError(f"config key 'recipe.{k}': {v} would be silently replaced by {lost[0]}; set it there "
                              f"(or per model/run: models.<m>.recipe, a variant)")
    for name, v in variants.items():
        _check_recipe(v, f"variants.{name}")
        try:  # values too, on the global recipe, so that an unused variant cannot hide a bad value
            runconfig.from_dict({**cfg["recipe"], "train_batch_size": cfg["train_batch_size"], **v})
        except RlvrError as exc:
            raise ConfigError(f"config key 'variants.{name}': {exc}") from None
    if "model" in cfg.get("report", {}) and cfg["report"]["model"] not in models:
        raise _unknown("model", "report.model", cfg["report"]["model"], models)

    # datasets
    for name, d in datasets.items():
        key = f"datasets.{name}"
        if "ranks" in d and "random" in d:
            raise ConfigError(f"config key '{key}': choose either 'ranks' or 'random'")
        for seed, of in (("seed", "random"), ("noise_seed", "label_noise")):
            if seed in d and of not in d:  # it would be ignored: a seed sweep would build one set n times
                raise ConfigError(f"config key '{key}.{seed}': seeds '{of}', which this dataset does not set "
                                  f"(add '{of}' or remove '{seed}')")
        src = d.get("source", cfg["pool"])
        if src not in cfg["sources"]:
            raise _unknown("source", f"{key}.source", src, cfg["sources"])
        if ("ranks" in d or "random" in d) and src != cfg["pool"]:
            raise ConfigError(f"config key '{key}.source': pi ranks and random picks come from the pool '{cfg['pool']}'")
        for i, r in enumerate(d.get("ranks", [])):
            if not 1 <= r <= pool_size:
                raise ConfigError(f"config key '{key}.ranks[{i}]': pi rank {r} out of range 1..{pool_size} "
                                  f"(pool '{cfg['pool']}' has {pool_size} examples)")
        if len(set(d.get("ranks", []))) != len(d.get("ranks", [])):
            raise ConfigError(f"config key '{key}.ranks': repeated rank")
        n_sel = len(d["ranks"]) if "ranks" in d else d.get("random")
        if "random" in d and d["random"] > pool_size:
            raise ConfigError(f"config key '{key}.random': {d['random']} > pool size {pool_size}")
        if n_sel and n_sel > cfg["train_batch_size"]:
            raise ConfigError(f"config key '{key}': {n_sel} examples do not fit one batch of train_batch_size "
                              f"{cfg['train_batch_size']}")
        if "first" in d and ("ranks" in d or "random" in d):
            raise ConfigError(f"config key '{key}.first': only for full-set datasets (no 'ranks'/'random')")
        if "first" in d and d["first"] > source_rows(src):
            raise ConfigError(f"config key '{key}.first': {d['first']} > the {source_rows(src)} rows of source '{src}'")
        if "label_override" in d and not d["label_override"].strip():
            raise ConfigError(f"config key '{key}.label_override': must be a non-empty label (remove the key to "
                              f"keep the dataset's own labels)")

    # experiments -> runs
    runs: dict[tuple[str, str], RunPlan] = {}
    experiments: dict[str, list[tuple[str, str]]] = {}
    for ename, e in cfg["experiments"].items():
        key = f"experiments.{ename}"
        members: list[tuple[str, str]] = []
        for i, m in enumerate(e["models"]):
            if m not in models:
                raise _unknown("model", f"{key}.models[{i}]", m, models)
        for rname in e["benchmarks_by_run"]:
            if rname not in e["runs"]:
                raise _unknown("run of this experiment", f"{key}.benchmarks_by_run", rname, e["runs"])
        for j, run in enumerate(e["runs"]):
            dataset, variant = parse_run_id(run)
            if run == BASE_RUN:
                raise ConfigError(f"config key '{key}.runs[{j}]': 'base' is implied by 'base: true'")
            if dataset not in datasets:
                raise _unknown("dataset", f"{key}.runs[{j}]", dataset, datasets)
            if variant is not None and variant not in variants:
                raise _unknown("variant", f"{key}.runs[{j}]", variant, variants)
            benches = list(e["benchmarks"]) + [b for b in e["benchmarks_by_run"].get(run, []) if b not in e["benchmarks"]]
            for m in e["models"]:
                rp = runs.setdefault((m, run), RunPlan(model=m, run=run, dataset=dataset, variant=variant))
                _merge(rp, ename, benches)
                members.append((m, run))
        if e["base"]:
            for m in e["models"]:
                rp = runs.setdefault((m, BASE_RUN), RunPlan(model=m, run=BASE_RUN, dataset=None, variant=None))
                _merge(rp, ename, e["benchmarks"] + [b for bs in e["benchmarks_by_run"].values() for b in bs])
                members.append((m, BASE_RUN))
        experiments[ename] = list(dict.fromkeys(members))

    # Step 0 of every trained run is the base model: it is evaluated once per model (run "base", on
    # the union of the model's benchmarks) and copied into each run's eval/step_0.
    for (m, run), rp in list(runs.items()):
        if run != BASE_RUN:
            base = runs.setdefault((m, BASE_RUN), RunPlan(model=m, run=BASE_RUN, dataset=None, variant=None))
            _merge(base, None, rp.benchmarks)

    # the scoring run (score_pool.source = run) is a run too, even if no experiment lists it
    sp = cfg["score_pool"]
    if sp["source"] == "run":
        for k in ("model", "run"):
            if k not in sp:
                raise ConfigError(f"config key 'score_pool.{k}': required when score_pool.source is 'run'")
        if sp["model"] not in models:
            raise _unknown("model", "score_pool.model", sp["model"], models)
        dataset, variant = parse_run_id(sp["run"])
        if dataset not in datasets:
            raise _unknown("dataset", "score_pool.run", dataset, datasets)
        if variant is not None and variant not in variants:
            raise _unknown("variant", "score_pool.run", variant, variants)
        if "ranks" in datasets[dataset]:
            raise ConfigError("config key 'score_pool.run': the scoring run cannot train on a pi-set "
                              "(its ranking would depend on itself)")
        runs.setdefault((sp["model"], sp["run"]), RunPlan(model=sp["model"], run=sp["run"], dataset=dataset,
                                                          variant=variant))
    elif not (root / sp["history"]).is_file():
        raise ConfigError(f"config key 'score_pool.history': file not found: {sp['history']}")

    plan = Plan(cfg=cfg, runs=runs, experiments=experiments, pool_size=pool_size, harness_graders=harness_graders)
    recipes: dict[tuple[str, str], str] = {}  # (model, resolved RunConfig) -> first run id using it
    for rp in runs.values():
        if rp.is_base:
            continue
        rp.run_config = resolve_run_config(plan, rp.model, rp.run)
        try:
            rc = runconfig.from_dict(rp.run_config, source=f"run {rp.model}/{rp.run}")
        except RlvrError as exc:
            raise ConfigError(f"config (models.{rp.model} + variant '{rp.variant}'): {exc}") from None
        # Two run ids with the same recipe would train the same model twice (GPU-days on the paper's
        # scale); list the run once and let every experiment that needs it refer to that id.
        key = (rp.model, repr(sorted(asdict(rc).items())))
        if key in recipes:
            raise ConfigError(f"config: runs '{recipes[key]}' and '{rp.run}' of model '{rp.model}' resolve to the "
                              f"same recipe and would be trained twice; use one run id in every experiment "
                              f"(or make them differ, e.g. by seed)")
        recipes[key] = rp.run
        rp.steps = eval_steps(rc.total_steps, rc.save_freq)
        d = datasets[rp.dataset]
        if ("ranks" in d or "random" in d) and rc.drop_last and rc.train_batch_size > cfg["train_batch_size"]:
            # a few-shot set has exactly the top-level train_batch_size rows (make-train-set --batch-size): a
            # larger per-run batch (a variant wins over the model recipe) fails in the trainer's sampler
            where = (f"variants.{rp.variant}" if "train_batch_size" in variants.get(rp.variant, {})
                     else f"models.{rp.model}.recipe")
            raise ConfigError(f"config key '{where}.train_batch_size': {rc.train_batch_size} > the "
                              f"{cfg['train_batch_size']} rows of few-shot dataset '{rp.dataset}' (duplicated to the "
                              f"top-level train_batch_size) in run {rp.model}/{rp.run}")
        if "ranks" not in d and "random" not in d and rc.drop_last:
            # a full set is not duplicated: fewer rows than one batch fails in the trainer's sampler
            n_rows = d.get("first") or source_rows(d.get("source", cfg["pool"]))
            where = f"datasets.{rp.dataset}.first" if "first" in d else f"datasets.{rp.dataset}.source"
            if n_rows < rc.train_batch_size:
                raise ConfigError(f"config key '{where}': {n_rows} rows < train_batch_size {rc.train_batch_size} "
                                  f"of run {rp.model}/{rp.run} (a full-set dataset is not duplicated to the batch)")
        if sp["source"] == "run" and (rp.model, rp.run) == (sp["model"], sp["run"]) and rc.total_steps < sp["up_to_step"]:
            raise ConfigError(f"config key 'score_pool.up_to_step': {sp['up_to_step']} > total_steps "
                              f"{rc.total_steps} of the scoring run")
        if sp["source"] == "run" and (rp.model, rp.run) == (sp["model"], sp["run"]):
            # the ranking holds only the examples the scoring run sampled by up_to_step (history_from_metrics):
            # at most up_to_step batches of its distinct rows. An upper bound (drop_last remainders and prompts
            # the trainer drops are known at run time only): ranks within it can still fail in make-train-set.
            n_rows = d.get("random") or d.get("first") or source_rows(d.get("source", cfg["pool"]))
            seen = min(sp["up_to_step"] * rc.train_batch_size, n_rows)
            for name, dd in datasets.items():
                for i, r in enumerate(dd.get("ranks", [])):
                    if r > seen:
                        raise ConfigError(
                            f"config key 'datasets.{name}.ranks[{i}]': pi rank {r} > the at most {seen} examples "
                            f"ranked by the scoring run {rp.model}/{rp.run} (score_pool.up_to_step {sp['up_to_step']} "
                            f"x train_batch_size {rc.train_batch_size}, of {n_rows} distinct rows)")
    # select-best and the tables read the report's grader: one no evaluation writes would stop every run after
    # its evaluations (select-best, prune, collect), not just the tables
    for model in dict.fromkeys(rp.model for rp in runs.values()):
        if plan.report_grader not in plan.evaluated_graders(model):
            raise ConfigError(f"config key 'report.grader': {plan.report_grader!r} is not a grader models.{model} is "
                              f"evaluated with ({', '.join(plan.evaluated_graders(model))}); report one of those, or "
                              f"add it with evaluation.extra_args '--graders ...'")
    return plan


def _merge(rp: RunPlan, experiment: str | None, benchmarks: list[str]) -> None:
    if experiment is not None and experiment not in rp.experiments:
        rp.experiments.append(experiment)
    for b in benchmarks:
        if b not in rp.benchmarks:
            rp.benchmarks.append(b)


def resolve_run_config(plan: Plan, model: str, run: str) -> dict[str, Any]:
    """RunConfig overrides of one run: global recipe < model settings < model recipe < variant."""
    cfg = plan.cfg
    m = cfg["models"][model]
    dataset, variant = parse_run_id(run)
    rc: dict[str, Any] = {}
    rc.update(cfg["recipe"])
    rc.update({k: m[v] for k, v in MODEL_SETTINGS.items()})
    rc["train_batch_size"] = cfg["train_batch_size"]
    rc.update(m.get("recipe", {}))
    if variant:
        rc.update(cfg["variants"][variant])
    rc["model"] = m["path"]
    rc["train_file"] = plan.train_set_path(dataset)
    return rc


def eval_steps(total_steps: int, save_freq: int) -> list[int]:
    """The checkpoints `rlvr train` saves (every save_freq and the last step), plus step 0."""
    steps = list(range(0, total_steps + 1, save_freq))
    if steps[-1] != total_steps:
        steps.append(total_steps)
    return steps


def load_plan(config_path: str | Path, root: str | Path = ".") -> Plan:
    """Convenience for tests and tools: read a YAML config file and validate it."""
    p = Path(config_path)
    try:
        cfg = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot read workflow config: {exc}") from None
    return validate_workflow_config(cfg, root=root)
