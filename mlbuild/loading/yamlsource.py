"""YAML loading that remembers where every value came from, for file:line:col errors.

PyYAML's C composer builds the node tree (fast); we convert nodes ourselves so that mappings
and lists carry the location of each key and item. Anchors and merge keys (`<<: *base`) work;
duplicate keys, which PyYAML would silently merge, are an error here.

Input is untrusted in shape, so it is bounded before anything recursive sees it: the bytes
must be UTF-8 (else the error names the byte offset), nesting deeper than MAX_DEPTH is
refused by an event scan before the C composer (which recurses, and crashes the interpreter
near 200,000 levels), and alias expansion ("billion laughs") is capped relative to the file's
size while converting.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..errors import BuildFileError, Location, describe
from ..interning import shared

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing; still correct, just slower
    _Loader = yaml.SafeLoader

MAX_DEPTH = 100  # nested mappings/lists; real BUILD files use under 10
# Converted values allowed per byte of input: aliases may repeat a block (merge keys for
# shared defaults), but not multiply it exponentially.
_EXPANSION_PER_BYTE = 10
_EXPANSION_BASE = 100_000
# Fewer brackets than this cannot nest deep enough to crash the C composer (measured: fine
# at 10,000 levels); block nesting needs a line starting with a long run of indentation,
# dashes or '?'. Anything else gets the exact event scan before composing.
_SAFE_FOR_COMPOSER = 2000
_SHARED_UP_TO = 64  # characters: names and paths, not commands
_DEEP_BLOCK = re.compile(r"^[ \t?:-]{%d}" % MAX_DEPTH, re.MULTILINE)
_NO_MARKS = frozenset()


class LocatedDict(dict):
    """A mapping whose keys and values know their source location.

    `marks` says what occurs anywhere inside ("select", "config" for a {{config:...}}
    placeholder), found once at parse time so analysis skips work for targets without them.
    """

    __slots__ = ("location", "key_locations", "marks")

    def where(self, key) -> Location:
        return self.key_locations.get(key, self.location)

    def with_items(self, items) -> "LocatedDict":
        """A copy holding `items` but keeping this mapping's locations."""
        copy = LocatedDict(items)
        copy.location, copy.key_locations, copy.marks = self.location, self.key_locations, _NO_MARKS
        return copy


class LocatedList(list):
    __slots__ = ("location", "item_locations", "marks")

    def where(self, index: int) -> Location:
        return self.item_locations[index] if index < len(self.item_locations) else self.location

    def with_items(self, items, item_locations=None) -> "LocatedList":
        copy = LocatedList(items)
        copy.location, copy.marks = self.location, _NO_MARKS
        copy.item_locations = self.item_locations if item_locations is None else item_locations
        return copy


def _marks(values, *also: str) -> frozenset:
    """The marks found in `values`, plus `also`; the one empty set when none (most containers)."""
    found = set(also)
    for value in values:
        if isinstance(value, (LocatedDict, LocatedList)):
            found |= value.marks
        elif isinstance(value, str) and "{{" in value and "config:" in value:
            found.add("config")
    return frozenset(found) if found else _NO_MARKS


def _shared(value):
    """Keys and short strings (`rule`, `outs`, `command`, `out.txt`...) once, however many
    targets repeat them (interning.py)."""
    return shared(value) if type(value) is str and len(value) <= _SHARED_UP_TO else value


