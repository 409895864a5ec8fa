"""The toy task family: seeded arithmetic word problems with exact answers and worked solutions.

Six categories (the miniature's "subjects") x five difficulty levels. Each category has
`sample(rng, level) -> params`, `problem(params) -> text` and `solve(params, calc) -> answer`.
`solve` writes its worked solution through a `Calc`, one arithmetic step per sentence, and always
uses the values the calculator returned: a `Calc` told to slip at step k writes a wrong result there
and every later step builds on it, which is how the pretraining corpus gets realistic noisy
solutions (a wrong step, then consistent work on the wrong number).

Answers are `fractions.Fraction`; `latex_answer` renders them as the ground-truth strings
("31", "-4", "\\frac{11}{12}"). Everything is deterministic given the `random.Random` passed in.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

INSTRUCTION = " Let's think step by step and output the final answer within \\boxed{}."

CATEGORIES: tuple[str, ...] = ("addition", "multiplication", "mixed", "fractions", "comparison", "remainders")
SUBJECTS: dict[str, str] = {  # shown as `subject` in the test sets, like MATH's subjects
    "addition": "Addition Chains",
    "multiplication": "Multiplication",
    "mixed": "Mixed Operations",
    "fractions": "Fractions",
    "comparison": "Comparisons",
    "remainders": "Remainders",
}
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)

NAMES = ["Ana", "Ben", "Carla", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kira", "Liam",
         "Maya", "Noah", "Olga", "Pablo", "Rosa", "Sami", "Tara", "Victor"]
ITEMS = ["apples", "stamps", "marbles", "coins", "books", "pencils", "shells", "cards", "stickers", "beads"]
GAIN = ["buys {} more", "receives {} more", "finds {} more", "wins {} more"]
LOSS = ["gives away {}", "loses {}", "sells {}", "uses {}"]


# --- rendering -------------------------------------------------------------------------------------
def plain(x: Fraction | int) -> str:
    """A value as written inside solutions and problems: 31, -4, 11/12."""
    x = Fraction(x)
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def latex_answer(x: Fraction | int) -> str:
    """A value as a ground-truth string: 31, -4, \\frac{11}{12}, -\\frac{1}{2}."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    sign = "-" if x < 0 else ""
    return f"{sign}\\frac{{{abs(x.numerator)}}}{{{x.denominator}}}"


# --- the calculator that writes (and optionally botches) the solution ------------------------------
@dataclass
class Calc:
    """Records solution steps. With `slip_at=k` the k-th step's result is perturbed (0-based)."""

    slip_at: int | None = None
    rng: random.Random | None = None
    lines: list[str] = field(default_factory=list)
    n_steps: int = 0
    slipped: bool = False

    def step(self, template: str, value: int, render: Callable[[int], str] = str) -> int:
        """`template` holds one `{}` for the result; returns the (possibly perturbed) integer result."""
        if self.slip_at is not None and self.n_steps == self.slip_at:
            value = self._perturb(value)
            self.slipped = True
        self.n_steps += 1
        self.lines.append(template.format(render(value)))
        return value

    def say(self, text: str) -> None:
        self.lines.append(text)

    def _perturb(self, value: int) -> int:
        rng = self.rng or random.Random(0)
        deltas = [d for d in (-10, -2, -1, 1, 2, 10) if value + d >= 0 or value < 0]
        return value + rng.choice(deltas)

    # integer helpers: the text shows the operands actually used
    def add(self, a: int, b: int) -> int:
        return self.step(f"{a} + {b} = {{}}.", a + b)

    def sub(self, a: int, b: int) -> int:
        return self.step(f"{a} - {b} = {{}}.", a - b)

    def mul(self, a: int, b: int) -> int:
        if abs(b) >= 10 and abs(a) >= 10:  # long multiplication by place value of b
            parts = _place_parts(abs(b))
            partial = [self.step(f"{a} * {p} = {{}}.", a * p) for p in parts]
            total = partial[0]
            for q in partial[1:]:
                total = self.add(total, q)
            return -total if b < 0 else total
        return self.step(f"{a} * {b} = {{}}.", a * b)


