"""A small, eval-free parser from plain-text math ("2sqrt(3)/5", "x**2+1", "7!") to SymPy.

Why: the reference graders call `sympy.parse_expr` (and `sympify`) on model output, and both run
Python `eval` on the transformed text. We never do that. This recursive-descent parser only builds
SymPy objects from a fixed token whitelist (numbers, operators, parentheses, single-letter symbols and
a handful of known names), so model text cannot reach attribute access, calls or imports.

It mirrors what `parse_expr(s, standard_transformations + implicit_multiplication_application)` does on
the inputs the graders feed it: `^` means power, implicit multiplication ("2x", "3(x+1)", "2sqrt(3)"),
function application without parentheses ("sqrt 2"), factorial "!", decimals and exponent literals
("3e-5") as Floats, integers exact. Tokens are Python's (what parse_expr tokenizes): a name is
[A-Za-z_][A-Za-z0-9_]*, and an unknown one is split as split_symbols splits it, into letters and digit
runs ("xy" -> x*y, "sqrt2" -> s*q*r*t*2, not sqrt(2)) unless it holds "_" or is a Greek letter's name
("x_1", "alpha" stay one symbol); numbers may hold "_" ("1604_8" is 16048), a decimal does not start
with 0 ("049" is the tokens 0 and 49: 0*49), "3j" is 3*I. It additionally refuses inputs whose
evaluation would explode (power towers, huge factorials), which the reference would hang on.
Non-ASCII text is refused (the callers replace the symbols they know, "√" -> sqrt, "π" -> pi).
"""

from __future__ import annotations

import re
import unicodedata

import sympy

__all__ = ["SafeParseError", "safe_parse"]


class SafeParseError(ValueError):
    """The text is not in the accepted grammar (or too large to evaluate safely)."""


# Python's tokenize Number, in its order (imaginary, float, integer: the first alternative that matches)
_D = r"[0-9](?:_?[0-9])*"
_EXP = rf"[eE][-+]?{_D}"
_FLOAT = rf"(?:{_D}\.(?:{_D})?|\.{_D})(?:{_EXP})?|{_D}{_EXP}"
_INT = r"0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|0(?:_?0)*|[1-9](?:_?[0-9])*"
_TOKEN = re.compile(
    rf"\s*(?:(?P<imag>(?:{_FLOAT}|{_D})[jJ])|(?P<num>{_FLOAT}|{_INT})|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/^()!,]))"
)

_CONSTANTS = {"pi": sympy.pi, "E": sympy.E, "I": sympy.I, "oo": sympy.oo, "inf": sympy.oo, "infty": sympy.oo}
_FUNCTIONS = {
    "sqrt": sympy.sqrt,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "log": sympy.log,
    "ln": sympy.log,
    "exp": sympy.exp,
    "abs": sympy.Abs,
    "Abs": sympy.Abs,
}
_MAX_LEN = 2000
_MAX_DEPTH = 100
_MAX_EXP = 10_000  # |exponent| allowed for a numeric power
_MAX_FACT = 10_000  # 10,000! is ~36k digits and computes in milliseconds


