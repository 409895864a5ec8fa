"""Bad-input matrix (issue 8.4): every malformed input the pipeline can be given, in one table.

Each row is run through the entry point that meets it first:
- `workflow`: the workflow config, through `registry.validate_workflow_config` -- exactly what
  workflow/rules/common.smk runs when Snakemake loads the config, before any job is planned;
- `train`: a run config / training set / model directory, through `rlvr train --config RUN.yaml`;
- `prepare-data`: a pool or full-set JSONL, through `rlvr prepare-data` (the workflow's first job);
- `cli`: any other command line (mostly an --out that cannot be written: an existing directory where a
  file goes, or the reverse), run with the inputs of `_cli_inputs` in the working directory.
Each row asserts (1) the failure (ConfigError / DataError, or exit code 2 from the CLI), (2) a message
naming the key / file / row, and (3) that nothing was written: the output directory does not exist
and the working directory's file tree is unchanged. More workflow-config cases (the paper's config):
tests/test_registry.py; the same config error stopping real `snakemake`: tests/test_workflow.py.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from oneshot_rlvr import cli
from oneshot_rlvr.errors import ConfigError
from oneshot_rlvr.registry import validate_workflow_config

REPO = Path(__file__).resolve().parents[1]
PI1 = REPO / "resources" / "train" / "one_shot" / "pi1_r128.jsonl"
DEMO = yaml.safe_load((REPO / "config" / "demo_tiny.yaml").read_text())
GOLDEN_METRICS = REPO / "tests" / "golden" / "metrics_small.csv"


@dataclass
class Case:
    id: str
    layer: str  # workflow | train | train-config (make writes RUN.yaml) | train-set (make gives --set) | prepare-data | cli
    make: Callable  # (tmp_path, tiny_model_dir) -> workflow config dict, or overrides / input path
    message: str  # regex the one-line error must match (it names the key / file / row)


# ------------------------------------------------------------------ builders
def wf(edit):
    def make(tmp, tiny):
        cfg = copy.deepcopy(DEMO)
        edit(cfg)
        return cfg
    return make


def _rows(n=4):
    return [json.loads(line) for line in PI1.read_text().splitlines()[:n]]


def _jsonl(tmp, rows=None, text=None, name="data.jsonl"):
    f = tmp / "in" / name
    f.parent.mkdir(exist_ok=True)
    f.write_text(text if text is not None else "".join(json.dumps(r) + "\n" for r in rows))
    return f


def rows_with(edit, n=4):
    def make(tmp, tiny):
        rows = _rows(n)
        edit(rows)
        return {"train_file": str(_jsonl(tmp, rows))}
    return make


def pool_with(edit):
    def make(tmp, tiny):
        rows = [json.loads(line) for line in (REPO / "resources/train/dsr_sub.jsonl").read_text().splitlines()[:5]]
        edit(rows)
        return _jsonl(tmp, rows, name="pool.jsonl")
    return make


def _text_file(tmp, name, content):
    f = tmp / "in" / name
    f.parent.mkdir(exist_ok=True)
    (f.write_bytes if isinstance(content, bytes) else f.write_text)(content)
    return f


def _latin1_rows():
    """The first rows of pi_1 with a Latin-1 'é' in row 1's prompt: not UTF-8 (a file saved in another encoding)."""
    lines = [json.dumps(r, ensure_ascii=False) for r in _rows()]
    lines[1] = lines[1].replace('"content": "', '"content": "caf\u00e9 ', 1)
    return "".join(line + "\n" for line in lines).encode("latin-1")


def _truncated_text(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)[:-40]


def _set(path, value):
    """edit for a nested dict: _set(["models", "tiny", "total_steps"], -4)"""
    def edit(cfg):
        d = cfg
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


def _corrupt_model(tmp, tiny):
    m = tmp / "in" / "corrupt"
    shutil.copytree(tiny, m)
    (m / "model.safetensors").write_bytes(b"not a safetensors file")
    return {"model": str(m)}


def _mkdir(d):
    d.mkdir(parents=True)
    return d


def _model_without_config(tmp, tiny):
    (tmp / "in" / "m").mkdir(parents=True)
    return {"model": str(tmp / "in" / "m")}