def _location(file: str, node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(node, file: str, constructor, budget: list, depth: int = 0):
    budget[0] -= 1
    if budget[0] < 0:
        raise BuildFileError(
            "YAML aliases expand to far more values than the file holds (an alias bomb?)",
            _location(file, node), "repeat fewer nested aliases (*name)",
        )
    if depth > MAX_DEPTH:
        raise _too_deep(file, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        constructor.flatten_mapping(node)  # YAML merge keys: `<<: *defaults`, placed first
        inherited = len(node.value) - explicit  # merged-in pairs, which explicit keys may override
        result = LocatedDict()
        result.location = _location(file, node)
        result.key_locations = {}
        explicit_keys = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = _convert(key_node, file, constructor, budget, depth + 1)
            if not isinstance(key, (str, int, float, bool)):
                raise BuildFileError("mapping keys must be plain scalars", _location(file, key_node))
            if index >= inherited:
                if key in explicit_keys:
                    raise BuildFileError(
                        f"duplicate key '{key}'", _location(file, key_node),
                        f"first defined at line {result.key_locations[key].line}",
                    )
                explicit_keys.add(key)
            result[key] = _convert(value_node, file, constructor, budget, depth + 1)
            result.key_locations[key] = _location(file, key_node)
        result.marks = _marks(result.values(), *(("select",) if "select" in result else ()))
        return result
    if isinstance(node, yaml.SequenceNode):
        result = LocatedList([_convert(item, file, constructor, budget, depth + 1) for item in node.value])
        result.location = _location(file, node)
        result.item_locations = [_location(file, item) for item in node.value]
        result.marks = _marks(result)
        return result
    return _shared(constructor.construct_object(node))


def load_yaml(path: Path, display_path: str | None = None):
    """Parse one YAML document; an empty file is an empty mapping."""
    file = display_path or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BuildFileError(f"cannot read {file}: {exc.strerror}", Location(file)) from None
    text = decode_text(data, file)
    try:
        _check_depth(text, file)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in str(exc.problem):
            # The C scanner of PyYAML 6.0.4 and later stops at a limit of its own (1,000 levels),
            # scanning ahead of the events: the pure-Python parser finds level MAX_DEPTH + 1.
            _refuse_deep_events(text, file, yaml.SafeLoader)
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        raise BuildFileError(f"malformed YAML: {exc.problem or exc.context}", where) from None
    except yaml.reader.ReaderError as exc:  # a control character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        raise BuildFileError(f"malformed YAML: the character U+{ord(character):04X} is not allowed",
                             Location(file, line, column)) from None
    except yaml.YAMLError as exc:
        raise BuildFileError(f"malformed YAML: {exc}", Location(file)) from None
    if node is None:
        empty = LocatedDict()
        empty.location, empty.key_locations, empty.marks = Location(file, 1, 1), {}, _NO_MARKS
        return empty
    # A bare constructor: a whole SafeLoader holds itself in a cycle (its parser's state is a
    # bound method) and, through its constructed objects, every node of the file; commands run
    # with the cyclic collector off (cli/main.py), so each BUILD file's nodes stayed in memory.
    constructor = yaml.constructor.SafeConstructor()
    try:
        return _convert(node, file, constructor, [_EXPANSION_BASE + _EXPANSION_PER_BYTE * len(data)])
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise BuildFileError(f"invalid YAML value: {exc.problem}", Location(file, mark.line + 1, mark.column + 1)) from None
    except (ValueError, OverflowError) as exc:  # a scalar PyYAML resolves but cannot build, e.g. a timestamp
        raise BuildFileError(f"invalid YAML value: {exc}", Location(file)) from None


def decode_text(data: bytes, file: str) -> str:
    """UTF-8 text (a BOM allowed), or an error naming the first bad byte's offset and line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise BuildFileError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset {exc.start} cannot be decoded",
            Location(file, line, column), "save the file as UTF-8",
        ) from None


def _check_depth(text: str, file: str) -> None:
    """Refuse nesting that could overflow the C composer's stack (it recurses, and crashes
    near 20,000 levels), found by the C parser's event stream (iterative, so safe at any
    depth) when a cheap look at the text cannot rule it out. Depths the composer survives
    are bounded to MAX_DEPTH while converting."""
    if text.count("[") + text.count("{") < _SAFE_FOR_COMPOSER and not _DEEP_BLOCK.search(text):
        return
    _refuse_deep_events(text, file, _Loader)


def _refuse_deep_events(text: str, file: str, loader) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(file, event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _too_deep(file: str, mark) -> BuildFileError:
    return BuildFileError(f"YAML nested more than {MAX_DEPTH} levels deep",
                          Location(file, mark.line + 1, mark.column + 1), "flatten the structure")


def expect_mapping(value, what: str, location: Location) -> LocatedDict:
    if not isinstance(value, LocatedDict):
        raise BuildFileError(f"{what} must be a mapping, got {describe(value)}", location)
    return value
