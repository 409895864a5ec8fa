"""Writes a toy world: the RL pool (verl format), per-category test sets, the tokenizer, a manifest.

Layout of `rlvr make-toy-world --out DIR`:

    DIR/train/pool.jsonl               verl rows like resources/train/dsr_sub.jsonl, plus category, level
    DIR/eval/toy_<category>/test.jsonl benchmark rows: problem, solution, answer, subject, level, unique_id
    DIR/eval/toy/test.jsonl            all categories together (subject = category), MATH500-like,
                                       interleaved by category so that a --limit stays balanced
    DIR/tokenizer/                     HF tokenizer folder (see toy/tokenizer.py)
    DIR/world.json                     seed, sizes, categories, file checksums

Pool, test sets and the tokenizer corpus come from separate random streams derived from the seed,
and the test problems are kept disjoint from the pool (and from the pretraining corpus, which
`pretrain_corpus` draws from a fourth stream and filters against both).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Iterator

from oneshot_rlvr.errors import DataError
from oneshot_rlvr.fileio import write_atomic, write_jsonl_atomic
from oneshot_rlvr.toy.tasks import CATEGORIES, INSTRUCTION, LEVELS, SUBJECTS, Item, make_item, sample_item

WORLD_VERSION = 1


def stream(seed: int, purpose: str) -> random.Random:
    """An independent, reproducible random stream (str seeds hash with SHA-512, stable across runs)."""
    return random.Random(f"toy-world:{seed}:{purpose}")


def pool_row(item: Item, index: int) -> dict:
    return {
        "data_source": "toy",
        "prompt": [{"role": "user", "content": item.problem + INSTRUCTION}],
        "ability": "math",
        "reward_model": {"ground_truth": item.ground_truth, "style": "rule"},
        "extra_info": {"index": index, "split": "train"},
        "category": item.category,
        "level": item.level,
    }


def test_row(item: Item, uid: str) -> dict:
    solution, _, _ = item.solution()
    return {"problem": item.problem, "solution": solution, "answer": item.ground_truth,
            "subject": SUBJECTS[item.category], "level": item.level, "unique_id": uid}


def generate(seed: int, pool_size: int, test_per_category: int) -> tuple[list[Item], dict[str, list[Item]]]:
    """The pool and the test sets, as items. Test problems never repeat, nor appear in the pool."""
    rng = stream(seed, "test")
    tests: dict[str, list[Item]] = {}
    seen: set[str] = set()
    for cat in CATEGORIES:
        items = []
        for i in range(test_per_category):
            level = LEVELS[i % len(LEVELS)]  # balanced levels, like MATH500's spread
            items.append(_fresh(rng, cat, level, seen))
        tests[cat] = items
    rng = stream(seed, "pool")
    pool = []
    for _ in range(pool_size):
        pool.append(_fresh(rng, rng.choice(CATEGORIES), rng.choice(LEVELS), seen))
    return pool, tests


def _fresh(rng: random.Random, cat: str, level: int, seen: set[str]) -> Item:
    for _ in range(1000):
        item = make_item(rng, cat, level)
        if item.problem not in seen:
            seen.add(item.problem)
            return item
    raise DataError(f"toy world: cannot draw a new distinct {cat} problem at level {level}; lower the sizes")


def held_out_problems(world: Path) -> set[str]:
    """Problem texts of a world's pool and test sets (the pretraining corpus must avoid them)."""
    out: set[str] = set()
    for row in read_jsonl(world / "train" / "pool.jsonl"):
        content = row["prompt"][0]["content"]
        out.add(content[: -len(INSTRUCTION)] if content.endswith(INSTRUCTION) else content)
    for path in sorted((world / "eval").glob("toy*/test.jsonl")):
        out.update(r["problem"] for r in read_jsonl(path))
    return out


def tokenizer_corpus(seed: int, n: int = 3000) -> Iterator[str]:
    rng = stream(seed, "tokenizer")
    yield "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
    for _ in range(n):
        item = sample_item(rng)
        text, _, _ = item.solution(rng, slip_rate=0.3)
        yield f"<|im_start|>user\n{item.problem}{INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n{text}<|im_end|>\n"


def make_world(out: Path, seed: int, pool_size: int = 256, test_per_category: int = 100,
               vocab_size: int = 1024, overwrite: bool = False) -> dict:
    out = Path(out)
    if pool_size < 1 or test_per_category < 1:
        raise DataError("toy world: --pool-size and --test-per-category must be >= 1")
    manifest_path = out / "world.json"
    if manifest_path.exists() and not overwrite:
        raise DataError(f"{manifest_path} exists; pass --overwrite to regenerate this world")
    pool, tests = generate(seed, pool_size, test_per_category)

    files: dict[str, list[dict]] = {"train/pool.jsonl": [pool_row(it, i) for i, it in enumerate(pool)]}
    per_cat = []
    for cat, items in tests.items():
        rows = [test_row(it, f"toy/{cat}/{i}") for i, it in enumerate(items)]
        files[f"eval/toy_{cat}/test.jsonl"] = rows
        per_cat.append(rows)
    # interleaved (row i is category i % 6), so that `rlvr evaluate --limit 6k` reads the first k
    # problems of every category, balanced over levels as each category file is
    files["eval/toy/test.jsonl"] = [row for group in zip(*per_cat) for row in group]
    for rel, rows in files.items():
        write_jsonl_atomic(out / rel, rows)

    from oneshot_rlvr.toy.tokenizer import build_tokenizer

    tok = build_tokenizer(tokenizer_corpus(seed), out / "tokenizer", vocab_size=vocab_size)
    manifest = {
        "version": WORLD_VERSION,
        "seed": seed,
        "pool_size": pool_size,
        "test_per_category": test_per_category,
        "categories": {c: SUBJECTS[c] for c in CATEGORIES},
        "levels": list(LEVELS),
        "benchmarks": ["toy"] + [f"toy_{c}" for c in CATEGORIES],
        "tokenizer_vocab": len(tok),
        "sha256": {rel: _sha256(out / rel) for rel in files},
    }
    write_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_manifest(world: Path) -> dict:
    path = Path(world) / "world.json"
    if not path.is_file():
        raise DataError(f"{path}: not a toy world (run `rlvr make-toy-world --out {world}` first)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


# --- small IO helpers ---------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        with open(path) as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError as exc:
                        raise DataError(f"{path}, line {n}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
