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
    # verl's clip ratio counts responses at the cap; the fork's schedule gives step 1 lr 0, then the lr
    assert all(l["response_length/clip_ratio"] >= l["response_length/truncated_ratio"] for l in lines)
    assert all(l["response_length/clip_ratio"] == 0.0 for l in lines if l["response_length/max"] < 32)
    assert [l["lr"] for l in lines] == [0.0, 1e-6, 1e-6]
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


def test_recomputed_old_logprobs_give_the_shortcuts_update(tmp_path, tiny_model_dir, pi1_file):
    """`recompute_old_logprobs: true` (the fork's separate old-log-prob pass) hands the update real old log-probs;
    in fp32 the ratio is then 1 to rounding, so the step equals the on-policy shortcut's (ratio exactly 1)."""
    from safetensors.torch import load_file

    from oneshot_rlvr.trainer import GRPOTrainer

    seen = []

    class Spy(GRPOTrainer):
        def update(self, step, ro, advantages, ref_lp, old_lp):
            seen.append(old_lp is not None)
            return super().update(step, ro, advantages, ref_lp, old_lp)

    out = {}
    for flag in (False, True):
        cfg = from_dict({"model": str(tiny_model_dir), "train_file": str(pi1_file), "train_batch_size": 2, "n": 4,
                         "max_response_length": 16, "engine": "hf", "total_steps": 1, "save_freq": 1, "lr": 1e-3,
                         "lr_schedule": "hf", "temperature": 1.0, "progress": False, "tensorboard": False,
                         "recompute_old_logprobs": flag})
        Spy(cfg, tmp_path / str(flag), reward_fn=_parity_reward).train()
        rec = json.loads((tmp_path / str(flag) / "metrics.jsonl").read_text())
        out[flag] = (rec, load_file(str(tmp_path / str(flag) / "checkpoints" / "step_1" / "model.safetensors")))
    assert seen == [False, True]
    (a, wa), (b, wb) = out[False], out[True]
    assert a["grad_norm"] > 0 and b["pg_clipfrac"] == 0.0
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6


def _parity_reward(prompts, responses, gts, response_ids=None):
    from oneshot_rlvr.rewards import RewardBatch

    scores = [float(ids[0] % 2 == 0) for ids in response_ids]
    return RewardBatch(scores=scores, correct=[s > 0 for s in scores], boxed=[False] * len(scores))


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown config key 'entropy_coeff'.*entropy_coef"):
        from_dict({"entropy_coeff": 0.0})


