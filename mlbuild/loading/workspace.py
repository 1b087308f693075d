"""The workspace: the root BUILD.yaml, packages under targets/, toolchain files, loaded lazily.

Only packages that the requested patterns and their dependencies reach are parsed. Parsed files
are kept in `.mlbuild/parse-cache.pickle`, keyed by (size, mtime_ns), so an unchanged
workspace is not re-parsed on the next invocation: re-parsing every script on every call is
what makes a warm MLCFlow run cost seconds. Each file's document is pickled on its own and
unpickled only when a command reads that file: a command touching one package of a large
workspace pays for that package, and saving the cache never holds a pickle memo of every
document of the workspace at once (at 100,000 targets, hundreds of MiB).
"""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import BuildFileError, Location, did_you_mean
from ..filesystem import make_directory
from ..storage.atomic import load_pickle, save_pickle
from .configs import ConfigSchema
from .labels import Label, Pattern
from .rootfile import ROOT
from .yamlsource import LocatedDict, expect_mapping, load_yaml

# Bump when what the parse cache holds (LocatedDict and friends) changes shape.
PARSE_CACHE_FORMAT = 4
ROOT_FILE = "BUILD.yaml"
PACKAGES_DIR = "targets"
TOOLCHAINS_DIR = "toolchains"
STATE_DIR = ".mlbuild"


@dataclass(frozen=True)
class TargetDecl:
    """A target as written in a BUILD file, before configuration."""

    label: Label
    rule: str
    attrs: LocatedDict
    location: Location


def find_workspace_root(start: Path) -> Path:
    for directory in [start, *start.parents]:
        if (directory / ROOT_FILE).is_file() and (directory / PACKAGES_DIR).is_dir():
            return directory
    raise BuildFileError(
        f"no workspace found at or above {start}",
        hint=f"a workspace is a directory holding {ROOT_FILE} and a {PACKAGES_DIR}/ directory",
    )


