"""A compact byte-level BPE tokenizer for the toy world, saved as a Hugging Face tokenizer folder.

Same conventions as the real Qwen2.5-Math tokenizer where the pipeline can see them: byte-level BPE
with digits split one per token, `<|endoftext|>` (eos and pad), `<|im_start|>`, `<|im_end|>` as
special tokens, `\\boxed{` as one added token, and the chat template copied verbatim from
resources/tokenizers/qwen2.5-math-1.5b/tokenizer_config.json, so prompt construction is the same
code path as for the real model. Only the vocabulary is small (~1k), which keeps a miniature
model's embedding and softmax cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from oneshot_rlvr.errors import DataError

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BOXED_TOKEN = "\\boxed{"


def real_chat_template(tokenizer_dir: Path | None = None) -> str:
    from oneshot_rlvr import TOKENIZER_DIR

    path = Path(tokenizer_dir or TOKENIZER_DIR) / "tokenizer_config.json"
    try:
        cfg = json.loads(path.read_text())
        return cfg["chat_template"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read 'chat_template' of the real tokenizer ({exc})") from None


def build_tokenizer(corpus: Iterable[str], out_dir: Path, vocab_size: int = 1024):
    """Train the BPE on `corpus`, save it to `out_dir` and return the loaded HF tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\d"), behavior="isolated"),  # one digit per token, as Qwen2
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(BOXED_TOKEN, normalized=False, special=False)])

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    fast.chat_template = real_chat_template()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return AutoTokenizer.from_pretrained(str(out_dir))
