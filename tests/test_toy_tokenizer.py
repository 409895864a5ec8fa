"""The toy tokenizer: lossless round trip, the special tokens the pipeline relies on, the real chat template."""

from __future__ import annotations

import json

import pytest

from oneshot_rlvr import TOKENIZER_DIR
from oneshot_rlvr.toy.tokenizer import build_tokenizer
from oneshot_rlvr.toy.world import tokenizer_corpus


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    build_tokenizer(tokenizer_corpus(seed=0, n=300), out, vocab_size=512)
    return AutoTokenizer.from_pretrained(str(out)), AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


@pytest.mark.parametrize("text", [
    "Maya has 14 books. 14 + 14 = 28. So the answer is \\boxed{28}.",
    "What is 5/6 * 7/9?  \\boxed{\\frac{35}{54}}\n\nnew line, tabs\tand unicode: ∑ héllo 日本 🙂",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nok<|im_end|><|endoftext|>",
    "",
])
def test_round_trip_is_lossless(toks, text):
    tok, _ = toks
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_special_tokens_and_digits(toks):
    tok, _ = toks
    for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "\\boxed{"]:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids)[0] == t
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|endoftext|>"
    assert tok(" 9716", add_special_tokens=False)["input_ids"][-4:] == [tok.convert_tokens_to_ids(d) for d in "9716"]
    # the \boxed{ token survives decoding with special tokens skipped; the chat markers do not
    ids = tok("<|im_end|>\\boxed{3}", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "\\boxed{3}"
    assert len(tok) < 1100


def test_chat_template_equals_the_real_qwen_math_template(toks):
    tok, real = toks
    assert tok.chat_template == real.chat_template
    assert tok.chat_template == json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())["chat_template"]
    for msgs in ([{"role": "user", "content": "What is 1 + 2? Let's think step by step."}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 * 3?"}],
                 [{"role": "user", "content": "q"}, {"role": "assistant", "content": "\\boxed{1}"}]):
        for gen in (True, False):
            mine = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            assert mine == real.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            ids = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            assert tok.decode(ids) == mine
