"""Configurations: CM's variation language as typed config groups (DESIGN.md §3).

The root BUILD.yaml declares groups under `config:`. A group is either exclusive (named
`values`, one `default`) or parametric (`type: int|float|str|bool`, like CM's `_batch_size.#`).
A value may be an `alias` of another (CM's `alias`), `implies` others (CM's `base`),
`forces` a value whatever was asked, re-`defaults` another group (CM's `default_variations`
inside a variation), require `toolchains`, and set `env` for the actions of targets that read
its group; a group's own `env` applies whatever its value (`{{config:GROUP}}` spells the value,
so `batch_size` can set CM_MLPERF_LOADGEN_MAX_BATCHSIZE). `combinations` apply settings when
several values hold at once (CM's `onnxruntime,cuda` keys), to targets that read all of their
groups; `incompatible` lists forbidden sets (CM's invalid_variation_combinations) and
`bundles` name a set of values.

Command-line tokens: `cuda` (a value or alias unique across groups), `device=cuda`,
`batch_size=8`, or a bundle name. A transition (a dependency built in another configuration)
sets values the same way on top of an existing configuration. Everything is checked before
anything runs.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field

from ..errors import BuildFileError, Location, did_you_mean, show
from .placeholders import config_groups_in
from .yamlsource import LocatedDict, LocatedList, expect_mapping

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
_LIMIT = 2**63  # parametric numbers: what a 64-bit program reading them can hold
_GROUP_KEYS = {"default", "values", "type", "doc", "env"}
_VALUE_KEYS = {"implies", "forces", "defaults", "toolchains", "env", "doc"}
_ALIAS_KEYS = {"alias", "doc"}
_COMBINATION_KEYS = {"when", "implies", "forces", "defaults", "toolchains", "env", "doc"}
_RULES_KEYS = {"combinations", "incompatible", "bundles"}

Ref = tuple[str, object]  # (group, value)


@dataclass(frozen=True)
class ValueSettings:
    """What holding a value (or a combination of values) brings along."""

    implies: tuple[Ref, ...] = ()  # must hold too; contradicting a choice is an error
    forces: tuple[Ref, ...] = ()  # hold whatever was asked
    defaults: tuple[Ref, ...] = ()  # new defaults: apply unless the group was chosen
    toolchains: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # values may hold {{config:GROUP}}
    env_reads: frozenset = frozenset()  # groups named by {{config:...}} in env
    location: Location | None = None


@dataclass(frozen=True)
class ConfigGroup:
    name: str
    default: object
    values: dict = field(default_factory=dict)  # value name -> ValueSettings (exclusive groups)
    type: str | None = None  # set for parametric groups
    doc: str = ""
    location: Location | None = None
    aliases: dict = field(default_factory=dict)  # alias -> value
    settings: ValueSettings = ValueSettings()  # the group's own env, whatever its value

    @property
    def parametric(self) -> bool:
        return self.type is not None

    def coerce(self, raw, location: Location | None = None):
        """Turn a command-line string into this group's value, or say what is valid."""
        raw = str(raw)
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
        raw = self.aliases.get(raw, raw)
        if raw not in self.values:
            raise BuildFileError(
                f"unknown value '{raw}' for config group '{self.name}'",
                location,
                f"valid values: {', '.join(self.values)}"
                + (f" (aliases: {', '.join(self.aliases)})" if self.aliases else ""),
            )
        return raw


@dataclass(frozen=True)
class Combination:
    when: tuple[Ref, ...]
    settings: ValueSettings
    location: Location | None = None


