"""`rlvr train` end to end on CPU (tiny model, real reward, hf engine) and its bad-input errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from oneshot_rlvr.config import RunConfig, from_dict, load_run_config
from oneshot_rlvr.errors import ConfigError, DataError, RlvrError, TrainingError

REPO = Path(__file__).resolve().parents[1]


def rlvr(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "oneshot_rlvr.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_defaults_are_the_paper_pi1_recipe():
    c = RunConfig()
    assert (c.train_batch_size, c.n, c.temperature, c.top_p) == (128, 8, 0.6, 1.0)
    assert (c.max_prompt_length, c.max_response_length) == (1024, 3072)
    assert (c.lr, c.weight_decay, c.betas, c.grad_clip, c.clip_low, c.clip_high) == (1e-6, 0.01, [0.9, 0.999], 1.0, 0.2, 0.2)
    assert (c.kl_type, c.kl_coef, c.entropy_coef, c.pg_coef) == ("low_var_kl", 0.001, 0.001, 1.0)
    assert (c.ppo_epochs, c.mini_batch_prompts, c.save_freq, c.total_steps, c.seed) == (1, 128, 20, 2000, 1)
    assert c.grader == "deepscaler" and c.reward == "outcome" and c.grade_prompt_and_response


@pytest.mark.slow
def test_train_three_steps_writes_every_output(tmp_path, tiny_model_dir, pi1_file):
    cfg = {"model": str(tiny_model_dir), "train_file": str(pi1_file), "train_batch_size": 4, "n": 4,
           "max_response_length": 32, "engine": "hf", "total_steps": 3, "save_freq": 2, "progress": False}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "train"
    res = rlvr("train", "--config", str(tmp_path / "run.yaml"), "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [1, 2, 3]
    for key in ["reward/mean", "acc/mean", "acc/by_index", "entropy", "response_length/mean", "response_length/max",
                "response_length/clip_ratio", "kl", "pg_loss", "pg_clipfrac", "grad_norm", "lr", "boxed_ratio",
                "grader/timeouts", "prompts/dropped_overlong", "time/rollout", "time/reward", "time/logprob",
                "time/update"]:
        assert key in lines[0], key
    assert set(lines[0]["acc/by_index"]) == {"124"}  # pi_1 is DSR-sub index 124
    assert all(l["response_length/max"] <= 32 for l in lines)
    done = json.loads((out / "done.json").read_text())
    assert done == {"steps": [0, 2, 3], "final_step": 3}
    from transformers import AutoModelForCausalLM

    m3 = AutoModelForCausalLM.from_pretrained(out / "checkpoints" / "step_3")
    m0 = AutoModelForCausalLM.from_pretrained(out / "checkpoints" / "step_0")
    assert json.loads((out / "checkpoints" / "step_3" / "config.json").read_text())["dtype"] == "float32"
    assert any(not torch.equal(a, b) for a, b in zip(m0.parameters(), m3.parameters()))
    assert (out / "tb").is_dir() and any((out / "tb").iterdir())
    # a second run finds the final state and does nothing more
    before = (out / "metrics.jsonl").read_text()
    res2 = rlvr("train", "--config", str(tmp_path / "run.yaml"), "--out", str(out))
    assert res2.returncode == 0 and (out / "metrics.jsonl").read_text() == before


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown config key 'entropy_coeff'.*entropy_coef"):
        from_dict({"entropy_coeff": 0.0})


@pytest.mark.parametrize("data,key", [
    ({"total_steps": -1}, "total_steps"), ({"lr": "fast"}, "lr"), ({"kl_type": "k9"}, "kl_type"),
    ({"temperature": 0}, "temperature"), ({"n": 2.5}, "n"), ({"engine": "sglang"}, "engine"),
    ({"ppo_mini_batch_size": 3}, "ppo_mini_batch_size"),
])
def test_bad_values_are_named(data, key):
    with pytest.raises(ConfigError, match=key):
        from_dict(data)


def test_cli_reports_user_errors_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("entropy_coeff: 0.0\n")
    res = rlvr("train", "--config", str(bad), "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert "unknown config key 'entropy_coeff'" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()
    res = rlvr("train", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "config file not found" in res.stderr


def test_missing_model_path_is_named(tmp_path, pi1_file):
    res = rlvr("train", "--set", f"model={tmp_path}/nope", "--set", f"train_file={pi1_file}", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "model directory not found" in res.stderr and "nope" in res.stderr
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


def test_missing_ground_truth_names_the_row(tmp_path, tiny_model_dir, pi1_file):
    rows = [json.loads(l) for l in pi1_file.read_text().splitlines()[:4]]
    del rows[2]["reward_model"]["ground_truth"]
    f = tmp_path / "bad.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = from_dict({"model": str(tiny_model_dir), "train_file": str(f), "train_batch_size": 4, "n": 2,
                     "engine": "hf", "progress": False})
    from oneshot_rlvr.trainer import GRPOTrainer

    with pytest.raises(DataError, match=r"row 2: missing reward_model.ground_truth"):
        GRPOTrainer(cfg, tmp_path / "o").setup()


def test_nan_loss_stops_before_the_update(tmp_path, tiny_model_dir, pi1_file, monkeypatch):
    from oneshot_rlvr import trainer as tr

    cfg = from_dict({"model": str(tiny_model_dir), "train_file": str(pi1_file), "train_batch_size": 2, "n": 2,
                     "max_response_length": 4, "engine": "hf", "total_steps": 2, "progress": False,
                     "tensorboard": False, "save_freq": 1})

    def nan_reward(prompts, responses, gts, response_ids=None):
        from oneshot_rlvr.rewards import RewardBatch

        return RewardBatch(scores=[0.0, 1.0] * (len(responses) // 2), correct=[False] * len(responses),
                           boxed=[False] * len(responses))

    orig = tr.algos.kl_penalty
    monkeypatch.setattr(tr.algos, "kl_penalty", lambda *a, **k: orig(*a, **k) * float("nan"))
    t = tr.GRPOTrainer(cfg, tmp_path / "o", reward_fn=nan_reward)
    with pytest.raises(TrainingError, match=r"step 1: non-finite kl"):
        t.train()
    # the step-0 checkpoint is intact and no state past it was written
    assert (tmp_path / "o" / "checkpoints" / "step_0" / "model.safetensors").is_file()
    assert not (tmp_path / "o" / "checkpoints" / "step_1").exists()
    assert not (tmp_path / "o" / "done.json").exists()
    assert issubclass(TrainingError, RlvrError)


def test_set_overrides_and_print_config(tmp_path):
    res = rlvr("train", "--set", "entropy_coef=0", "--set", "temperature=1.0", "--out", str(tmp_path), "--print-config")
    assert res.returncode == 0
    printed = yaml.safe_load(res.stdout)
    assert printed["entropy_coef"] == 0 and printed["temperature"] == 1.0 and printed["kl_coef"] == 0.001
    assert load_run_config(None, {"lr": "1e-5"}).lr == 1e-5
