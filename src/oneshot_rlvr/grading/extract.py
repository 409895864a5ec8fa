"""Answer extraction shared by the graders: boxed answers, multiple-choice letters, think blocks.

Every function here is pure string processing (no SymPy, no eval): safe on arbitrary model text and
linear in its length, so it can also run in the trainer process (e.g. for `boxed_ratio`).
"""

from __future__ import annotations

import re

__all__ = [
    "sanitize_text",
    "extract_boxed_last",
    "last_boxed_span",
    "boxed_contents_all",
    "final_boxed_group",
    "extract_choice",
    "split_think",
    "has_boxed",
]


def sanitize_text(text) -> str:
    """Coerce grader input to a valid str: None -> "", bytes decoded leniently, lone surrogates -> U+FFFD."""
    if text is None:
        return ""
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        # Numeric golds (AMC answers are floats such as 27.0) arrive as numbers.
        text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


def _match_brace(text: str, open_idx: int) -> int | None:
    """Index of the `}` closing the `{` at open_idx, or None if unbalanced."""
    depth = 0
    for i in range(open_idx, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def extract_boxed_last(text) -> str | None:
    """DeepScaleR / verl (`last_boxed_only_string` + `remove_boxed`) semantics, reproduced exactly.

    - If the text contains "\\boxed", the search starts at its LAST occurrence, else at the last "\\fbox",
      else there is no answer (None).
    - From there, characters are scanned and braces counted until the first brace closes; with no closing
      brace the answer is None.
    - The span must be literally "\\boxed{...}"; anything else ("\\fbox{5}", "\\boxed 5", "\\boxed {5}",
      "\\boxedfoo{5}") gives None.  An empty box gives "" (the paper's prompt ends in "\\boxed{}", so a
      box-less response graded on prompt+response extracts "").
    """
    text = sanitize_text(text)
    idx = text.rfind("\\boxed")
    if idx < 0:
        idx = text.rfind("\\fbox")
        if idx < 0:
            return None
    prefix = "\\boxed{"
    # The reference brace-matches from idx and then demands the span start with "\boxed{" and end
    # with "}"; any other form (\fbox{..}, "\boxed 5", "\boxed {5}") therefore gives None.
    if not text.startswith(prefix, idx):
        return None
    end = _match_brace(text, idx + len(prefix) - 1)
    if end is None:
        return None
    return text[idx + len(prefix) : end]


def _brace_map(text: str) -> dict[int, int]:
    """Map each "{" index to the index of its matching "}" (stack matching; unmatched opens absent)."""
    stack: list[int] = []
    out: dict[int, int] = {}
    for i, c in enumerate(text):
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            out[stack.pop()] = i
    return out


_BOX_START = re.compile(r"\\(?:boxed|fbox)\b\s*")


def boxed_contents_all(text: str) -> list[tuple[int, int, str]]:
    """All top-level boxes as (start, end, content): `\\boxed{..}`, `\\fbox{..}`, `\\boxed {..}` and the
    brace-less `\\boxed 5` form (content up to `$`, a newline or whitespace). Unclosed boxes are skipped."""
    out: list[tuple[int, int, str]] = []
    if "box" not in text:
        return out
    close_of = _brace_map(text)  # one O(n) pass: 20k unclosed boxes must not cost O(n^2)
    pos = 0
    n = len(text)
    while True:
        m = _BOX_START.search(text, pos)
        if m is None:
            break
        j = m.end()
        if j < n and text[j] == "{":
            end = close_of.get(j)
            if end is None:
                # Unclosed box: nothing after it can be a complete box either.
                pos = j + 1
                continue
            out.append((m.start(), end + 1, text[j + 1 : end]))
            pos = end + 1
        elif j > m.start() + len(m.group(0).rstrip()):
            # Brace-less "\boxed 5": the token up to whitespace, "$" or a brace.
            mm = re.match(r"[^\s$\\{}]+", text[j : j + 200])
            if mm is not None:
                out.append((m.start(), j + mm.end(), mm.group(0).rstrip(".")))
                pos = j + mm.end()
            else:
                pos = j
        else:
            pos = j
    return out


def last_boxed_span(text) -> str | None:
    """Lenient last-box extraction for the strict grader: last complete `\\boxed{}` / `\\fbox{}` /
    `\\boxed 5`, brace-matched; None if there is no complete box."""
    boxes = boxed_contents_all(sanitize_text(text))
    return boxes[-1][2] if boxes else None


# Text allowed between two boxes that are read as one multi-part final answer.
_JOINER = re.compile(r"^[\s$,;.]*(?:(?:and|or|,|;|&)[\s$,;.]*)?(?:\\\(|\\\)|\\\[|\\\]|\$)*[\s$,;]*$", re.I)


def final_boxed_group(text) -> tuple[list[str], str]:
    """The final answer as a group of boxes: the last box plus any boxes before it separated only by
    commas/"and"/"or"/whitespace/math delimiters (e.g. "\\boxed{2} and \\boxed{3}").

    Returns (contents, joiner_kind) where joiner_kind is "or" if any joiner is "or", else "and".
    Empty list if there is no box."""
    boxes = boxed_contents_all(sanitize_text(text))
    if not boxes:
        return [], "and"
    group = [boxes[-1]]
    kind = "and"
    for prev in reversed(boxes[:-1]):
        between = text[prev[1] : group[0][0]]
        if len(between) > 40 or not _JOINER.match(between):
            break
        if re.search(r"\bor\b", between, re.I):
            kind = "or"
        group.insert(0, prev)
        if len(group) >= 10:
            break
    return [g[2] for g in group], kind


def has_boxed(text) -> bool:
    """True if the text contains a complete box (used for `boxed_ratio`)."""
    return last_boxed_span(text) is not None


def split_think(text: str) -> tuple[str | None, bool]:
    """Return (answer_part, had_think). With `<think>` but no `</think>` the answer part is None
    (an unfinished thought earns nothing). Text after the last `</think>` otherwise; the whole text if
    there is no think tag at all."""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1], True
    if "<think>" in text:
        return None, True
    return text, False


