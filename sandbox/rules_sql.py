"""The subset of AWS IoT rule SQL (version 2016-03-23) that the sandbox's rules bridge executes.

    SELECT <item>, ... FROM '<topic filter>' [WHERE <condition>]

- items: `*`, or `<expr> [AS <name>]`; without AS a field takes its last path segment's name
  (`a.b` -> `b`), a function its own name (`clientId()` -> `clientId`), anything else `_<n>` (n = its
  1-based position), as AWS does for unnamed expressions.
- expressions: payload fields (`temperature`, nested `state.reported.x`, double-quoted names for keys
  with other characters: `"my-key".x`), literals (numbers, 'strings' with '' for a quote, true, false,
  null), `clientId()`, `timestamp()` (epoch ms), `topic()` and `topic(n)` (1-based segment), unary minus.
- condition: =, <>, !=, <, <=, >, >= with AND, OR, NOT and parentheses (any expression above).

Semantics follow AWS IoT: a missing field is Undefined; an item whose value is Undefined is left out of
the output; a comparison involving Undefined, or between values of different types (numbers compare
across int and decimal, and a string that parses as a number compares with a number), is Undefined;
AND/OR/NOT on anything but booleans is Undefined; the message passes WHERE only when it is true.
Keywords and function names are case-insensitive. Anything else raises SqlError naming what and where.
"""

import json
import math
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field

SQL_VERSION = "2016-03-23"


class SqlError(ValueError):
    """The statement is not in the supported subset (or not valid SQL); the message says where."""


class _Undefined:
    """AWS IoT SQL's Undefined: a missing field or a meaningless operation."""

    def __repr__(self) -> str:
        return "Undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED = _Undefined()

KEYWORDS = {"select", "from", "where", "as", "and", "or", "not", "true", "false", "null"}
FUNCTIONS = {"clientid": "clientId", "timestamp": "timestamp", "topic": "topic"}
COMPARISONS = ("=", "<>", "!=", "<=", ">=", "<", ">")

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><>|!=|<=|>=|=|<|>|\*|,|\.|\(|\)|-)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, quoted, op, end
    text: str
    position: int  # 0-based character offset in the statement

    @property
    def keyword(self) -> str | None:
        return self.text.lower() if self.kind == "name" and self.text.lower() in KEYWORDS else None


def tokenize(sql: str) -> list[Token]:
    tokens = []
    position = 0
    while position < len(sql):
        match = _TOKEN_RE.match(sql, position)
        if match is None:
            if sql[position] in "'\"":
                raise SqlError(f"unterminated quoted text at character {position + 1}")
            raise SqlError(f"unexpected character {sql[position]!r} at character {position + 1}")
        kind = match.lastgroup
        if kind != "space":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(sql)))
    return tokens


# -- the syntax tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: object


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    name: str  # canonical: clientId, timestamp, topic
    args: tuple = ()


@dataclass(frozen=True)
class Negate:
    operand: object


@dataclass(frozen=True)
class Compare:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class Logical:
    op: str  # and, or
    left: object
    right: object


@dataclass(frozen=True)
class Not:
    operand: object


@dataclass(frozen=True)
class Item:
    expr: object  # None for `*`
    name: str | None  # None for `*`


@dataclass(frozen=True)
class Statement:
    items: tuple[Item, ...]
    topic_filter: str
    where: object = None
    sql: str = dataclass_field(default="", compare=False)

    @property
    def select_all(self) -> bool:
        return any(item.expr is None for item in self.items)


@dataclass
class Context:
    """What the functions see: the message's topic, its publisher and when the rules engine got it."""

    topic: str
    client_id: str | None = None
    timestamp_ms: int = 0