def _tokenize(text: str) -> list[tuple[str, str]]:
    toks: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SafeParseError(f"unexpected character {text[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "op" and val == "^":
            val = "**"
        if kind == "imag":  # auto_number: (number*I)
            toks += [("op", "("), ("num", _number(val[:-1])), ("op", "*"), ("name", "I"), ("op", ")")]
            continue
        if kind == "num":
            val = _number(val)
        if kind == "name" and _splittable(val):
            # split_symbols: letters one by one, digit runs as numbers ("sqrt2" -> s*q*r*t*2)
            toks.extend(("num", part) if part.isdigit() else ("name", part) for part in re.findall(r"[0-9]+|[^0-9]", val))
            continue
        toks.append((kind, val))
    return toks


def _number(text: str) -> str:
    text = text.replace("_", "")
    if text[:2].lower() in ("0x", "0b", "0o"):
        return str(int(text, 0))
    return text


def _splittable(name: str) -> bool:
    # sympy's _token_splittable, for a name that is not one of sympy's own
    if name in _CONSTANTS or name in _FUNCTIONS or "_" in name or len(name) == 1:
        return False
    try:
        unicodedata.lookup("GREEK SMALL LETTER " + name)
        return False
    except KeyError:
        return True


class _Parser:
    def __init__(self, toks: list[tuple[str, str]], symbols: dict[str, sympy.Symbol]):
        self.toks = toks
        self.i = 0
        self.depth = 0
        self.symbols = symbols

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, val=None):
        tok = self.peek()
        if tok[0] is None or (val is not None and tok[1] != val):
            raise SafeParseError(f"expected {val!r}")
        self.i += 1
        return tok

    def enter(self):
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise SafeParseError("nesting too deep")

    def parse(self):
        e = self.sum()
        if self.peek()[0] is not None:
            raise SafeParseError(f"unexpected token {self.peek()[1]!r}")
        return e

    def sum(self):
        self.enter()
        e = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            r = self.term()
            e = e + r if op == "+" else e - r
        self.depth -= 1
        return e

    def _starts_atom(self):
        kind, val = self.peek()
        return kind in ("num", "name") or val == "("

    def term(self):
        e = self.unary()
        while True:
            val = self.peek()[1]
            if val in ("*", "/"):
                self.take()
                r = self.unary()
                if val == "*":
                    e = e * r
                else:
                    if r == 0:
                        raise SafeParseError("division by zero")
                    e = e / r
            elif self._starts_atom():
                e = e * self.unary()  # implicit multiplication
            else:
                return e

    def unary(self):
        val = self.peek()[1]
        if val in ("-", "+"):
            self.take()
            self.enter()
            e = self.unary()
            self.depth -= 1
            return -e if val == "-" else e
        return self.power()

    def power(self):
        base = self.postfix()
        if self.peek()[1] == "**":
            self.take()
            self.enter()
            exp = self.unary()  # right-associative, allows 2**-1
            self.depth -= 1
            return _safe_pow(base, exp)
        return base

    def postfix(self):
        e = self.atom()
        while self.peek()[1] == "!":
            self.take()
            if not (e.is_Integer and 0 <= int(e) <= _MAX_FACT):
                raise SafeParseError("factorial argument not a small integer")
            e = sympy.factorial(e)
        return e

    def atom(self):
        kind, val = self.peek()
        if kind == "num":
            self.take()
            if "." in val or "e" in val.lower():  # Python's float literals, "3e-5" included
                return sympy.Float(val)
            if len(val) > 4000:
                raise SafeParseError("integer literal too long")
            return sympy.Integer(int(val))
        if kind == "name":
            self.take()
            if val in _CONSTANTS:
                return _CONSTANTS[val]
            if val in _FUNCTIONS:
                self.enter()
                if self.peek()[1] == "(":
                    self.take("(")
                    arg = self.sum()
                    self.take(")")
                else:
                    arg = self.power()  # "sqrt 2", "sqrt2"
                self.depth -= 1
                return _FUNCTIONS[val](arg)
            sym = self.symbols.get(val)
            if sym is None:
                sym = self.symbols[val] = sympy.Symbol(val)
            return sym
        if val == "(":
            self.take("(")
            self.enter()
            e = self.sum()
            self.depth -= 1
            self.take(")")
            return e
        raise SafeParseError(f"unexpected token {val!r}")


def _safe_pow(base, exp):
    if exp.is_Number and base.is_Number:
        if abs(exp) > _MAX_EXP and abs(base) not in (0, 1):
            raise SafeParseError("exponent too large")
    elif exp.is_Number and abs(exp) > _MAX_EXP:
        raise SafeParseError("exponent too large")
    elif not exp.is_Number and exp.has(sympy.Pow):
        # Symbolic towers (a^(b^c)) are where simplify() blows up.
        raise SafeParseError("power tower")
    return base**exp


def safe_parse(text: str, symbols: dict[str, sympy.Symbol] | None = None):
    """Parse plain-text math into a SymPy expression without eval; raise SafeParseError otherwise.

    `symbols` lets two calls share Symbol objects (not required: SymPy symbols compare by name)."""
    if not isinstance(text, str) or not text.strip():
        raise SafeParseError("empty expression")
    if len(text) > _MAX_LEN:
        raise SafeParseError("expression too long")
    toks = _tokenize(text)
    if any(v == "," for _, v in toks):
        raise SafeParseError("tuples are not expressions")
    return _Parser(toks, {} if symbols is None else symbols).parse()
