"""Dependency edges, and transitions: a dependency built in another configuration.

CM builds a dependency in another variation through `names` + `--adr.NAME.tags` and
`add_deps_recursive`; Bazel calls this a transition. In any rule's `deps`:

    deps:
      - :dataset                                              # same configuration
      - {target: //models:resnet50, config: [precision=fp32]} # calibrate from the fp32 model
      - {target: //bench:digits, config: "scenario=Server,mode=accuracy"}

`config` takes what `--config` takes (values, `group=value`, bundles). The dependency, and
everything below it, is analyzed in the configuration with those values set (their implies,
forces and default overrides applied); trimming still holds, because a node's identity only
holds the groups it and its dependencies read.

Where a target sees a dependency's outputs (`out/<pkg>/<name>/` in its sandbox) depends only
on what the target declares, never on the configuration of the build, so its action key does
not either: a dependency listed once is staged under its plain label; the same label listed
under several transitions is staged, and named in placeholders, as `LABEL@VALUES` (e.g.
`{{dep://bench:digits@Server-accuracy}}`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BuildFileError, Location
from ..loading.configs import ConfigSchema, configuration_name
from ..loading.labels import Label


@dataclass(frozen=True)
class DepEdge:
    """One entry of `deps`: the label, the values its transition sets (none: same configuration)."""

    label: Label
    refs: tuple[tuple[str, object], ...]
    location: Location | None

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(group for group, _ in self.refs)

    def spelled(self, schema: ConfigSchema) -> str:
        """The transition as a directory-safe name: `Server-accuracy`, `batch_size=8`."""
        return configuration_name([(g, v, schema.groups[g].parametric) for g, v in self.refs])


def parse_edges(entries, owner: Label, where_list, schema: ConfigSchema) -> list[DepEdge]:
    """`deps` entries of `owner` (labels, or {target, config} mappings, as the rules' schema
    accepted them) as edges."""
    edges = []
    for index, entry in enumerate(entries or []):
        where = where_list(index)
        if isinstance(entry, str):
            edges.append(DepEdge(Label.parse(entry, owner.package, where), (), where))
            continue
        label = Label.parse(entry["target"], owner.package, entry.where("target"))
        raw = entry["config"]
        tokens = [str(token) for token in (raw.split(",") if isinstance(raw, str) else raw)]
        config_at = entry.where("config")
        if not any(token.strip() for token in tokens):
            raise BuildFileError(f"the transition to {label} sets no config values", config_at,
                                 "write config: [GROUP=VALUE, ...], or list the label alone")
        refs = schema.refs([str(t).strip() for t in tokens if str(t).strip()], config_at)
        edges.append(DepEdge(label, refs, config_at))
    return edges


def local_names(edges: list[DepEdge], schema: ConfigSchema) -> list[Label]:
    """The name under which each edge's dependency is staged and referred to by its owner."""
    count: dict[Label, int] = {}
    for edge in edges:
        count[edge.label] = count.get(edge.label, 0) + 1
    names = []
    for edge in edges:
        if count[edge.label] == 1 or not edge.refs:
            names.append(edge.label)
        else:
            names.append(Label(edge.label.package, f"{edge.label.name}@{edge.spelled(schema)}"))
    return names