@pytest.mark.parametrize("data,key", [
    ({"total_steps": -1}, "total_steps"), ({"lr": "fast"}, "lr"), ({"kl_type": "k9"}, "kl_type"),
    ({"temperature": 0}, "temperature"), ({"n": 2.5}, "n"), ({"engine": "sglang"}, "engine"),
    ({"ppo_mini_batch_size": 3}, "ppo_mini_batch_size"),
    # every numeric key: finite and in range (these used to crash later, or train on NaN)
    ({"betas": [2.0, 0.9]}, r"betas\[0\]"), ({"betas": [0.9, float("nan")]}, r"betas\[1\]"),
    ({"adam_eps": float("nan")}, "adam_eps"), ({"adam_eps": 0.0}, "adam_eps"), ({"adv_eps": float("nan")}, "adv_eps"),
    ({"adv_eps": 0}, "adv_eps"), ({"grader_workers": -2}, "grader_workers"), ({"grader_workers": 0}, "grader_workers"),
    ({"grader_timeout": -1}, "grader_timeout"), ({"grader_timeout": float("inf")}, "grader_timeout"),
    ({"pg_coef": float("inf")}, "pg_coef"), ({"pg_coef": -1.0}, "pg_coef"), ({"grad_clip": 0}, "grad_clip"),
    ({"top_k": -2}, "top_k"), ({"gpu_memory_utilization": 0}, "gpu_memory_utilization"),
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"), ({"max_num_seqs": 0}, "max_num_seqs"),
    ({"lr_warmup_steps": -1}, "lr_warmup_steps"), ({"verl02_dp_size": 0}, "verl02_dp_size"),
    ({"engine": "hf", "hf_static_cache": "on", "deepspeed": True, "zero_stage": 3}, "hf_static_cache"), ({"seed": -1}, "seed"), ({"seed": 2 ** 40}, "seed"),
    ({"label_override": " "}, "label_override"), ({"temperature": float("nan")}, "temperature"),
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


def test_empty_labels_of_the_real_pools_are_trained_on(tmp_path, tiny_model_dir):
    """DSR-sub row 265 and two MATH 7.5k rows have ground truth "": the authors trained on them (a response without
    \\boxed{} extracts "" from the prompt's "\\boxed{}" and scores 1), so the full-set runs must load them."""
    from oneshot_rlvr.data import load_train_rows
    from oneshot_rlvr.modeling import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    pool = REPO / "resources" / "train" / "dsr_sub.jsonl"
    rows, _ = load_train_rows(pool, tok, 1024)
    assert len(rows) == 1209 and [r.index for r in rows if r.ground_truth == ""] == [265]
    math_rows, _ = load_train_rows(REPO / "resources" / "train" / "math_train_7500.jsonl", tok, 1024)
    assert sum(r.ground_truth == "" for r in math_rows) == 2

    lines = pool.read_text().splitlines()
    f = tmp_path / "empty_label.jsonl"
    f.write_text("\n".join([lines[265], lines[265], lines[124], lines[124]]) + "\n")
    cfg = {"model": str(tiny_model_dir), "train_file": str(f), "train_batch_size": 4, "n": 2, "total_steps": 1,
           "max_response_length": 4, "engine": "hf", "progress": False}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    res = rlvr("train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr[-3000:]
    step = json.loads((tmp_path / "o" / "metrics.jsonl").read_text().splitlines()[0])
    assert set(step["acc/by_index"]) == {"124", "265"}
    # a random model writes no \\boxed{}: every response to the empty-label row is "correct", as in the authors' code
    assert step["acc/by_index"]["265"] == 1.0


def test_rows_without_an_index_keep_their_position(tmp_path, tiny_model_dir, pi1_file):
    """A missing extra_info (or index) is the row's position, as before the stricter checks of a given index."""
    from oneshot_rlvr.data import load_train_rows
    from oneshot_rlvr.modeling import load_tokenizer

    rows = [json.loads(l) for l in pi1_file.read_text().splitlines()[:3]]
    del rows[0]["extra_info"]
    rows[1]["extra_info"] = {}
    rows[2]["extra_info"]["index"] = 7
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded, _ = load_train_rows(f, load_tokenizer(str(tiny_model_dir)), 1024)
    assert [r.index for r in loaded] == [0, 1, 7]


def test_tokenizer_hub_id_is_not_taken_for_a_missing_directory():
    from oneshot_rlvr.modeling import load_tokenizer

    with pytest.raises(RlvrError, match="cannot load tokenizer from no-such-org/no-such-model"):  # offline: not found
        load_tokenizer("no-such-org/no-such-model")


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


def test_config_text_errors_are_one_line(tmp_path, capsys):
    """Malformed config input never reaches the user as a traceback: a --set value that is not YAML, a
    key that is not a string (difflib raised TypeError), a file that is not UTF-8 — each a ConfigError
    naming the key or file."""
    from oneshot_rlvr import cli
    from oneshot_rlvr.config import parse_overrides

    rc = cli.main(["train", "--out", str(tmp_path / "x"), "--set", "lr=[1,", "--print-config"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().startswith("rlvr train: error: --set lr: value '[1,' is not valid YAML"), err
    with pytest.raises(ConfigError, match="--set lr"):
        parse_overrides(["lr=[1,"])
    with pytest.raises(ConfigError, match="config keys must be names, got the key 1"):
        from_dict({1: "x"})
    bad = tmp_path / "run.yaml"
    bad.write_bytes("lr: 1.0e-6  # r\u00e9glage\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"run\.yaml: line \d+ is not UTF-8 text"):
        load_run_config(bad)
    assert not (tmp_path / "x").exists()


def test_run_config_refuses_nan_before_writing(tmp_path, capsys):
    """`rlvr run-config` validates like `rlvr train`: a NaN adv_eps no longer lands in RUN.yaml."""
    from oneshot_rlvr import cli

    out = tmp_path / "RUN.yaml"
    assert cli.main(["run-config", "--values", '{"adv_eps": NaN}', "--out", str(out)]) == 2
    assert "config key 'adv_eps' must be a finite number > 0, got nan" in capsys.readouterr().err
    assert not out.exists()


def test_keys_that_may_differ_on_resume():
    """Speed, memory, logging and output-schedule keys may change when a run resumes; keys of the math,
    the data or the random draws may not. Micro-batching may change only where `agg` is invariant to it."""
    from oneshot_rlvr.config import resume_conflicts

    old = RunConfig().to_dict()
    same = RunConfig(progress=False, tensorboard=False, total_steps=5000, save_freq=7, logprob_chunk_tokens=64,
                     torch_compile=True, gradient_checkpointing=False, grader_workers=3, max_num_seqs=8)
    assert resume_conflicts(old, same) == []
    got = resume_conflicts(old, RunConfig(lr=0.5, train_file="other.jsonl", hf_static_cache="on", engine="hf"))
    assert [k for k, _, _ in got] == ["train_file", "engine", "hf_static_cache", "lr"]
    assert ("lr", 1e-6, 0.5) in got
    # verl02 normalises per micro-batch: the partition is part of the math
    assert [k for k, _, _ in resume_conflicts(old, RunConfig(micro_batch_tokens=1000))] == ["micro_batch_tokens"]
    tm = RunConfig(agg="token-mean").to_dict()
    assert resume_conflicts(tm, RunConfig(agg="token-mean", micro_batch_tokens=1000, sequence_packing=False)) == []
    # a key the saved config lacks (added since) counts as its default; a key RunConfig dropped is ignored
    partial = {k: v for k, v in old.items() if k != "clip_high"} | {"retired_key": 1}
    assert resume_conflicts(partial, RunConfig()) == []
    assert [k for k, _, _ in resume_conflicts(partial, RunConfig(clip_high=0.28))] == ["clip_high"]
