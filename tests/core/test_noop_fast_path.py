"""The no-op fast path (execution/noop.py) must never call stale work up to date.

Each test builds once (recording the manifest), then either proves the second identical
build skips analysis entirely (a spy counts analyzer runs), or changes one thing the result
depends on and checks the full path runs and rebuilds exactly what it must.
"""

import pytest

from core.conftest import settle

ROOT = "workspace: {name: t}\nconfig:\n  device: {default: cpu, values: {cpu: {}, gpu_sim: {}}}\n"
PKG = """\
gen: {rule: command, srcs: ["*.txt"], outs: [out.txt], cmd: "cat {{srcs}} > {{out}}"}
up: {rule: command, deps: [":gen"], outs: [up.txt], cmd: "tr a-z A-Z < {{dep::gen}} > {{out}}"}
"""


@pytest.fixture
def mlb(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/a/BUILD.yaml": PKG, "targets/a/in.txt": "hello\n"})
    settle(mlb.root)
    mlb.ok("build", "//a/...")
    return mlb


def test_an_unchanged_build_skips_analysis(mlb, analyses):
    result = mlb.ok("build", "//a/...")
    assert result.summary["up_to_date"] == 2
    assert result.built == set()
    assert analyses == []


def test_a_changed_source_is_rebuilt(mlb):
    mlb.write({"targets/a/in.txt": "changed\n"})
    assert mlb.ok("build", "//a/...").built == {"//a:gen", "//a:up"}
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "CHANGED\n"


def test_a_source_made_executable_is_rebuilt(mlb):
    """A chmod moves no mtime, and the executable bit is part of the action key."""
    (mlb.root / "targets/a/in.txt").chmod(0o755)
    assert mlb.ok("build", "//a/...").built == {"//a:gen"}  # //a:up reads the same bytes: a hit


def test_a_new_file_matching_a_glob_is_seen(mlb):
    mlb.write({"targets/a/more.txt": "more\n"})
    assert mlb.ok("build", "//a/...").built == {"//a:gen", "//a:up"}
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "HELLO\nMORE\n"


def test_a_new_package_matching_the_pattern_is_built(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/a/BUILD.yaml": PKG, "targets/a/in.txt": "hello\n"})
    mlb.ok("build", "//...")
    mlb.write({"targets/b/BUILD.yaml": "late: {rule: command, outs: [o.txt], cmd: 'echo late > {{out}}'}\n"})
    assert mlb.ok("build", "//...").built == {"//b:late"}
    assert mlb.out("cpu", "//b:late", "o.txt").read_text() == "late\n"


def test_a_build_file_edited_while_the_build_ran_is_seen(workspace, analyses):
    """The manifest holds the stamps analysis saw, not the ones the file has when the build ends."""
    mlb = workspace({"BUILD.yaml": ROOT, "targets/a/in.txt": "hello\n"})
    build_file = mlb.root / "targets/a/BUILD.yaml"
    build_file.write_text(f"x: {{rule: command, srcs: [in.txt], outs: [o], cmd: 'echo \\# >> {build_file}; cat {{{{srcs}}}} > {{{{out}}}}'}}\n")
    settle(mlb.root)
    mlb.ok("build", "//a:x")
    assert build_file.read_text().endswith("#\n")  # edited by the action, after analysis read it
    mlb.ok("build", "//a:x")
    assert len(analyses) == 2


def test_a_changed_build_file_is_reanalyzed(mlb):
    mlb.write({"targets/a/BUILD.yaml": PKG.replace("tr a-z A-Z", "tr a-z A-Z | rev")})
    assert mlb.ok("build", "//a/...").built == {"//a:up"}


def test_a_damaged_output_tree_is_restored(mlb):
    mlb.out("cpu", "//a:up", "up.txt").unlink()
    mlb.ok("build", "//a/...")
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "HELLO\n"


def test_another_configuration_is_not_answered_by_the_manifest(mlb, analyses):
    mlb.ok("build", "//a/...", "--config=gpu_sim")
    assert len(analyses) == 1


def test_host_detected_toolchains_disable_the_fast_path(workspace, analyses):
    mlb = workspace({"BUILD.yaml": ROOT, "toolchains/host.yaml": "python: {kind: python}\n",
                     "targets/a/BUILD.yaml": "x: {rule: command, toolchains: [python], outs: [o],"
                                             " cmd: '{{toolchain:python}} -c pass; touch {{out}}'}\n"})
    mlb.ok("build", "//a:x")
    assert mlb.ok("build", "//a:x").summary["up_to_date"] == 1
    assert len(analyses) == 2  # probed and analyzed again: a pip install leaves no file to stat
