"""Training data: verl-format JSONL rows → tokenised prompts, and the paper's epoch sampler.

A row is `{"prompt": [{"role": "user", "content": ...}], "reward_model": {"ground_truth": ...},
"extra_info": {"index": int}, ...}` exactly as the authors' parquet files. Prompts are wrapped with the
tokenizer's chat template (`add_generation_prompt=True`), as verl's RLHFDataset does; prompts longer
than `max_prompt_length` tokens are dropped and counted (verl's `filter_overlong_prompts`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from oneshot_rlvr.errors import DataError
from oneshot_rlvr.fileio import not_utf8_message


@dataclass
class TrainRow:
    index: int  # extra_info.index: the key of the per-example accuracy history
    prompt_ids: list[int]
    ground_truth: str
    data_source: str = ""


def iter_jsonl(path: str | Path):
    """(line number, record) for each non-blank line; a bad line raises DataError naming it."""
    path = Path(path)
    with path.open("rb") as fh:  # bytes, decoded per line: a non-UTF-8 byte is reported with its line
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(not_utf8_message(path, raw, exc, "JSONL file", line=lineno)) from None
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                hint = ("; a pretty-printed JSON document? JSONL is one JSON object per line"
                        if lineno == 1 and line.strip() in ("[", "{") else "; truncated file?")
                raise DataError(f"{path}: line {lineno} is not valid JSON ({exc.msg}){hint}") from None


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory; give the path of a JSONL data file")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    rows = [rec for _, rec in iter_jsonl(path)]
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


# Row checks shared by the trainer's loader and the pool validator (trainset.validate_rows), so that a row
# the workflow accepted is one the trainer accepts, and each wrong field is named rather than crashing later.
def check_object(row, where: str) -> dict:
    if not isinstance(row, dict):  # e.g. a JSON list or number on a line: row.get would be a bare error
        hint = " (a JSON array? JSONL is one JSON object per line)" if isinstance(row, list) else ""
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}{hint}")
    return row


CHAT_ROLES = ("system", "user", "assistant")


def row_messages(row: dict, prompt_key: str, where: str) -> list[dict]:
    prompt = row.get(prompt_key)
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt or not all(isinstance(m, dict) and "content" in m for m in prompt):
        raise DataError(f"{where}: '{prompt_key}' must be a non-empty list of chat messages")
    for j, m in enumerate(prompt):  # the chat template would fail with a bare TypeError (or render the repr)
        if not isinstance(m["content"], str):
            raise DataError(f"{where}: {prompt_key}[{j}].content must be a string, got {type(m['content']).__name__}")
        # the Qwen2.5-Math template silently drops a message of any other role: the problem would vanish
        if m.get("role") not in CHAT_ROLES:
            raise DataError(f"{where}: {prompt_key}[{j}].role must be one of {', '.join(CHAT_ROLES)}, "
                            f"got {m.get('role')!r}")
    if not any(m["content"].strip() for m in prompt if m["role"] == "user"):
        raise DataError(f"{where}: empty prompt (no user message with text in '{prompt_key}')")
    return prompt


def row_ground_truth(row: dict, where: str) -> str:
    rm = row.get("reward_model")
    if rm is not None and not isinstance(rm, dict):
        raise DataError(f"{where}: reward_model must be an object {{\"ground_truth\": ...}}, got {type(rm).__name__}")
    gt = (rm or {}).get("ground_truth")
    if gt is None:
        raise DataError(f"{where}: missing reward_model.ground_truth")
    # an empty label is a label: DSR-sub (index 265) and MATH 7.5k (2 rows) have one and the authors trained on
    # them (a response without \boxed{} extracts "" and scores 1 there: official-repo.md 2.2). Anything but a
    # string is refused, not str()-ed: ["4/3"] would become "['4/3']" and 27.0 "27.0", silently scoring 0
    if not isinstance(gt, str):
        raise DataError(f"{where}: reward_model.ground_truth must be a string, got {type(gt).__name__}")
    return gt


def row_index(row: dict, where: str, default: int | None = None) -> int:
    """extra_info.index; `default` (if given) stands in for a missing extra_info or index."""
    extra = row.get("extra_info")
    if extra is not None and not isinstance(extra, dict):
        raise DataError(f"{where}: no extra_info.index: extra_info is a {type(extra).__name__}, not an object")
    index = (extra or {}).get("index")
    if index is None:
        if default is None:
            raise DataError(f"{where}: missing extra_info.index (an integer)")
        return default
    # not int(): "a0" would be a bare ValueError and 0.5 silently index 0 (the accuracy history's key)
    if isinstance(index, bool) or not isinstance(index, int):
        raise DataError(f"{where}: extra_info.index must be an integer, got {index!r}")
    return index


def load_train_rows(path: str | Path, tokenizer, max_prompt_length: int, prompt_key: str = "prompt",
                    label_override: str | None = None) -> tuple[list[TrainRow], int]:
    """Returns (rows kept, number dropped for exceeding max_prompt_length). Validates every row first."""
    raw = read_jsonl(path)
    rows: list[TrainRow] = []
    dropped = 0
    for i, row in enumerate(raw):
        where = f"{path}: row {i}"
        check_object(row, where)
        messages = row_messages(row, prompt_key, where)
        gt = label_override if label_override is not None else row_ground_truth(row, where)
        index = row_index(row, where, default=i)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
            ids = ids["input_ids"]
        if len(ids) > max_prompt_length:
            dropped += 1
            continue
        rows.append(TrainRow(index=index, prompt_ids=list(ids), ground_truth=gt,
                             data_source=str(row.get("data_source", ""))))
    return rows, dropped


class EpochSampler:
    """verl 0.2's data order: RandomSampler(generator seeded once) + BatchSampler(drop_last=True).

    torch's RandomSampler draws one permutation per epoch and, because BatchSampler with drop_last
    runs the sampler to exhaustion, one more empty `randperm(n)[:0]` draw; we replay the same
    generator calls, so the order is the one the authors' loader produced for the same seed. The
    sampler is a pure function of (seed, step), which makes resuming exact.
    """

    def __init__(self, n_rows: int, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = True):
        if n_rows < batch_size and drop_last:
            raise DataError(f"train set has {n_rows} rows < train_batch_size {batch_size} (drop_last): "
                            "duplicate the examples to fill the batch (rlvr make-train-set)")
        self.n, self.bs, self.seed, self.shuffle, self.drop_last = n_rows, batch_size, seed, shuffle, drop_last
        self.steps_per_epoch = n_rows // batch_size if drop_last else -(-n_rows // batch_size)
        self._perm_cache: dict[int, list[int]] = {}

    def _epoch_order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        if epoch not in self._perm_cache:
            g = torch.Generator().manual_seed(self.seed)
            perm = None
            for _ in range(epoch + 1):
                perm = torch.randperm(self.n, generator=g).tolist()
                torch.randperm(self.n, generator=g)  # the tail draw of RandomSampler.__iter__
            self._perm_cache = {epoch: perm}
        return self._perm_cache[epoch]

    def batch(self, step: int) -> tuple[int, list[int]]:
        """(epoch, row positions) of the batch used at 0-based training step `step`."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        return epoch, order[pos * self.bs:(pos + 1) * self.bs]
