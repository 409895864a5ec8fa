"""A small, eval-free parser from plain-text math ("2sqrt(3)/5", "x**2+1", "7!") to SymPy.

Why: the reference graders call `sympy.parse_expr` (and `sympify`) on model output, and both run
Python `eval` on the transformed text. We never do that. This recursive-descent parser only builds
SymPy objects from a fixed token whitelist (numbers, operators, parentheses, single-letter symbols and
a handful of known names), so model text cannot reach attribute access, calls or imports.

It mirrors what `parse_expr(s, standard_transformations + implicit_multiplication_application)` does on
the inputs the graders feed it: `^` means power, implicit multiplication ("2x", "3(x+1)", "2sqrt(3)"),
function application without parentheses ("sqrt 2"), multi-letter unknown names split into letters
("xy" -> x*y), factorial "!", decimals and exponent literals ("3e-5") as Floats, integers exact. It additionally refuses inputs
whose evaluation would explode (power towers, huge factorials), which the reference would hang on.
"""

from __future__ import annotations

import re

import sympy

__all__ = ["SafeParseError", "safe_parse"]


class SafeParseError(ValueError):
    """The text is not in the accepted grammar (or too large to evaluate safely)."""


_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.\d*|\.\d+|\d+)[eE][-+]?\d+|\d+\.\d*|\.\d+|\d+)|(?P<name>[A-Za-z]+)|(?P<op>\*\*|[-+*/^()!,]))"
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
        if kind == "name" and val not in _CONSTANTS and val not in _FUNCTIONS:
            # Unknown multi-letter names are split into single-letter symbols (split_symbols).
            toks.extend(("name", ch) for ch in val)
            continue
        toks.append((kind, val))
    return toks


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
