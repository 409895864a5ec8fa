"""The paper's TRAINING reward grader: DeepScaleR / PRM800K semantics (official-repo.md §2.2).

`grade_deepscaler(text, gold)`:
  1. answer = `extract_boxed_last(text)` (last `\\boxed{...}`; None -> 0). The trainer decides what
     `text` is: the paper grades the decoded prompt+response, where a box-less response extracts "".
  2. gold = last box of gold if gold contains "\\boxed" (dropped if that fails), else gold as is.
  3. correct = `grade_answer_mathd` (Hendrycks `_strip_string` + string equality)
               OR `grade_answer_sympy` (PRM800K normalisation, tuple split, literal-fraction rule,
               integer rule, then SymPy `simplify(gt - pred) == 0` only for "safe" expressions).

Deliberate difference from the reference: SymPy parsing uses our eval-free `safe_sympy.safe_parse`
instead of `parse_expr` (which evals), and numeric towers/huge factorials are refused instead of hanging.
The rest (including the quirks: dropped `\\sqrt[3]` index via pylatexenc, float-rounded integers,
unreduced fractions rejected, everything after "\\text{ " dropped) is reproduced on purpose.
"""

from __future__ import annotations

import re

import sympy

from .extract import extract_boxed_last, sanitize_text
from .safe_sympy import SafeParseError, safe_parse

__all__ = ["grade_deepscaler", "grade_answer_mathd", "grade_answer_sympy", "hendrycks_strip", "prm_normalize"]

# ------------------------------------------------------------------ Hendrycks MATH (mathd) normaliser


