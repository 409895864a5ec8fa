"""Experiment registry: the paper config plans E1-E20 correctly, and every kind of config mistake
fails at load with a message naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from oneshot_rlvr.config import RunConfig, from_dict
from oneshot_rlvr.errors import ConfigError
from oneshot_rlvr.registry import eval_steps, parse_run_id, validate_workflow_config

REPO = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
DEMO = yaml.safe_load((REPO / "config" / "demo_tiny.yaml").read_text())
M15 = "qwen2.5-math-1.5b"


def plan_of(cfg):
    return validate_workflow_config(copy.deepcopy(cfg), root=REPO)


@pytest.fixture(scope="module")
def paper():
    return plan_of(PAPER)


def test_paper_config_lists_e1_to_e20(paper):
    assert list(paper.default_experiments) == [f"E{i}" for i in range(1, 21)]
    # E12k (the in-reward-KL reading of Table 5's KL-off rows) is planned but optional
    assert set(paper.experiments) - set(paper.default_experiments) == {"E12k"}
    klr = from_dict(paper.run(M15, "pi1--t5r3_klr").run_config)
    assert (klr.kl_coef, klr.kl_in_reward_coef, klr.entropy_coef, klr.weight_decay) == (0.0, 0.001, 0.0, 0.01)
    assert from_dict(paper.run(M15, "pi1--t5r3").run_config).kl_in_reward_coef == 0.0
    models = {m for m, _ in paper.runs}
    assert models == {M15, "qwen2.5-math-7b", "llama-3.2-3b-instruct", "r1-distill-qwen-1.5b"}
    runs_15 = {r for m, r in paper.runs if m == M15}
    for run in ["pi1", "pi13", "pi1_pi13", "pi1_pi2_pi13_pi1209", "pi1207", "pi1_pi2", "top16", "dsr_sub",
                "math7500", "dsr_sub--format", "pi1--format_noent", "pi1--t5r1", "pi1--t5r10", "pi1--t5r13",
                "pi1--entropy_only", "pi1--noent", "pi1--temp1.0", "dsr_sub_noise60", "dsr_sub_noise90", "base"]:
        assert run in runs_15, run
    assert "pi1--t5r5" not in runs_15  # row 5 is the plain pi1 run
    # E20: the PPO rows of Tables 4 and 17 (the report's paper CSVs name these run ids)
    assert {"dsr_sub--ppo", "pi1--ppo", "dsr_sub_noise60--ppo", "dsr_sub_noise90--ppo"} <= runs_15
    ppo = from_dict(paper.run(M15, "pi1--ppo").run_config)
    assert ppo.adv_estimator == "gae" and ppo.kl_coef == 0.001 and ppo.critic_lr == 1e-5
    assert ppo.critic_mini_batch == 128 and 128 * 8 // ppo.critic_mini_batch == 8  # the fork's 8 critic steps
    assert ("qwen2.5-math-7b", "random16") in paper.runs


def test_steps_and_lengths_per_model(paper):
    assert paper.run(M15, "pi1").steps == list(range(0, 2001, 20))
    assert paper.run("qwen2.5-math-7b", "pi1").steps[-1] == 1000
    assert paper.run("llama-3.2-3b-instruct", "pi1").steps[-1] == 1000
    r1 = paper.run("r1-distill-qwen-1.5b", "pi1")
    assert r1.steps[-1] == 1200 and r1.run_config["max_response_length"] == 8192
    eo = paper.run(M15, "pi1--entropy_only").steps
    assert {4, 10, 20} <= set(eo)  # Tab 6/13 report steps 4 (7B), 10 (Llama), 20 (1.5B)
    assert paper.run(M15, "base").steps == [0]
    assert eval_steps(10, 4) == [0, 4, 8, 10]


def test_benchmarks_per_table(paper):
    assert paper.run(M15, "pi1--t5r3").benchmarks == ["math500", "aime24"]  # Table 5
    assert paper.run(M15, "pi7").benchmarks == ["math500", "aime24"]  # Table 3
    assert set(paper.run(M15, "pi2").benchmarks) == {"math500", "aime24", "amc23", "minerva_math",
                                                      "olympiadbench", "aime25"}  # Table 9
    assert {"arc_e", "arc_c"} <= set(paper.run(M15, "dsr_sub").benchmarks)  # Table 1
    # pi1 is in E1 (Table 1), E12 and E15: the union
    assert {"arc_e", "math500"} <= set(paper.run(M15, "pi1").benchmarks)
    assert set(paper.run(M15, "pi1").experiments) == {"E1", "E12", "E15"}


def test_table5_variants_resolve_to_the_paper_recipe(paper):
    def rc(run):
        return from_dict(paper.run(M15, run).run_config)

    full = rc("pi1")
    d = RunConfig()
    assert (full.pg_coef, full.weight_decay, full.kl_coef, full.entropy_coef) == \
        (d.pg_coef, d.weight_decay, d.kl_coef, d.entropy_coef) == (1.0, 0.01, 0.001, 0.001)
    rows = {  # Table 5: PG, WD, KL, Ent on/off
        "t5r1": (0, 0, 0, 0), "t5r2": (1, 0, 0, 0), "t5r3": (1, 1, 0, 0), "noent": (1, 1, 1, 0),
        "t5r7": (1, 0, 0, 1), "t5r8": (0, 1, 1, 0), "t5r9": (0, 1, 1, 1), "t5r10": (0, 0, 0, 1),
    }
    for v, (pg, wd, kl, ent) in rows.items():
        c = rc(f"pi1--{v}")
        assert (c.pg_coef > 0, c.weight_decay > 0, c.kl_coef > 0, c.entropy_coef > 0) == \
            (bool(pg), bool(wd), bool(kl), bool(ent)), v
    assert rc("pi1--t5r6").entropy_coef == 0.003
    assert [rc(f"pi1--t5r{i}").label_override for i in (11, 12, 13)] == ["12.7", "4", "929725"]
    assert rc("pi1--temp1.0").temperature == 1.0 and rc("pi1--format").reward == "format"
    c = rc("pi1--t5r2")
    assert c.model == "Qwen/Qwen2.5-Math-1.5B" and c.train_file.endswith("/data/train_sets/pi1.jsonl")
    assert c.total_steps == 2000 and c.save_freq == 20 and c.train_batch_size == 128


def test_demo_config(tmp_path):
    plan = plan_of(DEMO)
    assert set(plan.runs) == {("tiny", r) for r in ("pi1", "pi13", "pi1_pi13", "pool16", "base")}
    c = from_dict(plan.run("tiny", "pi1").run_config)
    assert (c.total_steps, c.save_freq, c.train_batch_size, c.max_response_length) == (4, 2, 4, 32)
    assert plan.built_model_dir("tiny") == "results/demo_tiny/models/tiny"
    assert plan.evaluate_model("tiny", "pi1", 0) == "results/demo_tiny/models/tiny"  # step 0 = base model
    assert plan.evaluate_model("tiny", "pi1", 2) == "results/demo_tiny/runs/tiny/pi1/train/checkpoints/step_2"
    assert plan.make_train_set_args("pool16") == ["--first", "16"]
    assert plan.make_train_set_args("pi1_pi13") == ["--ranks", "1,13", "--batch-size", "4"]


def test_run_ids():
    assert parse_run_id("pi1--t5r2") == ("pi1", "t5r2")
    assert parse_run_id("dsr_sub") == ("dsr_sub", None)


def _broken(edit):
    cfg = copy.deepcopy(PAPER)
    edit(cfg)
    return cfg


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["experiments"]["E1"].update(benchmark=["math500"]),
     "config key 'experiments.E1.benchmark': unknown key (did you mean 'benchmarks'?)"),
    (lambda c: c.update(trian_batch_size=4), "config key 'trian_batch_size': unknown key"),
    (lambda c: c["models"][M15].update(total_steps="2000"), "config key 'models.qwen2.5-math-1.5b.total_steps'"),
    (lambda c: c["models"][M15].pop("eval_every"), "config key 'models.qwen2.5-math-1.5b': 'eval_every' is a required"),
    (lambda c: c["datasets"]["pi1"].update(ranks=[0]), "config key 'datasets.pi1.ranks[0]': pi rank 0 out of range 1..1209"),
    (lambda c: c["datasets"]["top16"]["ranks"].append(1210), "config key 'datasets.top16.ranks[16]': pi rank 1210 out of range"),
    (lambda c: c["experiments"]["E12"]["runs"].append("pi1--t5r99"), "config key 'experiments.E12.runs[10]': unknown variant 't5r99'"),
    (lambda c: c["experiments"]["E2"]["runs"].append("pi99"), "config key 'experiments.E2.runs[1]': unknown dataset 'pi99'"),
    (lambda c: c["experiments"]["E2"].update(models=["qwen-1.5b"]), "config key 'experiments.E2.models[0]': unknown model 'qwen-1.5b'"),
    (lambda c: c["experiments"]["E2"]["benchmarks"].append("gsm8k"), "config key 'experiments.E2.benchmarks[8]'"),
    (lambda c: c["variants"]["t5r2"].update(entropy_coeff=0.0),
     "config key 'variants.t5r2': unknown RunConfig key 'entropy_coeff' (did you mean 'entropy_coef'?)"),
    (lambda c: c["variants"]["t5r2"].update(kl_coef="none"), "config key 'variants.t5r2': config key 'kl_coef'"),
    (lambda c: c["recipe"].update(model="x"), "config key 'recipe.model': set by the registry"),
    (lambda c: c["variants"].update(bad={"temperature": -1.0}), "config key 'variants.bad'"),  # even unused
    (lambda c: c.update(report={"model": "gpt"}), "config key 'report.model': unknown model 'gpt'"),
    (lambda c: c["variants"]["temp1.0"].update(temperature=0.0), "temperature"),
    (lambda c: c["sources"].update(dsr_sub="resources/train/nope.jsonl"), "config key 'sources.dsr_sub': file not found"),
    (lambda c: c["score_pool"].update(source="run", run="pi1"), "config key 'score_pool.run': the scoring run cannot train on a pi-set"),
    (lambda c: c["score_pool"].update(source="magic"), "config key 'score_pool.source'"),
    (lambda c: c["evaluation"].update(max_func_call=-1), "config key 'evaluation.max_func_call'"),
    (lambda c: c["evaluation"].update(tool_timeout=0), "config key 'evaluation.tool_timeout'"),
    (lambda c: c["datasets"].update(big={"random": 200}), "config key 'datasets.big': 200 examples do not fit one batch"),
    (lambda c: c["experiments"]["E5"]["benchmarks_by_run"].update(pi3=["amc23"]), "unknown run of this experiment 'pi3'"),
    # a second name for an existing recipe would train the same model twice
    (lambda c: (c["variants"].update(t5r4={"entropy_coef": 0.0}), c["experiments"]["E12"]["runs"].append("pi1--t5r4")),
     "runs 'pi1--noent' and 'pi1--t5r4' of model 'qwen2.5-math-1.5b' resolve to the same recipe"),
])
def test_config_errors_name_the_key(edit, message):
    cfg = _broken(edit)
    with pytest.raises(ConfigError) as exc:
        plan_of(cfg)
    assert message in str(exc.value)


def test_score_pool_from_our_own_run():
    cfg = _broken(lambda c: c["score_pool"].update(source="run"))
    plan = plan_of(cfg)
    rp = plan.score_run()
    assert (rp.model, rp.run) == (M15, "dsr_sub--hvs500")
    assert rp.run_config["total_steps"] == 500 and rp.experiments == []


def _edited(base, edit):
    cfg = copy.deepcopy(base)
    edit(cfg)
    return cfg


TOY = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())  # score_pool.source: run


def _big_batch_variant(c):
    c["variants"]["big"] = {"train_batch_size": 16, "ppo_mini_batch_size": 16}
    c["experiments"]["demo"]["runs"].append("pi1--big")


# What the dry run used to accept and only the job rejected (or worse: results/<..>/ is the repo root).
@pytest.mark.parametrize("base, edit, message", [
    (PAPER, lambda c: c.update(name=".."), "config key 'name': '..' does not match"),
    (PAPER, lambda c: c.update(name="."), "config key 'name'"),
    (PAPER, lambda c: c.update(name=".hidden"), "config key 'name'"),
    (PAPER, lambda c: c["models"].update({"..": c["models"][M15]}), "'..' does not match"),
    (DEMO, lambda c: c["datasets"]["pool16"].update(first=2),
     "config key 'datasets.pool16.first': 2 rows < train_batch_size 4 of run tiny/pool16"),
    (DEMO, lambda c: c["datasets"]["pool16"].update(first=5000),
     "config key 'datasets.pool16.first': 5000 > the 1209 rows of source 'dsr_sub'"),
    (PAPER, lambda c: c["datasets"]["pi1"].update(label_override=""), "config key 'datasets.pi1.label_override'"),
    # a seed of a selection the dataset does not make was silently ignored (a seed sweep built one set n times)
    (PAPER, lambda c: c["datasets"]["pi1"].update(seed=3),
     "config key 'datasets.pi1.seed': seeds 'random', which this dataset does not set"),
    (PAPER, lambda c: c["datasets"]["random16"].update(noise_seed=1),
     "config key 'datasets.random16.noise_seed': seeds 'label_noise', which this dataset does not set"),
    (PAPER, lambda c: c["variants"]["t5r11"].update(label_override=" "), "config key 'variants.t5r11.label_override'"),
    (PAPER, lambda c: c["models"][M15].update(path="/no/such/model"),
     "config key 'models.qwen2.5-math-1.5b.path': model directory not found: /no/such/model"),
    (PAPER, lambda c: c["models"][M15].update(path="./models/qwen"),
     "config key 'models.qwen2.5-math-1.5b.path': model directory not found: ./models/qwen"),
    (PAPER, lambda c: c["models"][M15].update(path="resources/toy"), "resources/toy has no config.json"),
    (PAPER, lambda c: c.update(commands={"train": "torchrun --nproc_per_node={gpu} -m oneshot_rlvr.cli train"}),
     "config key 'commands.train': unknown placeholder {gpu} (allowed: {gpus}"),
    (PAPER, lambda c: c.update(commands={"train": "torchrun --nproc_per_node={gpus -m oneshot_rlvr.cli train"}),
     "config key 'commands.train': not a valid command template"),
    (PAPER, lambda c: c["evaluation"].update(extra_args="--graders qwen,sympy"),
     "config key 'evaluation.extra_args': unknown grader(s) sympy"),
    (PAPER, lambda c: c["evaluation"].update(extra_args="--grader-workrs 4"),
     "config key 'evaluation.extra_args': '--grader-workrs 4': unrecognized arguments: --grader-workrs 4"),
    (PAPER, lambda c: c["evaluation"].update(extra_args="--dtype fp8"),
     "config key 'evaluation.extra_args': '--dtype fp8': argument --dtype: invalid choice"),
    # failures make-train-set, the trainer or the ranking would hit in a job
    (DEMO, lambda c: c["datasets"]["pi1"].update(seed=-1), "config key 'datasets.pi1.seed': -1 is less than the minimum"),
    (DEMO, lambda c: c["datasets"]["pi1"].update(label_noise=0.5, noise_seed=-3), "config key 'datasets.pi1.noise_seed'"),
    (DEMO, _big_batch_variant, "config key 'variants.big.train_batch_size': 16 > the 4 rows of few-shot dataset 'pi1'"),
    (DEMO, lambda c: c["models"]["tiny"].update(recipe={"train_batch_size": 16, "ppo_mini_batch_size": 16}),
     "config key 'models.tiny.recipe.train_batch_size': 16 > the 4 rows of few-shot dataset"),
    # the run-based ranking holds at most up_to_step x train_batch_size examples (2 x 8 of the 64-example pool)
    (TOY, lambda c: (c["score_pool"].update(up_to_step=2), c["datasets"].update(far={"ranks": [1, 17]})),
     "config key 'datasets.far.ranks[1]': pi rank 17 > the at most 16 examples ranked by the scoring run toy/toy_pool"),
])
def test_job_time_failures_are_caught_at_plan_time(base, edit, message):
    with pytest.raises(ConfigError) as exc:
        plan_of(_edited(base, edit))
    assert message in str(exc.value)


def test_model_paths_that_stay_accepted():
    # a hub id needs no local copy; an existing local model dir with build: null is used as it is
    cfg = _edited(PAPER, lambda c: c["models"][M15].update(path="Qwen/Qwen2.5-Math-1.5B"))
    assert plan_of(cfg).model_path(M15) == "Qwen/Qwen2.5-Math-1.5B"
    cfg = _edited(PAPER, lambda c: c["models"][M15].update(path="resources/toy/model"))
    assert plan_of(cfg).model_path(M15) == "resources/toy/model"
    cfg = _edited(PAPER, lambda c: c["evaluation"].update(extra_args="--grader-workers 4 --save-token-ids"))
    assert plan_of(cfg)
    cfg = _edited(PAPER, lambda c: c.update(commands={"train": "torchrun --nproc_per_node={gpus} -m x train"}))
    assert plan_of(cfg).cfg["commands"]["train"].format(gpus=2).startswith("torchrun --nproc_per_node=2 ")


# global recipe keys that every run takes from elsewhere (resolve_run_config) would be silently lost
@pytest.mark.parametrize("edit, message", [
    (lambda c: c["recipe"].update(train_batch_size=8),
     "config key 'recipe.train_batch_size': 8 would be silently replaced by 'train_batch_size' (4)"),
    (lambda c: c["recipe"].update(total_steps=6), "config key 'recipe.total_steps': 6 would be silently replaced by "
                                                  "'models.tiny.total_steps' (4)"),
    (lambda c: c["recipe"].update(save_freq=3), "config key 'recipe.save_freq': 3 would be silently replaced by "
                                                "'models.tiny.eval_every' (2)"),
    (lambda c: c["recipe"].update(max_response_length=64), "config key 'recipe.max_response_length': 64"),
])
def test_global_recipe_refuses_keys_the_runs_take_elsewhere(edit, message):
    with pytest.raises(ConfigError) as exc:
        plan_of(_edited(DEMO, edit))
    assert message in str(exc.value)


def test_per_model_and_per_run_overrides_stay_accepted():
    # an equal global value is only redundant (config/demo.yaml's max_response_length)
    assert plan_of(_edited(DEMO, lambda c: c["recipe"].update(max_response_length=32, train_batch_size=4)))
    # a model recipe and a variant come after the model settings: they do take effect
    plan = plan_of(_edited(DEMO, lambda c: (c["models"]["tiny"].update(recipe={"total_steps": 6}),
                                            c["variants"].update(short={"save_freq": 3}),
                                            c["experiments"]["demo"]["runs"].append("pi1--short"))))
    assert plan.run("tiny", "pi1").steps == [0, 2, 4, 6] and plan.run("tiny", "pi1--short").steps == [0, 3, 6]


# evaluation.extra_args come after the evaluate rule's own options (the last one wins), and their values
# are the ones `rlvr evaluate` refuses in every job
@pytest.mark.parametrize("base, extra, message", [
    (DEMO, "--benchmarks aime24", "--benchmarks is passed by the evaluate rule itself"),
    (DEMO, "--bench aime24", "--benchmarks is passed by the evaluate rule itself"),  # argparse abbreviation
    (DEMO, "--model x", "--model is passed by the evaluate rule itself"),
    (DEMO, "--out=elsewhere", "--out is passed by the evaluate rule itself"),
    (DEMO, "--max-new-tokens 0", "--max-new-tokens is passed by the evaluate rule itself"),
    (DEMO, "--limit 0", "--limit is passed by the evaluate rule itself and would be overridden; remove it (it comes from evaluation.limit)"),
    (DEMO, "--dtype float16", "--dtype is passed by the evaluate rule itself"),
    (DEMO, "--max-func-call 4", "(it comes from evaluation.max_func_call)"),
    (DEMO, "--tool-timeout 1", "(it comes from evaluation.tool_timeout)"),
    (DEMO, "--prompt llama", "(it comes from models.<m>.prompt_type)"),
    (PAPER, "--graders qwen", "--graders would override the graders the evaluate rule passes for "
                              "models.r1-distill-qwen-1.5b (eval_protocol rllm)"),
    (DEMO, "--samples 0", "config key 'evaluation.extra_args': --samples must be >= 1, got 0"),
    (DEMO, "--top-p 2", "--top-p must be in (0, 1]"),
    (DEMO, "--temperature nan", "--temperature must be a finite number"),
    (DEMO, "--grader-workers 0", "--grader-workers must be >= 1"),
    (DEMO, "--batch-size 0", "--batch-size must be >= 1"),
])
def test_eval_extra_args_cannot_override_the_rule_or_fail_every_job(base, extra, message):
    with pytest.raises(ConfigError) as exc:
        plan_of(_edited(base, lambda c: c["evaluation"].update(extra_args=extra)))
    assert message in str(exc.value)


def test_bounds_that_stay_accepted():
    assert plan_of(_edited(TOY, lambda c: (c["score_pool"].update(up_to_step=2), c["datasets"].update(far={"ranks": [16]}))))
    # a smaller per-run batch than the duplicated set's rows is fine (two steps per epoch)
    assert plan_of(_edited(DEMO, lambda c: (c["variants"].update(half={"train_batch_size": 2, "ppo_mini_batch_size": 2}),
                                            c["experiments"]["demo"]["runs"].append("pi1--half"))))
    assert plan_of(_edited(DEMO, lambda c: c["evaluation"].update(extra_args="--samples 2 --temperature 0.5 --top-p 1")))


def test_tool_call_loop_is_passed_to_harness_models_only(paper):
    # the paper's harness ran its Python tool-call loop (4 rounds); the rllm evaluator has none
    assert PAPER["evaluation"]["max_func_call"] == 4
    args = paper.evaluate_args(M15, "pi1")
    assert args[args.index("--max-func-call") + 1] == "4" and args[args.index("--tool-timeout") + 1] == "5.0"
    assert "--max-func-call" not in paper.evaluate_args("r1-distill-qwen-1.5b", "pi1")
    off = plan_of(_edited(PAPER, lambda c: c["evaluation"].update(max_func_call=0)))
    assert "--max-func-call" not in off.evaluate_args(M15, "pi1")
    assert "--max-func-call" not in plan_of(DEMO).evaluate_args("tiny", "pi1")
    fast = plan_of(_edited(PAPER, lambda c: c["evaluation"].update(tool_timeout=2.5))).evaluate_args(M15, "pi1")
    assert fast[fast.index("--tool-timeout") + 1] == "2.5"


def test_select_best_grades_with_the_report_grader_and_every_evaluated_one(paper):
    # prune keeps the best step under each: Table 4's R1-Distill rows use deepscaler_think's best step
    assert paper.select_graders(M15) == ["qwen", "math_verify"]
    assert paper.select_graders("r1-distill-qwen-1.5b") == ["qwen", "math_verify", "deepscaler_think"]
    mv = plan_of(_edited(PAPER, lambda c: c.update(report={"grader": "math_verify"})))
    assert mv.select_graders(M15) == ["math_verify", "qwen"]
    extra = plan_of(_edited(DEMO, lambda c: c["evaluation"].update(extra_args="--graders qwen,deepscaler --samples 1")))
    assert extra.select_graders("tiny") == ["qwen", "deepscaler"]
    # a report grader no evaluation writes is refused at plan time (it stopped select-best in every run)
    with pytest.raises(ConfigError, match=r"config key 'report.grader': 'deepscaler' is not a grader models.tiny "
                                          r"is evaluated with \(qwen, math_verify\)"):
        plan_of(_edited(DEMO, lambda c: c.update(report={"grader": "deepscaler"})))