def _pop_answer(rows):
    rows[1]["reward_model"] = {}


def _empty_prompt(rows):
    rows[2]["prompt"] = [{"role": "user", "content": "   "}]


def _no_role(rows):  # the chat template drops a message without a known role: the problem would vanish
    rows[1]["prompt"] = [{"content": rows[1]["prompt"][0]["content"]}]


def _system_only(rows):
    rows[3]["prompt"] = [{"role": "system", "content": "Solve it."}, {"role": "user", "content": ""}]


def _dup_index(rows):
    rows[3]["extra_info"]["index"] = rows[1]["extra_info"]["index"]


def _base_run(tiny):
    return {"model": str(tiny), "train_file": str(PI1), "train_batch_size": 4, "n": 2, "max_response_length": 4,
            "engine": "hf", "total_steps": 1, "progress": False, "tensorboard": False}


def _cli_inputs(tmp, tiny):
    """Inputs of the `cli` cases in tmp/in, and in the working directory (whose tree must stay unchanged): an
    existing folder `adir` and file `afile`, and a pruneable run `run` (best step 2; step 0 deletable)."""
    d = tmp / "in"
    (d / "results" / "runs").mkdir(parents=True)
    (d / "H.json").write_text(json.dumps({"0": [0.0, 1.0], "1": [1.0, 1.0]}))
    (d / "H_latin1.json").write_bytes('{"\u00e9": [0.0]}'.encode("latin-1"))
    (d / "rank_latin1.csv").write_bytes(b"pi_rank,dsr_sub_index\n1,caf\xe9\n")
    # a ranking of another pool: the same indices, other problems behind them (pool rows 1, 2 are '124', '432')
    (d / "rank_other_pool.csv").write_text("pi_rank,dsr_sub_index,ground_truth\n1,2,432\n2,1,7\n3,0,\n")
    pool = (REPO / "resources/train/dsr_sub.jsonl").read_text().splitlines(keepends=True)[:3]
    (d / "pool.jsonl").write_text("".join(pool))
    (d / "RUN.yaml").write_text(yaml.safe_dump(_base_run(tiny)))
    Path("adir").mkdir()
    (Path("adir") / "keep.txt").write_text("kept\n")
    Path("afile").write_text("kept\n")
    for s in (0, 2):
        (Path("run/train/checkpoints") / f"step_{s}").mkdir(parents=True)
        (Path("run/train/checkpoints") / f"step_{s}" / "model.safetensors").write_bytes(b"x")
        (Path("run/eval") / f"step_{s}" / "math500").mkdir(parents=True)
        (Path("run/eval") / f"step_{s}" / "math500" / "summary.json").write_text(json.dumps({"accuracy": {"qwen": s}}))
    Path("run/best.json").write_text(json.dumps({"best_avg": {"step": 2, "average": 2.0}, "steps": [0, 2],
                                                 "per_benchmark": {"math500": {"step": 2, "value": 2.0}},
                                                 "incomplete_steps": {}}))
    return d


def cli_args(*argv):
    """argv of a `cli` case; {inp} is the inputs folder of _cli_inputs."""
    def make(tmp, tiny):
        d = _cli_inputs(tmp, tiny)
        return [a.format(inp=d) for a in argv]
    return make


def _dir_out(command, *argv):
    """`command ... --out adir` (an existing directory where the file goes)."""
    return Case(f"out-dir-{command}", "cli", cli_args(command, *argv, "--out", "adir"),
                rf"rlvr {command}: error: (--out )?adir is a directory; give the path of the file to write")


