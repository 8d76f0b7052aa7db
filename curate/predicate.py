"""Recipe predicates: user-written filter expressions, parsed and re-emitted as safe SQL.

A recipe may say `where = ["clip_score >= 0.3 AND lower(source) LIKE 'coco%'"]`. The text is data
from a user, so it never reaches DuckDB as written: a tokenizer and a recursive-descent parser turn
it into a small AST that admits only

- column names (bare or "double-quoted"), checked against the columns the caller knows,
- number, string, TRUE/FALSE and NULL literals (strings and numbers become bound parameters),
- comparisons (= == != <> < <= > >=), AND, OR, NOT, parentheses,
- `IN (literal, ...)`, `BETWEEN a AND b`, `IS [NOT] NULL`, `[NOT] LIKE` / `ILIKE`,
- arithmetic (+ - * / %) and string concatenation (||),
- a short list of scalar functions (`SAFE_FUNCTIONS`).

Everything else, a `;`, a comment, a subquery, a table function such as `read_csv`, a statement
keyword such as COPY or ATTACH, is a `ConfigError` that says what was found and where. The AST is
emitted back as SQL with every identifier quoted and every value a named parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from curate.errors import ConfigError

MAX_LENGTH = 4000
MAX_DEPTH = 64

#: Scalar functions a predicate may call: name -> (minimum, maximum) number of arguments.
SAFE_FUNCTIONS: dict[str, tuple[int, int]] = {
    "abs": (1, 1),
    "ceil": (1, 1),
    "coalesce": (1, 16),
    "contains": (2, 2),
    "ends_with": (2, 2),
    "floor": (1, 1),
    "greatest": (2, 16),
    "least": (2, 16),
    "len": (1, 1),
    "length": (1, 1),
    "list_contains": (2, 2),
    "ln": (1, 1),
    "log10": (1, 1),
    "lower": (1, 1),
    "round": (1, 2),
    "sqrt": (1, 1),
    "starts_with": (2, 2),
    "trim": (1, 1),
    "upper": (1, 1),
}

#: Words that start statements or name files; they can never be part of an expression.
_FORBIDDEN_WORDS = frozenset(
    {
        "alter", "attach", "call", "checkpoint", "copy", "create", "delete", "describe", "detach",
        "drop", "execute", "export", "from", "import", "insert", "install", "load", "pragma",
        "prepare", "reset", "select", "set", "show", "summarize", "table", "union", "update",
        "use", "vacuum", "values", "with",
    }
)  # fmt: skip
_KEYWORDS = frozenset(
    {"and", "or", "not", "in", "between", "is", "null", "like", "ilike", "true", "false"}
)
_COMPARISONS = {
    "=": "=",
    "==": "=",
    "!=": "<>",
    "<>": "<>",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")+")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|==|\|\||[=<>+\-*/%(),])
    """,
    re.VERBOSE,
)


# --- AST ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool | None


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "NOT"
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # comparison, arithmetic, "||", "AND", "OR"
    left: Node
    right: Node


@dataclass(frozen=True)
class InList:
    operand: Node
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Between:
    operand: Node
    low: Node
    high: Node
    negated: bool


@dataclass(frozen=True)
class IsNull:
    operand: Node
    negated: bool


@dataclass(frozen=True)
class Like:
    operand: Node
    pattern: Node
    negated: bool
    case_insensitive: bool


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


Node = Column | Literal | Unary | Binary | InList | Between | IsNull | Like | Call


@dataclass(frozen=True)
class Token:
    kind: str  # number | string | ident | keyword | op | end
    text: str
    position: int  # 0-based character offset in the predicate


# --- parsing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predicate:
    """A parsed predicate: the source text, its AST and the columns it names."""

    text: str
    ast: Node
    columns: frozenset[str]

    def to_sql(self, params: Parameters, *, column_sql: Callable[[str], str] | None = None) -> str:
        """SQL for the predicate; literals are added to `params` as named parameters."""
        return _emit(self.ast, params, column_sql or _quote)


