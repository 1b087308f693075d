"""The analysis cache (analysis/cache.py) reuses an analysis only while nothing it read moved.

Each test writes a workspace and backdates it (`settle`: an entry is written only when no file
it depends on changed while analysis ran), builds once, edits a source in place (so the no-op
fast path does not answer and the build's full path runs), changes one thing, and builds
again: a spy counts the analyses, and the outputs show what the build saw.
"""

import os

import pytest

from core.conftest import settle
from mlbuild.errors import EXIT_BAD_INPUT

ROOT = "workspace: {name: t}\nconfig:\n  device: {default: cpu, values: {cpu: {}, gpu_sim: {}}}\n"
PKG = """\
gen: {rule: command, srcs: ["*.txt"], outs: [out.txt], cmd: "cat {{srcs}} > {{out}}"}
up: {rule: command, deps: [":gen"], outs: [up.txt], cmd: "tr a-z A-Z < {{dep::gen}} > {{out}}"}
"""


@pytest.fixture
def mlb(workspace, analyses):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/a/BUILD.yaml": PKG, "targets/a/in.txt": "hello\n"})
    settle(mlb.root)
    mlb.ok("build", "//...")
    assert len(analyses) == 1
    mlb.write({"targets/a/in.txt": "edited\n"})  # in place: the same file, new bytes
    return mlb


def test_an_unchanged_workspace_is_not_analyzed_again(mlb, analyses):
    assert mlb.ok("build", "//...").built == {"//a:gen", "//a:up"}
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "EDITED\n"
    assert len(analyses) == 1


def test_a_changed_build_file_is_analyzed_again(mlb, analyses):
    mlb.write({"targets/a/BUILD.yaml": PKG.replace("tr a-z A-Z", "rev")})
    assert mlb.ok("build", "//...").built == {"//a:gen", "//a:up"}
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "detide\n"
    assert len(analyses) == 2


def test_a_new_file_matching_a_glob_is_seen(mlb, analyses):
    mlb.write({"targets/a/more.txt": "more\n"})
    mlb.ok("build", "//...")
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "EDITED\nMORE\n"
    assert len(analyses) == 2


def test_a_new_file_deeper_in_the_package_matching_a_glob_is_seen(workspace, analyses):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/a/in.txt": "hello\n", "targets/a/sub/notes.md": "no\n",
                     "targets/a/BUILD.yaml": "x: {rule: command, srcs: ['**/*.txt'], outs: [o], cmd: 'cat {{srcs}} > {{out}}'}\n"})
    settle(mlb.root)
    mlb.ok("build", "//a:x")
    mlb.write({"targets/a/in.txt": "edited\n", "targets/a/sub/more.txt": "more\n"})
    mlb.ok("build", "//a:x")
    assert mlb.out("cpu", "//a:x", "o").read_text() == "edited\nmore\n"
    assert len(analyses) == 2


def test_a_new_package_matching_the_pattern_is_built(mlb, analyses):
    mlb.write({"targets/b/BUILD.yaml": "late: {rule: command, outs: [o.txt], cmd: 'echo late > {{out}}'}\n"})
    assert mlb.ok("build", "//...").built == {"//a:gen", "//a:up", "//b:late"}
    assert len(analyses) == 2


def test_a_file_added_deep_in_a_dataset_is_seen(workspace, analyses, tmp_path):
    data = tmp_path / "dataset"
    (data / "sub").mkdir(parents=True)
    (data / "a.bin").write_text("a")
    mlb = workspace({"BUILD.yaml": ROOT, "targets/a/BUILD.yaml":
                     f"x: {{rule: command, data_dir: '{data}', outs: [o], cmd: '(cd data && find . -type f | sort) > {{{{out}}}}'}}\n"})
    settle(mlb.root)
    settle(data)
    mlb.ok("build", "//a:x")
    (data / "sub" / "b.bin").write_text("b")
    mlb.ok("build", "//a:x")
    assert (mlb.out("cpu", "//a:x", "o").read_text()) == "./a.bin\n./sub/b.bin\n"
    assert len(analyses) == 2


