"""The `math_verify` grader: math-verify (called the way verl calls it, gold wrapped in \\boxed{}) plus the
guards grading.md §7 recommends. Used for our own evaluation column and as an optional training reward.

Steps:
  1. Answer text: after the last `</think>` (an unterminated `<think>` earns 0).
  2. Final answer: the last complete box (`\\boxed{}`, `\\fbox{}`, `\\boxed 5`), merged with boxes just
     before it that are separated only by commas/"and"/"or" (a multi-part answer). No box: math-verify's
     own anchors ("final answer is", "answer:", last latex/number) on the last 4,000 characters.
  3. Hedges are wrong: "7 \\text{ or } 8", enumerations with \\ldots (unless the gold has one).
  4. Pre-normalisation of both sides: unicode (NFKC; √ π ∞ ≤ ≥ ° ² ½, minus signs) to LaTeX, NBSP/ZWSP/
     thin spaces and `\\,`/`{,}` inside numbers dropped, trailing "." dropped, `XeY` scientific notation
     to `X\\times10^{Y}`, "27.0" -> "27".
  5. Fast paths before math-verify: normalised string equality; exact rational comparison when both
     sides are plain numbers (integers never go through float; percent: gold `X\\%` accepts X, X\\% and
     X/100; relative tolerance at the gold's precision only for Minerva / scientific-notation golds).
  6. math-verify `parse` + `verify(allow_set_relation_comp=True)`; a numeric "True" is re-checked with a
     relative tolerance of 1e-9 (math-verify's absolute 6-decimal rounding passes 1/2^99 = 1/2^98).

math-verify's own SIGALRM timeouts are disabled: the GraderPool worker owns the timer and the hard kill.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from .extract import extract_choice, final_boxed_group, sanitize_text, split_think

__all__ = ["grade_math_verify", "normalize_answer_text"]

_FALLBACK_TAIL = 4000

_CHAR_MAP = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2011": "-",
    "×": "\\times ", "·": "\\cdot ", "÷": "\\div ", "π": "\\pi ", "∞": "\\infty ", "≤": "\\le ",
    "≥": "\\ge ", "≠": "\\ne ", "°": "^\\circ ", "∪": "\\cup ", "∩": "\\cap ", "∈": "\\in ",
    "⁰": "^{0}", "¹": "^{1}", "²": "^{2}", "³": "^{3}", "⁴": "^{4}", "⁵": "^{5}", "⁶": "^{6}",
    "⁷": "^{7}", "⁸": "^{8}", "⁹": "^{9}", "⁻": "^{-}",
    "½": "\\frac{1}{2}", "⅓": "\\frac{1}{3}", "⅔": "\\frac{2}{3}", "¼": "\\frac{1}{4}",
    "¾": "\\frac{3}{4}", "⅕": "\\frac{1}{5}", "⅖": "\\frac{2}{5}", "⅗": "\\frac{3}{5}",
    "⅘": "\\frac{4}{5}", "⅙": "\\frac{1}{6}", "⅚": "\\frac{5}{6}", "⅛": "\\frac{1}{8}",
    "⅜": "\\frac{3}{8}", "⅝": "\\frac{5}{8}", "⅞": "\\frac{7}{8}",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ", "\u200a": " ", "\u2002": " ", "\u2003": " ",
    "\u200b": "", "\u200c": "", "\u200d": "", "\ufeff": "", "\u2060": "",
}  # fmt: skip
_CHAR_TABLE = str.maketrans(_CHAR_MAP)
_SPACE_IN_NUMBER = re.compile(r"(?<=\d)(?:\\,|\\!|\\ |\\;|~|\{,\}| )(?=\d{3}(?!\d))")


def _fix_unicode_sqrt(s: str) -> str:
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c != "√":
            out.append(c)
            i += 1
            continue
        j = i + 1
        if j < len(s) and s[j] == "(":
            depth, k = 0, j
            while k < len(s):
                depth += s[k] == "("
                depth -= s[k] == ")"
                if depth == 0:
                    break
                k += 1
            out.append("\\sqrt{" + s[j + 1 : k] + "}")
            i = k + 1
        else:
            m = re.match(r"\d+(?:\.\d+)?|[A-Za-z]|\\pi", s[j:])
            if m:
                out.append("\\sqrt{" + m.group(0) + "}")
                i = j + m.end()
            else:
                out.append("\\sqrt")
                i = j
    return "".join(out)


def normalize_answer_text(s: str) -> str:
    """Unicode and spacing normalisation applied to answer strings before any comparison."""
    if any(ord(c) > 127 for c in s):
        s = s.translate(_CHAR_TABLE)
        if "√" in s:
            s = _fix_unicode_sqrt(s)
        s = unicodedata.normalize("NFKC", s)
    for _ in range(3):  # "1\,000\,000" needs one pass per group boundary
        s2 = _SPACE_IN_NUMBER.sub("", s)
        if s2 == s:
            break
        s = s2
    s = s.strip()
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()  # "\boxed{5.}" -> "5" (a sentence period inside the box)
    return s


_SCI = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*[eE]\s*([-+]?\d+)\s*$")
_TRAILING_ZERO_INT = re.compile(r"^(-?\d+)\.0+$")


def _canon_numbers(s: str) -> str:
    m = _SCI.match(s)
    if m:
        return f"{m.group(1)}\\times10^{{{int(m.group(2))}}}"
    m = _TRAILING_ZERO_INT.match(s)
    if m:
        return m.group(1)
    return s


# ------------------------------------------------------------------ exact numeric fast path

_WRAPPERS = re.compile(r"\\(?:left|right|displaystyle|mathrm|textstyle)\b|\\!|\$")
_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[-+]?\.\d+"
_RE_NUM = re.compile(rf"^(?P<n>{_NUM})(?P<pct>\\?%)?$")
_RE_FRAC = re.compile(r"^(?P<s>-?)\\[dtc]?frac\{(?P<a>-?\d+)\}\{(?P<b>-?\d+)\}(?P<pct>\\?%)?$")
_RE_SLASH = re.compile(r"^(?P<a>-?\d+)/(?P<b>\d+)$")
_RE_SCI = re.compile(
    r"^(?P<m>[-+]?\d+(?:\.\d+)?)(?:\\times|\\cdot|\*|x)\{?10\}?\^\{?(?P<e>[-+]?\d+)\}?$"
)
_RE_POW10 = re.compile(r"^10\^\{?(?P<e>[-+]?\d+)\}?$")


class _Num:
    __slots__ = ("value", "decimals", "pct", "sci", "digits_only")

    def __init__(self, value, decimals, pct=False, sci=False, digits_only=None):
        self.value, self.decimals, self.pct, self.sci, self.digits_only = value, decimals, pct, sci, digits_only


def _to_num(s: str) -> _Num | None:
    """A plain number (int, decimal, fraction, a/b, scientific, optional %), exactly; else None."""
    s = _WRAPPERS.sub("", s).replace(" ", "").replace("{,}", "")
    s = re.sub(r"\^\{?\\circ\}?$", "", s)
    s = re.sub(r"\\text\{[^{}]*\}$", "", s) if re.match(r"^[-+.\d]", s) else s
    if not s or len(s) > 400:
        if s and len(s) > 400 and re.fullmatch(r"-?\d+", s):
            return _Num(None, 0, digits_only=s.lstrip("-").lstrip("0") or "0")
        return None
    m = _RE_NUM.match(s)
    if m:
        n = m.group("n").replace(",", "")
        if n.endswith("."):
            n = n[:-1]
        dec = len(n.split(".")[1]) if "." in n else 0
        return _Num(Fraction(n), dec, pct=bool(m.group("pct")))
    m = _RE_FRAC.match(s)
    if m:
        b = int(m.group("b"))
        if b == 0:
            return None
        v = Fraction(int(m.group("a")), b)
        return _Num(-v if m.group("s") else v, None, pct=bool(m.group("pct")))
    m = _RE_SLASH.match(s)
    if m and int(m.group("b")) != 0:
        return _Num(Fraction(int(m.group("a")), int(m.group("b"))), None)
    m = _RE_SCI.match(s) or _RE_POW10.match(s)
    if m:
        e = int(m.group("e"))
        if abs(e) > 400:
            return None
        mant = m.groupdict().get("m") or "1"
        dec = len(mant.split(".")[1]) if "." in mant else 0
        return _Num(Fraction(mant) * Fraction(10) ** e, dec - e, sci=True)
    return None


def _close_at_precision(pred: _Num, gold: _Num) -> bool:
    """pred rounds to gold at gold's precision (decimals), and pred is at least as precise."""
    if gold.decimals is None:
        return False
    if pred.decimals is not None and pred.decimals < gold.decimals:
        return False
    half_ulp = Fraction(1, 2) * Fraction(10) ** (-gold.decimals)
    return abs(pred.value - gold.value) <= half_ulp


