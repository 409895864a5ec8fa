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


@pytest.mark.parametrize("flags, named", [
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--heads", "2", "--kv-heads", "3"], "--kv-heads 3 must divide --heads 2"),
    (["--threads", "-2"], "--threads"),
    (["--minutes", "-1"], "--minutes"),  # used to save an untrained model with exit 0
    (["--intermediate-size", "0"], "--intermediate-size"),
    (["--corpus-size", "2"], "--corpus-size"),  # fewer examples than one batch: no batch at all
])
def test_bad_flags_fail_up_front_and_save_nothing(world, tmp_path, capsys, flags, named):
    out = tmp_path / "m"
    assert rlvr(["pretrain-toy", "--world", str(world), "--out", str(out), *TINY, *flags]) == 2
    assert named in capsys.readouterr().err
    assert not out.exists()


def test_minutes_cap_before_the_first_step_saves_nothing(world, tmp_path):
    from oneshot_rlvr.errors import DataError
    from oneshot_rlvr.toy.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(steps=3, batch_size=4, corpus_size=8, hidden_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                         minutes=1e-9, progress=False)
    with pytest.raises(DataError, match="before the first training step"):
        pretrain(world, tmp_path / "m", cfg)
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- rlvr build-tiny-model


def test_build_tiny_model_refuses_to_overwrite_a_model(tmp_path, capsys):
    out = tmp_path / "m"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"trained weights")
    assert rlvr(["build-tiny-model", "--out", str(out), "--layers", "1"]) == 2
    assert "already holds a model; pass --overwrite" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == b"trained weights"
    assert (out / "config.json").read_text() == "{}"
    # the explicit flag replaces it (as pretrain-toy's --overwrite does)
    assert rlvr(["build-tiny-model", "--out", str(out), "--layers", "1", "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1


@pytest.mark.parametrize("flags, named", [
    (["--layers", "-1"], "--layers"),
    (["--layers", "0"], "--layers"),  # 0 was silently the default depth
    (["--hidden-size", "0"], "--hidden-size"),
    (["--hidden-size", "100"], "--hidden-size"),  # head_dim 25 < 32
])
def test_build_tiny_model_bad_shape_names_the_flag(tmp_path, capsys, flags, named):
    out = tmp_path / "m"
    assert rlvr(["build-tiny-model", "--out", str(out), *flags]) == 2
    assert named in capsys.readouterr().err
    assert not out.exists()