@dataclass(frozen=True)
class Configuration:
    """One value for every group; `name` spells the values that differ from the defaults.

    `origins` says where each value came from (default, command line, implied by ..., forced
    by ...) for `mlbuild config show`; it is not part of the configuration's identity.
    """

    values: tuple[tuple[str, object], ...]
    name: str = "default"
    origins: tuple[tuple[str, str], ...] = field(default=(), compare=False, hash=False)

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
        self.incompatible: list[tuple[tuple[Ref, ...], Location | None]] = list(incompatible)
        self.bundles: dict[str, tuple[str, ...]] = dict(bundles or {})
        self._owner: dict[str, list[str]] = {}  # bare token (value or alias) -> groups
        for group in self.groups.values():
            for value in [*group.values, *group.aliases]:
                self._owner.setdefault(str(value), []).append(group.name)

    # -- parsing the root BUILD.yaml -------------------------------------------------------
    @classmethod
    def from_yaml(cls, section: LocatedDict | None, rules: LocatedDict | None) -> "ConfigSchema":
        declared = {name: _declare_group(name, body, section.where(name)) for name, body in (section or {}).items()}
        _check_aliases(declared.values())
        schema = cls({name: group for name, (group, _, _) in declared.items()})
        # Settings name other groups' values, so resolve them once all groups exist.
        for name, (group, raw_values, _) in declared.items():
            values = {value: schema._settings(raw, where, f"config value '{value}'")
                      for value, (raw, where) in raw_values.items()}
            settings = schema._settings(section[name], group.location, f"config group '{name}'")
            schema.groups[name] = ConfigGroup(name, group.default, values, group.type, group.doc, group.location,
                                              group.aliases, settings)
        rules = rules or {}
        if rules:
            _check_keys(expect_mapping(rules, "config_rules", getattr(rules, "location", None)), _RULES_KEYS,
                        "config_rules")
        for item, where in _items(rules.get("combinations")):
            item = expect_mapping(item, "combination", where)
            _check_keys(item, _COMBINATION_KEYS, "combination")
            when = tuple(schema.resolve_ref(ref, item.where("when")) for ref in _list(item, "when"))
            schema.combinations.append(Combination(when, schema._settings(item, where, "combination"), where))
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

    def _settings(self, raw, where: Location, what: str) -> ValueSettings:
        if not raw:
            return ValueSettings(location=where)
        if what.startswith("config value"):
            raw = expect_mapping(raw, what, where)
            _check_keys(raw, _VALUE_KEYS, what)
        refs = {key: tuple(self.resolve_ref(r, raw.where(key)) for r in _list(raw, key))
                for key in ("implies", "forces", "defaults")}
        env = raw.get("env") or {}
        env_at = raw.where("env") if hasattr(raw, "where") else where
        env = expect_mapping(env, "env", env_at) if env else {}
        reads = config_groups_in(dict(env))
        for group in reads:
            if group not in self.groups:
                raise BuildFileError(f"{{{{config:{group}}}}}: unknown config group", env_at,
                                     did_you_mean(group, self.groups))
        for group, _ in refs["forces"]:
            clashing = [g for g, _ in refs["implies"] if g == group]
            if clashing:
                raise BuildFileError(f"{what} both implies and forces group '{group}'", raw.where("forces"))
        toolchains = _list(raw, "toolchains")
        return ValueSettings(
            implies=refs["implies"], forces=refs["forces"], defaults=refs["defaults"],
            toolchains=tuple(map(str, toolchains)),
            env=tuple((str(k), str(v)) for k, v in env.items()), env_reads=frozenset(reads),
            location=raw.where("toolchains") if "toolchains" in raw else where,
        )

    def check_toolchains(self, known) -> None:
        """A value naming an undeclared toolchain is an error at the value, not at some target."""
        for settings, source in self._all_settings():
            for name in settings.toolchains:
                if name not in known:
                    raise BuildFileError(
                        f"{source} needs toolchain '{name}', which is not declared under toolchains/",
                        settings.location,
                        did_you_mean(name, known) or f"toolchains: {', '.join(sorted(known)) or 'none'}",
                    )

    def _all_settings(self):
        for group in self.groups.values():
            yield group.settings, f"config group '{group.name}'"
            for value, settings in group.values.items():
                yield settings, f"config value '{group.name}={value}'"
        for combination in self.combinations:
            yield combination.settings, "combination " + _spell(combination.when)

    # -- references and command-line tokens ------------------------------------------------
    def resolve_ref(self, ref, location: Location | None = None) -> Ref:
        """`device=cuda` or a unique bare value (or alias) `cuda` → (group, value)."""
        ref = str(ref)
        if "=" in ref:
            group_name, _, raw = ref.partition("=")
            return group_name, self.group(group_name, location).coerce(raw, location)
        owners = self._owner.get(ref, [])
        if len(owners) == 1:
            return owners[0], self.groups[owners[0]].coerce(ref, location)
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

    def group(self, name: str, location: Location | None = None) -> ConfigGroup:
        group = self.groups.get(name)
        if group is None:
            raise BuildFileError(
                f"unknown config group '{name}'", location,
                did_you_mean(name, self.groups) or f"groups: {', '.join(self.groups)}",
            )
        return group

    def refs(self, tokens: list[str], where: Location | None) -> tuple[Ref, ...]:
        """Tokens as --config takes them (bundles expanded) → (group, value) pairs, by group."""
        return tuple((g, v) for g, (v, _) in self._choices(tokens, where).items())

    def _choices(self, tokens, where) -> dict[str, tuple[object, str]]:
        """group → (value, origin) for tokens; the same group twice is an error, in any order."""
        seen: dict[str, dict[object, str]] = {}
        for token, origin in _expand_with_origin(tokens, self.bundles):
            group, value = self.resolve_ref(token, where)
            origins = seen.setdefault(group, {})
            if origins.get(value) != "command line":
                origins[value] = origin
        explicit = {}
        for group in self.groups:  # in declaration order, so the error does not depend on the tokens'
            if group not in seen:
                continue
            if len(seen[group]) > 1:
                first, second = sorted(map(str, seen[group]))[:2]
                raise BuildFileError(f"group '{group}' is set twice ({first} and {second})", where,
                                     "a group takes exactly one value")
            (value, origin), = seen[group].items()
            explicit[group] = (value, origin)
        return explicit

    # -- resolution ------------------------------------------------------------------------
    def resolve(self, tokens: list[str], location: Location | None = None) -> Configuration:
        """Turn `--config` tokens into a full configuration, checking everything up front.

        The result does not depend on the order of the tokens.
        """
        where = location or Location("--config")
        explicit = self._choices(tokens, where)
        base = {g.name: (g.default, "default") for g in self.groups.values() if g.default is not None}
        return self._settle(base, explicit, where)

    def matrix(self, tokens: list[str], sweeps: list[str]) -> list[Configuration]:
        """`--config` tokens crossed with each `--sweep GROUP=V1,V2`: one configuration per point,
        in the order the values were given (the first is the build's primary configuration)."""
        where = Location("--sweep")
        chosen = {group for group, _ in self.refs(tokens, Location("--config"))}
        axes: dict[str, list[str]] = {}
        for text in sweeps:
            group_name, sep, raw = text.partition("=")
            if not sep:
                raise BuildFileError(f"--sweep {text}: expected GROUP=V1,V2", where, "e.g. --sweep precision=fp32,int8")
            group = self.group(group_name.strip(), where)
            values = list(dict.fromkeys(group.coerce(v.strip(), where) for v in raw.split(",") if v.strip()))
            if not values:
                raise BuildFileError(f"--sweep {text} lists no values", where, f"e.g. --sweep {group.name}=A,B")
            if group.name in axes or group.name in chosen:
                raise BuildFileError(f"group '{group.name}' is swept twice, or both swept and set by --config",
                                     where, "a group is either chosen or swept, once")
            axes[group.name] = [f"{group.name}={value}" for value in values]
        return [self.resolve([*tokens, *point]) for point in itertools.product(*axes.values())]

    def transition(self, configuration: Configuration, refs: tuple[Ref, ...], where: Location) -> Configuration:
        """`configuration` with the groups in `refs` set as if chosen, their implications,
        forces and default overrides applied on top (a dependency's own configuration)."""
        origins = dict(configuration.origins)
        base = {g: (v, origins.get(g, "default")) for g, v in configuration.values}
        return self._settle(base, {g: (v, f"transition at {where}") for g, v in refs}, where)

    def _settle(self, base: dict, explicit: dict, where: Location) -> Configuration:
        """Apply choices over tentative values, then implications, forces and default overrides
        until nothing changes. Each group can be forced, implied and re-defaulted at most once,
        so this ends; contradictions are errors naming both sides."""
        values = {g: v for g, (v, _) in base.items()}
        origins = {g: o for g, (_, o) in base.items()}
        for group, (value, origin) in explicit.items():
            values[group], origins[group] = value, origin
        forced: dict[str, tuple[object, str, Location | None]] = {}
        implied: dict[str, tuple[object, str]] = {}
        redefaulted: dict[str, tuple[object, str]] = {}
        changed = True
        while changed:
            changed = False
            for settings, source in self._active_settings(values):
                for group, value in settings.forces:
                    if group in forced:
                        first_value, first_source, first_at = forced[group]
                        if first_value != value:
                            raise BuildFileError(
                                f"contradictory forces: '{first_source}' forces {group}={first_value}, "
                                f"'{source}' forces {group}={value}", where,
                                f"they cannot both hold (declared at {first_at} and {settings.location}); "
                                "declare them incompatible, or drop one from --config",
                            )
                        continue
                    forced[group] = (value, source, settings.location)
                    if values.get(group) != value:
                        asked = f" ({values[group]} asked)" if group in explicit else ""
                        values[group], origins[group] = value, f"forced by {source}{asked}"
                        changed = True
                for group, value in settings.implies:
                    if group in forced or values.get(group) == value:
                        continue
                    if group in explicit or group in implied:
                        chosen = "was chosen" if group in explicit else f"is implied by '{implied[group][1]}'"
                        raise BuildFileError(
                            f"'{source}' implies {group}={value}, but {group}={values.get(group)} {chosen}",
                            where, "drop one of them from --config",
                        )
                    values[group], origins[group] = value, f"implied by {source}"
                    implied[group] = (value, source)
                    changed = True
                for group, value in settings.defaults:
                    if group in explicit or group in implied or group in forced:
                        continue
                    if group in redefaulted and redefaulted[group][0] != value:
                        raise BuildFileError(
                            f"conflicting default overrides: '{redefaulted[group][1]}' makes {group}="
                            f"{redefaulted[group][0]} the default, '{source}' makes it {value}", where,
                            f"choose {group} with --config",
                        )
                    redefaulted[group] = (value, source)
                    if values.get(group) != value:
                        values[group], origins[group] = value, f"default override by {source}"
                        changed = True
        for group in self.groups.values():
            if group.name not in values:
                raise BuildFileError(
                    f"config group '{group.name}' has no default and no value was given", group.location,
                    f"give it a default here, or pass --config={group.name}=VALUE",
                )
        for refs, rule_where in self.incompatible:
            if all(values.get(g) == v for g, v in refs):
                raise BuildFileError(
                    f"incompatible configuration: {_spell(refs)} cannot be combined",
                    where, f"declared at {rule_where}",
                )
        changed_values = [(g, values[g], group.parametric) for g, group in self.groups.items()
                          if values[g] != group.default]
        return Configuration(tuple((g, values[g]) for g in self.groups), configuration_name(changed_values),
                             tuple((g, origins[g]) for g in self.groups))

    def _active_settings(self, values: dict):
        """(settings, source) of every value that holds and every combination whose values all hold."""
        for group in self.groups.values():
            if group.name not in values:
                continue
            yield group.settings, group.name
            if not group.parametric:
                yield group.values[values[group.name]], f"{group.name}={values[group.name]}"
        for combination in self.combinations:
            if all(values.get(g) == v for g, v in combination.when):
                yield combination.settings, _spell(combination.when)

    def settings_for(self, configuration: Configuration, groups_read: frozenset[str]):
        """Toolchains and env a target gets from the values of the groups it reads.

        Yields (source description, ValueSettings); a combination counts only when the target
        reads all of its groups, so a target reading just one of them keeps one cache entry.
        """
        values = dict(configuration.values)
        for group in self.groups.values():
            if group.name not in groups_read:
                continue
            yield group.name, group.settings
            if not group.parametric:
                yield f"{group.name}={values[group.name]}", group.values[values[group.name]]
        for combination in self.combinations:
            if all(g in groups_read and values.get(g) == v for g, v in combination.when):
                yield _spell(combination.when), combination.settings

    def reads_closure(self, configuration: Configuration, groups_read) -> frozenset[str]:
        """`groups_read` plus every group the env it brings names with {{config:GROUP}}."""
        reads = set(groups_read)
        while True:
            more = set()
            for _source, settings in self.settings_for(configuration, frozenset(reads)):
                more |= settings.env_reads - reads
            if not more:
                return frozenset(reads)
            reads |= more


