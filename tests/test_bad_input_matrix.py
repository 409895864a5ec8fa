"""Bad-input matrix for `rlvr train`: each malformed input fails with a message naming the
key / file / row, before any file is written. (Workflow-config cases: tests/test_registry.py.)"""

import json
from pathlib import Path

import pytest

from oneshot_rlvr.config import from_dict
from oneshot_rlvr.errors import RlvrError
from oneshot_rlvr.trainer import GRPOTrainer

PI1 = Path(__file__).resolve().parents[1] / "resources" / "train" / "one_shot" / "pi1_r128.jsonl"


def _rows(n=4):
    return [json.loads(l) for l in PI1.read_text().splitlines()[:n]]


def _write(tmp_path, rows=None, text=None):
    f = tmp_path / "data.jsonl"
    f.write_text(text if text is not None else "".join(json.dumps(r) + "\n" for r in rows))
    return f


def _no_answer(tmp_path):
    rows = _rows()
    rows[1]["reward_model"] = {}
    return {"train_file": str(_write(tmp_path, rows))}, r"row 1: missing reward_model.ground_truth"


def _blank_answer(tmp_path):
    rows = _rows()
    rows[3]["reward_model"]["ground_truth"] = "  "
    return {"train_file": str(_write(tmp_path, rows))}, r"row 3: missing reward_model.ground_truth"


def _empty_prompt(tmp_path):
    rows = _rows()
    rows[2]["prompt"] = [{"role": "user", "content": "   "}]
    return {"train_file": str(_write(tmp_path, rows))}, r"row 2: empty prompt"


def _prompt_not_messages(tmp_path):
    rows = _rows()
    rows[0]["prompt"] = 42
    return {"train_file": str(_write(tmp_path, rows))}, r"row 0: 'prompt' must be a non-empty list"


def _truncated(tmp_path):
    text = "".join(json.dumps(r) + "\n" for r in _rows())
    return {"train_file": str(_write(tmp_path, text=text[:-40]))}, r"line 4 is not valid JSON.*truncated"


def _empty_file(tmp_path):
    return {"train_file": str(_write(tmp_path, text=""))}, r"no rows"


def _missing_file(tmp_path):
    return {"train_file": str(tmp_path / "nope.jsonl")}, r"data file not found: .*nope.jsonl"


def _too_few_rows(tmp_path):
    return {"train_file": str(_write(tmp_path, _rows(2)))}, r"2 rows < train_batch_size 4"


def _all_prompts_too_long(tmp_path):
    return {"train_file": str(_write(tmp_path, _rows())), "max_prompt_length": 5}, r"every prompt is longer than max_prompt_length"


def _model_missing(tmp_path):
    return {"model": str(tmp_path / "no_model")}, r"model directory not found"


def _model_without_config(tmp_path):
    (tmp_path / "m").mkdir()
    return {"model": str(tmp_path / "m")}, r"has no config.json"


def _model_corrupt(tmp_path, tiny):
    import shutil

    m = tmp_path / "corrupt"
    shutil.copytree(tiny, m)
    (m / "model.safetensors").write_bytes(b"not a safetensors file")
    return {"model": str(m)}, r"cannot load model from .*corrupt"


CASES = [_no_answer, _blank_answer, _empty_prompt, _prompt_not_messages, _truncated, _empty_file, _missing_file,
         _too_few_rows, _all_prompts_too_long, _model_missing, _model_without_config]


@pytest.mark.parametrize("case", CASES + [_model_corrupt], ids=lambda c: c.__name__.strip("_"))
def test_bad_input_fails_before_writing(tmp_path, tiny_model_dir, case):
    args = (tmp_path, tiny_model_dir) if case is _model_corrupt else (tmp_path,)
    overrides, message = case(*args)
    base = {"model": str(tiny_model_dir), "train_file": str(PI1), "train_batch_size": 4, "n": 2,
            "max_response_length": 4, "engine": "hf", "total_steps": 1, "progress": False}
    cfg = from_dict({**base, **overrides})
    out = tmp_path / "run"
    with pytest.raises(RlvrError, match=message):
        GRPOTrainer(cfg, out).train()
    assert not out.exists()
