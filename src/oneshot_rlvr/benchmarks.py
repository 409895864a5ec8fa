"""Evaluation benchmarks: loading `resources/eval/<bench>/test.jsonl`, gold answers, decoding defaults.

Gold answers are taken exactly where the paper's harness (`parse_ground_truth` in the Qwen2.5-Eval
fork) takes them, before its `strip_string` normalisation (the graders normalise):

| benchmark      | question field | gold                                                       |
|----------------|----------------|------------------------------------------------------------|
| math500        | problem        | last `\\boxed{}` of `solution` (equals `answer` on all 500) |
| minerva_math   | problem        | last `\\boxed{}` of `solution`                              |
| olympiadbench  | question       | `final_answer[0].strip("$")`                               |
| aime24, amc23  | question       | `answer` (AMC floats such as 27.0 become "27", as the      |
|                |                | harness's str() + trailing-".0" rule gives)                |
| aime25         | problem        | `answer`                                                   |
| arc_e, arc_c   | question       | `answerKey`, digit labels 1-4 mapped to A-D                |

The miniature world (docs/miniature.md) adds `toy` (all six categories, `subject` = category) and
`toy_<category>`: gold = `answer`, greedy, read from the world's `eval/` folder
(`resources/toy/eval` by default, `$RLVR_TOY_EVAL` to point elsewhere).

Decoding defaults follow the paper's evaluation script (`sh/eval_all_math.sh`): greedy, one sample
for MATH500 / Minerva / OlympiadBench (and ARC); avg@8 at temperature 0.6 for AIME24 / AMC23 /
AIME25, where we draw the 8 samples of a problem in one request (n=8) instead of tiling the file
8 times; top_p 1, 3072 new tokens, seed 0. That is the `harness` protocol. The paper evaluated
DeepSeek-R1-Distill-Qwen-1.5B with the rllm/DeepScaleR evaluator instead (official-repo.md): the
`rllm` protocol, temperature 0.6, top_p 0.95, avg@16 for MATH500 / Minerva / OlympiadBench and
avg@64 for AIME24 / AMC23 / AIME25, and the question followed by the instruction its test parquets
carry (`protocol_suffix`; rllm's scripts/data/deepscaler_dataset.py builds them as training data).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from oneshot_rlvr import RESOURCES
from oneshot_rlvr.errors import ConfigError, DataError
from oneshot_rlvr.fileio import read_utf8
from oneshot_rlvr.prompts import TRAIN_SUFFIX, arc_letter, arc_question, harness_question

# The paper's "Avg." is the unweighted mean over these six (Tab. 8 and the best-step rule).
MATH6: tuple[str, ...] = ("math500", "aime24", "amc23", "minerva_math", "olympiadbench", "aime25")
ARC: tuple[str, ...] = ("arc_e", "arc_c")

# The miniature world's categories (oneshot_rlvr.toy.tasks.CATEGORIES, repeated here so that
# importing the benchmarks does not import the task generators).
TOY_CATEGORIES: tuple[str, ...] = ("addition", "multiplication", "mixed", "fractions", "comparison", "remainders")
TOY: tuple[str, ...] = ("toy",) + tuple(f"toy_{c}" for c in TOY_CATEGORIES)

# The harness's vLLM stop strings; the stop token ids (<|im_end|>, <|endoftext|>) are added only
# for Qwen2 models, as the harness does when "qwen2" is in the model path. The ids are looked up in
# the model's tokenizer (the toy tokenizer has the same tokens at other ids); QWEN2_STOP_TOKEN_IDS
# are the real Qwen2 vocabulary's, the fallback when no tokenizer is at hand.
STOP_STRINGS: tuple[str, ...] = ("</s>", "<|im_end|>", "<|endoftext|>")
STOP_TOKENS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")
QWEN2_STOP_TOKEN_IDS: tuple[int, ...] = (151645, 151643)
MAX_NEW_TOKENS = 3072
SEED = 0


@dataclass(frozen=True)
class Decoding:
    temperature: float
    n_samples: int
    top_p: float = 1.0
    max_new_tokens: int = MAX_NEW_TOKENS
    seed: int = SEED


GREEDY = Decoding(temperature=0.0, n_samples=1)
AVG_AT_8 = Decoding(temperature=0.6, n_samples=8)
RLLM_AVG_AT_16 = Decoding(temperature=0.6, n_samples=16, top_p=0.95)
RLLM_AVG_AT_64 = Decoding(temperature=0.6, n_samples=64, top_p=0.95)
# The evaluation protocol: whose decoding settings (`rlvr evaluate --protocol`, a model's `eval_protocol`).
PROTOCOLS: tuple[str, ...] = ("harness", "rllm")


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    kind: str  # "math" (free-form answer) or "choice" (letter answer)
    decoding: Decoding
    paper_name: str
    toy: bool = False  # read from the miniature world's eval/ folder, `subject` kept per row


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "math500": BenchmarkSpec("math500", "math", GREEDY, "MATH500"),
    "aime24": BenchmarkSpec("aime24", "math", AVG_AT_8, "AIME24"),
    "amc23": BenchmarkSpec("amc23", "math", AVG_AT_8, "AMC23"),
    "minerva_math": BenchmarkSpec("minerva_math", "math", GREEDY, "Minerva"),
    "olympiadbench": BenchmarkSpec("olympiadbench", "math", GREEDY, "OlympiadBench"),
    "aime25": BenchmarkSpec("aime25", "math", AVG_AT_8, "AIME25"),
    "arc_e": BenchmarkSpec("arc_e", "choice", GREEDY, "ARC-E"),
    "arc_c": BenchmarkSpec("arc_c", "choice", GREEDY, "ARC-C"),
}
BENCHMARKS.update({name: BenchmarkSpec(name, "math", GREEDY, name.replace("_", "/"), toy=True) for name in TOY})


@dataclass(frozen=True)
class Problem:
    benchmark: str
    idx: int  # the harness's idx: the row's `idx` field if any, else its position
    id: str  # the row's own id (unique_id, id, idx or position), for joining with the source file
    question: str  # the parsed question (harness `parse_question`), not yet wrapped in a template
    gold: str
    subject: str | None = None  # math500 `subject` (Tab. 3 per-subject accuracy)
    choices: tuple[str, ...] = field(default=())  # ARC: the letters offered


_RLLM = {"math500": RLLM_AVG_AT_16, "minerva_math": RLLM_AVG_AT_16, "olympiadbench": RLLM_AVG_AT_16,
         "aime24": RLLM_AVG_AT_64, "amc23": RLLM_AVG_AT_64, "aime25": RLLM_AVG_AT_64}


def protocol_decoding(name: str, protocol: str = "harness") -> Decoding:
    """The paper's decoding of benchmark `name` under `protocol` (`harness`: the spec's own)."""
    spec = get_spec(name)
    if protocol == "harness":
        return spec.decoding
    if protocol == "rllm":
        if name not in _RLLM:
            raise ConfigError(f"--protocol rllm: the rllm evaluator has no setting for {name!r} "
                              f"(it covers {', '.join(_RLLM)})")
        return _RLLM[name]
    raise ConfigError(f"--protocol: unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")


def protocol_suffix(protocol: str = "harness") -> str:
    """Text `protocol` puts after each question. The harness: none. rllm: its test sets are built like its
    training data, `f"{problem} {instruction}"` with the same instruction as the training prompts
    (TRAIN_SUFFIX), then wrapped in the model's chat template (for R1-Distill the `deepseek-r1` one)."""
    if protocol == "rllm":
        return TRAIN_SUFFIX
    return ""


