"""The `math_verify` grader: math-verify (called the way verl calls it, gold wrapped in \\boxed{}) plus the
guards grading.md §7 recommends. Used for our own evaluation column and as an optional training reward.

Steps:
  1. Answer text: after the last `</think>` (an unterminated `<think>` earns 0).
  2. Final answer: the last complete box (`\\boxed{}`, `\\fbox{}`, `\\boxed 5`), merged with boxes just
     before it that are separated only by commas/"and"/"or" (a multi-part answer). No box: math-verify's
     own anchors ("final answer is", "answer:", last latex/number) on the last 500 characters.
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
from functools import lru_cache

from .extract import extract_choice, final_boxed_group, sanitize_text, split_think

__all__ = ["grade_math_verify", "normalize_answer_text"]

_FALLBACK_TAIL = 500

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


_SPACED_TEXT_CMD = re.compile(r"\\(text|textrm|textbf|mathrm|mathbf|mbox|operatorname)\s+\{")


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
    # "\text {red}" (a space before the brace, as some golds have it) is "\text{red}"
    s = _SPACED_TEXT_CMD.sub(r"\\\1{", s)
    # upright e / i are the constants (math-verify drops \mathrm{..} as a unit: "2\mathrm{e}" would be 2)
    s = re.sub(r"\\mathrm\{([ei])\}", r"\1", s)
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
_SPACING = r"(?:\\[,;:! ]|\\q?quad\b|~|\s)"
# a trailing text unit (any spacing before it), or an \mathrm unit after explicit spacing (not \mathrm{e})
_UNIT_TAIL = re.compile(
    rf"{_SPACING}*\\(?:text|textrm|mbox)\s*\{{[^{{}}]*\}}$|{_SPACING}*(?:\\[,;: ]|\\q?quad\b|~)\s*\\mathrm\s*\{{(?![ei]\}})[^{{}}]*\}}$"
)
_RE_NUM = re.compile(rf"^(?P<n>{_NUM})(?P<pct>\\?%)?$")
_RE_FRAC = re.compile(r"^(?P<s>-?)\\[dtc]?frac\{(?P<a>-?\d+)\}\{(?P<b>-?\d+)\}(?P<pct>\\?%)?$")
_RE_MIXED = re.compile(r"^(?P<s>-?)(?P<w>\d+)\\[dt]?frac\{(?P<a>\d+)\}\{(?P<b>\d+)\}$")
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
    s = re.sub(r"^(-?)\s*\\\$\s*", r"\1", s.strip())  # currency: "\$1,200" is 1200
    if re.match(r"^[-+.\d]", s):
        s = _UNIT_TAIL.sub("", s)  # "5\,\text{cm}", "300~\mathrm{K}": units are optional
    if re.search(r",\s", s):  # "81, 256" lists two answers (MATH train 3679); a thousands comma has no space
        return None
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
    m = _RE_MIXED.match(s)
    if m and 0 < int(m.group("a")) < int(m.group("b")):
        # Mixed number 1\frac{4}{5} = 9/5 (grading policy: mixed numbers are fine).
        v = int(m.group("w")) + Fraction(int(m.group("a")), int(m.group("b")))
        return _Num(-v if m.group("s") else v, None)
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
    if pred.value * gold.value < 0:
        return False
    # round half away from zero: gold 7 accepts [6.5, 7.5), gold -7 accepts (-7.5, -6.5]
    d = abs(pred.value) - abs(gold.value)
    return -half_ulp <= d < half_ulp


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
    m = re.fullmatch(r"\(([A-E])\)", s)
    if m:
        return m.group(1).lower()  # choice labels: "(B)" is "B" (letters compare case-insensitively)
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


_GOLD_CACHE: dict[str, list] = {}
_GOLD_CACHE_MAX = 2048


def _parse_gold(gold: str) -> list:
    """math-verify parse of `\\boxed{gold}`, cached: one gold is graded against many rollouts."""
    hit = _GOLD_CACHE.get(gold)
    if hit is not None:
        return hit
    mvp, _ = _mv()
    from math_verify import LatexExtractionConfig

    parsed = mvp.parse("\\boxed{" + gold + "}", extraction_config=[LatexExtractionConfig()], parsing_timeout=None)
    if len(_GOLD_CACHE) >= _GOLD_CACHE_MAX:
        _GOLD_CACHE.clear()
    _GOLD_CACHE[gold] = parsed
    return parsed


def _top_level_commas(s: str) -> int:
    s = re.sub(r"\\(?:left|right)\b", "", s).replace("\\{", "(").replace("\\}", ")").strip()
    depth, n = 0, 0
    for c in s:
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == "," and depth <= (1 if s[:1] in "([" else 0):
            n += 1
    return n


def _kind(s: str, num) -> str:
    if "matrix}" in s:
        return "matrix"
    if re.fullmatch(r"\\text\{\s*[A-Za-z][A-Za-z ]*\}", s):
        return "text"
    if num is not None:
        return "number"
    if _top_level_commas(s):
        return "tuple"
    return "expr"


_INCOMPATIBLE = {
    frozenset(k) for k in (("number", "tuple"), ("number", "matrix"), ("number", "text"), ("tuple", "text"),
                           ("matrix", "text"), ("expr", "text"))
}  # fmt: skip


_SIMPLE_EXPR = re.compile(r"(?:[0-9a-zA-Z+\-*/^_{}().\s]|\\(?:d?frac|sqrt|pi|cdot|times|left|right)\b)+")
_SPLIT_LIST = re.compile(r"^(?P<o>[(\[]?)(?P<body>[^()\[\]]*)(?P<c>[)\]]?)$")


def _number_list(s: str):
    """("(", [Num, ...], ")") for a bracketed/bare comma list of plain numbers, else None."""
    s = re.sub(r"\\(?:left|right)\b", "", s).replace(" ", "")
    m = _SPLIT_LIST.match(s)
    if m is None or "," not in m.group("body") or bool(m.group("o")) != bool(m.group("c")):
        return None
    nums = [_to_num(x) for x in m.group("body").split(",")]
    if any(n is None or n.pct or n.digits_only is not None for n in nums):
        return None
    return m.group("o"), [n.value for n in nums], m.group("c")


def _compare_number_lists(pred: str, gold: str) -> bool | None:
    """Exact decision for lists/pairs/intervals of plain numbers; None when undecidable cheaply."""
    pl, gl = _number_list(pred), _number_list(gold)
    if pl is None or gl is None:
        return None
    if gl[0] or pl[0]:
        if (pl[0], pl[2]) != (gl[0], gl[2]):
            return None if not (pl[0] and gl[0]) else False
        return pl[1] == gl[1]  # pair / interval / tuple: ordered
    return sorted(pl[1]) == sorted(gl[1])  # bare list of answers: a set


def _cheap_mismatch(pred: str, gold: str, pn, gn) -> bool:
    """Structural/numeric reasons the answers cannot be equal, decided without math-verify."""
    kp, kg = _kind(pred, pn), _kind(gold, gn)
    if kp != kg and frozenset((kp, kg)) in _INCOMPATIBLE:
        return True
    if kp == kg == "text":
        return True  # equal texts were caught by the string fast path
    if kp == kg == "tuple" and not re.search(r"\\pm|\\mp|\\cup|\\cap|\\ldots|\\dots", pred + gold):
        if _top_level_commas(pred) != _top_level_commas(gold):
            return True
    if kp == "expr" and kg == "tuple" and _SIMPLE_EXPR.fullmatch(pred) and "," not in pred:
        return True  # a single plain expression cannot be a list, pair or interval
    if kp == "number" and kg == "expr" and not pn.pct and pn.digits_only is None:
        import sympy

        try:
            ge = _first_sympy(_parse_gold(gold))
            if isinstance(ge, sympy.Expr) and ge.free_symbols and not isinstance(ge, sympy.Symbol):
                return True  # a number is not a polynomial / function of x
            if isinstance(ge, sympy.Expr) and not ge.free_symbols:
                gv = complex(sympy.N(ge, 20))
                pv = float(pn.value)
                if abs(gv - pv) > 1e-6 * max(1.0, abs(gv)):
                    return True
        except (TypeError, ValueError, ArithmeticError, OverflowError):
            pass
    return False


def _mv_equal(pred_variants: list[str], gold_variants: list[str], *, boxed: bool) -> tuple[bool, str | None]:
    mvp, mvg = _mv()
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    pred_cfg = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    golds = []
    for gv in gold_variants:
        golds.extend(_parse_gold(gv))
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


def _letters_outside_commands(s: str) -> bool:
    """True if the answer mentions a variable (or i/e): letters left after dropping \\commands and
    \\text{...}. Cheap test used to reject plain-number answers without parsing the gold."""
    s = re.sub(r"\\(?:text|mathrm|mbox|textbf)\{[^{}]*\}", "", s)
    s = re.sub(r"\\[A-Za-z]+", "", s)
    return re.search(r"[A-Za-z]", s) is not None


_SIMPLE_LATEX = re.compile(r"(?:[0-9+\-*/^{}()\[\].\s]|\\(?:d?t?frac|sqrt|pi|cdot|times|left|right)\b)+")


def _latex_to_plain(s: str) -> str | None:
    """Constant LaTeX (digits, + - * /, \\frac, \\sqrt, \\sqrt[n], \\pi, ^{}) to safe_parse text; else None."""
    if not _SIMPLE_LATEX.fullmatch(s) or len(s) > 200:
        return None
    s = re.sub(r"\\(?:left|right)\b", "", s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\cdot", "*").replace("\\times", "*").replace("\\pi", " pi ")
    for _ in range(20):
        s2 = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
        s2 = re.sub(r"\\sqrt\[([^\[\]{}]*)\]\{([^{}]*)\}", r"((\2)^(1/(\1)))", s2)
        s2 = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s2)
        s2 = re.sub(r"\^\{([^{}]*)\}", r"^(\1)", s2)
        if s2 == s:
            break
        s = s2
    # (\sqrt2, \frac12 never get here: _SIMPLE_LATEX wants a word boundary after the command.) The space keeps
    # "sqrt" a name of its own; leading zeros go: safe_parse reads Python tokens, where "05" is 0 then 5.
    s = re.sub(r"(?<![\d.])0+(?=\d)", "", s.replace("\\sqrt", "sqrt "))
    if "\\" in s or "{" in s or "}" in s or "[" in s:
        return None
    return s


def _compare_constants(pred: str, gold: str) -> bool | None:
    """Both sides constant LaTeX: decide by exact-ish numeric comparison (30 digits) without antlr.
    None when either side is not simple enough (then math-verify decides)."""
    a, b = _latex_to_plain(pred), _latex_to_plain(gold)
    if a is None or b is None:
        return None
    import sympy

    from .safe_sympy import SafeParseError, safe_parse

    try:
        pe, ge = safe_parse(a), safe_parse(b)
        if pe.free_symbols or ge.free_symbols:
            return None
        pv, gv = complex(sympy.N(pe, 40)), complex(sympy.N(ge, 40))
    except (SafeParseError, TypeError, ValueError, ArithmeticError, OverflowError, RecursionError):
        return None
    scale = max(abs(pv), abs(gv))
    if scale != scale or scale == float("inf"):
        return None
    if abs(pv - gv) > 1e-9 * scale:
        return False
    if pe.has(sympy.Float) or ge.has(sympy.Float):
        return None  # decimals involved: let math-verify and the Float rules decide
    return sympy.N(pe - ge, 50) == 0 or abs(complex(sympy.N(pe - ge, 50))) <= 1e-40 * max(scale, 1e-300)


_COLUMN = re.compile(r"^\\begin\{[pb]matrix\}(?P<body>[^&]*?)\\end\{[pb]matrix\}$", re.S)


def _column_to_tuple(s: str) -> str:
    """A single-column pmatrix/bmatrix as a tuple: a tuple answer counts as a column vector."""
    m = _COLUMN.match(s.strip())
    if m is None:
        return s
    rows = [r.strip() for r in m.group("body").split("\\\\") if r.strip()]
    return "(" + ", ".join(rows) + ")" if len(rows) > 1 else s


@lru_cache(maxsize=8192)
def _compare_answer(pred: str, gold: str, benchmark: str | None) -> bool:
    """Compare one normalised final answer with the normalised gold (cached: GRPO rollouts of one
    prompt repeat the same final answers)."""
    if not pred:
        return False
    if ("matrix}" in pred) != ("matrix}" in gold):
        pred, gold = _column_to_tuple(pred), _column_to_tuple(gold)
    if _HEDGE.search(pred) and not _HEDGE.search(gold):
        return False
    if _canon_string(pred) == _canon_string(gold):
        return True
    pn, gn = _to_num(pred), _to_num(gold)
    if pn is not None and gn is not None:
        return _compare_numbers(pn, gn, benchmark == "minerva_math" or gn.sci)
    if pn is None and "=" not in gold:
        # Assignment unwrapping ("x = 5" is 5), cheaply, before anything expensive.
        unwrapped = re.sub(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*", "", pred)
        if unwrapped != pred and "=" not in unwrapped:
            pn2 = _to_num(unwrapped)
            if pn2 is not None and gn is not None:
                return _compare_numbers(pn2, gn, benchmark == "minerva_math" or gn.sci)
    if gn is None and "=" not in pred:
        g_unwrapped = re.sub(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*", "", gold)
        if g_unwrapped != gold and "=" not in g_unwrapped:
            gn2 = _to_num(g_unwrapped)
            p_num = pn or _to_num(re.sub(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*", "", pred))
            if gn2 is not None and p_num is not None:
                return _compare_numbers(p_num, gn2, benchmark == "minerva_math" or gn2.sci)
    # (both numbers returned above; one number, e.g. "10,080" with a thousands separator, is never a list)
    decided = _compare_number_lists(pred, gold) if pn is None and gn is None else None
    if decided is not None:
        return decided
    if "=" in gold and "=" not in pred and _kind(pred, pn) == "tuple" and _top_level_commas(gold) == 0:
        return False  # a list/pair is not an equation
    decided = _compare_constants(pred, gold)
    if decided is not None:
        return decided
    if pn is not None and gn is None and "=" not in gold and _kind(gold, None) == "expr" and _letters_outside_commands(gold):
        return False  # a plain number never equals an expression in x (or a complex number)
    if _cheap_mismatch(pred, gold, pn, gn):
        return False
    pred_variants = [pred]
    gold_variants = [gold]
    if re.search(r"\\?%$", gold):
        gold_variants.append(re.sub(r"\\?%$", "", gold))
    if re.search(r"\\?%$", pred):
        pred_variants.append(re.sub(r"\\?%$", "", pred))
    ok, _ = _mv_equal(pred_variants, gold_variants, boxed=True)
    return ok


def grade_math_verify(response: str, gold, benchmark: str | None = None) -> tuple[bool, str | None]:
    """(correct, extracted answer) for the strict grader."""
    text = sanitize_text(response)
    gold = sanitize_text(gold).strip()
    body, _ = split_think(text)
    if body is None or not body.strip():
        return False, None
    gold_group, _ = final_boxed_group(gold) if "\\boxed" in gold or "\\fbox" in gold else ([gold], "and")
    gold = ", ".join(gold_group)
    if len(gold) > 2 and gold.startswith("$") and gold.endswith("$"):
        gold = gold.strip("$").strip()  # OlympiadBench-style "$...$" golds
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
        return _compare_answer(pred, gold, benchmark), pred

    # No box: math-verify's anchored extraction ("final answer is", "answer:", last latex/number)
    # over the end of the response; the extracted string then goes through the same comparison.
    mvp, _ = _mv()
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    tail = normalize_answer_text(body[-_FALLBACK_TAIL:])
    parsed = mvp.parse(tail, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=None)
    raw = next((x for x in reversed(parsed) if isinstance(x, str)), None)
    if not raw:
        return False, None
    pred = _canon_numbers(normalize_answer_text(raw.strip().strip("$")))
    return _compare_answer(pred, gold, benchmark), pred
