"""Shared fixtures: the tiny random Qwen2 (real tokenizer), built once per session on CPU."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from oneshot_rlvr.modeling import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def pi1_file() -> Path:
    return REPO / "resources" / "train" / "one_shot" / "pi1_r128.jsonl"


@pytest.fixture(scope="session")
def fixed_rollout():
    """`make(trainer)`: a fixed batch for one-update tests — 8 random responses of 3-12 tokens to the
    trainer's first prompt, 2 GRPO groups of 4, every third one correct."""
    import random

    import torch

    from oneshot_rlvr.trainer import Rollout

    def make(trainer):
        rng = random.Random(0)
        prompt = trainer.rows[0].prompt_ids
        resp = [[rng.randrange(1000, 5000) for _ in range(rng.randint(3, 12))] for _ in range(8)]
        scores = torch.tensor([float(i % 3 == 0) for i in range(8)])
        groups = torch.tensor([i // 4 for i in range(8)])
        return Rollout([prompt] * 8, resp, groups, [0] * 8, ["stop"] * 8, scores, [False] * 8)

    return make


@pytest.fixture(scope="session")
def one_update():
    """`run(trainer, ro)`: reference log-probs (when the run has a KL term), then step 1's update on `ro`."""
    from oneshot_rlvr import algos

    def run(trainer, ro):
        ref = trainer._logprobs(trainer.ref_model, ro, False)[0] if trainer.ref_model is not None else None
        return trainer.update(1, ro, algos.grpo_advantages(ro.scores, ro.group_ids), ref, None)

    return run


@pytest.fixture(scope="session")
def multirank_update():
    """`run(out_dir, model_dir, pi1_file, *args)`: tests/multirank_update.py (one update on a fixed batch; its
    docstring lists `args`) on one process and under torchrun with 2 ranks (gloo, a free port); returns the two
    saved results (one process's, two ranks')."""
    import socket
    import subprocess
    import sys

    import torch

    script = str(REPO / "tests" / "multirank_update.py")

    def run(out_dir, model_dir, pi1_file, *args):
        one, two = Path(out_dir) / "one.pt", Path(out_dir) / "two.pt"
        head = [str(model_dir), str(pi1_file)]
        r1 = subprocess.run([sys.executable, script, *head, str(one), *args], capture_output=True, text=True,
                            timeout=600)
        assert r1.returncode == 0, r1.stderr[-3000:]
        with socket.socket() as sock:  # a free port (a fixed one can still be held by an earlier test's store)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        r2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                             str(port), script, *head, str(two), *args], capture_output=True, text=True, timeout=600)
        assert r2.returncode == 0, r2.stderr[-3000:]
        return torch.load(one), torch.load(two)

    return run