def _declare_group(name, body, where) -> tuple[ConfigGroup, dict, dict]:
    """A group without settings (they may name groups declared later): (group, raw values by
    name, alias locations)."""
    body = expect_mapping(body, f"config group '{name}'", where)
    _check_keys(body, _GROUP_KEYS, f"config group '{name}'")
    doc = body.get("doc", "")
    own = ValueSettings(location=where)
    kind = body.get("type")
    if kind is not None:
        if kind not in _TYPES:
            raise BuildFileError(
                f"unknown type '{kind}' for config group '{name}'", body.where("type"),
                f"types: {', '.join(_TYPES)}",
            )
        if "values" in body:
            raise BuildFileError(f"parametric group '{name}' cannot list values", body.where("values"))
        group = ConfigGroup(name, None, type=kind, doc=doc, location=where, settings=own)
        default = body.get("default")
        if default is not None:
            default = group.coerce(default, body.where("default"))
        return ConfigGroup(name, default, type=kind, doc=doc, location=where, settings=own), {}, {}
    raw_values = expect_mapping(body.get("values"), f"values of config group '{name}'", body.where("values"))
    values, aliases = {}, {}
    for value, raw in raw_values.items():
        value_where = raw_values.where(value)
        if isinstance(raw, LocatedDict) and "alias" in raw:
            _check_keys(raw, _ALIAS_KEYS, f"alias '{value}'")
            aliases[str(value)] = (str(raw["alias"]), raw.where("alias"))
        else:
            values[str(value)] = (raw if raw else None, value_where)
    if not values:
        raise BuildFileError(f"config group '{name}' has no values", where)
    for alias, (target, alias_where) in aliases.items():
        if target not in values:
            raise BuildFileError(
                f"alias '{alias}' of config group '{name}' points to '{target}', which is not one of its values",
                alias_where, did_you_mean(target, values) or f"values: {', '.join(values)}",
            )
    default = str(body.get("default", next(iter(values))))
    default = dict((a, t) for a, (t, _) in aliases.items()).get(default, default)
    if default not in values:
        raise BuildFileError(
            f"default '{default}' of config group '{name}' is not one of its values",
            body.where("default"), f"valid values: {', '.join(values)}",
        )
    group = ConfigGroup(name, default, values={v: None for v in values}, doc=doc, location=where,
                        aliases={a: t for a, (t, _) in aliases.items()}, settings=own)
    return group, values, {a: w for a, (_, w) in aliases.items()}