def _place_parts(b: int) -> list[int]:
    digits = str(b)
    n = len(digits)
    return [int(d) * 10 ** (n - 1 - i) for i, d in enumerate(digits) if d != "0"]


# --- categories ------------------------------------------------------------------------------------
class Category:
    name: str

    def sample(self, rng: random.Random, level: int) -> dict: ...

    def problem(self, p: dict) -> str: ...

    def solve(self, p: dict, calc: Calc) -> Fraction: ...


class Addition(Category):
    name = "addition"
    MAX = {1: 20, 2: 50, 3: 100, 4: 500, 5: 1000}

    def sample(self, rng, level):
        top = self.MAX[level]
        start = rng.randint(2, top)
        cur, ops = start, []
        for _ in range(level + 1):
            if cur >= 2 and rng.random() < 0.45:
                x = rng.randint(1, cur - 1)
                ops.append(("-", x, rng.randrange(len(LOSS))))
                cur -= x
            else:
                x = rng.randint(1, top)
                ops.append(("+", x, rng.randrange(len(GAIN))))
                cur += x
        return {"name": rng.choice(NAMES), "item": rng.choice(ITEMS), "start": start, "ops": ops}

    def problem(self, p):
        events = [(GAIN if op == "+" else LOSS)[k].format(x) for op, x, k in p["ops"]]
        chain = ", then ".join(events)
        return (f"{p['name']} has {p['start']} {p['item']}. {p['name']} {chain}. "
                f"How many {p['item']} does {p['name']} have now?")

    def solve(self, p, calc):
        calc.say(f"{p['name']} starts with {p['start']} {p['item']}.")
        cur = p["start"]
        for op, x, _ in p["ops"]:
            cur = calc.add(cur, x) if op == "+" else calc.sub(cur, x)
        return Fraction(cur)


class Multiplication(Category):
    name = "multiplication"
    # (digits of each factor) per level
    SHAPES = {1: (1, 1), 2: (2, 1), 3: (2, 1, 1), 4: (2, 2), 5: (3, 2)}

    def sample(self, rng, level):
        factors = [rng.randint(max(2, 10 ** (d - 1)), 10 ** d - 1) for d in self.SHAPES[level]]
        return {"item": rng.choice(ITEMS), "factors": factors}

    def problem(self, p):
        f, item = p["factors"], p["item"]
        if len(f) == 2:
            return f"There are {f[1]} boxes with {f[0]} {item} in each box. How many {item} are there in total?"
        return (f"There are {f[2]} crates. Each crate holds {f[1]} boxes and each box holds {f[0]} {item}. "
                f"How many {item} are there in total?")

    def solve(self, p, calc):
        f = p["factors"]
        total = calc.mul(f[0], f[1])
        for x in f[2:]:
            total = calc.mul(total, x)
        return Fraction(total)


class Mixed(Category):
    """Integer expressions with + - * and parentheses; every intermediate value stays >= 0."""

    name = "mixed"
    OPERANDS = {1: 9, 2: 12, 3: 15, 4: 20, 5: 25}

    def sample(self, rng, level):
        while True:
            tree = self._tree(rng, level + 1, self.OPERANDS[level])
            if _nonneg(tree):
                return {"expr": tree}

    def _tree(self, rng, n_ops, top):
        if n_ops == 0:
            return rng.randint(1, top)
        left_ops = rng.randint(0, n_ops - 1)
        op = rng.choice("+-*")
        return (op, self._tree(rng, left_ops, top), self._tree(rng, n_ops - 1 - left_ops, top))

    def problem(self, p):
        return f"Compute the value of {_render(p['expr'])}."

    def solve(self, p, calc):
        return Fraction(_eval_steps(p["expr"], calc))


_PREC = {"+": 1, "-": 1, "*": 2}


