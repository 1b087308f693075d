"""`--sweep GROUP=V1,V2`: every point of the matrix analyzed and scheduled in one build."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

ROOT = """\
workspace: {name: t}
config:
  precision: {default: fp32, values: {fp32: {}, int8: {}}}
  batch_size: {type: int, default: 1}
"""
PKG = """\
data: {rule: command, outs: [d.txt], cmd: "echo data > {{out}}"}
model: {rule: command, deps: [":data"], outs: [m.txt], cmd: "cat {{dep::data}} > {{out}}; echo {{config:precision}} >> {{out}}"}
check: {rule: command, test: true, deps: [":model"], outs: [c.txt], cmd: "cat {{dep::model}} > {{out}}"}
"""


def test_a_sweep_builds_every_point_and_shared_actions_once(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/p/BUILD.yaml": PKG})
    result = mlb.ok("test", "//p:check", "--sweep", "precision=fp32,int8", "--sweep", "batch_size=1,2",
                    "--results-json", mlb.root / "r.json", "--junit-xml", mlb.root / "j.xml")
    # data reads nothing, model and check read precision only: batch_size adds no work.
    assert result.built == {"//p:data", "//p:model", "//p:model@int8", "//p:check", "//p:check@int8"}
    rows = json.loads((mlb.root / "r.json").read_text())
    assert [(r["target"], r["config"], r["verdict"]) for r in rows] == [
        ("//p:check", "precision=fp32,batch_size=1", "PASSED"), ("//p:check", "precision=fp32,batch_size=2", "PASSED"),
        ("//p:check", "precision=int8,batch_size=1", "PASSED"), ("//p:check", "precision=int8,batch_size=2", "PASSED")]
    cases = ET.parse(mlb.root / "j.xml").getroot().iter("testcase")
    assert sorted(case.get("classname") for case in cases) == sorted(f"p[{r['config']}]" for r in rows)
    assert "config_name" in result.stdout.splitlines()[0] and len(result.stdout.splitlines()) == 5
    tree = mlb.root / "mlbuild-out" / "default" / "p"
    assert (tree / "check@int8" / "c.txt").read_text() == "data\nint8\n"
    assert (tree / "check" / "c.txt").read_text() == "data\nfp32\n"


def test_a_swept_build_is_then_a_noop(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/p/BUILD.yaml": PKG})
    mlb.ok("build", "//p:model", "--sweep=precision=fp32,int8")
    assert mlb.ok("build", "//p:model", "--sweep=precision=fp32,int8").summary["executed"] == 0
    assert mlb.ok("build", "//p:model", "--config=int8").built == set()  # same cache entries


@pytest.mark.parametrize("args, message", [
    (["--sweep", "precision="], "lists no values"),
    (["--sweep", "precision"], "expected GROUP=V1,V2"),
    (["--sweep", "precison=fp32"], "did you mean 'precision'"),
    (["--sweep", "precision=fp32,int4"], "unknown value 'int4'"),
    (["--sweep", "batch_size=1,two"], "takes a int"),
    (["--sweep", "precision=fp32", "--config=int8"], "both swept and set by --config"),
    (["--sweep", "precision=fp32", "--sweep", "precision=int8"], "swept twice"),
])
def test_bad_sweeps_are_errors_before_anything_runs(workspace, args, message):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/p/BUILD.yaml": PKG})
    result = mlb("build", "//p:model", *args)
    assert result.code == 3 and message in result.stderr and "Traceback" not in result.stderr, str(result)
    assert result.stderr.startswith("--sweep: error:") and not (mlb.root / "mlbuild-out").exists()