def _compare_numbers(pred: _Num, gold: _Num, tolerant: bool) -> bool:
    if pred.digits_only is not None or gold.digits_only is not None:
        return pred.digits_only is not None and pred.digits_only == gold.digits_only
    golds = [gold.value]
    preds = [pred.value]
    if gold.pct and not pred.pct:
        golds.append(gold.value / 100)  # gold 28% accepts 28 and 0.28
    if pred.pct and not gold.pct:
        preds.append(pred.value / 100)  # pred 28% matches gold 28 (unit) or 0.28
    if any(p == g for p in preds for g in golds):
        return True
    if tolerant and _close_at_precision(pred, gold):
        return True
    return False


# ------------------------------------------------------------------ string fast path


def _canon_string(s: str) -> str:
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cfrac", "\\frac")
    s = _WRAPPERS.sub("", s)
    s = re.sub(r"\^\{?\\circ\}?", "", s)
    s = re.sub(r"\\(?:text|textbf|mathbf|mbox|operatorname)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\s+|\\[,;: ]", "", s)
    return s.lower() if re.fullmatch(r"[A-Za-z ]+", s) else s


# ------------------------------------------------------------------ math-verify path


def _mv():
    import math_verify.grader as _g
    import math_verify.parser as _p

    # Timeouts are ours (worker timer + hard kill); silence the once-per-process "timeout disabled" note.
    _p.TIMEOUT_WARNING_SHOWN = True
    _g.TIMEOUT_WARNING_SHOWN = True
    return _p, _g