# -- parsing --------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, sql: str):
        self.sql = sql
        self.tokens = tokenize(sql)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def where_text(self, token: Token) -> str:
        if token.kind == "end":
            return "at the end of the statement"
        return f"at character {token.position + 1} ({token.text!r})"

    def fail(self, expected: str, token: Token | None = None):
        token = token or self.current
        raise SqlError(f"expected {expected} {self.where_text(token)}")

    def accept_keyword(self, word: str) -> bool:
        if self.current.keyword == word:
            self.index += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.accept_keyword(word):
            self.fail(word.upper())

    def accept_op(self, text: str) -> bool:
        if self.current.kind == "op" and self.current.text == text:
            self.index += 1
            return True
        return False

    def expect_op(self, text: str) -> None:
        if not self.accept_op(text):
            self.fail(f"'{text}'")

    def statement(self) -> Statement:
        self.expect_keyword("select")
        items = [self.item(1)]
        while self.accept_op(","):
            items.append(self.item(len(items) + 1))
        self.expect_keyword("from")
        token = self.advance()
        if token.kind != "string":
            self.fail("a quoted topic filter such as 'a/+/b'", token)
        topic_filter = _unquote(token.text, "'")
        _check_topic_filter(topic_filter)
        where = None
        if self.accept_keyword("where"):
            where = self.condition()
        if self.current.kind != "end":
            self.fail("the end of the statement (only SELECT ... FROM ... WHERE ... is supported)")
        names = [item.name for item in items if item.name is not None]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise SqlError(f"the output name {duplicates[0]!r} is used more than once")
        return Statement(tuple(items), topic_filter, where, self.sql)

    def item(self, position: int) -> Item:
        if self.accept_op("*"):
            return Item(None, None)
        expr = self.expression()
        if self.accept_keyword("as"):
            token = self.advance()
            if token.kind == "name" and token.keyword is None:
                return Item(expr, token.text)
            if token.kind == "quoted":
                return Item(expr, _unquote(token.text, '"'))
            self.fail("a name after AS", token)
        return Item(expr, _default_name(expr, position))

    # condition := or ; or := and (OR and)* ; and := not (AND not)* ; not := NOT not | comparison
    def condition(self):
        left = self.conjunction()
        while self.accept_keyword("or"):
            left = Logical("or", left, self.conjunction())
        return left

    def conjunction(self):
        left = self.negation()
        while self.accept_keyword("and"):
            left = Logical("and", left, self.negation())
        return left

    def negation(self):
        if self.accept_keyword("not"):
            return Not(self.negation())
        return self.comparison()

    def comparison(self):
        left = self.expression()
        token = self.current
        if token.kind == "op" and token.text in COMPARISONS:
            self.advance()
            right = self.expression()
            following = self.current
            if following.kind == "op" and following.text in COMPARISONS:
                raise SqlError(f"comparisons cannot be chained {self.where_text(following)}: use AND")
            return Compare(token.text, left, right)
        return left

    def expression(self):
        if self.accept_op("-"):
            return Negate(self.expression())
        token = self.advance()
        if token.kind == "number":
            return Literal(_number(token.text))
        if token.kind == "string":
            return Literal(_unquote(token.text, "'"))
        if token.kind == "op" and token.text == "(":
            inner = self.condition()
            self.expect_op(")")
            return inner
        if token.kind == "name" and token.keyword in ("true", "false"):
            return Literal(token.keyword == "true")
        if token.kind == "name" and token.keyword == "null":
            return Literal(None)
        if token.kind == "name" and token.keyword is None and self.current.kind == "op" and self.current.text == "(":
            return self.call(token)
        if token.kind in ("name", "quoted") and token.keyword is None:
            path = [_unquote(token.text, '"') if token.kind == "quoted" else token.text]
            while self.accept_op("."):
                part = self.advance()
                if part.kind == "name":
                    path.append(part.text)
                elif part.kind == "quoted":
                    path.append(_unquote(part.text, '"'))
                else:
                    self.fail("a field name after '.'", part)
            return Field(tuple(path))
        if token.kind == "op" and token.text == "*":
            raise SqlError(f"'*' is only supported alone as a SELECT item {self.where_text(token)}")
        self.fail("a field, a literal or a function", token)

    def call(self, name_token: Token) -> Call:
        name = FUNCTIONS.get(name_token.text.lower())
        if name is None:
            supported = ", ".join(f"{value}()" for value in FUNCTIONS.values())
            raise SqlError(
                f"unsupported function {name_token.text}() at character {name_token.position + 1}"
                f" (the sandbox supports {supported})"
            )
        self.expect_op("(")
        args = []
        if not self.accept_op(")"):
            args.append(self.expression())
            while self.accept_op(","):
                args.append(self.expression())
            self.expect_op(")")
        if name in ("clientId", "timestamp") and args:
            raise SqlError(f"{name}() takes no arguments (at character {name_token.position + 1})")
        if name == "topic":
            if len(args) > 1:
                raise SqlError(f"topic() takes at most one argument (at character {name_token.position + 1})")
            if args and not (isinstance(args[0], Literal) and _is_int(args[0].value) and args[0].value >= 1):
                raise SqlError(
                    f"topic(n) needs a whole number n >= 1 (at character {name_token.position + 1})"
                )
        return Call(name, tuple(args))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(text: str):
    if re.fullmatch(r"\d+", text):
        return int(text)
    return float(text)


