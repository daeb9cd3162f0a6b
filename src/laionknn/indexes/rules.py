"""Grid values written as rules of the data: ``nlist = "=pow2(sqrt(n))"`` instead of ``nlist = 1024``.

A string that starts with ``=`` anywhere in a grid file (a build value, a query value, an element of
a list) is an arithmetic expression evaluated when the grid is loaded for one database. Names:

* ``n`` — database rows, ``dim`` — dimension, ``k`` — neighbours asked for (10 unless the caller says);
* the keys of the same configuration that come *earlier* in its table, once resolved
  (``train_size = "=min(n, max(50000, 40*nlist))"`` after ``nlist``).

Functions: ``sqrt``, ``log2``, ``ceil``, ``floor``, ``round``, ``min``, ``max``, ``abs``, ``int``,
``pow2`` (the power of two nearest in log scale: ``pow2(1000) = 1024``, ``pow2(158) = 128``) and
``clamp(x, lo, hi)``. Operators: ``+ - * / // % **``, comparisons and ``a if cond else b``. Nothing
else parses (no attributes, no calls of other names), so a grid file cannot run code.

:func:`resolve_config` turns one expanded configuration into plain numbers and says, for the run
record, which rule chose each value (``nlist=pow2(sqrt(n))->128``).
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any

from laionknn.errors import UsageError

RULE_PREFIX = "="


def _pow2(x: float) -> int:
    if x <= 1:
        return 1
    return 1 << int(round(math.log2(x)))


def _clamp(x, lo, hi):
    return max(lo, min(hi, x))


FUNCTIONS = {"sqrt": math.sqrt, "log2": math.log2, "ceil": math.ceil, "floor": math.floor, "round": round,
             "min": min, "max": max, "abs": abs, "int": int, "pow2": _pow2, "clamp": _clamp}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}


def is_rule(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(RULE_PREFIX)


def _parse(rule: str) -> ast.Expression:
    text = rule[len(RULE_PREFIX):] if rule.startswith(RULE_PREFIX) else rule
    try:
        return ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise UsageError(f"grid rule {rule!r} does not parse ({exc.msg}); write e.g. \"=pow2(sqrt(n))\"") from None


def check_rule(rule: str) -> None:
    """Raise :class:`UsageError` unless ``rule`` parses (its names and value are checked by :func:`evaluate`)."""
    _parse(rule)


def evaluate(rule: str, names: dict[str, Any]) -> Any:
    """The value of ``rule`` (with or without the leading ``=``) under ``names``; a rule that does not
    parse, names an unknown variable or fails arithmetically raises :class:`UsageError`."""
    tree = _parse(rule)
    try:
        return _eval(tree.body, names, rule)
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise UsageError(f"grid rule {rule!r} fails with {', '.join(f'{k}={v}' for k, v in names.items())}: "
                         f"{exc}") from None


def _eval(node: ast.AST, names: dict[str, Any], rule: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise UsageError(f"grid rule {rule!r} uses {node.id!r}; known names: {', '.join(sorted(names))}")
        return names[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left, names, rule), _eval(node.right, names, rule))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand, names, rule)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        return _COMPARE[type(node.ops[0])](_eval(node.left, names, rule), _eval(node.comparators[0], names, rule))
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, names, rule) else node.orelse, names, rule)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
            and not node.keywords):
        return FUNCTIONS[node.func.id](*(_eval(a, names, rule) for a in node.args))
    raise UsageError(f"grid rule {rule!r}: {ast.unparse(node)!r} is not allowed (numbers, n, k, dim, earlier "
                     f"keys, + - * / // % **, comparisons, `if else`, {', '.join(sorted(FUNCTIONS))})")


def _as_number(value: Any, key: str, rule: str) -> Any:
    if isinstance(value, bool):
        raise UsageError(f"grid rule {key}={rule!r} gives a truth value; it must give a number")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def resolve_config(config: dict[str, Any], env: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``(plain config, notes)``: every rule of ``config`` evaluated in table order under ``env``
    (``n``, ``dim``, ``k``) plus the keys resolved before it; notes read ``key=rule->value``."""
    names = dict(env)
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in config.items():
        if is_rule(value):
            resolved = _as_number(evaluate(value, names), key, value)
            notes.append(f"{key}={value[len(RULE_PREFIX):].strip()}->{resolved}")
            value = resolved
        out[key] = value
        names[key] = value
    return out, notes
