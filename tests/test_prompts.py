"""Prompt templates pinned byte-for-byte (literal strings from the harness / official-repo notes §2.3)."""

import pytest

from oneshot_rlvr import TOKENIZER_DIR
from oneshot_rlvr.errors import ConfigError
from oneshot_rlvr.prompts import (
    TRAIN_SUFFIX,
    arc_letter,
    arc_question,
    build_prompt,
    chat_template_prompt,
    harness_question,
)


def test_qwen25_math_cot_exact():
    got = build_prompt("What is $1+1$?", "qwen25-math-cot")
    assert got == (
        "<|im_start|>system\n"
        "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\n"
        "What is $1+1$?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_qwen_template_keeps_latex_braces():
    # str.format would choke on (or rewrite) braces; the question must pass through untouched
    q = "Compute $\\frac{a}{b}$ where {input} and {{x}} appear."
    got = build_prompt(q, "qwen25-math-cot")
    assert q in got


def test_llama_exact():
    got = build_prompt("Q?", "llama")
    assert got == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 17 Apr 2025\n\n"
        " <|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_deepseek_r1_is_deepseek_distill_form():
    assert build_prompt("Q?", "deepseek-r1") == "<｜begin▁of▁sentence｜><｜User｜>Q?<｜Assistant｜><think>\n"


def test_prompt_strip_spaces_only():
    # construct_prompt's .strip(" "): spaces go, newlines stay (the template ends in "\n")
    assert build_prompt("x", "qwen25-math-cot").endswith("assistant\n")


def test_unknown_prompt_type_names_it():
    with pytest.raises(ConfigError, match="qwen-boxed"):
        build_prompt("x", "qwen-boxed")


@pytest.mark.parametrize(
    "gold,suffix",
    [("True", " (True or False)"), ("false", " (True or False)"), ("Yes", " (Yes or No)"),
     ("no", " (Yes or No)"), ("12", ""), ("yes or no", ""), (None, "")],
)
def test_true_false_yes_no_rule(gold, suffix):
    assert harness_question("Is it so?", gold) == "Is it so?" + suffix


def test_harness_question_strips_all_whitespace():
    assert harness_question("  Find x.\n", "3") == "Find x."
    assert harness_question("Is 2 prime? \n", "Yes") == "Is 2 prime? \n (Yes or No)".strip()


def test_training_chat_template_real_tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    got = chat_template_prompt(tok, "Find $x$." + TRAIN_SUFFIX)
    assert got == (
        "<|im_start|>system\n"
        "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\n"
        "Find $x$. Let's think step by step and output the final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # the training and evaluation prompts differ only in the user text
    assert got == build_prompt("Find $x$." + TRAIN_SUFFIX, "qwen25-math-cot")


def test_arc_question_exact():
    got = arc_question("Which is a gas?", ["1", "2", "3", "4"], ["rock", "air ", "ice", "wood"])
    assert got == (
        "Which is a gas?\n"
        "A. rock\n"
        "B. air\n"
        "C. ice\n"
        "D. wood\n"
        "Answer with the letter of the correct choice, and put only that letter within \\boxed{}."
    )


def test_arc_letter():
    assert [arc_letter(x) for x in ["1", "2", "3", "4", "A", "e"]] == ["A", "B", "C", "D", "A", "E"]
    with pytest.raises(ValueError, match="'Z'"):
        arc_letter("Z")
    with pytest.raises(ValueError, match="'0'"):
        arc_letter("0")
