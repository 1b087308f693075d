"""Several mlbuild processes sharing one cache (DESIGN §4): correct outputs, a consistent cache,
and the per-key lock making each action run once across processes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import ROOT_BUILD, Mlbuild, _parse, check_cache_consistent

WORK = "for i in $(seq 1 1500); do :; done"  # a little real work per action (~10 ms of bash)


def graph_files() -> tuple[dict, dict]:
    """~20 actions in three layers; returns (files, expected contents by label)."""
    lines, expected = [], {}
    files = {"BUILD.yaml": ROOT_BUILD}
    for i in range(5):
        files[f"targets/p/in{i}.txt"] = f"source {i}\n"
        lines.append(f's{i}: {{rule: command, srcs: [in{i}.txt], outs: [o.txt], '
                     f'cmd: "{WORK}; cat {{{{src:in{i}.txt}}}} > {{{{out}}}}"}}')
        expected[f"s{i}"] = f"source {i}\n"
    for i in range(10):
        a, b = i % 5, (i * 3 + 1) % 5
        lines.append(f'm{i}: {{rule: command, deps: [":s{a}", ":s{b}"], outs: [o.txt], '
                     f'cmd: "{WORK}; cat {{{{dep::s{a}}}}} {{{{dep::s{b}}}}} > {{{{out}}}}; echo m{i} >> {{{{out}}}}"}}')
        expected[f"m{i}"] = expected[f"s{a}"] + expected[f"s{b}"] + f"m{i}\n"
    for i in range(5):
        a, b = i, 9 - i
        lines.append(f'f{i}: {{rule: command, deps: [":m{a}", ":m{b}"], outs: [o.txt], '
                     f'cmd: "{WORK}; cat {{{{dep::m{a}}}}} {{{{dep::m{b}}}}} | sort > {{{{out}}}}"}}')
        expected[f"f{i}"] = "".join(sorted((expected[f"m{a}"] + expected[f"m{b}"]).splitlines(keepends=True)))
    files["targets/p/BUILD.yaml"] = "\n".join(lines) + "\n"
    return files, {f"//p:{name}": text for name, text in expected.items()}


def run_together(*builds: Mlbuild) -> list:
    processes = [subprocess.Popen(b.popen_argv("build", "//...", "-j4"), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for b in builds]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        results.append(_parse(process.returncode, out, err))
    return results


def check_outputs(mlb: Mlbuild, expected: dict) -> None:
    for label, text in expected.items():
        assert mlb.out("", label, "o.txt").read_text() == text, label


def test_two_workspaces_sharing_one_cache(workspace, tmp_path):
    files, expected = graph_files()
    one = workspace(files, name="one")
    two = workspace(files, name="two", cache=one.cache)
    results = run_together(one, two)
    for result in results:
        assert result.code == 0, str(result)
        assert "Traceback" not in result.stderr
    check_outputs(one, expected)
    check_outputs(two, expected)
    counts = check_cache_consistent(one.cache)
    assert counts["entries"] == len(expected)
    # The per-key lock: the second process waits and reuses, so each action ran exactly once.
    executed = sum(r.summary["executed"] for r in results)
    hits = sum(r.summary["hits"] for r in results)
    assert (executed, hits) == (len(expected), len(expected))
    # Both workspaces are now up to date, and a third copy is all cache hits.
    assert one.ok("build", "//...").summary["up_to_date"] == len(expected)
    three = workspace(files, name="three", cache=one.cache)
    assert three.ok("build", "//...").summary["hits"] == len(expected)


def test_two_builds_of_the_same_workspace(workspace):
    files, expected = graph_files()
    mlb = workspace(files)
    results = run_together(mlb, mlb)
    for result in results:
        assert result.code == 0, str(result)
        assert "Traceback" not in result.stderr
    check_outputs(mlb, expected)
    check_cache_consistent(mlb.cache)
    again = mlb.ok("build", "//...")
    assert again.summary["executed"] == 0
    check_outputs(mlb, expected)


def test_same_workspace_materializing_the_same_outputs_at_once(workspace):
    """Two builds of one workspace on a warm cache: both materialize every target into the
    same output directories at the same time. Each round is a race that a non-atomic
    materialization loses now and then, so several rounds are run."""
    lines = [f"t{i}: {{rule: command, outs: [a.txt, b.txt], "
             f"cmd: 'echo {i} > {{{{out:a.txt}}}}; echo {i}b > {{{{out:b.txt}}}}'}}" for i in range(60)]
    files = {"BUILD.yaml": ROOT_BUILD, "targets/p/BUILD.yaml": "\n".join(lines) + "\n"}
    workspace(files, name="warm").ok("build", "//...")
    for round_ in range(4):
        mlb = workspace(files, name=f"round{round_}")
        results = run_together(mlb, mlb)
        for result in results:
            assert result.code == 0, f"round {round_}: {result}"
        for i in range(60):
            assert mlb.out("", f"//p:t{i}", "a.txt").read_text() == f"{i}\n"
            assert mlb.out("", f"//p:t{i}", "b.txt").read_text() == f"{i}b\n"
    check_cache_consistent(mlb.cache)


def test_build_racing_gc(workspace):
    """GC takes the cache exclusively, so a concurrent build never loses a blob it links."""
    files, expected = graph_files()
    mlb = workspace(files)
    mlb.ok("build", "//...")
    other = workspace(files, name="other", cache=mlb.cache)
    build = subprocess.Popen(other.popen_argv("build", "//...", "-j3"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    gcs = [mlb.process("cache", "gc", "--max-size", "0") for _ in range(3)]
    _, err = build.communicate(timeout=120)
    assert build.returncode == 0, err
    assert all(g.code == 0 for g in gcs)
    check_outputs(other, expected)
    check_cache_consistent(mlb.cache)


@pytest.fixture(autouse=True)
def _no_leftover_sandboxes(workspace, tmp_path):
    yield
    sandboxes = tmp_path / "cache" / "sandbox"
    if sandboxes.exists():
        leftovers = list(sandboxes.iterdir())
        shutil.rmtree(sandboxes)
        assert leftovers == [], "sandboxes were not removed"