def _first_sympy(parsed):
    import sympy

    for x in parsed:
        if isinstance(x, sympy.Basic):
            return x
    return None


def _numeric_disagree(g, p) -> bool:
    """True if both are numbers that differ by more than 1e-9 relative (math-verify said equal)."""
    import sympy

    if not (isinstance(g, sympy.Expr) and isinstance(p, sympy.Expr)):
        return False
    if g.has(sympy.Float) or not g.is_number or not p.is_number:
        return False
    if p.has(sympy.Float) and g.is_rational is False:
        return True  # a decimal approximation of an exact irrational answer is wrong (grading.md §5)
    try:
        gv = complex(sympy.N(g, 30))
        pv = complex(sympy.N(p, 30))
    except (TypeError, ValueError, ArithmeticError):
        return False
    scale = max(abs(gv), abs(pv))
    if scale == 0 or scale != scale or scale == float("inf"):
        return False
    return abs(gv - pv) > 1e-9 * scale


def _mv_equal(pred_variants: list[str], gold_variants: list[str], *, boxed: bool) -> tuple[bool, str | None]:
    mvp, mvg = _mv()
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    gold_cfg = [LatexExtractionConfig()]
    pred_cfg = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    golds = []
    for gv in gold_variants:
        golds.extend(mvp.parse("\\boxed{" + gv + "}", extraction_config=gold_cfg, parsing_timeout=None))
    if not golds:
        return False, None
    extracted = None
    for pv in pred_variants:
        text = "\\boxed{" + pv + "}" if boxed else pv
        preds = mvp.parse(text, extraction_config=pred_cfg, parsing_timeout=None)
        if not preds:
            continue
        if extracted is None:
            extracted = preds[-1] if isinstance(preds[-1], str) else pv
        if mvg.verify(golds, preds, allow_set_relation_comp=True, timeout_seconds=None):
            if _numeric_disagree(_first_sympy(golds), _first_sympy(preds)):
                continue
            return True, extracted
    return False, extracted


_HEDGE = re.compile(r"\\text\{\s*or\s*\}|\s\bor\b\s|\\(?:l|c)?dots\b|\\ldots|\.\.\.")


def grade_math_verify(response: str, gold, benchmark: str | None = None) -> tuple[bool, str | None]:
    """(correct, extracted answer) for the strict grader."""
    text = sanitize_text(response)
    gold = sanitize_text(gold).strip()
    body, _ = split_think(text)
    if body is None or not body.strip():
        return False, None
    gold_group, _ = final_boxed_group(gold) if "\\boxed" in gold or "\\fbox" in gold else ([gold], "and")
    gold = ", ".join(gold_group)
    gold = _canon_numbers(normalize_answer_text(gold))
    if not gold:
        return False, None  # an empty gold never matches

    if re.fullmatch(r"\(?[A-E]\)?", gold):
        choice = extract_choice(body)
        return choice == gold.strip("()"), choice

    group, _ = final_boxed_group(body)
    if group:
        seen: list[str] = []
        for g in group:
            g = _canon_numbers(normalize_answer_text(g))
            if g not in seen:
                seen.append(g)
        pred = ", ".join(seen)
        if not pred:
            return False, ""
        if _HEDGE.search(pred) and not _HEDGE.search(gold):
            return False, pred
        if _canon_string(pred) == _canon_string(gold):
            return True, pred
        pn, gn = _to_num(pred), _to_num(gold)
        if pn is not None and gn is not None:
            tolerant = benchmark == "minerva_math" or gn.sci
            return _compare_numbers(pn, gn, tolerant), pred
        pred_variants = [pred]
        gold_variants = [gold]
        if re.search(r"\\?%$", gold):
            gold_variants.append(re.sub(r"\\?%$", "", gold))
        if re.search(r"\\?%$", pred):
            pred_variants.append(re.sub(r"\\?%$", "", pred))
        ok, _ = _mv_equal(pred_variants, gold_variants, boxed=True)
        return ok, pred

    # No box: math-verify's anchored extraction over the end of the response.
    tail = normalize_answer_text(body[-_FALLBACK_TAIL:])
    gold_variants = [gold] + ([re.sub(r"\\?%$", "", gold)] if re.search(r"\\?%$", gold) else [])
    return _mv_equal([tail], gold_variants, boxed=False)
