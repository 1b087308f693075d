"""A Session: the workspace, cache, configuration and toolchains one command works with."""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..analysis import cache as analysis_cache
from ..analysis.analyzer import Analyzer
from ..analysis.cache import Analyzed
from ..errors import NothingToDoError
from ..execution.builder import BuildOptions, Builder
from ..execution.executors import BUILTIN_EXECUTORS
from ..loading.configs import Configuration
from ..loading.labels import Label
from ..loading.workspace import Workspace, find_workspace_root
from ..rules import EXECUTORS
from ..storage.local import LocalCache, default_cache_dir
from ..toolchains import ToolchainRegistry


@dataclass
class GlobalOptions:
    workspace: str | None = None
    cache_dir: str | None = None
    verbose: bool = False

    def cache_root(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


def config_tokens(configs) -> list[str]:
    """`--config=cuda,int8 --config=batch_size=8` → ["cuda", "int8", "batch_size=8"]."""
    return [t.strip() for text in configs for t in text.split(",") if t.strip()]


def log(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class Request:
    """A requested target in one configuration, and its node in the analyzed graph."""

    label: Label
    configuration: Configuration
    node: Label


class Session:
    def __init__(self, options: GlobalOptions, configs: tuple[str, ...] = (), distdirs=(),
                 sweeps: tuple[str, ...] = ()):
        self.options = options
        start = Path(options.workspace) if options.workspace else Path.cwd()
        self._started_ns = time.time_ns()  # before the first BUILD file is read (analysis/cache.py)
        self.workspace = Workspace(find_workspace_root(start.resolve()))
        self.cache = LocalCache(options.cache_root())
        self._config_tokens = config_tokens(configs)
        self._sweeps = list(sweeps)
        self.distdirs = resolve_distdirs(distdirs, self.workspace)
        self.toolchains = ToolchainRegistry(self.workspace.toolchain_decls, self.cache.root, log,
                                            distdirs=self.distdirs)

    @functools.cached_property
    def configurations(self) -> list:
        """Every point of the --sweep matrix, resolved on first use (`config list` and `cache`
        commands work without a valid one); the first is the primary one (plain labels)."""
        return self.workspace.configs.matrix(self._config_tokens, self._sweeps)

    @property
    def configuration(self):
        return self.configurations[0]

    def analyze(self, patterns: list[str]) -> Analyzed:
        """Expand patterns and analyze them, with their dependencies, in every configuration:
        one request per target and configuration, and the graph holding them all. An
        unchanged request's analysis comes from the analysis cache."""
        identity = [list(patterns), self._config_tokens, self._sweeps, [str(d) for d in self.distdirs],
                    str(self.cache.root)]
        analyzed = analysis_cache.load(self.workspace.root, identity)
        if analyzed is not None:
            for message in analyzed.warnings:
                self.workspace.warn(message)
            return analyzed
        labels = self.workspace.expand(patterns)
        if not labels:
            raise NothingToDoError(f"no targets match {' '.join(patterns)}",
                                   hint="targets tagged 'manual' are only built when named")
        analyzer = Analyzer(self.workspace, self.configuration, self.toolchains)
        requests = [Request(label, configuration, node) for configuration in self.configurations
                    for label, node in zip(labels, analyzer.nodes(labels, configuration))]
        self.workspace.save_caches()
        stamps = analysis_cache.stamps_of(self.workspace, analyzer.targets, self.toolchains.evidence(),
                                          self._started_ns)
        analyzed = Analyzed(requests, analyzer.targets, list(self.workspace.warnings), stamps)
        analysis_cache.save(self.workspace.root, identity, analyzed)
        return analyzed

    def builder(self, build_options: BuildOptions, progress, remote=None, observers=(), cluster=None) -> Builder:
        """`cluster`: a connected RayCluster that runs the actions not kept on this machine."""
        executor = None if cluster is None else functools.partial(self._ray_runner, cluster, remote)
        return Builder(self.workspace, self.cache, self.configuration, remote=remote, progress=progress,
                       options=build_options, executors={**BUILTIN_EXECUTORS, **EXECUTORS}, observers=observers,
                       executor=executor)

    def _ray_runner(self, cluster, remote, sandboxes):
        """The bottom of the runner stack with --executor=ray: the cluster, above local sandboxes."""
        from ..distributed.ray_runner import RayRunner
        from ..distributed.task import toolchain_spec

        return RayRunner(cluster, remote, self.cache, self.workspace.root,
                         functools.partial(toolchain_spec, self.toolchains), sandboxes)


def resolve_distdirs(flags, workspace: Workspace) -> tuple[Path, ...]:
    """The air-gapped sources: --distdir flags, else the root BUILD.yaml's `workspace: distdir:`
    (a path or a list, relative to the workspace root)."""
    if flags:
        return tuple(Path(d).expanduser().resolve() for d in flags)
    setting = workspace.settings.get("distdir") or []
    return tuple((workspace.root / Path(str(d)).expanduser()).resolve()
                 for d in ([setting] if isinstance(setting, str) else setting))


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
