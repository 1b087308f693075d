"""What every rule shares: attribute schemas, the analysis context, placeholders, sandbox paths.

Rules only declare actions; they never run anything. A rule receives a `RuleContext` (its
attributes with `select`s already resolved, its dependencies' declared outputs, resolved
toolchains) and returns a `ConfiguredTarget` holding the action to build it and, optionally,
the action `mlbuild run` executes in the foreground.

Sandbox layout, fixed so keys do not depend on where the sandbox lives:
  <workspace-relative path>        each declared source (targets/<pkg>/file.py)
  out/<pkg>/<name>/...             the outputs of target //pkg:name
"""

from __future__ import annotations

import functools
import glob
import os
import re
from dataclasses import dataclass, field

from ..actions import SANDBOX_PLACEHOLDER, Action, Resources, output_dir, toolchain_root_placeholder
from ..errors import BuildFileError, Location, did_you_mean
from ..filesystem import file_problem, list_dataset, reaches_special
from ..interning import shared
from ..loading.configs import Configuration
from ..loading.labels import Label
from ..loading.placeholders import PLACEHOLDER, config_groups_in, expand_config
from ..loading.schema import (
    ENV, PATHS, SCALAR, SCALAR_LIST, SCALAR_TEXT, TEXT, TEXT_LIST, Boolean, Field, Integer, ListOf, MapOf,
    MappingParts, Number, OneOf, Record, Schema, Text, PATH_HINT, path_problem,
)
from ..loading.workspace import PACKAGES_DIR

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ORT_NUM_THREADS")
_BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_TIMEOUT_S = 7 * 86400  # a week; larger values overflow the OS's wait


# Common attribute types by short name, so rules read `Attr("str")`; any Schema works too.
KINDS = {
    "str": TEXT, "int": Integer(-2**63, 2**63 - 1), "float": Number(), "bool": Boolean(), "list": SCALAR_LIST,
    "labels": TEXT_LIST,
    "dict": MapOf(SCALAR, expected="a mapping of names to strings or numbers"), "paths": PATHS,
    "scalar": SCALAR_TEXT, "count": Integer(minimum=0, maximum=2**31),
}


def Attr(kind: str | Schema, default=None, required: bool = False, doc: str = "") -> Field:
    """A rule attribute: its type (a KINDS name or a Schema), default, and whether it is required."""
    return Field(KINDS[kind] if isinstance(kind, str) else kind, default, required, doc)


RESOURCE_TYPES = {
    "cpus": Number(minimum=0, maximum=4096), "gpus": Integer(minimum=0, maximum=1024),
    "memory_mb": Integer(minimum=0, maximum=2**40), "exclusive": Boolean(),
    # Named resources a cluster's nodes declare (an accelerator type): placement on a remote executor.
    "custom": MapOf(Number(minimum=0, maximum=4096), expected="a mapping of resource names to amounts"),
}
_CONFIG_TEXT = Text("a {{config:GROUP}} placeholder", pattern=r".*\{\{\s*config:.*\}\}.*")
# A resource is its type, or a {{config:GROUP}} placeholder that is checked against it once expanded.
RESOURCES = Record({key: OneOf((str, _CONFIG_TEXT), (object, kind)) for key, kind in RESOURCE_TYPES.items()},
                   "a mapping of resources (cpus, gpus, memory_mb, exclusive, custom)", fill=False, noun="resource")
# A dependency: a label, or a label built in another configuration (a transition, analysis/transitions.py).
DEPS = ListOf(OneOf((str, TEXT), (dict, Record({
    "target": Field(TEXT, required=True),
    "config": Field(OneOf((str, TEXT), (list, ListOf(SCALAR_TEXT))), required=True),
}, "a dependency in another configuration ({target: LABEL, config: VALUES})", fill=False))))

COMMON_ATTRS = {
    "rule": Attr("str", required=True),
    "doc": Attr("str", ""),
    "tags": Attr(TEXT_LIST, []),
    "deps": Attr(DEPS, []),
    "toolchains": Attr(TEXT_LIST, []),
    "configs": Attr(TEXT_LIST, [], doc="config groups the target reads besides those in select/{{config:}}"),
    "resources": Attr(RESOURCES, {}),
    "timeout": Attr(Number(minimum=0, maximum=MAX_TIMEOUT_S), None),
    "env": Attr(MappingParts(ENV), {}),
    "network": Attr("bool", False, doc="may reach the network (else its own empty network namespace)"),
}