def _fix_fracs(s: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{72} -> \\frac{1}{72}; leaves braced forms alone."""
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part.startswith("{"):
            out += part
            continue
        if len(part) < 2:
            return s  # malformed: the reference gives up and returns the input unchanged
        a, b, rest = part[0], part[1], part[2:]
        if b == "{":
            out += "{" + a + "}" + b + rest
        else:
            out += "{" + a + "}{" + b + "}" + rest
    return out


def _fix_a_slash_b(s: str) -> str:
    pieces = s.split("/")
    if len(pieces) != 2:
        return s
    try:
        a, b = int(pieces[0]), int(pieces[1])
    except ValueError:
        return s
    if s != f"{a}/{b}":
        return s
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _remove_right_units(s: str) -> str:
    # Hendrycks: "\text{ " only introduces units; everything from it on is dropped. More than one
    # occurrence is an assertion error in the reference, which makes mathd fall back to the raw answer.
    if "\\text{ " in s:
        pieces = s.split("\\text{ ")
        if len(pieces) != 2:
            raise ValueError("several \\text{ units")
        return pieces[0]
    return s


def _fix_sqrt(s: str) -> str:
    if "\\sqrt" not in s:
        return s
    pieces = s.split("\\sqrt")
    out = pieces[0]
    for piece in pieces[1:]:
        if piece and piece[0] != "{":
            out += "\\sqrt{" + piece[0] + "}" + piece[1:]
        else:
            # An empty piece raises IndexError in the reference (caught by the caller).
            if not piece:
                raise ValueError("dangling \\sqrt")
            out += "\\sqrt" + piece
    return out


def hendrycks_strip(s: str) -> str:
    """Hendrycks MATH `_strip_string` (may raise on malformed input, like the reference)."""
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "")
    s = _remove_right_units(s)
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    halves = s.split("=")
    if len(halves) == 2 and len(halves[0]) <= 2:
        s = halves[1]
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def _mathd_normalize(answer: str | None) -> str | None:
    if answer is None:
        return None
    answer = answer.strip()
    try:
        m = re.search(r"^\\text\{(?P<text>.+?)\}$", answer)
        if m is not None:
            answer = m.group("text").strip()
        return hendrycks_strip(answer)
    except Exception:
        return answer


def grade_answer_mathd(given: str | None, gold: str | None) -> bool:
    """Hendrycks string equivalence (None == None counts, as in the reference)."""
    return _mathd_normalize(gold) == _mathd_normalize(given)


# ------------------------------------------------------------------ PRM800K (sympy) normaliser

_UNITS = ["degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week",
          "month", "year", "foot", "feet", "inch", "yard"]  # fmt: skip
_UNIT_RES = [re.compile(rf"{u}(es)?(s)? *(\^[0-9]+)?") for u in _UNITS]
_LATEX2TEXT = None


def _latex_to_text(expr: str) -> str:
    """pylatexenc's LatexNodes2Text, as the reference uses it (it drops e.g. the index of \\sqrt[3])."""
    global _LATEX2TEXT
    if _LATEX2TEXT is None:
        from pylatexenc.latex2text import LatexNodes2Text

        _LATEX2TEXT = LatexNodes2Text()
    expr = expr.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac")
    expr = expr.replace("\\frac", " \\frac")  # mixed numbers: "1\frac12" -> "1 1/2"
    expr = _LATEX2TEXT.latex_to_text(expr)
    for a, b in (("√", "sqrt"), ("π", "pi"), ("∞", "inf"), ("∪", "U"), ("·", "*"), ("×", "*")):
        expr = expr.replace(a, b)
    return expr.strip()


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except (ValueError, OverflowError):
        return False


def _is_int_value(x: float) -> bool:
    try:
        return abs(x - int(round(x))) <= 1e-7
    except (ValueError, OverflowError):
        return False


_WELL_FORMED_COMMA = re.compile(r"(\d)(,)(\d\d\d)($|\D)")


def _strip_thousands_commas(expr: str) -> str:
    while True:
        nxt = _WELL_FORMED_COMMA.sub(r"\1\3\4", expr)
        if nxt == expr:
            return nxt
        expr = nxt


def _str_is_int(x: str) -> bool:
    try:
        return _is_int_value(float(_strip_thousands_commas(x)))
    except (ValueError, OverflowError):
        return False


def _str_to_int(x: str) -> int:
    # Through float on purpose (the reference does this): two different 60-digit integers compare equal.
    return int(float(x.replace(",", "")))


def prm_normalize(expr: str | None) -> str | None:
    """PRM800K / DeepScaleR `_normalize`."""
    if expr is None:
        return None
    m = re.search(r"^\\text\{(?P<text>.+?)\}$", expr)
    if m is not None:
        expr = m.group("text")
    expr = expr.replace("\\%", "%").replace("\\$", "$").replace("$", "").replace("%", "")
    expr = expr.replace(" or ", " , ").replace(" and ", " , ")
    expr = expr.replace("million", "*10^6").replace("billion", "*10^9").replace("trillion", "*10^12")
    for unit_re in _UNIT_RES:
        expr = unit_re.sub("", expr)
    expr = re.sub(r"\^ *\\circ", "", expr)
    if expr and expr[0] == "{" and expr[-1] == "}":
        expr = expr[1:-1]
    expr = re.sub(r",\\! *", "", expr)
    if _is_float(expr) and _is_int_value(float(expr)):
        expr = str(int(round(float(expr))))
    if "\\" in expr:
        try:
            expr = _latex_to_text(expr)
        except Exception:
            pass
    expr = re.sub("- *", "-", expr)
    expr = re.sub("([0-9]) +([0-9])", r"\1+\2", expr)  # mixed number "7 3/4" -> "7+3/4"
    expr = expr.replace(" ", "").replace("{", "").replace("}", "")
    expr = expr.lower()
    if _str_is_int(expr):
        expr = str(_str_to_int(expr))
    return expr


_BAD_SUBSTRINGS = ("^{", "^(")
_BAD_REGEXES = (re.compile(r"\^[0-9]+\^"), re.compile(r"\^[0-9][0-9]+"))
_TUPLE_CHARS = "()[]"


def _should_allow_eval(expr: str) -> bool:
    letters = {c for c in expr.replace("sqrt", "").replace("frac", "") if c.isalpha()}
    if len(letters) > 2:
        return False
    if any(b in expr for b in _BAD_SUBSTRINGS):
        return False
    return not any(r.search(expr) for r in _BAD_REGEXES)


def _equal_under_sympy(gold_norm: str, given_norm: str) -> bool:
    expr = f"({gold_norm})-({given_norm})"
    if not _should_allow_eval(expr):
        return False
    try:
        diff = safe_parse(expr)
        return sympy.simplify(diff) == 0
    except (SafeParseError, ArithmeticError, TypeError, ValueError, AttributeError, RecursionError):
        return False


def _split_tuple(expr: str) -> list[str]:
    expr = _strip_thousands_commas(expr)
    if not expr:
        return []
    if (
        len(expr) > 2
        and expr[0] in _TUPLE_CHARS
        and expr[-1] in _TUPLE_CHARS
        and all(ch not in expr[1:-1] for ch in _TUPLE_CHARS)
    ):
        return [e.strip() for e in expr[1:-1].split(",")]
    return [expr]


_FRAC_RE = re.compile(r"^-?[0-9]+.?/0*[1-9][0-9]*.?$")


def grade_answer_sympy(given: str | None, gold: str | None) -> bool:
    gold_n = prm_normalize(gold)
    given_n = prm_normalize(given)
    if gold_n is None:
        return False
    if gold_n == given_n:
        return True
    if not given_n:
        return False
    gold_elems = _split_tuple(gold_n)
    given_elems = _split_tuple(given_n)
    if len(gold_elems) > 1 and (gold_n[0] != given_n[0] or gold_n[-1] != given_n[-1]):
        return False  # a tuple needs the same brackets
    if len(gold_elems) != len(given_elems):
        return False
    for g, p in zip(gold_elems, given_elems):
        if _FRAC_RE.search(g) and _FRAC_RE.search(p):
            ok = g == p  # unreduced fractions are wrong on purpose
        elif _str_is_int(g) != _str_is_int(p):
            ok = False  # an integer gold needs an integer answer
        else:
            ok = _equal_under_sympy(g, p)
        if not ok:
            return False
    return True


def grade_deepscaler(text: str, gold, think: bool = False) -> tuple[bool, str | None]:
    """(correct, extracted answer) with the paper's training semantics (use_think=False), or with `think`
    the rllm evaluator's (the paper's R1-Distill numbers, grader "deepscaler_think"): no `</think>` scores 0 and
    only the text after the first `</think>` is graded (rllm's `split(...)[1]`). rllm also wants `<think>` in the
    text; our R1 prompt ends with it, so the response is not asked to repeat it."""
    text = sanitize_text(text)
    if think:
        if "</think>" not in text:
            return False, None
        text = text.split("</think>")[1]
    answer = extract_boxed_last(text)
    if answer is None:
        return False, None
    gold = sanitize_text(gold)
    if "\\boxed" in gold:
        gold = extract_boxed_last(gold)
        if gold is None:
            return False, answer
    try:
        ok = grade_answer_mathd(answer, gold) or grade_answer_sympy(answer, gold)
    except (ValueError, ArithmeticError, RecursionError):
        ok = False
    return bool(ok), answer
