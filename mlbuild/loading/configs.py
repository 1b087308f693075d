"""Configurations: CM's variation language as typed config groups (DESIGN.md §3).

The root BUILD.yaml declares groups under `config:`. A group is either exclusive (named
`values`, one `default`) or parametric (`type: int|float|str|bool`, like CM's `_batch_size.#`).
A value may `imply` others (CM's `base` variations), require `toolchains`, and set `env` for
the actions of targets that read its group. `combinations` apply settings when several
values hold at once (CM's `onnx,opset-11` keys), `incompatible` lists forbidden sets
(CM's invalid_variation_combinations) and `bundles` name a set of values.

Command-line tokens: `cuda` (a value name unique across groups), `device=cuda`,
`batch_size=8`, or a bundle name. Everything is checked before anything runs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from ..errors import BuildFileError, Location, did_you_mean, show
from .yamlsource import LocatedDict, LocatedList, expect_mapping

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
_LIMIT = 2**63  # parametric numbers: what a 64-bit program reading them can hold
_GROUP_KEYS = {"default", "values", "type", "doc"}
_VALUE_KEYS = {"implies", "toolchains", "env", "doc"}
_COMBINATION_KEYS = {"when", "implies", "toolchains", "env", "doc"}


@dataclass(frozen=True)
class ValueSettings:
    """What holding a value (or a combination of values) brings along."""

    implies: tuple[tuple[str, str], ...] = ()
    toolchains: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ConfigGroup:
    name: str
    default: object
    values: dict = field(default_factory=dict)  # value name -> ValueSettings (exclusive groups)
    type: str | None = None  # set for parametric groups
    doc: str = ""
    location: Location | None = None

    @property
    def parametric(self) -> bool:
        return self.type is not None

    def coerce(self, raw: str, location: Location | None = None):
        """Turn a command-line string into this group's value, or say what is valid."""
        if self.parametric:
            try:
                if self.type == "bool":
                    if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(raw)
                    return raw.lower() in ("true", "1", "yes")
                value = _TYPES[self.type](raw)
                if self.type in ("int", "float") and not -_LIMIT <= value <= _LIMIT:  # also refuses inf and nan
                    raise ValueError(raw)
                return value
            except ValueError:
                raise BuildFileError(
                    f"config group '{self.name}' takes a {self.type}"
                    + (" between -2^63 and 2^63" if self.type in ("int", "float") else "") + f", got {show(raw)}",
                    location
                ) from None
        if raw not in self.values:
            raise BuildFileError(
                f"unknown value '{raw}' for config group '{self.name}'",
                location,
                f"valid values: {', '.join(self.values)}",
            )
        return raw


@dataclass(frozen=True)
class Combination:
    when: tuple[tuple[str, str], ...]
    settings: ValueSettings
    location: Location | None = None


@dataclass(frozen=True)
class Configuration:
    """One value for every group; `name` spells the values that differ from the defaults."""

    values: tuple[tuple[str, object], ...]
    name: str = "default"

    def __getitem__(self, group: str):
        return dict(self.values)[group]

    def holds(self, group: str, value) -> bool:
        return dict(self.values).get(group) == value

    def describe(self) -> str:
        return ",".join(f"{g}={v}" for g, v in self.values)


def configuration_name(changed: list[tuple[str, object, bool]]) -> str:
    """A short, stable, filesystem-safe directory name: `default`, `int8`, `cuda-int8-batch_size=8`.

    `changed` holds (group, value, parametric) for values that differ from the defaults.
    """
    values = [f"{g}={v}" if parametric else str(v) for g, v, parametric in changed]
    raw = "-".join(values)
    text = re.sub(r"[^A-Za-z0-9_.=+-]", "_", raw) or "default"
    ambiguous = any("-" in v for v in values)  # (a-b, c) and (a, b-c) must not share a tree
    if raw and (text != raw or ambiguous) or len(text) > 64:
        text = text[:48] + "-" + hashlib.sha256(repr(changed).encode()).hexdigest()[:12]
    return text