def get_spec(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ConfigError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})") from None


def parse_benchmark_list(text: str) -> list[str]:
    """"math500,aime24" -> names; "math6" / "arc" / "all" expand; unknown names are a ConfigError."""
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        group = {"math6": MATH6, "arc": ARC, "toy_all": TOY,
                 "all": tuple(b for b in BENCHMARKS if not get_spec(b).toy)}.get(part)
        for name in group or (part,):
            get_spec(name)
            if name not in names:
                names.append(name)
    if not names:
        raise ConfigError("--benchmarks: no benchmark given")
    return names


def stop_token_ids(tokenizer) -> list[int]:
    """Ids of <|im_end|> and <|endoftext|> in `tokenizer` (151645, 151643 for Qwen2), those it has."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in STOP_TOKENS if t in vocab]


def toy_eval_root() -> Path:
    return Path(os.environ.get("RLVR_TOY_EVAL") or RESOURCES / "toy" / "eval")


def last_boxed(text: str) -> str | None:
    """Content of the last "boxed" in `text`, brace-matched (the harness's rule for gold solutions).

    As in the harness, "\\boxed 5$" (no brace) yields the text up to the next "$". Returns None when
    there is no "boxed" at all, or the braces never close.
    """
    pos = text.rfind("boxed")
    if pos < 0:
        return None
    rest = text[pos + len("boxed"):]
    if not rest.startswith("{"):
        return rest.split("$")[0].strip()
    depth = 0
    for i, ch in enumerate(rest):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i]
    return None


def harness_number(value) -> str:
    """A numeric gold as the harness sees it: str(value) with a trailing ".0" dropped (27.0 -> "27")."""
    if isinstance(value, bool):
        raise TypeError("bool is not a numeric answer")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"benchmark file not found: {path}")
    rows = []
    with io.StringIO(read_utf8(path, "benchmark file")) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    if not rows:
        raise DataError(f"benchmark file is empty: {path}")
    return rows


def _field(row: dict, key: str, path: Path, lineno: int, types=(str,)):
    if key not in row:
        raise DataError(f"{path}:{lineno}: missing field {key!r}")
    value = row[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise DataError(f"{path}:{lineno}: field {key!r} has type {type(value).__name__}")
    return value


def _question(row: dict, path: Path, lineno: int) -> str:
    # parse_question's key order: question, problem, Question, input
    for key in ("question", "problem", "Question", "input"):
        if key in row:
            return _field(row, key, path, lineno)
    raise DataError(f"{path}:{lineno}: no question field (question/problem)")


def _math_gold(name: str, row: dict, path: Path, lineno: int) -> str:
    if name in ("math500", "minerva_math"):
        gold = last_boxed(_field(row, "solution", path, lineno))
        if gold is None:
            raise DataError(f"{path}:{lineno}: field 'solution' has no complete \\boxed{{}} answer")
        return gold
    if name == "olympiadbench":
        answers = _field(row, "final_answer", path, lineno, (list,))
        if not answers or not isinstance(answers[0], str):
            raise DataError(f"{path}:{lineno}: field 'final_answer' must be a non-empty list of strings")
        return answers[0].strip("$")
    value = _field(row, "answer", path, lineno, (str, int, float))
    return value if isinstance(value, str) else harness_number(value)


def load_benchmark(name: str, root: Path | str | None = None, limit: int | None = None) -> list[Problem]:
    """The problems of one benchmark, in the harness's order (sorted by idx), the first `limit` if given."""
    spec = get_spec(name)
    if root is None:
        root = toy_eval_root() if spec.toy else RESOURCES / "eval"
    path = Path(root) / name / "test.jsonl"
    rows = _read_jsonl(path)
    problems: list[Problem] = []
    for pos, row in enumerate(rows):
        lineno = pos + 1
        raw_idx = row.get("idx", pos)
        try:
            idx = int(raw_idx)
        except (TypeError, ValueError):
            raise DataError(f"{path}:{lineno}: field 'idx' is not an integer: {raw_idx!r}") from None
        row_id = str(row.get("unique_id", row.get("id", raw_idx)))
        if spec.kind == "choice":
            problems.append(_arc_problem(name, row, idx, row_id, path, lineno))
            continue
        gold = _math_gold(name, row, path, lineno)
        question = harness_question(_question(row, path, lineno), gold)
        subject = _field(row, "subject", path, lineno) if name == "math500" or spec.toy else None
        problems.append(Problem(name, idx, row_id, question, gold, subject))
    if len({p.idx for p in problems}) != len(problems):
        raise DataError(f"{path}: duplicate idx values")
    problems.sort(key=lambda p: p.idx)  # the harness's data_loader sorts by idx
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {limit}")
        problems = problems[:limit]
    return problems


def _arc_problem(name: str, row: dict, idx: int, row_id: str, path: Path, lineno: int) -> Problem:
    question = _field(row, "question", path, lineno)
    choices = _field(row, "choices", path, lineno, (dict,))
    labels, texts = choices.get("label"), choices.get("text")
    if not isinstance(labels, list) or not isinstance(texts, list) or len(labels) != len(texts) or not labels:
        raise DataError(f"{path}:{lineno}: field 'choices' needs equal-length 'label' and 'text' lists")
    key = _field(row, "answerKey", path, lineno)
    if key not in labels:
        raise DataError(f"{path}:{lineno}: answerKey {key!r} is not one of the labels {labels}")
    try:
        letters = tuple(arc_letter(label) for label in labels)
        text = arc_question(question, labels, [str(t) for t in texts])
    except ValueError as exc:
        raise DataError(f"{path}:{lineno}: {exc}") from None
    return Problem(name, idx, row_id, text, arc_letter(key), None, letters)
