"""Prompt templates: the evaluation harness's zero-shot templates, the training chat template, ARC.

The evaluation templates are byte-identical to the ones in the paper's harness
(`Qwen2.5-Eval/evaluation/utils.py` of ypwang61/One-Shot-RLVR, a fork of the Qwen2.5-Math
math-evaluation-harness):

- `qwen25-math-cot` (Qwen models): a hand-written ChatML string with the Qwen2.5-Math system
  prompt; the harness never calls the tokenizer's chat template for it.
- `llama` (Llama-3.2-3B-Instruct): the Llama-3 header string with the harness's fixed date line.
- `deepseek-r1` (R1-Distill-Qwen-1.5B): the harness's `deepseek-distill` template.

The question put into a template is the harness's `parse_question`: the `question` (else `problem`)
field, with " (True or False)" / " (Yes or No)" appended when the gold answer is true/false or
yes/no, then `.strip()`; the finished prompt gets `.strip(" ")` (spaces only), as in
`construct_prompt`.

Training prompts go through the tokenizer's own chat template instead (`chat_template_prompt`);
for Qwen2.5-Math that template inserts the same system prompt, and the user content carries the
instruction suffix stored in the parquet (`TRAIN_SUFFIX`).
"""

from __future__ import annotations

from collections.abc import Sequence

from oneshot_rlvr.errors import ConfigError

# (text before the question, text after it). Kept as two literal halves instead of str.format so
# a question containing braces (LaTeX!) can never be mangled.
_TEMPLATES: dict[str, tuple[str, str]] = {
    "qwen25-math-cot": (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\n",
        "<|im_end|>\n<|im_start|>assistant\n",
    ),
    "llama": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 17 Apr 2025\n\n"
        " <|eot_id|><|start_header_id|>user<|end_header_id|>\n\n",
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    # The harness calls this one `deepseek-distill` (its own `deepseek-r1` key is an R1-Zero-style
    # prompt the paper never used for R1-Distill).
    "deepseek-r1": (
        "<｜begin▁of▁sentence｜><｜User｜>",
        "<｜Assistant｜><think>\n",
    ),
}

PROMPT_TYPES: tuple[str, ...] = tuple(_TEMPLATES)

# The instruction suffix stored inside every training prompt (DSR-sub / pi_k parquet files).
TRAIN_SUFFIX = " Let's think step by step and output the final answer within \\boxed{}."

ARC_INSTRUCTION = "Answer with the letter of the correct choice, and put only that letter within \\boxed{}."
CHOICE_LETTERS = "ABCDEFGH"


def harness_question(question: str, gold: str | None = None) -> str:
    """The harness's `parse_question`: yes/no and true/false hints from the gold, then `.strip()`."""
    if isinstance(gold, str):
        g = gold.lower()
        if g in ("true", "false"):
            question += " (True or False)"
        if g in ("yes", "no"):
            question += " (Yes or No)"
    return question.strip()


def build_prompt(question: str, prompt_type: str = "qwen25-math-cot") -> str:
    """The full zero-shot evaluation prompt for an already-parsed question (see `harness_question`)."""
    try:
        head, tail = _TEMPLATES[prompt_type]
    except KeyError:
        raise ConfigError(
            f"unknown prompt type {prompt_type!r} (known: {', '.join(PROMPT_TYPES)})"
        ) from None
    return (head + question + tail).strip(" ")


def chat_template_prompt(tokenizer, content: str) -> str:
    """The training-time prompt: the tokenizer's chat template on one user message (verl's RLHFDataset)."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )


def arc_question(question: str, labels: Sequence[str], texts: Sequence[str]) -> str:
    """The ARC multiple-choice question text (our design; the paper published no ARC prompt).

    Layout: the question, one line per choice as "A. text" (digit labels 1-4 become A-D, so every
    row is answered with a letter), then an instruction to box the letter. It is wrapped in the
    same evaluation template as the math benchmarks.
    """
    if len(labels) != len(texts) or not labels:
        raise ValueError("ARC choices need as many labels as texts, and at least one")
    lines = [question.strip()]
    for label, text in zip(labels, texts):
        lines.append(f"{arc_letter(label)}. {text.strip()}")
    lines.append(ARC_INSTRUCTION)
    return "\n".join(lines)


def arc_letter(label: str) -> str:
    """ARC labels are letters, except NYSEDREGENTS rows labelled "1".."4": map those to A..D."""
    label = str(label).strip()
    if label.isdigit():
        n = int(label)
        if not 1 <= n <= len(CHOICE_LETTERS):
            raise ValueError(f"ARC label {label!r} out of range")
        return CHOICE_LETTERS[n - 1]
    if len(label) == 1 and label.upper() in CHOICE_LETTERS:
        return label.upper()
    raise ValueError(f"ARC label {label!r} is neither a letter A-H nor a digit 1-8")