@dataclass(frozen=True, slots=True)
class ConfiguredTarget:
    """A target analyzed under one configuration (slotted, like Action: a graph holds 100,000)."""

    label: Label
    rule: str
    deps: tuple[Label, ...]
    action: Action | None
    outputs: tuple[str, ...] = ()  # relative to the target's output dir
    output_dirs: tuple[str, ...] = ()
    run_action: Action | None = None
    is_test: bool = False
    groups_read: frozenset = frozenset()
    alias_of: Label | None = None  # an alias: the target whose outputs this name stands for
    primary_output: str | None = None  # the file `{{dep:LABEL}}`-style references mean by default
    info: dict = field(default_factory=dict)  # facts other rules read (a bench's scenario, for compliance)
    configuration: Configuration | None = None  # the one it was analyzed in (set by the analyzer)

    def __post_init__(self):
        object.__setattr__(self, "groups_read", shared(self.groups_read))


class Rule:
    """Base of every rule: subclasses set `name`, `version`, `attrs` and implement `analyze`."""

    name = ""
    version = 1
    attrs: dict[str, Attr] = {}
    executes = True  # False for rules that only name other targets (alias, group)
    executors: dict = {}  # Action.executor name -> executor function, for kinds this rule adds

    @property
    def implementation(self) -> str:
        return f"{self.name}/{self.version}"

    def schema(self) -> Record:
        """Every attribute the rule takes, common ones included (built once per rule)."""
        record = self.__dict__.get("_record")
        if record is None:
            record = self._record = Record({**COMMON_ATTRS, **self.attrs}, f"a {self.name} target", noun="attribute")
        return record

    def validate(self, attrs, location: Location, label=None) -> dict:
        """Check names and types; return attributes with defaults filled in."""
        return self.schema().check(attrs, location, str(label) if label else f"{self.name} target")

    @functools.cached_property
    def defaults_read_config(self) -> bool:
        """Whether a default attribute value reads a config group (bench's scenario does)."""
        return bool(config_groups_in([spec.default for spec in self.schema().fields.values()]))

    def config_reads(self, attrs: dict, raw_attrs, schema) -> set[str]:
        """The groups named by `{{config:GROUP}}` in `attrs` (defaults filled in), each checked."""
        found = set()
        for key, value in attrs.items():
            groups = config_groups_in(value)
            for group in groups - set(schema.groups):
                where = raw_attrs.where(key) if key in raw_attrs else raw_attrs.location
                raise BuildFileError(f"{{{{config:{group}}}}}: unknown config group", where,
                                     did_you_mean(group, schema.groups) or f"groups: {', '.join(schema.groups)}")
            found |= groups
        return found

    def toolchain_names(self, attrs: dict) -> list[str]:
        """Toolchains to resolve before `analyze`: the rule's main `toolchain` if it has one,
        those named in `toolchains`, and any a rule adds from its own attributes."""
        main = [attrs["toolchain"]] if attrs.get("toolchain") else []
        return [*main, *attrs["toolchains"]]

    def analyze(self, ctx: "RuleContext") -> ConfiguredTarget:
        raise NotImplementedError