def _unquote(text: str, quote: str) -> str:
    return text[1:-1].replace(quote * 2, quote)


def _default_name(expr, position: int) -> str:
    if isinstance(expr, Field):
        return expr.path[-1]
    if isinstance(expr, Call):
        return expr.name
    return f"_{position}"


def _check_topic_filter(topic_filter: str) -> None:
    if not topic_filter:
        raise SqlError("the FROM topic filter is empty")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise SqlError(f"invalid topic filter {topic_filter!r}: '#' must be a whole last level")
        if "+" in level and level != "+":
            raise SqlError(f"invalid topic filter {topic_filter!r}: '+' must be a whole level")


def parse(sql: str) -> Statement:
    """The statement, or SqlError saying what is not supported and where."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlError("the statement is empty")
    return _Parser(sql).statement()


# -- topic filters --------------------------------------------------------------------------------


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching: `+` one level, `#` the rest (incl. none); wildcards never match a leading `$` level."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


# -- evaluation -----------------------------------------------------------------------------------


def _kind(value) -> str:
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _as_number(text: str):
    try:
        number = float(text)
    except ValueError:
        return UNDEFINED
    return number if math.isfinite(number) else UNDEFINED


def _compare(op: str, left, right):
    kinds = (_kind(left), _kind(right))
    if "undefined" in kinds:
        return UNDEFINED
    if kinds == ("number", "string"):
        right = _as_number(right)
    elif kinds == ("string", "number"):
        left = _as_number(left)
    elif kinds[0] != kinds[1]:
        return UNDEFINED
    if left is UNDEFINED or right is UNDEFINED:
        return UNDEFINED
    if op == "=":
        return left == right
    if op in ("<>", "!="):
        return left != right
    if _kind(left) not in ("number", "string"):
        return UNDEFINED  # ordering is defined for numbers and strings only
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def evaluate(expr, payload, context: Context):
    """The value of `expr` for a message (`payload` is the decoded JSON, or UNDEFINED if not JSON)."""
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Field):
        value = payload
        for part in expr.path:
            if not isinstance(value, dict) or part not in value:
                return UNDEFINED
            value = value[part]
        return value
    if isinstance(expr, Call):
        if expr.name == "clientId":
            return context.client_id if context.client_id is not None else UNDEFINED
        if expr.name == "timestamp":
            return context.timestamp_ms
        if not expr.args:
            return context.topic
        levels = context.topic.split("/")
        index = expr.args[0].value
        return levels[index - 1] if index <= len(levels) else UNDEFINED
    if isinstance(expr, Negate):
        value = evaluate(expr.operand, payload, context)
        return -value if _kind(value) == "number" else UNDEFINED
    if isinstance(expr, Compare):
        return _compare(expr.op, evaluate(expr.left, payload, context), evaluate(expr.right, payload, context))
    if isinstance(expr, Not):
        value = evaluate(expr.operand, payload, context)
        return (not value) if isinstance(value, bool) else UNDEFINED
    if isinstance(expr, Logical):
        left = evaluate(expr.left, payload, context)
        right = evaluate(expr.right, payload, context)
        if not isinstance(left, bool) or not isinstance(right, bool):
            return UNDEFINED
        return (left and right) if expr.op == "and" else (left or right)
    raise TypeError(f"not an expression: {expr!r}")


class NotJson(ValueError):
    """The payload is not a JSON object, so `SELECT *` has nothing to give (AWS would pass raw bytes)."""


def decode_payload(payload: bytes):
    """The payload as JSON, or UNDEFINED when it is not JSON."""
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return UNDEFINED


def run(statement: Statement, payload: bytes, context: Context) -> dict | None:
    """The rule's output document for one message, or None when WHERE filters it out.

    NotJson when the statement needs the payload's fields (`SELECT *`) and it is not a JSON object.
    """
    document = decode_payload(payload)
    if statement.select_all and not isinstance(document, dict):
        kind = "not JSON" if document is UNDEFINED else f"JSON {_kind(document)}, not an object"
        raise NotJson(f"SELECT * needs a JSON object payload; this one is {kind}")
    if statement.where is not None and evaluate(statement.where, document, context) is not True:
        return None
    output = {}
    for item in statement.items:
        if item.expr is None:
            output.update(document)
            continue
        value = evaluate(item.expr, document, context)
        if value is not UNDEFINED:
            output[item.name] = value
    return output
