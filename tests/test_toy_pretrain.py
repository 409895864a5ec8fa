"""rlvr pretrain-toy on a tiny budget: a loadable Qwen2 whose greedy output decodes; same seed, same model."""

from __future__ import annotations

import json

import pytest

from oneshot_rlvr.cli import main as rlvr
from oneshot_rlvr.toy.world import held_out_problems

TINY = ["--steps", "3", "--batch-size", "4", "--corpus-size", "48", "--hidden-size", "64", "--layers", "1",
        "--heads", "2", "--kv-heads", "1", "--intermediate-size", "64", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "world"
    assert rlvr(["make-toy-world", "--out", str(out), "--seed", "1", "--pool-size", "12",
                 "--test-per-category", "5", "--vocab-size", "400"]) == 0
    return out


@pytest.fixture(scope="module")
def model_dir(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    assert rlvr(["pretrain-toy", "--world", str(world), "--out", str(out), "--seed", "5", *TINY]) == 0
    return out


def test_pretrained_model_loads_and_generates(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    cfg = model.config
    assert type(model).__name__ == "Qwen2ForCausalLM" and cfg.tie_word_embeddings
    assert cfg.hidden_size // cfg.num_attention_heads >= 32
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert next(model.parameters()).dtype == torch.float32
    assert cfg.vocab_size >= len(tok)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert set(model.generation_config.eos_token_id) == {im_end, tok.eos_token_id}
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                     add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    new = out[0, enc["input_ids"].shape[1]:]
    assert 1 <= len(new) <= 12
    assert isinstance(tok.decode(new, skip_special_tokens=True), str)
    info = json.loads((model_dir / "pretrain.json").read_text())
    assert info["steps_done"] == 3 and not info["cut_by_minutes"] and info["final_loss"] > 0


def test_same_seed_gives_the_same_weights(world, model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    again = tmp_path / "again"
    assert rlvr(["pretrain-toy", "--world", str(world), "--out", str(again), "--seed", "5", *TINY]) == 0
    a, b = load_file(model_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = tmp_path / "other"
    assert rlvr(["pretrain-toy", "--world", str(world), "--out", str(other), "--seed", "6", *TINY]) == 0
    c = load_file(other / "model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_corpus_masks_prompts_and_avoids_pool_and_test_problems(world):
    from transformers import AutoTokenizer

    from oneshot_rlvr.toy.pretrain import IGNORE, PretrainConfig, build_examples

    tok = AutoTokenizer.from_pretrained(str(world / "tokenizer"))
    examples = build_examples(tok, world, PretrainConfig(corpus_size=200))
    banned = held_out_problems(world)
    assert len(banned) == 12 + 6 * 5
    n_suffix = 0
    for ids, labels in examples:
        text = tok.decode(ids)
        prompt_len = labels.index(next(x for x in labels if x != IGNORE))
        prompt, response = tok.decode(ids[:prompt_len]), tok.decode(ids[prompt_len:])
        assert prompt.endswith("<|im_start|>assistant\n") and "\\boxed{" in response
        assert response.endswith("<|im_end|><|endoftext|>")
        assert labels[prompt_len:] == ids[prompt_len:]
        problem = prompt.split("<|im_start|>user\n")[1].split("<|im_end|>")[0]
        n_suffix += problem.endswith("within \\boxed{}.")
        assert problem.replace(" Let's think step by step and output the final answer within \\boxed{}.", "") not in banned
        assert text == prompt + response
    assert 50 < n_suffix < 150  # both prompt styles (training suffix and bare evaluation prompt)


def test_refuses_to_overwrite_a_model(world, model_dir, capsys):
    assert rlvr(["pretrain-toy", "--world", str(world), "--out", str(model_dir), *TINY]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert rlvr(["pretrain-toy", "--world", str(model_dir), "--out", str(model_dir / "x"), *TINY]) == 2