class ConfigSchema:
    """The declared groups, combinations, incompatibilities and bundles of a workspace."""

    def __init__(self, groups, combinations=(), incompatible=(), bundles=None):
        self.groups: dict[str, ConfigGroup] = dict(groups)
        self.combinations: list[Combination] = list(combinations)
        self.incompatible: list[tuple[tuple[tuple[str, str], ...], Location | None]] = list(incompatible)
        self.bundles: dict[str, tuple[str, ...]] = dict(bundles or {})
        self._owner: dict[str, list[str]] = {}
        for group in self.groups.values():
            for value in group.values:
                self._owner.setdefault(str(value), []).append(group.name)

    # -- parsing the root BUILD.yaml -------------------------------------------------------
    @classmethod
    def from_yaml(cls, section: LocatedDict | None, rules: LocatedDict | None) -> "ConfigSchema":
        groups = {}
        for name, body in (section or {}).items():
            where = section.where(name)
            body = expect_mapping(body, f"config group '{name}'", where)
            _check_keys(body, _GROUP_KEYS, f"config group '{name}'")
            kind = body.get("type")
            if kind is not None:
                if kind not in _TYPES:
                    raise BuildFileError(
                        f"unknown type '{kind}' for config group '{name}'", body.where("type"),
                        f"types: {', '.join(_TYPES)}",
                    )
                if "values" in body:
                    raise BuildFileError(f"parametric group '{name}' cannot list values", body.where("values"))
                group = ConfigGroup(name, None, type=kind, doc=body.get("doc", ""), location=where)
                default = body.get("default")
                if default is not None:
                    default = group.coerce(str(default), body.where("default"))
                groups[name] = ConfigGroup(name, default, type=kind, doc=group.doc, location=where)
                continue
            values = expect_mapping(body.get("values"), f"values of config group '{name}'", body.where("values"))
            if not values:
                raise BuildFileError(f"config group '{name}' has no values", where)
            default = body.get("default", next(iter(values)))
            if default not in values:
                raise BuildFileError(
                    f"default '{default}' of config group '{name}' is not one of its values",
                    body.where("default"), f"valid values: {', '.join(map(str, values))}",
                )
            groups[name] = ConfigGroup(
                name, default,
                values={str(v): (s, values.where(v)) for v, s in values.items()},
                doc=body.get("doc", ""), location=where,
            )
        schema = cls(groups)
        # Value settings can name other groups' values, so resolve them once all groups exist.
        for group in list(schema.groups.values()):
            if group.parametric:
                continue
            resolved = {}
            for value, (raw, where) in group.values.items():
                raw = raw if raw is not None else {}
                raw = expect_mapping(raw, f"config value '{value}'", where) if raw else raw
                if raw:
                    _check_keys(raw, _VALUE_KEYS, f"config value '{value}'")
                resolved[value] = schema._settings(raw, where)
            schema.groups[group.name] = ConfigGroup(
                group.name, group.default, resolved, None, group.doc, group.location
            )
        rules = rules or {}
        if rules:
            _check_keys(rules, {"combinations", "incompatible", "bundles"}, "config_rules")
        for item, where in _items(rules.get("combinations")):
            item = expect_mapping(item, "combination", where)
            _check_keys(item, _COMBINATION_KEYS, "combination")
            when = tuple(schema.resolve_ref(ref, item.where("when")) for ref in item.get("when", []))
            schema.combinations.append(Combination(when, schema._settings(item, where), where))
        for item, where in _items(rules.get("incompatible")):
            refs = tuple(schema.resolve_ref(ref, where) for ref in item)
            schema.incompatible.append((refs, where))
        bundles = rules.get("bundles") or {}
        for name, refs in bundles.items():
            schema.bundles[name] = tuple(map(str, refs))
        for name in bundles:  # every bundle expands, without cycles, to known values
            for ref in _expand_bundles([name], schema.bundles, location=bundles.where(name)):
                schema.resolve_ref(ref, bundles.where(name))
        return schema

    def _settings(self, raw, where: Location) -> ValueSettings:
        if not raw:
            return ValueSettings()
        implies = tuple(self.resolve_ref(r, raw.where("implies")) for r in raw.get("implies", []))
        env = raw.get("env") or {}
        return ValueSettings(
            implies=implies,
            toolchains=tuple(raw.get("toolchains", [])),
            env=tuple((str(k), str(v)) for k, v in env.items()),
        )

    # -- references and command-line tokens ------------------------------------------------
    def resolve_ref(self, ref, location: Location | None = None) -> tuple[str, object]:
        """`device=cuda` or a unique bare value `cuda` → (group, value)."""
        ref = str(ref)
        if "=" in ref:
            group_name, _, raw = ref.partition("=")
            group = self.groups.get(group_name)
            if group is None:
                raise BuildFileError(
                    f"unknown config group '{group_name}'", location,
                    did_you_mean(group_name, self.groups) or f"groups: {', '.join(self.groups)}",
                )
            return group_name, group.coerce(raw, location)
        owners = self._owner.get(ref, [])
        if len(owners) == 1:
            return owners[0], ref
        if len(owners) > 1:
            raise BuildFileError(
                f"config value '{ref}' is ambiguous", location,
                "write it as " + " or ".join(f"{g}={ref}" for g in owners),
            )
        hint = did_you_mean(ref, list(self._owner) + list(self.bundles)) or "valid values: " + "; ".join(
            f"{g.name}: {', '.join(map(str, g.values)) if not g.parametric else g.type}"
            for g in self.groups.values()
        )
        raise BuildFileError(f"unknown config value '{ref}'", location, hint)

    def groups_of_condition(self, condition: str, location: Location | None) -> tuple[tuple[str, object], ...]:
        return tuple(self.resolve_ref(part.strip(), location) for part in condition.split(",") if part.strip())

    # -- resolution ------------------------------------------------------------------------
    def resolve(self, tokens: list[str]) -> Configuration:
        """Turn `--config` tokens into a full configuration, checking everything up front."""
        where = Location("--config")
        explicit: dict[str, object] = {}
        for token in _expand_bundles(tokens, self.bundles):
            group, value = self.resolve_ref(token, where)
            if group in explicit and explicit[group] != value:
                raise BuildFileError(
                    f"--config sets group '{group}' twice ({explicit[group]} and {value})", where,
                    "a group takes exactly one value",
                )
            explicit[group] = value
        # Defaults are tentative: an implication (CM's base variations) may replace one, and the
        # values defaults imply hold too. Implications apply until nothing changes; one that
        # contradicts an explicit choice or another implication is an error.
        values = {g.name: g.default for g in self.groups.values() if g.default is not None}
        values.update(explicit)
        implied_by: dict[str, str] = {}
        changed = True
        while changed:
            changed = False
            for settings, source in self._active_settings(values):
                for group, value in settings.implies:
                    current = values.get(group)
                    if current == value:
                        continue
                    if group in explicit or group in implied_by:
                        chosen = "was chosen" if group in explicit else f"is implied by '{implied_by[group]}'"
                        raise BuildFileError(
                            f"'{source}' implies {group}={value}, but {group}={current} {chosen}",
                            where, "drop one of them from --config",
                        )
                    values[group] = value
                    implied_by[group] = source
                    changed = True
        for group in self.groups.values():
            if group.name not in values:
                raise BuildFileError(
                    f"config group '{group.name}' has no default and no value was given", group.location,
                    f"give it a default here, or pass --config={group.name}=VALUE",
                )
        for refs, rule_where in self.incompatible:
            if all(values.get(g) == v for g, v in refs):
                combo = ",".join(f"{g}={v}" for g, v in refs)
                raise BuildFileError(
                    f"incompatible configuration: {combo} cannot be combined",
                    where, f"declared at {rule_where}",
                )
        changed = [(g, values[g], group.parametric) for g, group in self.groups.items() if values[g] != group.default]
        return Configuration(tuple((g, values[g]) for g in self.groups), configuration_name(changed))

    def _active_settings(self, values: dict):
        for group_name, value in list(values.items()):
            group = self.groups[group_name]
            if not group.parametric:
                yield group.values[value], f"{group_name}={value}"
        for combination in self.combinations:
            if all(values.get(g) == v for g, v in combination.when):
                yield combination.settings, ",".join(f"{g}={v}" for g, v in combination.when)

    def settings_for(self, configuration: Configuration, groups_read: frozenset[str]):
        """Toolchains and env a target gets from the values of the groups it reads.

        Yields (source description, ValueSettings); a combination counts when the target
        reads any of its groups.
        """
        values = dict(configuration.values)
        for settings, source in self._active_settings(values):
            groups = {part.split("=")[0] for part in source.split(",")}
            if groups & groups_read:
                yield source, settings


def _expand_bundles(tokens, bundles, seen=(), location: Location | None = None):
    for token in tokens:
        if token in bundles:
            if token in seen:
                raise BuildFileError(f"config bundle '{token}' includes itself: " + " -> ".join((*seen, token)),
                                     location)
            yield from _expand_bundles(bundles[token], bundles, seen + (token,), location)
        else:
            yield token


def _items(section):
    if section is None:
        return []
    if not isinstance(section, LocatedList):
        raise BuildFileError("expected a list", getattr(section, "location", None))
    return [(item, section.where(i)) for i, item in enumerate(section)]


def _check_keys(mapping: LocatedDict, allowed: set[str], what: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise BuildFileError(
                f"unknown key '{key}' in {what}", mapping.where(key),
                did_you_mean(str(key), allowed) or f"known keys: {', '.join(sorted(allowed))}",
            )
