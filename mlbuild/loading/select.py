"""`select`: attribute values that depend on the configuration (CM's enable_if_env/skip_if_env).

    deps:
      - //datasets:imagenet                      # a fixed part
      - select:                                  # and a conditional part, spliced in
          device=cuda: [":engine_trt"]
          device=cuda,precision=int8: [":engine_trt_int8"]
          model=bert-99|bert-99.9: [":squad"]    # OR: any of these values
          device!=cuda: [":engine_ort"]          # NOT: any other value
          default: []                            # a branch may yield nothing

A condition is a comma-separated list of terms that must all hold (AND); a term is
`GROUP=V1|V2` (one of these values), `GROUP!=V1|V2` (none of them) or a bare `V1|V2` (values
of one group). The most specific matching branch wins: the one whose condition implies every
other matching condition (`device=cuda,precision=int8` implies `device=cuda`; `model=bert-99`
implies `model=bert-99|bert-99.9`). Two matching branches neither of which implies the other,
or two equivalent ones, are an error naming both; with no match the `default` branch is used.
Inside a list, a select's chosen list is spliced into the enclosing list, and a branch that
is `[]` or empty adds nothing. Every group a select mentions counts as read by the target,
since changing it can change the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BuildFileError, Location
from .configs import ConfigSchema, Configuration
from .yamlsource import LocatedDict, LocatedList


@dataclass(frozen=True)
class Constraint:
    """The values one group may take: `values` if not `negated`, else anything but them.

    Exclusive groups are always stored positively (their values are a finite set), so only a
    parametric group's `!=` stays negated.
    """

    values: frozenset
    negated: bool = False

    def allows(self, value) -> bool:
        return (value in self.values) != self.negated

    def within(self, other: "Constraint") -> bool:
        """Every value this allows, `other` allows too."""
        if not self.negated and not other.negated:
            return self.values <= other.values
        if not self.negated:
            return not (self.values & other.values)
        if other.negated:
            return other.values <= self.values
        return False  # "anything but S" is infinite, a listed set is not

    def __and__(self, other: "Constraint") -> "Constraint":
        if not self.negated and not other.negated:
            return Constraint(self.values & other.values)
        if not self.negated or not other.negated:
            positive, negative = (self, other) if not self.negated else (other, self)
            return Constraint(positive.values - negative.values)
        return Constraint(self.values | other.values, True)


@dataclass(frozen=True)
class Condition:
    """A select key, parsed: group -> Constraint, all of which must hold."""

    text: str
    constraints: tuple[tuple[str, Constraint], ...]

    @classmethod
    def parse(cls, text: str, schema: ConfigSchema, where: Location | None) -> "Condition":
        constraints: dict[str, Constraint] = {}
        for term in (part.strip() for part in text.split(",")):
            if not term:
                continue
            group, constraint = _parse_term(term, schema, where)
            constraints[group] = constraints[group] & constraint if group in constraints else constraint
            if not constraints[group].negated and not constraints[group].values:
                raise BuildFileError(f"select condition '{text}' can never hold (group '{group}')", where,
                                     "remove the branch or fix its values")
        if not constraints:
            raise BuildFileError("empty select condition", where, "write e.g. device=cuda, or use 'default'")
        return cls(text, tuple(sorted(constraints.items())))

    @property
    def groups(self) -> list[str]:
        return [group for group, _ in self.constraints]

    def holds(self, configuration: Configuration) -> bool:
        values = dict(configuration.values)
        return all(constraint.allows(values[group]) for group, constraint in self.constraints)

    def implies(self, other: "Condition") -> bool:
        """Whenever this holds, `other` holds."""
        mine = dict(self.constraints)
        return all(group in mine and mine[group].within(constraint) for group, constraint in other.constraints)


def _parse_term(term: str, schema: ConfigSchema, where) -> tuple[str, Constraint]:
    negated = "!=" in term
    if negated or "=" in term:
        group_name, _, raw = term.partition("!=" if negated else "=")
        group = schema.group(group_name.strip(), where)
        alternatives = [group.coerce(value.strip(), where) for value in raw.split("|")]
    else:
        refs = [schema.resolve_ref(value.strip(), where) for value in term.split("|")]
        groups = {group for group, _ in refs}
        if len(groups) != 1:
            raise BuildFileError(f"'{term}' mixes values of config groups {', '.join(sorted(groups))}", where,
                                 "an OR lists values of one group; use separate branches for the others")
        group = schema.groups[groups.pop()]
        alternatives = [value for _, value in refs]
    values = frozenset(alternatives)
    if not group.parametric:
        if negated:
            values, negated = frozenset(group.values) - values, False
    return group.name, Constraint(values, negated)


def is_select(value) -> bool:
    return isinstance(value, LocatedDict) and list(value) == ["select"]


def resolve_selects(value, schema: ConfigSchema, configuration: Configuration, groups_read: set[str]):
    """Replace every `select` inside `value` (at any depth) by its chosen branch."""
    if is_select(value):
        return resolve_selects(_choose(value, schema, configuration, groups_read), schema, configuration, groups_read)
    if isinstance(value, LocatedDict):
        items = [(k, resolve_selects(v, schema, configuration, groups_read)) for k, v in value.items()]
        if all(new is value[k] for k, new in items):
            return value  # nothing selected below: no copy
        return value.with_items(items)
    if isinstance(value, LocatedList):
        items, locations, changed = [], [], False
        for index, item in enumerate(value):
            if is_select(item):  # a conditional part of the list: spliced in, keeping locations
                chosen = resolve_selects(_choose(item, schema, configuration, groups_read),
                                         schema, configuration, groups_read)
                part = chosen if isinstance(chosen, list) else [] if chosen is None else [chosen]
                items.extend(part)
                locations.extend(chosen.where(i) if isinstance(chosen, LocatedList) else value.where(index)
                                 for i in range(len(part)))
                changed = True
            else:
                new = resolve_selects(item, schema, configuration, groups_read)
                items.append(new)
                locations.append(value.where(index))
                changed = changed or new is not item
        return value.with_items(items, locations) if changed else value
    return value


def _choose(select: LocatedDict, schema: ConfigSchema, configuration: Configuration, groups_read: set[str]):
    branches = select["select"]
    where = select.where("select")
    if not isinstance(branches, LocatedDict):
        raise BuildFileError("select must map conditions to values", where)
    matches = []
    for key, branch in branches.items():
        if key == "default":
            continue
        condition = Condition.parse(str(key), schema, branches.where(key))
        groups_read.update(condition.groups)
        if condition.holds(configuration):
            matches.append((condition, key, branch))
    if matches:
        return _most_specific(matches, branches, configuration)
    if "default" in branches:
        return branches["default"]
    raise BuildFileError(
        f"no select branch matches {configuration.describe()}", where,
        f"add a 'default' branch or a condition among: {', '.join(map(str, branches))}",
    )


def _most_specific(matches, branches: LocatedDict, configuration: Configuration):
    """The matching branch whose condition implies all the others, or an error naming two."""
    best = [m for m in matches if all(m[0].implies(other[0]) for other in matches)]
    if len(best) == 1:
        return best[0][2]
    if best:  # equivalent conditions: a true tie
        first, second = best[0], best[1]
        problem = "are equivalent"
    else:
        first, second = next((a, b) for a in matches for b in matches
                             if a is not b and not a[0].implies(b[0]) and not b[0].implies(a[0]))
        problem = "both match and neither is more specific"
    raise BuildFileError(
        f"select is ambiguous under {configuration.describe()}: '{first[1]}' and '{second[1]}' {problem}",
        branches.where(second[1]), "add a more specific condition that combines them, or make one exclusive",
    )