CASES = [
    # ---- workflow config (validated when Snakemake loads it: no job starts)
    Case("wf-unknown-key", "workflow", wf(lambda c: c.update(trian_batch_size=4)),
         r"config key 'trian_batch_size': unknown key"),
    Case("wf-unknown-nested-key", "workflow", wf(lambda c: c["experiments"]["demo"].update(benchmark=["math500"])),
         r"config key 'experiments\.demo\.benchmark': unknown key \(did you mean 'benchmarks'\?\)"),
    Case("wf-wrong-type", "workflow", wf(_set(["models", "tiny", "total_steps"], "4")),
         r"config key 'models\.tiny\.total_steps'"),
    Case("wf-negative-steps", "workflow", wf(_set(["models", "tiny", "total_steps"], -4)),
         r"config key 'models\.tiny\.total_steps'"),
    Case("wf-pi-rank-0", "workflow", wf(_set(["datasets", "pi1", "ranks"], [0])),
         r"config key 'datasets\.pi1\.ranks\[0\]': pi rank 0 out of range 1\.\.1209"),
    Case("wf-pi-rank-above-pool", "workflow", wf(_set(["datasets", "pi13", "ranks"], [1210])),
         r"config key 'datasets\.pi13\.ranks\[0\]': pi rank 1210 out of range 1\.\.1209"),
    Case("wf-unknown-model", "workflow", wf(_set(["experiments", "demo", "models"], ["qwen-1.5b"])),
         r"config key 'experiments\.demo\.models\[0\]': unknown model 'qwen-1\.5b'"),
    Case("wf-unknown-prompt-type", "workflow", wf(_set(["models", "tiny", "prompt_type"], "chatml")),
         r"config key 'models\.tiny\.prompt_type'.*chatml"),
    Case("wf-unknown-variant", "workflow", wf(lambda c: c["experiments"]["demo"]["runs"].append("pi1--t5r99")),
         r"config key 'experiments\.demo\.runs\[4\]': unknown variant 't5r99'"),
    Case("wf-unknown-dataset", "workflow", wf(lambda c: c["experiments"]["demo"]["runs"].append("pi99")),
         r"config key 'experiments\.demo\.runs\[4\]': unknown dataset 'pi99'"),
    Case("wf-unknown-benchmark", "workflow", wf(lambda c: c["experiments"]["demo"]["benchmarks"].append("gsm8k")),
         r"config key 'experiments\.demo\.benchmarks\[8\]'.*gsm8k"),
    Case("wf-unknown-recipe-key", "workflow", wf(lambda c: c["recipe"].update(entropy_coeff=0.0)),
         r"config key 'recipe': unknown RunConfig key 'entropy_coeff' \(did you mean 'entropy_coef'\?\)"),
    Case("wf-bad-retention-policy", "workflow", wf(lambda c: c.update(retention={"keep_checkpoints": "some"})),
         r"config key 'retention\.keep_checkpoints': 'some' is not one of"),
    Case("wf-missing-source-file", "workflow", wf(_set(["sources", "dsr_sub"], "resources/train/nope.jsonl")),
         r"config key 'sources\.dsr_sub': file not found: resources/train/nope\.jsonl"),
    # ---- run config of `rlvr train`
    Case("run-unknown-key", "train", lambda t, m: {"learning_rate": 1e-6}, r"unknown config key 'learning_rate'"),
    Case("run-wrong-type", "train", lambda t, m: {"lr": "fast"}, r"config key 'lr': expected float, got 'fast'"),
    Case("run-negative-steps", "train", lambda t, m: {"total_steps": -1}, r"config key 'total_steps' must be > 0, got -1"),
    Case("run-bad-retention", "train", lambda t, m: {"keep_checkpoints": "some"},
         r"config key 'keep_checkpoints': 'some' is not one of"),
    # values that crashed only later (AdamW, the grader pool, the advantages), some after outputs existed
    Case("run-betas-out-of-range", "train", lambda t, m: {"betas": [2.0, 0.9]}, r"config key 'betas\[0\]' must be in \[0, 1\), got 2\.0"),
    Case("run-adam-eps-nan", "train", lambda t, m: {"adam_eps": float("nan")}, r"config key 'adam_eps' must be a finite number > 0, got nan"),
    Case("run-adv-eps-nan", "train", lambda t, m: {"adv_eps": float("nan")}, r"config key 'adv_eps' must be a finite number > 0, got nan"),
    Case("run-grader-workers-negative", "train", lambda t, m: {"grader_workers": -2}, r"config key 'grader_workers' must be >= 1"),
    Case("run-grader-timeout-negative", "train", lambda t, m: {"grader_timeout": -1}, r"config key 'grader_timeout' must be a finite number > 0"),
    # malformed config text: a YAML error, a non-string key, bytes that are not UTF-8
    Case("run-set-bad-yaml", "train-set", lambda t, m: ["lr=[1,"], r"--set lr: value '\[1,' is not valid YAML"),
    Case("run-non-string-key", "train-config", lambda t, m: _text_file(t, "RUN.yaml", "1: x\n"),
         r"RUN\.yaml: config keys must be names, got the key 1"),
    Case("run-config-not-utf8", "train-config", lambda t, m: _text_file(t, "RUN.yaml", b"lr: 1.0e-6 # \xe9t\xe9\n"),
         r"RUN\.yaml: line \d+ is not UTF-8 text \(byte .* at column \d+\)"),
    # ---- training set (rows are 0-based in the trainer's messages)
    Case("train-row-without-answer", "train", rows_with(_pop_answer), r"data\.jsonl.*row 1: missing reward_model\.ground_truth"),
    Case("train-empty-prompt", "train", rows_with(_empty_prompt), r"data\.jsonl.*row 2: empty prompt"),
    Case("train-message-without-role", "train", rows_with(_no_role),
         r"data\.jsonl.*row 1: prompt\[0\]\.role must be one of system, user, assistant, got None"),
    Case("train-no-user-text", "train", rows_with(_system_only), r"data\.jsonl.*row 3: empty prompt \(no user message"),
    Case("train-truncated-jsonl", "train", lambda t, m: {"train_file": str(_jsonl(t, text=_truncated_text(_rows())))},
         r"data\.jsonl: line 4 is not valid JSON.*truncated"),
    Case("train-jsonl-not-utf8", "train", lambda t, m: {"train_file": str(_text_file(t, "data.jsonl", _latin1_rows()))},
         r"data\.jsonl: line 2 is not UTF-8 text"),
    Case("train-row-not-object", "train", lambda t, m: {"train_file": str(_jsonl(t, text="[1, 2]\n" * 4))},
         r"data\.jsonl: row 0: expected a JSON object, got list \(a JSON array\? JSONL is one JSON object per line\)"),
    Case("train-pretty-json-array", "train", lambda t, m: {"train_file": str(_jsonl(t, text="[\n  {\"prompt\": 1}\n]\n"))},
         r"data\.jsonl: line 1 is not valid JSON .*a pretty-printed JSON document\? JSONL is one JSON object per line"),
    Case("train-empty-file", "train", lambda t, m: {"train_file": str(_jsonl(t, text=""))}, r"data\.jsonl: no rows"),
    Case("train-missing-file", "train", lambda t, m: {"train_file": str(t / "in" / "nope.jsonl")},
         r"data file not found: .*nope\.jsonl"),
    Case("train-too-few-rows", "train", rows_with(lambda r: None, n=2), r"2 rows < train_batch_size 4"),
    # wrong types of the row fields: were bare tracebacks, or silently wrong rewards / history keys
    Case("train-index-not-integer", "train", rows_with(lambda r: r[1]["extra_info"].update(index="a0")),
         r"data\.jsonl: row 1: extra_info\.index must be an integer, got 'a0'"),
    Case("train-index-fraction", "train", rows_with(lambda r: r[1]["extra_info"].update(index=0.5)),
         r"data\.jsonl: row 1: extra_info\.index must be an integer, got 0\.5"),
    Case("train-content-list", "train", rows_with(lambda r: r[2]["prompt"][0].update(content=[{"text": "1+1"}])),
         r"data\.jsonl: row 2: prompt\[0\]\.content must be a string, got list"),
    Case("train-content-int", "train", rows_with(lambda r: r[2]["prompt"][0].update(content=7)),
         r"data\.jsonl: row 2: prompt\[0\]\.content must be a string, got int"),
    Case("train-reward-model-string", "train", rows_with(lambda r: r[1].update(reward_model="65")),
         r"data\.jsonl: row 1: reward_model must be an object .*got str"),
    Case("train-ground-truth-list", "train", rows_with(lambda r: r[1]["reward_model"].update(ground_truth=["4/3"])),
         r"data\.jsonl: row 1: reward_model\.ground_truth must be a string, got list"),
    Case("train-ground-truth-number", "train", rows_with(lambda r: r[1]["reward_model"].update(ground_truth=27.0)),
         r"data\.jsonl: row 1: reward_model\.ground_truth must be a string, got float"),
    Case("train-file-is-directory", "train", lambda t, m: {"train_file": str(_mkdir(t / "in" / "data"))},
         r"in/data is a directory; give the path of a JSONL data file"),
    Case("train-lengths-past-the-model-context", "train", lambda t, m: {"max_response_length": 4090},
         r"'max_prompt_length' \+ 'max_response_length' = \d+ \+ 4090 exceed the model's max_position_embeddings 4096"),
    Case("train-prompts-too-long", "train", lambda t, m: {"train_file": str(_jsonl(t, _rows())), "max_prompt_length": 5},
         r"data\.jsonl.*every prompt is longer than max_prompt_length"),
    # ---- pool / full sets (`rlvr prepare-data`, lines are 1-based)
    Case("pool-duplicate-ids", "prepare-data", pool_with(_dup_index), r"pool\.jsonl: line 4: extra_info\.index \d+ repeats line 2"),
    Case("pool-row-without-answer", "prepare-data", pool_with(_pop_answer),
         r"pool\.jsonl: line 2: missing reward_model\.ground_truth"),
    Case("pool-empty-prompt", "prepare-data", pool_with(lambda r: r[0].update(prompt=[])),
         r"pool\.jsonl: line 1: 'prompt' must be a non-empty list"),
    Case("pool-ground-truth-number", "prepare-data", pool_with(lambda r: r[1]["reward_model"].update(ground_truth=27)),
         r"pool\.jsonl: line 2: reward_model\.ground_truth must be a string, got int"),
    Case("pool-index-not-integer", "prepare-data", pool_with(lambda r: r[1]["extra_info"].update(index="a0")),
         r"pool\.jsonl: line 2: extra_info\.index must be an integer, got 'a0'"),
    Case("pool-truncated-jsonl", "prepare-data",
         lambda t, m: _jsonl(t, text=_truncated_text(_rows()), name="pool.jsonl"),
         r"pool\.jsonl: line 4 is not valid JSON.*truncated"),
    # ---- model directory
    Case("model-dir-missing", "train", lambda t, m: {"model": str(t / "in" / "no_model")},
         r"model directory not found.*no_model"),
    Case("model-dir-without-config", "train", _model_without_config, r"in/m.*has no config\.json"),
    Case("model-weights-corrupt", "train", _corrupt_model, r"cannot load model from .*corrupt"),
    Case("tokenizer-dir-missing", "train", lambda t, m: {"tokenizer": str(t / "in" / "no_tok")},
         r"tokenizer directory not found: .*no_tok"),  # was: "Repo id must be in the form ..."
    # user files saved in another encoding: were bare UnicodeDecodeErrors (rc 1)
    Case("rank-history-not-utf8", "cli",
         cli_args("rank", "--history", "{inp}/H_latin1.json", "--pool", "{inp}/pool.jsonl", "--out", "results/out"),
         r"H_latin1\.json: line 1 is not UTF-8 text \(byte b'\\xe9' at column 3\)"),
    Case("ranking-not-utf8", "cli",
         cli_args("make-train-set", "--pool", "{inp}/pool.jsonl", "--ranking", "{inp}/rank_latin1.csv", "--ranks", "1",
                  "--out", "results/out/x.jsonl"),
         r"rank_latin1\.csv: line 2 is not UTF-8 text \(byte b'\\xe9' at column 6\)"),
    Case("ranking-of-another-pool", "cli",
         cli_args("make-train-set", "--pool", "{inp}/pool.jsonl", "--ranking", "{inp}/rank_other_pool.csv", "--ranks",
                  "1", "--out", "results/out/x.jsonl"),
         r"rank_other_pool\.csv: pi_2 is pool index 1 with ground truth '7', but the pool .*pool\.jsonl has '124' "
         r"there \(1 of 2 labelled rows differ\); was the ranking made on another pool\?"),
    Case("tiny-model-seed-overflow", "cli", cli_args("build-tiny-model", "--out", "results/out", "--seed", str(10**20)),
         r"--seed must be in 0 \.\. 2\*\*64-1, got 100000000000000000000"),
    # ---- --out that cannot be written: refused before anything is written or deleted (no stray temp file)
    _dir_out("rank", "--history", "{inp}/H.json", "--pool", "{inp}/pool.jsonl"),
    _dir_out("score-pool", "--history", "{inp}/H.json", "--pool", "{inp}/pool.jsonl"),
    _dir_out("run-config", "--values", "{{}}"),
    _dir_out("make-train-set", "--pool", "{inp}/pool.jsonl", "--first", "2"),
    _dir_out("prepare-data", "--input", "{inp}/pool.jsonl"),
    _dir_out("collect", "--results", "{inp}/results"),
    _dir_out("select-best", "--run-dir", "run", "--benchmarks", "math500"),
    _dir_out("prune", "--run-dir", "run", "--policy", "none-after-eval"),  # checked before step 0 is deleted
    Case("out-under-file-run-config", "cli", cli_args("run-config", "--values", "{{}}", "--out", "afile/RUN.yaml"),
         r"afile/RUN\.yaml: afile is a file, not a directory"),
    Case("out-under-file-make-train-set", "cli",
         cli_args("make-train-set", "--pool", "{inp}/pool.jsonl", "--first", "2", "--out", "afile/x.jsonl"),
         r"afile/x\.jsonl: afile is a file, not a directory"),
    Case("out-file-train", "cli", cli_args("train", "--config", "{inp}/RUN.yaml", "--out", "afile"),
         r"rlvr train: error: --out afile is a file; give a directory"),
    Case("out-file-tables", "cli", cli_args("tables", "--metrics", str(GOLDEN_METRICS), "--out", "afile"),
         r"rlvr tables: error: --out afile is a file; give a directory"),
    Case("out-file-figures", "cli", cli_args("figures", "--metrics", str(GOLDEN_METRICS), "--out", "afile"),
         r"rlvr figures: error: --out afile is a file; give a directory"),
]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if not p.is_symlink()}


