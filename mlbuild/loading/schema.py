"""Typed schemas: the one place where what mlbuild reads from YAML is checked.

Every file kind declares its shape with these types (the root BUILD.yaml's sections in
configs.py and workspace.py, each rule's attributes in rules/, toolchain declarations in
toolchains/registry.py), and nothing uses a value before its schema has accepted it. A
schema checks a value parsed by yamlsource (mappings and lists remember file:line:col) and
returns it, converted where the type says so; a mismatch is one BuildFileError naming the
place, the path to the value, what was expected and what was found:

    targets/a/BUILD.yaml:4:17: error: //a:gen, attribute 'srcs', item 2: expected a string,
    got the integer 5

Hand-written rather than pydantic: the values already carry their locations, checks run on
every analysis (so they must cost microseconds), and a dozen small classes read plainly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import BuildFileError, Location, describe, did_you_mean, show
from .yamlsource import LocatedDict, LocatedList

class Schema:
    """A type a value must have. `expected` completes 'expected ...' in messages."""

    expected = "a value"

    def check(self, value, where: Location | None, path):
        """The value (converted if the type says so), or BuildFileError at `where` naming `path`."""
        raise NotImplementedError

    def fail(self, value, where: Location | None, path: str, expected: str | None = None, hint=None):
        raise BuildFileError(f"{_prefix(path)}expected {expected or self.expected}, got {describe(value)}",
                             where, hint)


class Text(Schema):
    """A string; `scalar=True` also takes a number or boolean and spells it as a string.

    A NUL character can reach no file name, argv or environment, so it is refused here."""

    def __init__(self, expected: str = "a string", *, scalar: bool = False, pattern: str | None = None):
        self.expected = expected
        self.scalar = scalar
        self.pattern = re.compile(pattern) if pattern else None

    def check(self, value, where, path):
        if type(value) is not str:
            if self.scalar and isinstance(value, (int, float)) and not _is_special_float(value):
                value = str(value).lower() if isinstance(value, bool) else str(value)
            else:
                self.fail(value, where, path)
        if "\0" in value:
            _nul(value, where, path)
        if self.pattern is not None and not self.pattern.fullmatch(value):
            self.fail(value, where, path)
        return value


class RelativePath(Text):
    """A path that stays inside the sandbox: relative, no `..`, names the file system accepts."""

    def __init__(self, expected: str = "a relative path"):
        super().__init__(expected)

    def check(self, value, where, path):
        super().check(value, where, path)
        problem = path_problem(value)
        if problem:
            raise BuildFileError(f"{_prefix(path)}path {show(value)} {problem}", where, PATH_HINT)
        return value


def path_problem(path: str) -> str | None:
    """Why `path` cannot name a file inside a sandbox, or None."""
    if not path:
        return "is empty"
    parts = path.split("/")
    if path.startswith("/") or ".." in parts:
        return "escapes the sandbox"
    if "\0" in path:
        return "holds a NUL character"
    if len(path.encode(errors="surrogateescape")) > MAX_PATH_BYTES \
            or any(len(p.encode(errors="surrogateescape")) > 255 for p in parts):
        return "is too long for the file system"
    return None


PATH_HINT = "paths must be relative, must not contain '..', and each name must be under 256 bytes"
MAX_PATH_BYTES = 1024  # leaves room for the sandbox and output-tree prefixes under PATH_MAX (4096)


class Integer(Schema):
    def __init__(self, minimum: int | None = None, maximum: int | None = None):
        self.minimum, self.maximum = minimum, maximum
        self.expected = "an integer" + _range(minimum, maximum)

    def check(self, value, where, path):
        if type(value) is not int or (self.minimum is not None and value < self.minimum) \
                or (self.maximum is not None and value > self.maximum):
            self.fail(value, where, path)
        return value


class Number(Schema):
    """An int or a finite float (YAML's .inf and .nan are never a sensible setting)."""

    def __init__(self, minimum: float | None = None, maximum: float | None = None):
        self.minimum, self.maximum = minimum, maximum
        self.expected = "a number" + _range(minimum, maximum)

    def check(self, value, where, path):
        if type(value) not in (int, float) or _is_special_float(value) \
                or (self.minimum is not None and value < self.minimum) \
                or (self.maximum is not None and value > self.maximum):
            self.fail(value, where, path)
        return value


class Boolean(Schema):
    expected = "true or false"

    def check(self, value, where, path):
        if type(value) is not bool:
            self.fail(value, where, path)
        return value


class Scalar(Schema):
    """A string, number or boolean, kept as it is (a config value, a default)."""

    expected = "a string, number or boolean"

    def check(self, value, where, path):
        if type(value) not in (str, int, float, bool) or _is_special_float(value):
            self.fail(value, where, path)
        if type(value) is str and "\0" in value:
            _nul(value, where, path)
        return value


class Choice(Schema):
    def __init__(self, *choices):
        self.choices = choices
        self.expected = "one of " + ", ".join(map(str, choices))

    def check(self, value, where, path):
        if not isinstance(value, (str, int, float)) or value not in self.choices:
            hint = did_you_mean(value, [str(c) for c in self.choices]) if isinstance(value, str) else None
            self.fail(value, where, path, hint=hint)
        return value


class Regex(Schema):
    """A regular expression that compiles, with at least `groups` capturing groups."""

    def __init__(self, groups: int = 0):
        self.groups = groups
        self.expected = "a regular expression" + (f" with {groups} capturing group" if groups else "")

    def check(self, value, where, path):
        Text(self.expected).check(value, where, path)
        try:
            compiled = re.compile(value)
        except (re.error, RecursionError, OverflowError) as exc:
            raise BuildFileError(f"{_prefix(path)}invalid regular expression {show(value)}: {exc}", where) from None
        if compiled.groups < self.groups:
            self.fail(value, where, path, hint="wrap the part to extract in ( )")
        return value


class VersionSpec(Text):
    """A PEP 440 version constraint such as '>=3.10' or '==8.6.*'."""

    def __init__(self):
        super().__init__("a version constraint like '>=3.10'", scalar=True)

    def check(self, value, where, path):
        value = super().check(value, where, path)
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            self.fail(value, where, path)
        return value


class Nullable(Schema):
    """`inner`, or null."""

    def __init__(self, inner: Schema):
        self.inner = inner
        self.expected = f"{inner.expected} or null"

    def check(self, value, where, path):
        return None if value is None else self.inner.check(value, where, path)


class OneOf(Schema):
    """The schema for the value's Python type, e.g. a string or a list (requirements)."""

    def __init__(self, *options: tuple[type, Schema]):
        self.options = options
        self.expected = " or ".join(schema.expected for _, schema in options)

    def check(self, value, where, path):
        for kind, schema in self.options:
            if isinstance(value, kind):
                return schema.check(value, where, path)
        self.fail(value, where, path)


class ListOf(Schema):
    def __init__(self, item: Schema, *, min_items: int = 0, expected: str | None = None):
        self.item = item
        self.min_items = min_items
        self.expected = expected or f"a list of {_plural(item.expected)}"

    def check(self, value, where, path):
        if not isinstance(value, list):
            self.fail(value, where, path)
        if len(value) < self.min_items:
            self.fail(value, where, path, f"{self.expected} with at least {self.min_items} item(s)")
        item, located = self.item, isinstance(value, LocatedList)
        checked = [item.check(v, value.where(i) if located else where, (path, "item", i + 1))
                   for i, v in enumerate(value)]
        if all(new is old for new, old in zip(checked, value)):
            return value
        return value.with_items(checked) if isinstance(value, LocatedList) else checked


class MapOf(Schema):
    """A mapping whose keys and values each follow a schema (keys are strings by default)."""

    def __init__(self, value: Schema, key: Schema | None = None, expected: str | None = None, noun: str = "key"):
        self.value = value
        self.key = key or Text("a name", scalar=True)
        self.expected = expected or f"a mapping of {_plural(self.key.expected)} to {_plural(value.expected)}"
        self.noun = noun

    def check(self, value, where, path):
        if not isinstance(value, dict):
            self.fail(value, where, path)
        items = []
        for key, item in value.items():
            at = value.where(key) if isinstance(value, LocatedDict) else where
            new_key = self.key.check(key, at, (path, self.noun, key))
            items.append((new_key, self.value.check(item, at, (path, self.noun, new_key))))
        if all(k is old_k and v is old_v for (k, v), (old_k, old_v) in zip(items, value.items())):
            return value
        return value.with_items(items) if isinstance(value, LocatedDict) else dict(items)


class MappingParts(Schema):
    """A mapping, or a list of mapping parts (a fixed one and `select`ed ones, null for none)
    merged in order into one mapping: how `env` is assembled from conditional parts."""

    def __init__(self, mapping: Schema):
        self.mapping = mapping
        self.expected = f"{mapping.expected}, or a list of them"

    def check(self, value, where, path):
        if not isinstance(value, list):
            return self.mapping.check(value, where, path)
        merged = {}
        for i, part in enumerate(value):
            if part is not None:
                at = value.where(i) if isinstance(value, LocatedList) else where
                merged.update(self.mapping.check(part, at, (path, "part", i + 1)))
        return merged


@dataclass(frozen=True)
class Field:
    """One key of a Record: its type, default, whether it must be given, and what it means."""

    type: Schema
    default: object = None
    required: bool = False
    doc: str = ""


class Record(Schema):
    """A mapping with known keys: an unknown one is an error with a did-you-mean hint.

    `check` returns the mapping (a LocatedDict keeps its locations) with checked values; with
    `fill`, every field is present, defaults filled in. A null value means "the default", as
    it always has in BUILD files."""

    def __init__(self, fields: dict[str, Field | Schema], what: str = "a mapping", *, fill: bool = True,
                 noun: str = "key"):
        self.fields = {k: f if isinstance(f, Field) else Field(f) for k, f in fields.items()}
        self.expected = what
        self.fill = fill
        self.noun = noun

    def extend(self, fields: dict[str, Field | Schema], what: str | None = None) -> "Record":
        return Record({**self.fields, **fields}, what or self.expected, fill=self.fill, noun=self.noun)

    def check(self, value, where, path):
        if not isinstance(value, dict):
            self.fail(value, where, path)
        fields, noun = self.fields, self.noun
        result = {}
        for key, item in value.items():
            at = value.where(key) if isinstance(value, LocatedDict) else where
            spec = fields.get(key) if isinstance(key, str) else None
            if spec is None:
                raise BuildFileError(
                    f"{_prefix(path)}unknown {noun} {show(key)}", at,
                    did_you_mean(key, fields) or f"{noun}s: {', '.join(sorted(fields))}",
                )
            if item is not None:
                result[key] = spec.type.check(item, at, (path, noun, key))
        for key, spec in fields.items():
            if result.get(key) is None:
                if spec.required:
                    raise BuildFileError(f"{_prefix(path)}{noun} {show(key)} is required",
                                         value.location if isinstance(value, LocatedDict) else where)
                if self.fill:
                    result[key] = spec.default
        return value.with_items(result) if isinstance(value, LocatedDict) else result


def _nul(value: str, where, path: str):
    raise BuildFileError(f"{_prefix(path)}{show(value)} holds a NUL character, which no file name, "
                         "argument or environment variable can carry", where)


def _prefix(path) -> str:
    """`path` spelled for a message: "//a:x, attribute 'srcs', item 2: ". A path is a string or
    (parent path, noun, key), built for every value checked and spelled only for an error."""
    parts = []
    while isinstance(path, tuple):
        path, noun, key = path
        parts.append(f"{noun} {show(key)}")
    if path:
        parts.append(path)
    return ", ".join(reversed(parts)) + ": " if parts else ""


def _is_special_float(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _range(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f" >= {minimum:g}"
    if maximum is not None:
        return f" <= {maximum:g}"
    return ""


def _plural(expected: str) -> str:
    """'a string' -> 'strings', 'a config value (X)' -> 'config values (X)', for list/map messages."""
    article, _, phrase = expected.partition(" ")
    if article not in ("a", "an") or not phrase:
        return expected
    cut = min([i for i in (phrase.find(m) for m in _QUALIFIERS) if i > 0], default=len(phrase))
    head, rest = phrase[:cut], phrase[cut:]
    noun = head.rsplit(" ", 1)[-1]
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + ("es" if noun.endswith("s") else "s")
    return head[: len(head) - len(noun)] + plural + rest


_QUALIFIERS = (" (", " with ", " from ", " >= ", " <= ", " or ", " of ", " like ", " in ")


# -- the types BUILD files use again and again ----------------------------------------------------

TEXT = Text()
SCALAR_TEXT = Text("a string or number", scalar=True)
NAME = Text("a name", scalar=True, pattern=r"[^\s,=]+")
SCALAR = Scalar()
ENV = MapOf(SCALAR, key=Text("an environment variable name", scalar=True, pattern=r"[^=]+"),
            expected="a mapping of environment variable names to strings")
TEXT_LIST = ListOf(TEXT)
SCALAR_LIST = ListOf(SCALAR)
PATHS = ListOf(RelativePath())
NAME_LIST = ListOf(NAME)