class RuleContext:
    """What a rule sees while analyzing one target under one configuration.

    `deps` maps each dependency's graph node (a label, `LABEL@CONFIG` when built in another
    configuration) to its configured target; rules name them by the labels their attributes
    spell, through `dep()`. `groups_read` is final: the analyzer computed it from the
    attributes before the rule runs.
    """

    _PLACEHOLDER = PLACEHOLDER

    def __init__(self, *, label, attrs, location, raw_attrs, workspace, configuration: Configuration,
                 deps: dict, toolchains: dict, groups_read: frozenset, schema, node=None,
                 local_names: dict | None = None):
        self.label = label
        self.node = node or label  # this target's key in the graph
        self.attrs = attrs
        self.location = location
        self._raw = raw_attrs
        self.workspace = workspace
        self.configuration = configuration
        self.deps = deps  # node -> ConfiguredTarget
        self._local = local_names if local_names is not None else {node: node for node in deps}
        self._dep_dirs = {node: output_dir(name) for name, node in reversed(list(self._local.items()))}
        self.toolchains = toolchains  # name -> ResolvedToolchain
        self.groups_read = frozenset(groups_read)
        self.schema = schema
        self.outputs: list[str] = []
        self.missing_data: str | None = None
        self._sources: dict[str, list] = {}
        self._resources: Resources | None = None
        self._toolchain_roots = tuple(sorted((n, t.root) for n, t in toolchains.items() if t.root))

    # -- dependencies ------------------------------------------------------------------
    def dep(self, text: str, attr: str):
        """(node, configured target, sandbox dir) of the dependency a label in `attr` names."""
        where = self.where(attr)
        label = Label.parse(text, self.label.package, where)
        node = self._local.get(label)
        if node is None:
            several = sorted(str(name) for name in self._local if name.package == label.package
                             and name.name.partition("@")[0] == label.name)
            hint = f"it is listed under several configurations: {', '.join(several)}" if several else "add it to deps"
            raise BuildFileError(f"{label} is not in deps of {self.label}", where, hint)
        return node, self.deps[node], self._dep_dirs[node]

    def dep_dir(self, node) -> str:
        return self._dep_dirs[node]

    def staged_deps(self) -> list[tuple[str, str]]:
        """(node, sandbox dir) of every dependency whose outputs the action reads; a group
        stands for its members."""
        staged: dict[str, str] = {}
        for node, target in self.deps.items():
            members = target.info.get("members")
            for member, directory in (members if members is not None else [(str(node), self.dep_dir(node))]):
                staged.setdefault(member, directory)
        return list(staged.items())

    def action_deps(self, staged: list[tuple[str, str]] | None = None) -> dict:
        """The `deps` and `dep_dirs` fields of an Action reading `staged` (node, sandbox dir)
        pairs: by default every dependency."""
        staged = self.staged_deps() if staged is None else staged
        return {"deps": tuple(node for node, _ in staged),
                "dep_dirs": tuple((node, d) for node, d in staged if d != output_dir(node))}

    def where(self, attr: str) -> Location:
        return self._raw.where(attr) if attr in self._raw else self.location

    @property
    def outdir(self) -> str:
        return output_dir(self.label)

    # -- sources and outputs -----------------------------------------------------------
    def sources(self, attr: str = "srcs") -> list[tuple[str, str]]:
        """(sandbox path, workspace-relative path) of each declared source; globs expand, and
        `//pkg:path` names a file of another package."""
        if attr in self._sources:
            return self._sources[attr]
        found = []
        root = str(self.workspace.root)
        for pattern in self.attrs.get(attr) or []:
            package_dir, relative = self.source_location(pattern, attr)
            full = os.path.join(package_dir, relative)
            if glob.has_magic(relative):
                files = [m for m in sorted(glob.glob(full, recursive=True)) if not os.path.isdir(m)]
            else:
                files = [full] if os.path.lexists(full) else []
            if not files:
                raise BuildFileError(
                    f"source '{pattern}' of {self.label} not found in {os.path.relpath(package_dir, root)}",
                    self.where(attr),
                )
            for path in files:
                relative_path = path[len(root) + 1:].replace(os.sep, "/")
                problem = file_problem(path, root)
                if problem:
                    raise BuildFileError(
                        f"source {relative_path} of {self.label} {problem}", self.where(attr),
                        "sources are regular files inside the workspace; data elsewhere goes in a data_dir",
                    )
                found.append((relative_path, relative_path))
        self._sources[attr] = found
        return found

    def source_location(self, text: str, attr: str) -> tuple[str, str]:
        """(package directory, path inside it) of a source written `file` or `//pkg:file`."""
        package = self.label.package
        if text.startswith("//"):
            package, _, text = text[2:].partition(":")
            Label.parse(f"//{package}:x", location=self.where(attr))
        check_relative_path(text, f"source '{text}'", self.where(attr))
        return os.path.join(self.workspace.root, PACKAGES_DIR, package), text

    def data_sources(self) -> list[tuple[str, str]]:
        """Every regular file under `data_dir` (a user's dataset outside the workspace), staged
        under data/ in the sandbox, each by digest in the key like any source. When the
        directory is not given, `missing_data` says why and the action fails when scheduled,
        so a build reports it beside other failures (a download needing --distdir, say)."""
        raw = self.attrs.get("data_dir")
        if raw is None:
            return []
        directory = self.expand(str(raw), "data_dir")
        if directory and os.path.isabs(directory):
            self.workspace.listed_directories.add(directory)  # one made later holds a dataset
        if not directory or not os.path.isabs(directory) or not os.path.isdir(directory):
            groups = re.findall(r"config:\s*([\w-]+)", str(raw))
            what = "is empty" if not directory else f"'{directory}' is not an existing absolute directory"
            hint = f"pass --config={groups[0]}=/path/to/data" if groups else "set data_dir to a directory"
            self.missing_data = f"{self.label} needs a data directory, and its data_dir {what} (hint: {hint})"
            return []
        special = reaches_special(os.path.realpath(directory))
        if special:
            raise BuildFileError(
                f"data_dir '{directory}' of {self.label} reaches the special file system {special}",
                self.where("data_dir"), "point data_dir at the directory holding the dataset's files",
            )
        dataset = list_dataset(directory)
        self.workspace.listed_directories.update(dataset.directories)
        if dataset.warning is not None:
            self.workspace.warn(dataset.warning)
        return [(f"data/{relative}", path) for relative, path in dataset.files]

    def declare_outputs(self, names: list[str], attr: str) -> list[str]:
        for name in names:
            check_relative_path(name, f"output '{name}'", self.where(attr))
        return [f"{self.outdir}/{name}" for name in names]

    # -- environment -------------------------------------------------------------------
    def resources(self) -> Resources:
        """Computed once: the env's thread count and the action both read it."""
        if self._resources is None:
            self._resources = self._declared_resources()
        return self._resources

    def _declared_resources(self) -> Resources:
        raw = {k: v for k, v in (self.attrs.get("resources") or {}).items() if v is not None}
        for key, value in raw.items():
            if isinstance(value, str):  # a {{config:GROUP}} placeholder, checked once expanded
                raw[key] = _expanded_resource(key, self.expand(value, "resources"), self.where("resources"),
                                              str(self.label))
        return shared(Resources(
            cpus=float(raw.get("cpus", 1)), gpus=int(raw.get("gpus", 0)),
            memory_mb=int(raw.get("memory_mb", 0)),
            exclusive=bool(raw.get("exclusive", False)) or "exclusive" in (self.attrs.get("tags") or []),
            custom=tuple(sorted((str(name), float(amount)) for name, amount in (raw.get("custom") or {}).items())),
        ))

    def action_env(self, extra: dict | None = None) -> tuple[tuple[str, str], ...]:
        """Scrubbed env: fixed PATH, sandbox HOME/TMPDIR, pinned threads, then declared env."""
        threads = str(max(1, int(self.resources().cpus)))
        bin_dirs = [d for t in self.toolchains.values() for d in t.bin_dirs]
        env = {
            "PATH": ":".join([*dict.fromkeys(bin_dirs), _BASE_PATH]),
            "HOME": f"{SANDBOX_PLACEHOLDER}/.home",
            "TMPDIR": f"{SANDBOX_PLACEHOLDER}/.tmp",
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            **{var: threads for var in THREAD_ENV_VARS},
        }
        for toolchain in self.toolchains.values():
            env.update(toolchain.env)
        for _source, settings in self.schema.settings_for(self.configuration, self.groups_read):
            env.update({key: expand_config(value, self.configuration) for key, value in settings.env})
        env.update(extra or {})
        for key, value in (self.attrs.get("env") or {}).items():
            env[str(key)] = self.expand(str(value), "env")
        return shared(tuple(sorted((key, self.abstract(value)) for key, value in env.items())))

    def container(self) -> tuple[str | None, str | None]:
        """(image ID, runtime) of the container toolchain the action runs in, if it names one."""
        images = [t for t in self.toolchains.values() if t.kind == "container"]
        if len(images) > 1:
            raise BuildFileError(f"{self.label} names {len(images)} container toolchains; an action runs in one",
                                 self.where("toolchains"))
        return (images[0].paths["image"], images[0].paths.get("runtime")) if images else (None, None)

    def network(self) -> bool:
        return bool(self.attrs.get("network")) or "network" in (self.attrs.get("tags") or [])

    def toolchain_digests(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((name, t.digest) for name, t in self.toolchains.items()))

    def toolchain_roots(self) -> tuple[tuple[str, str], ...]:
        return self._toolchain_roots

    def abstract(self, text: str) -> str:
        """`text` with machine-specific toolchain install dirs replaced by placeholders."""
        for name, root in self._toolchain_roots:
            text = text.replace(root, toolchain_root_placeholder(name))
        return text

    # -- placeholders ------------------------------------------------------------------
    def expand(self, text: str, attr: str) -> str:
        """Replace {{out}}, {{out:NAME}}, {{outdir}}, {{src:NAME}}, {{srcs}}, {{dep:LABEL [PATH]}},
        {{config:GROUP}}, {{toolchain:NAME[.TOOL]}} and {{sandbox}} in `text`."""
        return self._PLACEHOLDER.sub(lambda m: self._placeholder(m.group(1), (m.group(2) or "").strip(), attr), text)

    def _placeholder(self, kind: str, arg: str, attr: str) -> str:
        # The attribute's location (self.where) is looked up only for an error: most targets
        # expand a few placeholders, and a graph of 10,000 commands about 30,000.
        if kind == "sandbox":
            return SANDBOX_PLACEHOLDER
        if kind == "outdir":
            return self.outdir
        if kind == "data_dir":
            return "data"
        if kind == "out":
            if not arg:
                if len(self.outputs) != 1:
                    raise BuildFileError(
                        f"{{{{out}}}} needs exactly one declared output, {self.label} has {len(self.outputs)}",
                        self.where(attr), "use {{out:NAME}}",
                    )
                return self.outputs[0]
            path = f"{self.outdir}/{arg}"
            if path not in self.outputs:
                raise BuildFileError(f"{{{{out:{arg}}}}}: '{arg}' is not a declared output of {self.label}",
                                     self.where(attr))
            return path
        if kind in ("src", "srcs"):
            sources = [s for s, _ in self.sources()]
            if kind == "srcs":
                return " ".join(sources)
            package_dir, relative = self.source_location(arg, attr)
            wanted = self.workspace.relative(os.path.join(package_dir, relative)).replace(os.sep, "/")
            if wanted not in sources:
                raise BuildFileError(f"{{{{src:{arg}}}}}: '{arg}' is not in srcs of {self.label}", self.where(attr))
            return wanted
        if kind == "dep":
            text, _, inner = arg.partition(" ")
            _node, dep, base = self.dep(text, attr)
            if inner:
                return f"{base}/{inner.strip()}"
            members = dep.info.get("members")
            if members is not None:  # a group: every member's directory
                return " ".join(directory for _, directory in members)
            items = list(dep.outputs) + list(dep.output_dirs)
            return f"{base}/{items[0]}" if len(items) == 1 else base
        if kind == "config":
            if arg not in self.groups_read:  # the analyzer found every {{config:}} of the attributes
                raise BuildFileError(f"{{{{config:{arg}}}}} is not an attribute's placeholder", self.where(attr))
            return str(self.configuration[arg])
        if kind == "toolchain":
            name, _, tool = arg.partition(".")
            toolchain = self.toolchains.get(name)
            if toolchain is None:
                raise BuildFileError(
                    f"{{{{toolchain:{arg}}}}}: toolchain '{name}' is not in toolchains of {self.label}",
                    self.where(attr),
                )
            paths = toolchain.paths
            if tool:
                if tool not in paths:
                    raise BuildFileError(f"toolchain '{name}' provides {', '.join(paths)}, not '{tool}'",
                                         self.where(attr))
                return paths[tool]
            return next(iter(paths.values()))
        raise BuildFileError(f"unknown placeholder '{{{{{kind}}}}}'", self.where(attr),
                             "placeholders: out, outdir, src, srcs, dep, config, toolchain, data_dir, sandbox")


def _expanded_resource(key: str, text: str, where: Location, path: str):
    """A resource spelled by an expanded placeholder, as its declared type (range included)."""
    try:
        value = {"true": True, "false": False}[text.lower()] if key == "exclusive" else \
            (float(text) if key == "cpus" else int(text))
    except (KeyError, ValueError):
        value = text
    return RESOURCE_TYPES[key].check(value, where, f"{path}, attribute 'resources', resource '{key}'")


def check_relative_path(path: str, what: str, location: Location) -> None:
    """Reject absolute paths and `..`: nothing may be read or written outside the sandbox."""
    problem = path_problem(path)
    if problem:
        raise BuildFileError(
f"{what} {problem}", location, PATH_HINT)