def _check_aliases(declared) -> None:
    """An alias must not spell a value or alias of any group: bare tokens stay unambiguous."""
    spelled: dict[str, str] = {}
    for group, _, _ in declared:
        for value in group.values:
            spelled[value] = f"a value of config group '{group.name}'"
    for group, _, alias_locations in declared:
        for alias, where in alias_locations.items():
            if alias in spelled:
                raise BuildFileError(f"alias '{alias}' of config group '{group.name}' collides with {spelled[alias]}",
                                     where, "rename the alias")
            spelled[alias] = f"an alias in config group '{group.name}'"


def _spell(refs) -> str:
    return ",".join(f"{g}={v}" for g, v in refs)


def _expand_bundles(tokens, bundles, seen=(), location: Location | None = None):
    for token, _origin in _expand_with_origin(tokens, bundles, seen, location):
        yield token


def _expand_with_origin(tokens, bundles, seen=(), location: Location | None = None):
    """(token, origin) with bundles expanded; origin is "command line" or "bundle NAME"."""
    for token in tokens:
        if token in bundles:
            if token in seen:
                raise BuildFileError(f"config bundle '{token}' includes itself: " + " -> ".join((*seen, token)),
                                     location)
            for inner, _ in _expand_with_origin(bundles[token], bundles, seen + (token,), location):
                yield inner, f"bundle {seen[0] if seen else token}"
        else:
            yield token, "command line" if not seen else f"bundle {seen[0]}"


def _list(mapping, key) -> list:
    value = mapping.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BuildFileError(f"'{key}' must be a list", mapping.where(key) if hasattr(mapping, "where") else None,
                             f"write {key}: [VALUE, ...]")
    return value


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
