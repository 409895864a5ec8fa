"""The miniature world inside the pipeline: toy benchmarks, stop ids from the tokenizer, the
config/miniature.yaml registry, the toy.smk plan, and the seed-aggregated report."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from oneshot_rlvr import RESOURCES
from oneshot_rlvr.benchmarks import TOY, TOY_CATEGORIES, load_benchmark, parse_benchmark_list, stop_token_ids
from oneshot_rlvr.errors import ConfigError, DataError
from oneshot_rlvr.evaluate import stop_settings
from oneshot_rlvr.registry import load_plan, validate_workflow_config
from oneshot_rlvr.toy import report
from oneshot_rlvr.toy.pretrain import PretrainConfig
from oneshot_rlvr.toy.tasks import CATEGORIES, SUBJECTS

REPO = Path(__file__).resolve().parents[1]
WORLD = RESOURCES / "toy"


# --------------------------------------------------------------------------- benchmarks


def test_toy_benchmark_names_match_the_generator():
    assert TOY_CATEGORIES == tuple(CATEGORIES)
    assert parse_benchmark_list("toy_all") == list(TOY)
    assert "toy" not in parse_benchmark_list("all")  # the paper's "all" stays the paper's eight


def test_toy_benchmarks_load_from_the_world():
    toy = load_benchmark("toy")
    assert len(toy) == 600
    # interleaved: the first 6k problems hold k of every category, so --limit stays balanced
    assert [p.subject for p in toy[:6]] == [SUBJECTS[c] for c in CATEGORIES]
    limited = load_benchmark("toy", limit=120)
    assert {p.subject: sum(q.subject == p.subject for q in limited) for p in limited} == {s: 20 for s in SUBJECTS.values()}
    rows = [json.loads(line) for line in (WORLD / "eval" / "toy_fractions" / "test.jsonl").open()]
    fr = load_benchmark("toy_fractions")
    assert [p.gold for p in fr] == [r["answer"] for r in rows]
    assert all(p.subject == "Fractions" for p in fr)
    assert fr[0].question == rows[0]["problem"]


def test_toy_eval_root_from_environment(tmp_path, monkeypatch):
    bench = tmp_path / "eval" / "toy_addition"
    bench.mkdir(parents=True)
    row = {"problem": "What is 1 + 1?", "answer": "2", "subject": "Addition Chains", "level": 1, "unique_id": "a/0"}
    (bench / "test.jsonl").write_text(json.dumps(row) + "\n")
    monkeypatch.setenv("RLVR_TOY_EVAL", str(tmp_path / "eval"))
    [p] = load_benchmark("toy_addition")
    assert (p.gold, p.id, p.subject) == ("2", "a/0", "Addition Chains")
    (bench / "test.jsonl").write_text(json.dumps({k: v for k, v in row.items() if k != "answer"}) + "\n")
    with pytest.raises(DataError, match=r"test.jsonl:1: missing field 'answer'"):
        load_benchmark("toy_addition")


def test_stop_token_ids_come_from_the_tokenizer():
    from transformers import AutoTokenizer

    toy_tok = AutoTokenizer.from_pretrained(WORLD / "tokenizer")
    want = toy_tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert stop_token_ids(toy_tok) == want and want != [151645, 151643]
    assert stop_settings("/runs/toy/step_8", {"model_type": "qwen2"}, toy_tok)[1] == want
    qwen_tok = AutoTokenizer.from_pretrained(RESOURCES / "tokenizers" / "qwen2.5-math-1.5b")
    assert stop_settings("Qwen/Qwen2.5-Math-1.5B", {}, qwen_tok) == (
        ["</s>", "<|im_end|>", "<|endoftext|>"], [151645, 151643])
    assert stop_settings("meta-llama/Llama-3.2-3B-Instruct", {"model_type": "llama"}, toy_tok)[1] == []


# --------------------------------------------------------------------------- registry and workflow


def test_miniature_config_validates_and_plans_the_must_show_runs():
    plan = load_plan(REPO / "config" / "miniature.yaml", root=REPO)
    runs = {r for _, r in plan.experiments["MS"]}
    assert {"base", "toy_pool", "pi1", "pi1--seed3", "random1s3--seed3", "toy_pool--format_s2"} <= runs
    # the shipped base model, nothing to pretrain; step 0 of every run is that model
    assert plan.model_path("toy") == "resources/toy/model" and plan.built_model_dir("toy") is None
    assert plan.evaluate_model("toy", "pi1", 0) == "resources/toy/model"
    assert plan.run("toy", "pi1").benchmarks == ["toy"]
    # three different training seeds per condition (RunConfig's default seed is 1)
    seeds = {plan.run("toy", r).run_config.get("seed", 1) for r in ("pi1", "pi1--seed2", "pi1--seed3")}
    assert seeds == {1, 2, 3}


def test_shipped_model_is_the_configured_pretraining():
    """resources/toy/model is what `models.toy` (seed, toy.steps) would pretrain on this world, and it
    loads with its tokenizer and stops at the world's end-of-turn tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    toy = yaml.safe_load((REPO / "config" / "miniature.yaml").read_text())["models"]["toy"]
    model_dir = REPO / toy["path"]
    record = json.loads((model_dir / "pretrain.json").read_text())
    assert record["world"] == "resources/toy" and record["world_seed"] == toy["toy"]["world_seed"]
    assert record["config"]["seed"] == toy["seed"]
    assert record["steps_done"] == record["config"]["steps"] == toy["toy"]["steps"]
    assert not record["cut_by_minutes"]
    # `rlvr pretrain-toy`'s defaults are the shipped model's recipe (only the seed and the bar aside)
    defaults = asdict(PretrainConfig())
    assert {k: v for k, v in record["config"].items() if k != "progress"} == \
        {k: v for k, v in defaults.items() if k != "progress"}
    manifest = json.loads((WORLD / "world.json").read_text())
    assert (manifest["seed"], manifest["pool_size"]) == (toy["toy"]["world_seed"], toy["toy"]["pool_size"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert (model_dir / "tokenizer.json").read_bytes() == (WORLD / "tokenizer" / "tokenizer.json").read_bytes()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert sum(p.numel() for p in model.parameters()) == record["n_params"]
    assert list(model.generation_config.eos_token_id) == tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])


