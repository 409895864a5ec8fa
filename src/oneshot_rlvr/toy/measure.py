"""Base-model accuracy on a toy world, with a plain transformers `generate` loop.

Greedy accuracy per category, and with `--n` samples at `--temperature` also pass@n, mean
accuracy and the share of problems whose n samples are *mixed* (some right, some wrong): only those
give GRPO a non-zero advantage. Prompts are the evaluation prompt (the chat template with the bare
problem, which equals the harness's qwen25-math-cot string); `--pool` measures the RL pool instead,
with its stored training prompts.

Grading here is exact: the last `\\boxed{...}` of the response, read as an integer or a fraction
(`\\frac{a}{b}`, `a/b`), must equal the ground truth as a rational number. The project's graders
(rlvr evaluate) are more lenient on format, so they can only score higher.

    python -m oneshot_rlvr.toy.measure --model MODEL --world WORLD [--n 8 --temperature 0.6]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

from oneshot_rlvr.toy.tasks import CATEGORIES
from oneshot_rlvr.toy.world import read_jsonl

_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")
_SLASH = re.compile(r"^(-?\d+)\s*/\s*(-?\d+)$")


def last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def to_fraction(s: str | None) -> Fraction | None:
    if s is None:
        return None
    s = s.strip().replace(" ", "")
    if re.fullmatch(r"-?\d+", s):
        return Fraction(int(s))
    m = _FRAC.match(s)
    if m:
        num, den = int(m.group(2)), int(m.group(3))
        return None if den == 0 else Fraction(-num if m.group(1) else num, den)
    m = _SLASH.match(s)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    return None


def is_correct(response: str, ground_truth: str) -> bool:
    pred, gold = to_fraction(last_boxed(response)), to_fraction(ground_truth)
    return pred is not None and pred == gold


def load_problems(world: Path, pool: bool, limit: int | None):
    """(category, prompt messages, ground truth) triples."""
    if pool:
        rows = read_jsonl(world / "train" / "pool.jsonl")
        out = [(r["category"], r["prompt"], r["reward_model"]["ground_truth"]) for r in rows]
        return out[:limit] if limit else out
    out = []
    for cat in CATEGORIES:
        rows = read_jsonl(world / "eval" / f"toy_{cat}" / "test.jsonl")
        if limit:  # keep levels balanced: rows cycle through levels 1..5
            rows = rows[:limit]
        out += [(cat, [{"role": "user", "content": r["problem"]}], r["answer"]) for r in rows]
    return out


def generate(model, tok, prompts: list[str], n: int, temperature: float, max_new_tokens: int,
             batch_size: int, seed: int) -> list[list[str]]:
    import torch

    tok.padding_side = "left"
    out: list[list[str]] = []
    torch.manual_seed(seed)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=n)
        else:
            kwargs.update(do_sample=False)
        with torch.no_grad():
            gen = model.generate(**enc, **kwargs)
        texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        k = n if temperature > 0 else 1
        out += [texts[i * k:(i + 1) * k] for i in range(len(chunk))]
    return out


def measure(model_dir: Path, world: Path, n: int = 8, temperature: float = 0.6, limit: int | None = None,
            pool: bool = False, max_new_tokens: int = 256, batch_size: int = 64, seed: int = 0) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="float32").eval()
    problems = load_problems(Path(world), pool, limit)
    prompts = [tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) for _, msgs, _ in problems]
    result: dict = {"model": str(model_dir), "world": str(world), "split": "pool" if pool else "test",
                    "n_problems": len(problems)}
    t = time.time()
    greedy = generate(model, tok, prompts, 1, 0.0, max_new_tokens, batch_size, seed)
    result["greedy_seconds"] = round(time.time() - t, 1)
    by_cat = defaultdict(list)
    boxed = 0
    for (cat, _, gt), outs in zip(problems, greedy):
        by_cat[cat].append(is_correct(outs[0], gt))
        boxed += last_boxed(outs[0]) is not None
    result["greedy_accuracy"] = _pct([x for v in by_cat.values() for x in v])
    result["greedy_accuracy_by_category"] = {c: _pct(v) for c, v in by_cat.items()}
    result["greedy_boxed_ratio"] = 100.0 * boxed / max(1, len(problems))
    result["example_response"] = greedy[0][0]
    if n > 1:
        t = time.time()
        samples = generate(model, tok, prompts, n, temperature, max_new_tokens, max(1, batch_size // n), seed)
        result["sample_seconds"] = round(time.time() - t, 1)
        stats = defaultdict(lambda: {"pass": [], "mean": [], "mixed": []})
        for (cat, _, gt), outs in zip(problems, samples):
            k = sum(is_correct(o, gt) for o in outs)
            for key in (cat, "all"):
                stats[key]["pass"].append(k > 0)
                stats[key]["mean"].append(k / n)
                stats[key]["mixed"].append(0 < k < n)
        result["sampling"] = {"n": n, "temperature": temperature}
        for key, s in stats.items():
            result.setdefault("pass_at_n", {})[key] = _pct(s["pass"])
            result.setdefault("mean_accuracy", {})[key] = 100.0 * sum(s["mean"]) / len(s["mean"])
            result.setdefault("mixed_groups", {})[key] = _pct(s["mixed"])
    return result


def _pct(xs) -> float:
    xs = list(xs)
    return 100.0 * sum(xs) / max(1, len(xs))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--n", type=int, default=8, help="samples per problem for pass@n (1 = greedy only)")
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--limit", type=int, default=None, help="problems per category (test) or in total (pool)")
    p.add_argument("--pool", action="store_true", help="measure the RL pool instead of the test sets")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    a = p.parse_args(argv)
    res = measure(a.model, a.world, a.n, a.temperature, a.limit, a.pool, a.max_new_tokens, a.batch_size, a.seed)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