# ---------------------------------------------------------------- multiple choice (ARC)

# ARC offers up to five choices (7 rows; arc_e row 1441 has key "E"); NYSEDREGENTS rows use
# digit labels, mapped 1-5 -> A-E as the prompt shows them.
_LETTERS = "ABCDE"
_DIGIT_TO_LETTER = {str(i + 1): letter for i, letter in enumerate(_LETTERS)}
_CHOICE_TOKEN = re.compile(
    r"^\s*(?:\\text\{|\\textbf\{|\\mathrm\{|\\mathbf\{)?\s*\(?\s*([A-Ea-e1-5])\s*\)?\s*\}?\s*[.:)]?\s*"
    r"(?:[-:.)]\s*.*)?$",
    re.S,
)


def _choice_from_fragment(frag: str) -> str | None:
    """A single choice label from a short fragment such as "B", "(B)", "\\text{B}", "B. Sunlight", "2"."""
    frag = frag.strip().strip("$").strip()
    if not frag or len(frag) > 300:
        return None
    # Several letters (e.g. "A, C" or "A or C") are a hedge, not an answer.
    if re.fullmatch(r"\(?[A-Ea-e]\)?\s*(?:,|\band\b|\bor\b|/|&)\s*\(?[A-Ea-e]\)?.*", frag):
        return None
    m = _CHOICE_TOKEN.match(frag)
    if m is None:
        return None
    label = m.group(1)
    # A lowercase letter counts only when it stands alone (avoid reading "a" as an article).
    if label.islower() and len(frag.strip("() .:")) > 1:
        return None
    label = label.upper()
    return _DIGIT_TO_LETTER.get(label, label)


# "answer is (B)" / "answer: B" / "option 2": a capital letter (or a lower-case one in parentheses) and
# nothing word-like after it -- "the answer is a plant" names no choice
_ANSWER_IS_LABEL = re.compile(
    r"(?i:answer|choice|option)\s*(?i:is|:|would be|will be|=)?\s*(?i:option|choice)?\s*[:\-]?\s*\**\s*"
    r"(?:\(\s*([A-Ea-e1-5])\s*\)|([A-E1-5]))(?![A-Za-z0-9])"
)
_HEDGED_LABEL = re.compile(r"\s*\)?\s*(?:,|/|(?i:or|and)\b)\s*\(?\s*[A-E1-5](?![A-Za-z0-9])")


def extract_choice(response) -> str | None:
    """The multiple-choice label (A-E) a response commits to, or None.

    Order: (1) the last brace-matched `\\boxed{}` / `\\fbox{}` holding a single label ("B", "(B)",
    "\\text{B}", "B. text"); (2) the last "answer is (B)" / "answer: B" / "choice is B" / "option B";
    (3) the whole response (after `</think>`) being a lone label. Digit labels 1-5 map to A-E.
    Hedges such as "A, C" or "A or C" give None.
    """
    text = sanitize_text(response)
    body, _ = split_think(text)
    if body is None:
        return None
    boxes = boxed_contents_all(body)
    if boxes:
        return _choice_from_fragment(boxes[-1][2])
    tail = body[-3000:]
    hits = list(_ANSWER_IS_LABEL.finditer(tail))
    if hits:
        if _HEDGED_LABEL.match(tail, hits[-1].end()):
            return None  # "the answer is A or B"
        label = (hits[-1].group(1) or hits[-1].group(2)).upper()
        return _DIGIT_TO_LETTER.get(label, label)
    return _choice_from_fragment(body) if len(body.strip()) <= 40 else None
