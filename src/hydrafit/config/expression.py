"""A target function written as text in `x`, evaluated safely (dataset=expression).

    hydrafit-train dataset=expression dataset.expr="sin(3*x) + 0.5*x"

The text is parsed with Python's `ast` and only a whitelist of nodes is accepted: numbers, `x`,
the constants `pi` and `e`, + - * / % **, unary minus, and calls of the one-argument functions
in FUNCTIONS. Everything else (attribute access, other names or calls, subscripts, lambdas,
comprehensions, strings) is refused with a message naming the offending part. Evaluation walks
the checked tree with torch operations; nothing is ever passed to `eval` or `compile`, and all
arithmetic is on float tensors, so `9**9**9**9` gives inf instead of hanging on a huge integer.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass
from functools import lru_cache

# name -> torch function (looked up on torch when evaluated, so checking needs no torch import)
FUNCTIONS = {name: name for name in (
    "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh",
    "exp", "log", "log2", "log10", "sqrt", "abs", "sign", "sigmoid")}
CONSTANTS = {"pi": math.pi, "e": math.e}
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod}
UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
MAX_LENGTH = 1000  # also bounds the tree's depth, so walking it cannot exhaust the stack

REFUSED = {  # what a user wrote, in their words, for the message
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambdas",
    ast.Compare: "comparisons", ast.BoolOp: "and/or", ast.IfExp: "if/else",
    ast.List: "lists", ast.Dict: "dicts", ast.Set: "sets",
    ast.Tuple: "tuples; to sweep several formulas, quote each: dataset.expr='sin(x)','cos(x)'",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions", ast.NamedExpr: "assignments", ast.Starred: "unpacking",
    ast.JoinedStr: "f-strings", ast.Slice: "slices",
}
ALLOWED_HELP = f"allowed: numbers, x, pi, e, + - * / % **, and {', '.join(FUNCTIONS)}"


class ExpressionError(ValueError):
    """The text is not an expression this module will evaluate; the message says why."""


def _refuse(text: str, node: ast.AST, why: str) -> ExpressionError:
    part = ast.get_source_segment(text, node) or type(node).__name__
    return ExpressionError(f"'{part}' is not allowed ({why}); {ALLOWED_HELP}")


def _check(text: str, node: ast.AST) -> None:
    """Raise ExpressionError unless every node under `node` is on the whitelist."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _refuse(text, node, "only real numbers are constants")
    elif isinstance(node, ast.Name):
        if node.id != "x" and node.id not in CONSTANTS:
            raise _refuse(text, node, "unknown name")
    elif isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        _check(text, node.operand)
    elif isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        _check(text, node.left)
        _check(text, node.right)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise _refuse(text, node, "'^' is bitwise xor in Python; write powers as x**2")
    elif isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            raise _refuse(text, node, "only the functions below may be called")
        if len(node.args) != 1 or node.keywords:
            raise _refuse(text, node, f"{name} takes exactly one argument")
        _check(text, node.args[0])
    else:
        raise _refuse(text, node, REFUSED.get(type(node), type(node).__name__))


@lru_cache(maxsize=64)
def parse(text: str) -> ast.expr:
    """The checked syntax tree of `text` (the body of an expression), or ExpressionError."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError(f"expected a formula in x such as 'sin(3*x) + 0.5*x', got {text!r}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"'{text}' is not a formula ({error.msg}, column {error.offset})") from None
    _check(text.strip(), tree.body)
    return tree.body


def _evaluate(node: ast.expr, x):
    """The checked tree evaluated on tensor `x`, with torch operations only."""
    import torch

    if isinstance(node, ast.Constant):
        return torch.tensor(float(node.value), dtype=x.dtype, device=x.device)
    if isinstance(node, ast.Name):
        return x if node.id == "x" else torch.tensor(CONSTANTS[node.id], dtype=x.dtype, device=x.device)
    if isinstance(node, ast.UnaryOp):
        return UNARY[type(node.op)](_evaluate(node.operand, x))
    if isinstance(node, ast.BinOp):
        return BINARY[type(node.op)](_evaluate(node.left, x), _evaluate(node.right, x))
    return getattr(torch, FUNCTIONS[node.func.id])(_evaluate(node.args[0], x))  # a checked Call


PRECEDENCE = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2, ast.Mod: 2, ast.Pow: 4}
TEX_FUNCTIONS = {"sin", "cos", "tan", "sinh", "cosh", "tanh", "exp", "log"}


def _precedence(node: ast.expr) -> int:
    if isinstance(node, ast.BinOp):
        return PRECEDENCE[type(node.op)]
    return 3 if isinstance(node, ast.UnaryOp) else 5


def _wrap(node: ast.expr, at_least: int) -> str:
    """`node` as mathtext, in parentheses if it binds less tightly than `at_least`."""
    text = tex(node)
    return f"({text})" if _precedence(node) < at_least else text


def tex(node: ast.expr) -> str:
    """Matplotlib mathtext of a checked tree, for the plot legend: sin(3*x) -> \\sin(3 \\cdot x)."""
    if isinstance(node, ast.Constant):
        return f"{node.value:g}"
    if isinstance(node, ast.Name):
        return r"\pi" if node.id == "pi" else node.id
    if isinstance(node, ast.UnaryOp):
        return ("-" if isinstance(node.op, ast.USub) else "+") + _wrap(node.operand, 3)
    if isinstance(node, ast.Call):
        name, inner = node.func.id, tex(node.args[0])
        if name in ("sqrt", "abs"):
            return rf"\sqrt{{{inner}}}" if name == "sqrt" else f"|{inner}|"
        return (rf"\{name}" if name in TEX_FUNCTIONS else rf"\mathrm{{{name}}}") + f"({inner})"
    op, prec = type(node.op), _precedence(node)
    if op is ast.Pow:
        return f"{_wrap(node.left, 5)}^{{{tex(node.right)}}}"
    if op is ast.Div:
        return rf"\frac{{{tex(node.left)}}}{{{tex(node.right)}}}"
    symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: r"\cdot", ast.Mod: r"\ \mathrm{mod}\ "}[op]
    right = _wrap(node.right, 4 if isinstance(node.right, ast.UnaryOp)  # x - (-1), not x - -1
                  else prec + (op is not ast.Add and op is not ast.Mult))
    return f"{_wrap(node.left, prec)} {symbol} {right}"


@dataclass(frozen=True)
class Expression:
    """y = <text>: a picklable callable on tensors (only the text is stored), checked when made.

    >>> Expression("sin(3*x) + 0.5*x")(torch.zeros(2, 1))
    """

    text: str

    def __post_init__(self):
        parse(self.text)  # refuse a bad formula when the config is read, not mid-training

    def __call__(self, x):
        y = _evaluate(parse(self.text), x)
        return y.expand_as(x).clone() if y.shape != x.shape else y  # a formula without x

    def __str__(self) -> str:
        return "y = " + tex(parse(self.text))


UNQUOTED_FORMULA = re.compile(r"^(\+{0,2}dataset\.expr=)(?![\'\"])(.+)$")  # not yet Hydra-quoted


def quote_formula(arg: str) -> str:
    """dataset.expr=sin(x) -> dataset.expr='sin(x)'; other arguments, and formulas already in
    Hydra quotes (a sweep: dataset.expr='sin(x)','cos(x)'), are returned as they are."""
    match = UNQUOTED_FORMULA.match(arg)
    if not match:
        return arg
    key, formula = match.groups()
    quote = "'" if "'" not in formula else '"' if '"' not in formula else None
    return f"{key}{quote}{formula}{quote}" if quote and not formula.endswith("\\") else arg