@dataclass
class Parameters:
    """Named query parameters collected while emitting SQL (`$p0`, `$p1`, ...)."""

    values: dict[str, Any] = field(default_factory=dict)
    prefix: str = "p"

    def bind(self, value: Any) -> str:
        name = f"{self.prefix}{len(self.values)}"
        self.values[name] = value
        return f"${name}"


def parse_predicate(text: str, *, what: str = "predicate") -> Predicate:
    """Parse a predicate or raise `ConfigError` saying what is wrong and where.

    >>> parse_predicate("clip_score >= 0.3 AND pair IN ('t2i', 'i2t')").columns == {"clip_score", "pair"}
    True
    """
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a string, found {type(text).__name__}: {text!r}")
    if len(text) > MAX_LENGTH:
        raise ConfigError(f"{what} is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if not text.strip():
        raise ConfigError(f'{what} is empty; write an expression such as "clip_score >= 0.3"')
    parser = _Parser(text, list(_tokenize(text, what)), what)
    ast = parser.parse()
    return Predicate(text=text, ast=ast, columns=frozenset(_columns(ast)))


def check_columns(predicate: Predicate, known: Collection[str], *, what: str = "predicate") -> None:
    """Raise `ConfigError` if the predicate names a column outside `known`."""
    unknown = sorted(predicate.columns - set(known))
    if unknown:
        raise ConfigError(
            f"{what} {predicate.text!r} names unknown column(s) {unknown}; "
            f"known columns: {', '.join(sorted(known))}"
        )


def _tokenize(text: str, what: str) -> Iterator[Token]:
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None or match.end() == position:
            yield _bad_character(text, position, what)
            return
        kind = match.lastgroup
        value = match.group()
        if kind == "op" and value in {"-", "/"} and text.startswith(("--", "/*"), position):
            raise ConfigError(f"{what} {text!r}: comments ('--', '/*') are not allowed")
        if kind == "ident":
            lowered = value.lower()
            if lowered in _FORBIDDEN_WORDS:
                raise ConfigError(
                    f"{what} {text!r}: {value!r} at position {position} is a SQL statement "
                    "keyword; a predicate is one expression over columns (no statements, "
                    "subqueries or file access)"
                )
            if lowered in _KEYWORDS:
                kind = "keyword"
                value = lowered
        if kind == "qident":
            kind, value = "ident", value[1:-1].replace('""', '"')
        elif kind == "string":
            value = value[1:-1].replace("''", "'")
        if kind != "space":
            yield Token(kind, value, position)  # type: ignore[arg-type]
        position = match.end()
    yield Token("end", "", len(text))


def _bad_character(text: str, position: int, what: str) -> Token:
    char = text[position]
    if char == ";":
        raise ConfigError(
            f"{what} {text!r}: ';' at position {position} is not allowed; a predicate is one "
            "expression, not a list of statements"
        )
    if char == "'":
        raise ConfigError(f"{what} {text!r}: unterminated string starting at position {position}")
    if char == '"':
        raise ConfigError(
            f"{what} {text!r}: unterminated or empty quoted name at position {position}"
        )
    raise ConfigError(
        f"{what} {text!r}: unexpected character {char!r} at position {position}; allowed are "
        "column names, numbers, 'strings', comparisons, AND/OR/NOT, IN, BETWEEN, IS NULL, LIKE, "
        "arithmetic and the functions " + ", ".join(sorted(SAFE_FUNCTIONS))
    )


class _Parser:
    def __init__(self, text: str, tokens: list[Token], what: str) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0
        self.what = what
        self.depth = 0

    # helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.token.kind == "keyword" and self.token.text in words

    def at_op(self, *ops: str) -> bool:
        return self.token.kind == "op" and self.token.text in ops

    def error(self, message: str, token: Token | None = None) -> ConfigError:
        token = token or self.token
        found = "the end" if token.kind == "end" else repr(token.text)
        return ConfigError(
            f"{self.what} {self.text!r}: {message} at position {token.position} (found {found})"
        )

    def expect_op(self, op: str) -> None:
        if not self.at_op(op):
            raise self.error(f"expected {op!r}")
        self.advance()

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested deeper than {MAX_DEPTH} levels")

    # grammar
    def parse(self) -> Node:
        node = self.or_expr()
        if self.token.kind != "end":
            raise self.error("unexpected text after the expression")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.at_keyword("or"):
            self.advance()
            node = Binary("OR", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.at_keyword("and"):
            self.advance()
            node = Binary("AND", node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self.at_keyword("not"):
            self.advance()
            self.nested()
            node = Unary("NOT", self.not_expr())
            self.depth -= 1
            return node
        return self.predicate()

    def predicate(self) -> Node:
        left = self.additive()
        if self.token.kind == "op" and self.token.text in _COMPARISONS:
            op = _COMPARISONS[self.advance().text]
            return Binary(op, left, self.additive())
        negated = False
        following = self.tokens[self.index + 1] if self.token.kind != "end" else self.token
        if (
            self.at_keyword("not")
            and following.kind == "keyword"
            and following.text in {"in", "between", "like", "ilike"}
        ):
            self.advance()
            negated = True
        if self.at_keyword("in"):
            self.advance()
            return InList(left, self.literal_list(), negated)
        if self.at_keyword("between"):
            self.advance()
            low = self.additive()
            if not self.at_keyword("and"):
                raise self.error("expected AND in BETWEEN ... AND ...")
            self.advance()
            return Between(left, low, self.additive(), negated)
        if self.at_keyword("like", "ilike"):
            case_insensitive = self.advance().text == "ilike"
            return Like(left, self.additive(), negated, case_insensitive)
        if negated:
            raise self.error("expected IN, BETWEEN, LIKE or ILIKE after NOT")
        if self.at_keyword("is"):
            self.advance()
            is_not = False
            if self.at_keyword("not"):
                self.advance()
                is_not = True
            if not self.at_keyword("null"):
                raise self.error("expected NULL after IS [NOT]")
            self.advance()
            return IsNull(left, is_not)
        return left

    def literal_list(self) -> tuple[Literal, ...]:
        if not self.at_op("("):
            raise self.error("expected '(' after IN")
        self.advance()
        values: list[Literal] = []
        while True:
            values.append(self.literal_value())
            if self.at_op(","):
                self.advance()
                continue
            break
        self.expect_op(")")
        return tuple(values)

    def literal_value(self) -> Literal:
        negative = False
        if self.at_op("-"):
            self.advance()
            negative = True
        token = self.token
        if token.kind == "number":
            self.advance()
            number = _number(token.text)
            return Literal(-number if negative else number)
        if negative:
            raise self.error("expected a number after '-'")
        if token.kind == "string":
            self.advance()
            return Literal(token.text)
        if token.kind == "keyword" and token.text in {"true", "false", "null"}:
            self.advance()
            return Literal({"true": True, "false": False, "null": None}[token.text])
        raise self.error(
            "IN lists hold literal values only (numbers, 'strings', TRUE, FALSE, NULL)"
        )

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.at_op("+", "-", "||"):
            op = self.advance().text
            node = Binary(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.at_op("*", "/", "%"):
            op = self.advance().text
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at_op("-", "+"):
            op = self.advance().text
            self.nested()
            operand = self.unary()
            self.depth -= 1
            return operand if op == "+" else Unary("-", operand)
        return self.primary()

    def primary(self) -> Node:
        token = self.token
        if token.kind == "number":
            self.advance()
            return Literal(_number(token.text))
        if token.kind == "string":
            self.advance()
            return Literal(token.text)
        if token.kind == "keyword" and token.text in {"true", "false", "null"}:
            self.advance()
            return Literal({"true": True, "false": False, "null": None}[token.text])
        if token.kind == "ident":
            self.advance()
            if self.at_op("("):
                return self.call(token)
            return Column(token.text)
        if self.at_op("("):
            self.advance()
            self.nested()
            node = self.or_expr()
            self.depth -= 1
            self.expect_op(")")
            return node
        raise self.error("expected a column, a value, a function call or '('")

    def call(self, name_token: Token) -> Node:
        name = name_token.text.lower()
        if name not in SAFE_FUNCTIONS:
            raise ConfigError(
                f"{self.what} {self.text!r}: function {name_token.text!r} at position "
                f"{name_token.position} is not allowed (no table functions, file access or "
                f"unknown functions); allowed: {', '.join(sorted(SAFE_FUNCTIONS))}"
            )
        self.advance()  # "("
        self.nested()
        args: list[Node] = []
        if not self.at_op(")"):
            while True:
                args.append(self.or_expr())
                if self.at_op(","):
                    self.advance()
                    continue
                break
        self.expect_op(")")
        self.depth -= 1
        low, high = SAFE_FUNCTIONS[name]
        if not low <= len(args) <= high:
            expected = str(low) if low == high else f"{low} to {high}"
            raise ConfigError(
                f"{self.what} {self.text!r}: {name}() takes {expected} argument(s), "
                f"found {len(args)}"
            )
        return Call(name, tuple(args))


def _number(text: str) -> int | float:
    if re.fullmatch(r"\d+", text):
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        raise ConfigError(f"number {text!r} is not finite")
    return value


def _columns(node: Node) -> Iterator[str]:
    match node:
        case Column(name):
            yield name
        case Literal():
            return
        case Unary(_, operand):
            yield from _columns(operand)
        case Binary(_, left, right):
            yield from _columns(left)
            yield from _columns(right)
        case InList(operand, _, _) | IsNull(operand, _):
            yield from _columns(operand)
        case Between(operand, low, high, _):
            yield from _columns(operand)
            yield from _columns(low)
            yield from _columns(high)
        case Like(operand, pattern, _, _):
            yield from _columns(operand)
            yield from _columns(pattern)
        case Call(_, args):
            for arg in args:
                yield from _columns(arg)


# --- emitting -----------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _emit(node: Node, params: Parameters, column_sql: Callable[[str], str]) -> str:
    def emit(n: Node) -> str:
        return _emit(n, params, column_sql)

    match node:
        case Column(name):
            return column_sql(name)
        case Literal(value):
            if value is None:
                return "NULL"
            if isinstance(value, bool):
                return "TRUE" if value else "FALSE"
            return params.bind(value)
        case Unary("NOT", operand):
            return f"(NOT {emit(operand)})"
        case Unary(_, operand):
            return f"(- {emit(operand)})"
        case Binary(op, left, right):
            return f"({emit(left)} {op} {emit(right)})"
        case InList(operand, values, negated):
            items = ", ".join(emit(v) for v in values)
            return f"({emit(operand)} {'NOT IN' if negated else 'IN'} ({items}))"
        case Between(operand, low, high, negated):
            keyword = "NOT BETWEEN" if negated else "BETWEEN"
            return f"({emit(operand)} {keyword} {emit(low)} AND {emit(high)})"
        case IsNull(operand, negated):
            return f"({emit(operand)} IS {'NOT NULL' if negated else 'NULL'})"
        case Like(operand, pattern, negated, case_insensitive):
            keyword = ("NOT " if negated else "") + ("ILIKE" if case_insensitive else "LIKE")
            return f"({emit(operand)} {keyword} {emit(pattern)})"
        case Call(name, args):
            return f"{name}({', '.join(emit(a) for a in args)})"
    raise TypeError(f"not a predicate node: {node!r}")  # pragma: no cover - exhaustive above