def _render(t, parent_prec=0, right=False) -> str:
    if isinstance(t, int):
        return str(t)
    op, a, b = t
    s = f"{_render(a, _PREC[op])} {op} {_render(b, _PREC[op], True)}"
    # parentheses when the child binds looser, or equally on the right of - (a - (b + c))
    if _PREC[op] < parent_prec or (right and _PREC[op] == parent_prec and parent_prec == 1):
        s = f"({s})"
    return s


def _value(t) -> int:
    if isinstance(t, int):
        return t
    op, a, b = t
    x, y = _value(a), _value(b)
    return x + y if op == "+" else x - y if op == "-" else x * y


def _nonneg(t) -> bool:
    return isinstance(t, int) or (_value(t) >= 0 and _nonneg(t[1]) and _nonneg(t[2]))


def _eval_steps(t, calc: Calc) -> int:
    if isinstance(t, int):
        return t
    op, a, b = t
    x, y = _eval_steps(a, calc), _eval_steps(b, calc)
    return calc.add(x, y) if op == "+" else calc.sub(x, y) if op == "-" else calc.mul(x, y)


class Fractions(Category):
    name = "fractions"
    # level -> (operators, max denominator)
    SHAPES = {1: ("+", 10), 2: ("+", 12), 3: ("-", 12), 4: ("*", 12), 5: ("+-", 10)}

    def sample(self, rng, level):
        ops, top = self.SHAPES[level]
        while True:
            den = rng.randint(2, top)
            if level == 1:  # same denominator
                terms = [(rng.randint(1, den - 1), den), (rng.randint(1, den - 1), den)]
            else:
                n_terms = 3 if level == 5 else 2
                terms = []
                for _ in range(n_terms):
                    d = rng.randint(2, top)
                    terms.append((rng.randint(1, d - 1), d))
            chosen = [rng.choice(ops) for _ in range(len(terms) - 1)]
            value = Fraction(*terms[0])
            ok = True
            for op, t in zip(chosen, terms[1:]):
                value = value + Fraction(*t) if op == "+" else value - Fraction(*t) if op == "-" else value * Fraction(*t)
                ok = ok and value > 0
            if ok:
                return {"terms": terms, "ops": chosen}

    def problem(self, p):
        expr = f"{p['terms'][0][0]}/{p['terms'][0][1]}"
        for op, (a, b) in zip(p["ops"], p["terms"][1:]):
            expr += f" {op} {a}/{b}"
        return f"What is {expr}? Write the answer as a fraction in lowest terms."

    def solve(self, p, calc):
        num, den = p["terms"][0]
        for op, (c, d) in zip(p["ops"], p["terms"][1:]):
            if op == "*":
                num, den = calc.step(f"{num}/{den} * {c}/{d} = {{}}/{den * d}.", num * c), den * d
            else:
                common = math.lcm(den, d)
                a2, c2 = num * (common // den), c * (common // d)
                sign = "+" if op == "+" else "-"
                lead = f"{num}/{den} {sign} {c}/{d} = "
                if den != d:  # rewrite over the common denominator first
                    lead += f"{a2}/{common} {sign} {c2}/{common} = "
                lead += f"{{}}/{common}."
                num, den = calc.step(lead, a2 + c2 if op == "+" else a2 - c2), common
            g = math.gcd(num, den)
            if g > 1:
                calc.say(f"{num}/{den} = {num // g}/{den // g}.")
                num, den = num // g, den // g
        return Fraction(num, den)


class Comparison(Category):
    """Pick the largest of a few quantities (sums, products or fractions) and give its value."""

    name = "comparison"

    def sample(self, rng, level):
        while True:
            if level == 1:
                cands = [("+", rng.randint(1, 30), rng.randint(1, 30)) for _ in range(2)]
            elif level == 2:
                cands = [("*", rng.randint(2, 12), rng.randint(2, 12)) for _ in range(2)]
            elif level == 3:
                cands = [(rng.choice("+*"), rng.randint(2, 15), rng.randint(2, 15)) for _ in range(3)]
            else:  # fractions: two at level 4, three at level 5
                cands = []
                for _ in range(2 if level == 4 else 3):
                    d = rng.randint(2, 12)
                    cands.append(("/", rng.randint(1, d - 1), d))
            values = [_cand_value(c) for c in cands]
            if len(set(values)) == len(values):
                return {"cands": cands}

    def problem(self, p):
        texts = [_cand_text(c) for c in p["cands"]]
        if len(texts) == 2:
            return f"Which is larger: {texts[0]} or {texts[1]}? Give the value of the larger one."
        return f"Which is the largest of {', '.join(texts[:-1])} and {texts[-1]}? Give its value."

    def solve(self, p, calc):
        cands = p["cands"]
        if cands[0][0] == "/":
            common = math.lcm(*[c[2] for c in cands])
            nums = [calc.step(f"{a}/{b} = {{}}/{common}.", a * (common // b)) for _, a, b in cands]
            best = max(range(len(cands)), key=lambda i: nums[i])
            calc.say(f"The largest is {nums[best]}/{common}, which is {cands[best][1]}/{cands[best][2]}.")
            return Fraction(cands[best][1], cands[best][2])
        values = [calc.add(a, b) if op == "+" else calc.mul(a, b) for op, a, b in cands]
        best = max(values)
        calc.say(f"The largest value is {best}.")
        return Fraction(best)


def _cand_value(c) -> Fraction:
    op, a, b = c
    return Fraction(a + b) if op == "+" else Fraction(a * b) if op == "*" else Fraction(a, b)


def _cand_text(c) -> str:
    op, a, b = c
    return f"{a}/{b}" if op == "/" else f"{a} {op} {b}"


class Remainders(Category):
    name = "remainders"
    # level -> (max dividend, divisor range)
    SHAPES = {1: (50, (2, 9)), 2: (200, (2, 9)), 3: (1000, (3, 12)), 4: (5000, (11, 30)), 5: (20000, (11, 99))}

    def sample(self, rng, level):
        top, (lo, hi) = self.SHAPES[level]
        d = rng.randint(lo, hi)
        return {"n": rng.randint(d + 1, top), "d": d}

    def problem(self, p):
        return f"What is the remainder when {p['n']} is divided by {p['d']}?"

    def solve(self, p, calc):
        n, d = p["n"], p["d"]
        q = calc.step(f"{n} divided by {d} gives the quotient {{}}.", n // d)
        prod = calc.mul(d, q)
        return Fraction(calc.sub(n, prod))


REGISTRY: dict[str, Category] = {c.name: c for c in
                                 (Addition(), Multiplication(), Mixed(), Fractions(), Comparison(), Remainders())}


# --- one generated item --------------------------------------------------------------------------
@dataclass
class Item:
    category: str
    level: int
    params: dict
    problem: str
    answer: Fraction

    @property
    def ground_truth(self) -> str:
        return latex_answer(self.answer)

    def solution(self, rng: random.Random | None = None, slip_rate: float = 0.0) -> tuple[str, Fraction, bool]:
        """A worked solution ending in \\boxed{...}; with prob. `slip_rate` one step is botched.

        Returns (text, the answer the text boxes, whether a slip was made)."""
        cat = REGISTRY[self.category]
        slip_at = None
        if rng is not None and slip_rate > 0 and rng.random() < slip_rate:
            counter = Calc()
            cat.solve(self.params, counter)
            if counter.n_steps:
                slip_at = rng.randrange(counter.n_steps)
        calc = Calc(slip_at=slip_at, rng=rng)
        value = cat.solve(self.params, calc)
        calc.say(f"So the answer is \\boxed{{{latex_answer(value)}}}.")
        return " ".join(calc.lines), value, calc.slipped


def make_item(rng: random.Random, category: str, level: int) -> Item:
    cat = REGISTRY[category]
    params = cat.sample(rng, level)
    answer = cat.solve(params, Calc())
    return Item(category, level, params, cat.problem(params), answer)


def sample_item(rng: random.Random, categories=CATEGORIES, levels=LEVELS) -> Item:
    return make_item(rng, rng.choice(list(categories)), rng.choice(list(levels)))