def test_matrix_covers_the_issue():
    ids = {c.id for c in CASES}
    assert len(CASES) >= 20 and len(ids) == len(CASES)
    for needed in ("wf-unknown-key", "wf-wrong-type", "wf-negative-steps", "wf-pi-rank-0", "wf-pi-rank-above-pool",
                   "wf-unknown-model", "wf-unknown-prompt-type", "wf-unknown-variant", "wf-unknown-benchmark",
                   "train-row-without-answer", "train-empty-prompt", "pool-duplicate-ids", "train-truncated-jsonl",
                   "model-dir-missing", "model-weights-corrupt"):
        assert needed in ids, needed


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_fails_naming_it_before_writing(case, tmp_path, tiny_model_dir, capsys, monkeypatch):
    work = tmp_path / "work"  # the working directory (Snakemake's --directory): results/ would go here
    work.mkdir()
    for name in ("resources", "config"):
        (work / name).symlink_to(REPO / name)
    monkeypatch.chdir(work)
    made = case.make(tmp_path, tiny_model_dir)
    before = _tree(work)
    out = work / "results" / "out"

    if case.layer == "workflow":
        with pytest.raises(ConfigError) as exc:
            validate_workflow_config(made, root=work)
        message = str(exc.value)
    else:
        if case.layer == "cli":
            argv = made
        elif case.layer.startswith("train"):
            base = _base_run(tiny_model_dir)
            run_yaml = tmp_path / "in" / "RUN.yaml"
            run_yaml.parent.mkdir(exist_ok=True)
            if case.layer == "train-config":  # the case wrote RUN.yaml itself
                run_yaml = made
            else:
                run_yaml.write_text(yaml.safe_dump({**base, **(made if case.layer == "train" else {})}))
            argv = ["train", "--config", str(run_yaml), "--out", str(out)]
            if case.layer == "train-set":
                argv += [a for kv in made for a in ("--set", kv)]
        else:
            argv = ["prepare-data", "--input", str(made), "--out", str(out / "pool.jsonl")]
        rc = cli.main(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        lines = err.strip().splitlines()
        assert lines and lines[-1].startswith(f"rlvr {argv[0]}: error: "), err  # one line, no traceback
        assert "Traceback" not in err
        message = lines[-1]
    assert re.search(case.message, message), message
    assert not out.exists() and not (work / "results").exists()
    assert _tree(work) == before


@pytest.mark.parametrize("command, out_flag", [("score-pool", "--metrics"), ("score-pool", "--pool"),
                                               ("rank", "--history"), ("rank", "--pool")])
def test_out_that_is_an_input_is_refused_and_kept(command, out_flag, tmp_path, capsys):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    history = tmp_path / "history.json"
    history.write_text(json.dumps({str(i): [0.0, 1.0] for i in range(4)}), encoding="utf-8")
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "acc/by_index": {"0": 1.0}}) + "\n", encoding="utf-8")
    paths = {"--pool": pool, "--history": history, "--metrics": metrics}
    src = "--metrics" if out_flag == "--metrics" else "--history"
    argv = [command, src, str(paths[src]), "--pool", str(pool), "--out", str(paths[out_flag])]
    before = paths[out_flag].read_bytes()
    assert cli.main(argv) == 2
    assert f"is the {out_flag} file" in capsys.readouterr().err
    assert paths[out_flag].read_bytes() == before


