"""`select`: attribute values that depend on the configuration (CM's enable_if_env/skip_if_env).

    deps:
      select:
        device=cuda: [":engine_trt"]
        device=cuda,precision=int8: [":engine_trt_int8"]
        default: [":engine_ort"]

A condition is a comma-separated list of config values that must all hold; the most specific
matching condition wins, two equally specific matches are an error, and with no match the
`default` branch is used. Every group a select mentions counts as read by the target, since
changing it can change the result.
"""

from __future__ import annotations

from ..errors import BuildFileError
from .configs import ConfigSchema, Configuration
from .yamlsource import LocatedDict, LocatedList


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
        items = [resolve_selects(v, schema, configuration, groups_read) for v in value]
        return value if all(new is old for new, old in zip(items, value)) else value.with_items(items)
    return value


def _choose(select: LocatedDict, schema: ConfigSchema, configuration: Configuration, groups_read: set[str]):
    branches = select["select"]
    where = select.where("select")
    if not isinstance(branches, LocatedDict):
        raise BuildFileError("select must map conditions to values", where)
    matches = []
    for condition, branch in branches.items():
        if condition == "default":
            continue
        refs = schema.groups_of_condition(str(condition), branches.where(condition))
        groups_read.update(group for group, _ in refs)
        if all(configuration.holds(group, value) for group, value in refs):
            matches.append((len(refs), condition, branch))
    if matches:
        most = max(size for size, _, _ in matches)
        best = [(condition, branch) for size, condition, branch in matches if size == most]
        if len(best) > 1:
            raise BuildFileError(
                f"select is ambiguous under {configuration.describe()}: "
                + " and ".join(f"'{c}'" for c, _ in best) + " all match",
                branches.where(best[1][0]), "add a more specific condition that combines them",
            )
        return best[0][1]
    if "default" in branches:
        return branches["default"]
    raise BuildFileError(
        f"no select branch matches {configuration.describe()}", where,
        f"add a 'default' branch or a condition among: {', '.join(map(str, branches))}",
    )