class Workspace:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.state_dir = self.root / STATE_DIR
        self._parse_cache_file = self.state_dir / "parse-cache.pickle"
        self._parse_cache = self._load_parse_cache()
        self._parse_cache_dirty = False
        self.loaded_files: set[str] = set()  # every file this session read (the no-op fast path)
        # Every directory whose entries analysis read beyond a package's own: the search for
        # packages, a dataset's tree (an entry added changes its mtime). With loaded_files, what
        # the analysis cache and the no-op fast path stat.
        self.listed_directories: set[str] = set()
        self.warnings: list[str] = []  # what loading and analysis warned of (a reused analysis repeats them)
        self._packages: dict[str, dict[str, TargetDecl]] = {}
        self._subdirectory_names: dict[str, frozenset] = {}
        root_doc = ROOT.check(self._load(self.root / ROOT_FILE), None, "")
        self.settings: dict = dict(root_doc.get("workspace") or {})
        self.configs = ConfigSchema.from_yaml(root_doc.get("config"), root_doc.get("config_rules"))
        self.toolchain_decls = self._load_toolchain_decls()
        self.configs.check_toolchains(self.toolchain_decls)

    # -- files -----------------------------------------------------------------------------
    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.root)

    def _load(self, path: Path) -> LocatedDict:
        self.loaded_files.add(str(path))
        try:
            st = path.stat()
        except FileNotFoundError:
            raise BuildFileError(f"{self.relative(path)} not found") from None
        stamp = (st.st_size, st.st_mtime_ns)
        cached = self._parse_cache.get(str(path))
        if cached is not None and cached[0] == stamp:
            return pickle.loads(cached[1])
        document = load_yaml(path, self.relative(path))
        if not isinstance(document, LocatedDict):
            raise BuildFileError("a BUILD file must be a mapping", Location(self.relative(path), 1, 1))
        self._parse_cache[str(path)] = (stamp, pickle.dumps(document, protocol=pickle.HIGHEST_PROTOCOL))
        self._parse_cache_dirty = True
        return document

    def _load_parse_cache(self) -> dict:
        cache = load_pickle(self._parse_cache_file, {})
        return cache.get("files", {}) if cache.get("format") == (PARSE_CACHE_FORMAT, __version__) else {}

    def save_caches(self) -> None:
        if not self._parse_cache_dirty:
            return
        make_directory(self.state_dir, "mlbuild's state directory")
        save_pickle(self._parse_cache_file, {"format": (PARSE_CACHE_FORMAT, __version__), "files": self._parse_cache})
        self._parse_cache_dirty = False

    def warn(self, message: str) -> None:
        """Tell the user of something odd in the workspace that does not stop analysis."""
        self.warnings.append(message)
        print(f"warning: {message}", file=sys.stderr)

    # -- packages and targets --------------------------------------------------------------
    def package_dir(self, package: str) -> Path:
        return self.root / PACKAGES_DIR / package

    def package(self, package: str, referenced_at: Location | None = None) -> dict[str, TargetDecl]:
        if package in self._packages:
            return self._packages[package]
        build_file = self.package_dir(package) / ROOT_FILE
        if not build_file.is_file():
            raise BuildFileError(
                f"no package '//{package}': {self.relative(build_file)} does not exist", referenced_at,
                did_you_mean(package, self.all_packages()),
            )
        document = self._load(build_file)
        targets = {}
        for name, body in document.items():
            where = document.where(name)
            if "@" in str(name):
                raise BuildFileError(f"target name '{name}' contains '@'", where,
                                     "'@' is kept for targets built in another configuration (LABEL@VALUES)")
            label = Label.parse(f"//{package}:{name}", location=where)
            body = expect_mapping(body, f"target '{name}'", where)
            rule = body.get("rule")
            if not isinstance(rule, str):
                raise BuildFileError(f"target '{name}' has no 'rule'", where, "add e.g. 'rule: command'")
            targets[name] = TargetDecl(label, rule, body, where)
        self._packages[package] = targets
        return targets

    def target(self, label: Label, referenced_at: Location | None = None) -> TargetDecl:
        targets = self.package(label.package, referenced_at)
        decl = targets.get(label.name)
        if decl is None:
            raise BuildFileError(
                f"no target '{label.name}' in package '//{label.package}'", referenced_at,
                did_you_mean(label.name, targets) or f"targets there: {', '.join(sorted(targets)) or 'none'}",
            )
        return decl

    def all_packages(self, under: str = "") -> list[str]:
        base = self.root / PACKAGES_DIR
        found = []
        for directory, subdirs, files in os.walk(base / under):
            self.listed_directories.add(directory)
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            if ROOT_FILE in files:
                found.append(os.path.relpath(directory, base).replace(os.sep, "/"))
        return found

    def nesting_target(self, label: Label) -> Label | None:
        """A target whose output directory (out/<package>/<name>) holds `label`'s or lies in it.

        Each target owns its directory of the output tree; //a:gen and any target of package
        a/gen (or below) would share one, and building either would clobber the other's files.
        """
        if label.name in self._subdirectories(label.package):
            for package in self.all_packages(f"{label.package}/{label.name}"):
                for decl in self.package(package).values():
                    return decl.label
        parts = label.package.split("/")
        for i in range(1, len(parts)):
            outer_package, outer_name = "/".join(parts[:i]), parts[i]
            self.listed_directories.add(str(self.package_dir(outer_package)))
            if (self.package_dir(outer_package) / ROOT_FILE).is_file() and outer_name in self.package(outer_package):
                return Label(outer_package, outer_name)
        return None

    def _subdirectories(self, package: str) -> frozenset:
        """Names of the directories in a package's directory, listed once per package."""
        found = self._subdirectory_names.get(package)
        if found is None:
            try:
                with os.scandir(self.package_dir(package)) as entries:
                    found = frozenset(e.name for e in entries if e.is_dir())
            except OSError:
                found = frozenset()
            self._subdirectory_names[package] = found
        return found

    def expand(self, patterns: list[str]) -> list[Label]:
        """Targets matched by patterns; `manual`-tagged targets only when named exactly."""
        labels: list[Label] = []
        for text in patterns:
            pattern = Pattern.parse(text)
            if pattern.name is not None:
                labels.append(self.target(Label(pattern.package, pattern.name), Location(text)).label)
                continue
            if pattern.recursive:
                packages = [p for p in self.all_packages() if pattern.matches_package(p)]
            else:
                packages = [pattern.package]
            for package in packages:
                for decl in self.package(package, Location(text)).values():
                    tags = decl.attrs.get("tags")  # checked with the other attributes at analysis
                    if not (isinstance(tags, list) and "manual" in tags):
                        labels.append(decl.label)
        return list(dict.fromkeys(labels))

    # -- toolchains ------------------------------------------------------------------------
    def _load_toolchain_decls(self) -> dict[str, tuple[LocatedDict, Path]]:
        decls: dict[str, tuple[LocatedDict, Path]] = {}
        directory = self.root / TOOLCHAINS_DIR
        if not directory.is_dir():
            return decls
        for path in sorted(directory.glob("*.yaml")):
            document = self._load(path)
            for name, body in document.items():
                where = document.where(name)
                if name in decls:
                    raise BuildFileError(f"toolchain '{name}' declared twice", where)
                decls[name] = (expect_mapping(body, f"toolchain '{name}'", where), path)
        return decls
