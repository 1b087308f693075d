"""Transitions: a dependency built in another configuration (CM's names/adr, add_deps_recursive)."""

from __future__ import annotations

import json

ROOT = """\
workspace: {name: t}
config:
  precision: {default: fp32, values: {fp32: {}, int8: {}}}
  scenario: {default: Offline, values: {Offline: {}, Server: {}}}
  device: {default: cpu, values: {cpu: {}, cuda: {}}}
"""

PKG = """\
raw: {rule: command, outs: [raw.txt], cmd: "echo raw > {{out}}"}
model: {rule: command, deps: [":raw"], outs: [m.txt], cmd: "echo {{config:precision}} > {{out}}"}
calibrate:
  rule: command
  deps: [":model", {target: ":model", config: [fp32]}, {target: ":raw", config: [device=cuda]}]
  outs: [c.txt]
  cmd: "cat {{dep::model@fp32}} {{dep::model}} {{dep::raw}} > {{out}}"
engine: {rule: command, deps: [{target: ":model", config: int8}], outs: [e.txt], cmd: "cat {{dep::model}} > {{out}}"}
runs:
  rule: command
  deps: [{target: ":bench", config: "scenario=Offline"}, {target: ":bench", config: "scenario=Server"}]
  outs: [r.txt]
  cmd: "cat {{dep::bench@Offline}} {{dep::bench@Server}} > {{out}}"
bench: {rule: command, outs: [b.txt], cmd: "echo {{config:scenario}} > {{out}}"}
"""


def test_a_dependency_builds_in_the_configuration_its_transition_sets(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/p/BUILD.yaml": PKG})
    first = mlb.ok("build", "//p:calibrate", "--config=int8")
    assert mlb.out("int8", "//p:calibrate", "c.txt").read_text() == "fp32\nint8\nraw\n"
    # Both configurations of the model coexist in the output tree; raw reads no group, so
    # its transition to cuda changes nothing: one node, one action.
    tree = mlb.root / "mlbuild-out" / mlb.config_dir("int8") / "p"
    assert (tree / "model" / "m.txt").read_text() == "int8\n"
    assert (tree / "model@fp32" / "m.txt").read_text() == "fp32\n"
    assert first.built == {"//p:raw", "//p:model", "//p:model@fp32", "//p:calibrate"}


def test_a_transition_setting_only_unread_groups_is_the_same_action(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/p/BUILD.yaml": PKG})
    mlb.ok("build", "//p:raw")
    again = mlb.ok("build", "//p:calibrate")
    assert "//p:raw" not in again.built and "//p:raw@cuda" not in again.events


def test_a_transitioned_dependency_shares_the_cache_with_a_direct_build(workspace):
    """engine's model@int8 under --config=fp32 is the model of --config=int8: one cache entry;
    and engine itself, whose transition pins precision, has one key for both."""
    mlb = workspace({"BUILD.yaml": ROOT, "targets/p/BUILD.yaml": PKG})
    mlb.ok("build", "//p:model", "--config=int8")
    engine = mlb.ok("build", "//p:engine")
    assert "//p:model@int8" in engine.hits and engine.built == {"//p:engine"}
    assert mlb.ok("build", "//p:engine", "--config=int8").built == set()
    assert mlb.key("fp32", "//p:engine") == mlb.key("int8", "//p:engine")


def test_one_target_under_several_transitions(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/p/BUILD.yaml": PKG})
    mlb.ok("build", "//p:runs")
    assert mlb.out("fp32", "//p:runs", "r.txt").read_text() == "Offline\nServer\n"


def test_query_shows_each_nodes_configuration(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/p/BUILD.yaml": PKG})
    lines = mlb.ok("query", "deps(//p:calibrate)", "--config=int8").stdout.splitlines()
    assert lines == ["//p:calibrate (precision=int8)", "//p:model (precision=int8)",
                     "//p:model@fp32 (precision=fp32)", "//p:raw"]
    rows = json.loads(mlb.ok("query", "deps(//p:runs)", "--output", "json").stdout)
    assert {r["label"]: r["configuration"] for r in rows}["//p:bench@Server"] == {"scenario": "Server"}


def test_bad_transitions_are_located_errors(workspace):
    cases = {
        "{target: ':raw', config: [device=tpu]}": "unknown value 'tpu'",
        "{target: ':raw', config: [colour=red]}": "unknown config group 'colour'",
        "{target: ':raw', config: []}": "sets no config values",
        "{target: ':raw', confg: [int8]}": "did you mean 'config'",
    }
    mlb = workspace({"BUILD.yaml": ROOT, "targets/p/BUILD.yaml": PKG})
    for entry, message in cases.items():
        mlb.write({"targets/q/BUILD.yaml": f"x: {{rule: command, deps: [{entry}], outs: [o], cmd: 'true'}}\n"
                                            "raw: {rule: command, outs: [o], cmd: 'touch {{out}}'}\n"})
        result = mlb("build", "//q:x")
        assert result.code == 3 and message in result.stderr, (entry, str(result))
        assert result.stderr.startswith("targets/q/BUILD.yaml:1:") and not result.built


def test_a_transition_cycle_is_reported_as_a_path(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/q/BUILD.yaml": """\
a: {rule: command, deps: [{target: ":b", config: [int8]}], outs: [o], cmd: 'true'}
b: {rule: command, deps: [{target: ":a", config: [fp32]}], outs: [o], cmd: 'true'}
"""})
    result = mlb("build", "//q:a")
    assert result.code == 3 and "dependency cycle: //q:a -> //q:b -> //q:a" in result.stderr, str(result)
    assert "targets/q/BUILD.yaml:2:" in result.stderr