@pytest.mark.parametrize("flags", [["--random", "2", "--seed", "-1"], ["--first", "2", "--label-noise", "0.5", "--noise-seed", "-5"]])
def test_negative_train_set_seed_is_a_clear_error(flags, tmp_path, capsys):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    out = tmp_path / "set.jsonl"
    assert cli.main(["make-train-set", "--pool", str(pool), *flags, "--batch-size", "4", "--out", str(out)]) == 2
    assert "must be >= 0" in capsys.readouterr().err and not out.exists()


def test_evaluate_refuses_an_unusable_out_before_loading_the_model(tmp_path, capsys):
    out = tmp_path / "afile"
    out.write_text("keep me", encoding="utf-8")
    # the model does not exist either: the --out check must come first (before any generation)
    assert cli.main(["evaluate", "--model", str(tmp_path / "no-model"), "--benchmarks", "math500",
                     "--out", str(out)]) == 2
    assert "is a file" in capsys.readouterr().err and out.read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize("command", ["train", "evaluate", "tables", "figures"])
def test_out_under_a_read_only_directory_is_refused_before_loading(command, tmp_path, tiny_model_dir, capsys,
                                                                   monkeypatch):
    # root ignores chmod, so the read-only directory (a read-only mount, another user's folder) is os.access
    # saying no; train used to load the model and fail at its first write with a bare PermissionError
    import os

    from oneshot_rlvr import fileio

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(fileio.os, "access", lambda p, mode, **kw: Path(p) != ro and real(p, mode, **kw))
    monkeypatch.chdir(tmp_path)
    if command == "train":
        _cli_inputs(tmp_path, tiny_model_dir)  # a valid RUN.yaml of the tiny model
    out = ro / "sub" / "out"
    argv = {"train": ["train", "--config", str(tmp_path / "in" / "RUN.yaml")],
            "evaluate": ["evaluate", "--model", str(tmp_path / "no-model"), "--benchmarks", "math500"],
            "tables": ["tables", "--metrics", str(tmp_path / "no-metrics.csv")],
            "figures": ["figures", "--metrics", str(tmp_path / "no-metrics.csv")]}[command]
    assert cli.main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: {ro} is not writable" in err and "Traceback" not in err, err
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failed_tiny_model_build_leaves_no_half_model(overwrite, tmp_path, monkeypatch):
    """build-tiny-model writes aside and swaps the folder in: a crash while saving used to leave config.json
    without weights (which the rerun then refused to replace), and with --overwrite destroyed the old model."""
    import transformers

    from oneshot_rlvr.modeling import build_tiny_model

    out = tmp_path / "m"
    if overwrite:
        build_tiny_model(out, seed=1)
    before = _tree(out) if overwrite else None

    def crash(self, *a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(transformers.PreTrainedTokenizerBase, "save_pretrained", crash)
    with pytest.raises(OSError, match="No space"):
        build_tiny_model(out, seed=2, overwrite=overwrite)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["m"] if overwrite else [])  # no temp folder left
    if overwrite:
        assert _tree(out) == before
