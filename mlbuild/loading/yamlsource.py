"""YAML loading that remembers where every value came from, for file:line:col errors.

PyYAML's C composer builds the node tree (fast); we convert nodes ourselves so that mappings
and lists carry the location of each key and item. Anchors and merge keys (`<<: *base`) work;
duplicate keys, which PyYAML would silently merge, are an error here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import BuildFileError, Location

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing; still correct, just slower
    _Loader = yaml.SafeLoader


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
        copy.location, copy.key_locations, copy.marks = self.location, self.key_locations, frozenset()
        return copy


class LocatedList(list):
    __slots__ = ("location", "item_locations", "marks")

    def where(self, index: int) -> Location:
        return self.item_locations[index] if index < len(self.item_locations) else self.location

    def with_items(self, items) -> "LocatedList":
        copy = LocatedList(items)
        copy.location, copy.item_locations, copy.marks = self.location, self.item_locations, frozenset()
        return copy


def _marks(values) -> frozenset:
    found = set()
    for value in values:
        if isinstance(value, (LocatedDict, LocatedList)):
            found |= value.marks
        elif isinstance(value, str) and "{{" in value and "config:" in value:
            found.add("config")
    return frozenset(found)


def _location(file: str, node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(node, file: str, constructor):
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        constructor.flatten_mapping(node)  # YAML merge keys: `<<: *defaults`, placed first
        inherited = len(node.value) - explicit  # merged-in pairs, which explicit keys may override
        result = LocatedDict()
        result.location = _location(file, node)
        result.key_locations = {}
        explicit_keys = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = _convert(key_node, file, constructor)
            if not isinstance(key, (str, int, float, bool)):
                raise BuildFileError("mapping keys must be plain scalars", _location(file, key_node))
            if index >= inherited:
                if key in explicit_keys:
                    raise BuildFileError(
                        f"duplicate key '{key}'", _location(file, key_node),
                        f"first defined at line {result.key_locations[key].line}",
                    )
                explicit_keys.add(key)
            result[key] = _convert(value_node, file, constructor)
            result.key_locations[key] = _location(file, key_node)
        result.marks = _marks(result.values()) | ({"select"} if "select" in result else set())
        return result
    if isinstance(node, yaml.SequenceNode):
        result = LocatedList(_convert(item, file, constructor) for item in node.value)
        result.location = _location(file, node)
        result.item_locations = [_location(file, item) for item in node.value]
        result.marks = _marks(result)
        return result
    return constructor.construct_object(node)


def load_yaml(path: Path, display_path: str | None = None):
    """Parse one YAML document; an empty file is an empty mapping."""
    file = display_path or str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise BuildFileError(f"cannot read {file}: {exc.strerror}") from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        raise BuildFileError(f"malformed YAML: {exc.problem or exc.context}", where) from None
    except yaml.YAMLError as exc:
        raise BuildFileError(f"malformed YAML: {exc}", Location(file)) from None
    if node is None:
        empty = LocatedDict()
        empty.location, empty.key_locations, empty.marks = Location(file, 1, 1), {}, frozenset()
        return empty
    try:
        return _convert(node, file, yaml.SafeLoader(""))
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise BuildFileError(f"invalid YAML value: {exc.problem}", Location(file, mark.line + 1, mark.column + 1)) from None


def expect_mapping(value, what: str, location: Location) -> LocatedDict:
    if not isinstance(value, LocatedDict):
        raise BuildFileError(f"{what} must be a mapping, got {type(value).__name__}", location)
    return value