def test_schema_rejects_unknown_toy_keys():
    cfg = yaml.safe_load((REPO / "config" / "miniature.yaml").read_text())
    cfg["models"]["toy"]["toy"]["layers"] = 3
    with pytest.raises(ConfigError, match="layers"):
        validate_workflow_config(cfg, root=REPO)
    cfg = yaml.safe_load((REPO / "config" / "miniature.yaml").read_text())
    cfg["experiments"]["MS"]["benchmarks"] = ["toy_geometry"]
    with pytest.raises(ConfigError, match="toy_geometry"):
        validate_workflow_config(cfg, root=REPO)


def _dry_run(tmp_path, *args):
    for name in ("resources", "config"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--nolock", "-n", "-p", "--configfile", "config/miniature.yaml", "--forcerun", "make_toy_world", *args,
           "--", "results/miniature/runs/toy/base/eval/chunk_0.json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    return out


def test_toy_rules_use_the_shipped_model(tmp_path):
    pytest.importorskip("snakemake")
    out = _dry_run(tmp_path)
    # a forced world rebuild reproduces the committed world (seed and pool size from its world.json)
    assert "rlvr make-toy-world --out resources/toy --seed 0 --pool-size 64 --overwrite" in out
    assert "pretrain-toy" not in out and "build_tiny_model" not in out
    assert "rlvr evaluate --model resources/toy/model --out results/miniature/runs/toy/base/eval/step_0" in out
    assert "--benchmarks toy --prompt qwen25-math-cot --max-new-tokens 128 --engine hf --limit 120" in out


def test_documented_switch_re_pretrains(tmp_path):
    """The one-line override written in config/miniature.yaml plans world, then pretraining, then the
    evaluation of the freshly pretrained model."""
    pytest.importorskip("snakemake")
    text = (REPO / "config" / "miniature.yaml").read_text()
    (switch,) = [line.split("#", 1)[1].strip() for line in text.splitlines() if "--config 'models=" in line]
    args = shlex.split(switch)
    assert args[0] == "--config" and len(args) == 2
    out = _dry_run(tmp_path, *args, "--cores", "2")  # pretraining takes both cores (toy.threads, default 2)
    assert "rlvr make-toy-world --out resources/toy --seed 0 --pool-size 64 --overwrite" in out
    steps = yaml.safe_load(text)["models"]["toy"]["toy"]["steps"]
    assert (f"rlvr pretrain-toy --world resources/toy --out results/miniature/models/toy --seed 0 --steps {steps}"
            " --threads 2") in out
    assert "rlvr evaluate --model results/miniature/models/toy --out results/miniature/runs/toy/base" in out


# --------------------------------------------------------------------------- report


def test_condition_groups_seeds():
    assert report.condition("pi1--seed2") == "pi1"
    assert report.condition("random1s3--seed3") == "random1"
    assert report.condition("toy_pool--format_s2") == "toy_pool--format"
    assert report.condition("toy_pool--format") == "toy_pool--format"
    assert report.condition("pi1--t5r1") == "pi1--t5r1"


def test_mean_std_ci():
    mean, std, half, n = report.mean_std_ci([10.0, 20.0, 30.0])
    assert (mean, std, n) == (20.0, 10.0, 3)
    assert half == pytest.approx(4.303 * 10.0 / 3 ** 0.5)
    assert report.fmt([5.0]) == "5.0"


def test_report_aggregates_seeds(tmp_path):
    rows = []

    def add(run, step, bench, grader, metric, value):
        rows.append({"model": "toy", "run": run, "step": step, "benchmark": bench, "grader": grader,
                     "metric": metric, "value": value})

    add("base", 0, "toy", "qwen", "accuracy", 10.0)
    add("base", 0, "toy", "qwen", "accuracy/Fractions", 4.0)
    for run, accs in {"pi1": (10.0, 30.0, 20.0), "pi1--seed1": (10.0, 14.0, 22.0), "pi1--seed2": (10.0, 40.0, 24.0)}.items():
        for step, a in zip((0, 8, 16), accs):
            add(run, step, "toy", "qwen", "accuracy", a)
            add(run, step, "toy", "qwen", "accuracy/Fractions", a / 2)
        add(run, 16, "train", "", "acc/mean", 0.5)
    path = tmp_path / "metrics.csv"
    import csv

    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert report.main(["--metrics", str(path), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "miniature.md").read_text()
    assert "| pi1 | 3 | 22.0 ± 2.0 [17.0, 27.0] | 30.7 ± 9.0" in md  # last = step 16, best = max per run
    assert "| base | 1 | 10.0 | 10.0 |" in md
    assert "| pi1 | 11.0 ± 1.0 |" in md  # Fractions at the last step
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0
    assert report.main(["--metrics", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o2")]) == 2