def test_a_reused_analysis_repeats_its_warnings(workspace, analyses, tmp_path):
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "a.bin").write_text("a")
    os.mkfifo(data / "pipe")
    mlb = workspace({"BUILD.yaml": ROOT, "targets/a/in.txt": "hello\n", "targets/a/BUILD.yaml":
                     f"x: {{rule: command, srcs: [in.txt], data_dir: '{data}', outs: [o], cmd: 'ls data > {{{{out}}}}'}}\n"})
    settle(mlb.root)
    settle(data)
    warned = mlb.ok("build", "//a:x").stderr
    mlb.write({"targets/a/in.txt": "edited\n"})
    again = mlb.ok("build", "//a:x").stderr
    assert len(analyses) == 1
    assert "warning:" in warned and "skipped 1 entries that are not regular files: pipe (is a FIFO" in warned
    assert [line for line in again.splitlines() if "warning:" in line] == \
        [line for line in warned.splitlines() if "warning:" in line]


def test_a_source_retargeted_outside_the_workspace_is_refused(workspace, analyses, tmp_path):
    """Only the symlink's target changes: no directory that analysis listed moves."""
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    mlb = workspace({"BUILD.yaml": ROOT, "data/real.txt": "real\n",
                     "targets/a/BUILD.yaml": "x: {rule: command, srcs: [in.txt], outs: [o], cmd: 'cat {{srcs}} > {{out}}'}\n"})
    (mlb.root / "targets/a/in.txt").symlink_to(mlb.root / "data/real.txt")
    settle(mlb.root)
    mlb.ok("build", "//a:x")
    (mlb.root / "data/real.txt").unlink()
    (mlb.root / "data/real.txt").symlink_to(outside)
    result = mlb("build", "//a:x")
    assert result.code == EXIT_BAD_INPUT, str(result)
    assert "is a symlink leaving the workspace" in result.stderr
    assert len(analyses) == 2


def test_a_file_changed_while_analysis_ran_keeps_no_entry(workspace, analyses):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/a/BUILD.yaml": PKG, "targets/a/in.txt": "hello\n"})
    mlb.ok("build", "//...")  # written just now: as if edited while it was analyzed
    mlb.write({"targets/a/in.txt": "edited\n"})
    mlb.ok("build", "//...")
    assert len(analyses) == 2


def test_each_configuration_has_its_own_entry(mlb, analyses):
    mlb.ok("build", "//...", "--config=gpu_sim")
    mlb.write({"targets/a/in.txt": "again\n"})
    mlb.ok("build", "//...")
    mlb.ok("build", "//...", "--config=gpu_sim")
    assert len(analyses) == 2  # the cpu build's first, the gpu_sim build's once


def test_host_detected_toolchains_disable_the_cache(workspace, analyses):
    mlb = workspace({"BUILD.yaml": ROOT, "toolchains/host.yaml": "python: {kind: python}\n",
                     "targets/a/BUILD.yaml": "x: {rule: command, toolchains: [python], srcs: [in.txt], outs: [o],"
                                             " cmd: '{{toolchain:python}} -c pass; cat {{srcs}} > {{out}}'}\n",
                     "targets/a/in.txt": "hello\n"})
    settle(mlb.root)
    mlb.ok("build", "//a:x")
    mlb.write({"targets/a/in.txt": "edited\n"})
    mlb.ok("build", "//a:x")
    assert len(analyses) == 2  # probed and analyzed again: a pip install leaves no file to stat


def test_only_the_entries_used_last_are_kept(mlb, analyses, monkeypatch):
    from mlbuild.analysis import cache

    monkeypatch.setattr(cache, "KEPT_ENTRIES", 2)
    mlb.ok("build", "//a:gen")  # a second entry; the fixture's //... is the first
    mlb.ok("build", "//...")  # reused: now the one used last
    mlb.ok("build", "//a:up")  # a third: //a:gen's, used longest ago, goes
    assert len(list((mlb.root / ".mlbuild" / "analysis").glob("*.pickle"))) == 2
    mlb.write({"targets/a/in.txt": "again\n"})
    mlb.ok("build", "//...")
    mlb.ok("build", "//a:gen")
    assert [[str(label) for label in labels] for labels in analyses[1:]] == [["//a:gen"], ["//a:up"], ["//a:gen"]]
