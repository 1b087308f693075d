"""Analysis: the groups a target reads, trimming, groups in deps, resources, deep graphs.

Each test here reproduces a bug of issue 7 that analysis had: it fails on the code before it.
"""

from __future__ import annotations

import json

from mlbuild.analysis.analyzer import Analyzer
from mlbuild.analysis.fingerprint import DeclaredToolchains, fingerprints
from mlbuild.loading.labels import Label
from mlbuild.loading.workspace import Workspace
from mlbuild.toolchains import ToolchainRegistry

ROOT = """\
workspace: {name: t}
config:
  device: {default: cpu, values: {cpu: {}, cuda: {env: {DEV: cuda}}}}
  framework: {default: ort, values: {ort: {}, tf: {}}}
  scenario: {default: Offline, values: {Offline: {}, Server: {}}}
  threads: {type: int, default: 2}
config_rules:
  combinations:
    - when: [framework=ort, device=cuda]
      env: {ORT_PROVIDER: CUDAExecutionProvider}
"""


def test_combination_env_reaches_only_targets_reading_all_its_groups(workspace):
    """A dataset reading only `framework` is one cache entry for cpu and cuda."""
    mlb = workspace({"BUILD.yaml": ROOT, "targets/d/BUILD.yaml": """\
data: {rule: command, configs: [framework], outs: [o.txt], cmd: 'echo "$ORT_PROVIDER" > {{out}}'}
both: {rule: command, configs: [framework, device], outs: [o.txt], cmd: 'echo "$ORT_PROVIDER" > {{out}}'}
"""})
    mlb.ok("build", "//d/...")
    cuda = mlb.ok("build", "//d/...", "--config=cuda")
    assert cuda.built == {"//d:both"}, cuda.stderr
    assert mlb.key("cpu", "//d:data") == mlb.key("cuda", "//d:data")
    assert mlb.out("cuda", "//d:both", "o.txt").read_text() == "CUDAExecutionProvider\n"


def test_a_rule_default_that_reads_a_group_counts(workspace):
    """bench's default `scenario: {{config:scenario}}` reads `scenario`, so the toolchain the
    Server value requires is resolved (and missing here) before anything runs."""
    root = ROOT.replace("Server: {}", "Server: {toolchains: [nothere]}")
    mlb = workspace({"BUILD.yaml": root, "targets/b/BUILD.yaml": """\
bench: {rule: bench, engine: ":e", dataset: ":d x.npz", toolchain: python, model_name: resnet50, run_style: test, modes: [performance], deps: [":e", ":d"]}
e: {rule: command, outs: [m.onnx], cmd: "touch {{out}}"}
d: {rule: command, outs: [x.npz], cmd: "touch {{out}}"}
""", "toolchains/host.yaml": "python: {kind: python}\nnothere: {kind: tool, binary: mlbuild-test-no-such-tool}\n"})
    result = mlb("build", "//b:bench", "--config=Server")
    assert result.code == 4, str(result)
    assert "'nothere'" in result.stderr and "scenario=Server" in result.stderr and not result.built
    rows = {r["label"]: r for r in json.loads(mlb.ok("query", "//b:bench", "--output", "json").stdout)}
    assert rows["//b:bench"]["reads_config"] == ["scenario"]


def test_a_group_target_in_deps_stages_its_members(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/g/BUILD.yaml": """\
one: {rule: command, outs: [1.txt], cmd: "echo one > {{out}}"}
two: {rule: command, outs: [2.txt], cmd: "echo two > {{out}}"}
both: {rule: group, deps: [":one", ":two"]}
dirs: {rule: command, deps: [":both"], outs: [d.txt], cmd: "echo {{dep::both}} > {{out}}; cat out/g/one/1.txt >> {{out}}"}
"""})
    mlb.ok("build", "//g:dirs")
    assert mlb.out("cpu", "//g:dirs", "d.txt").read_text() == "out/g/one out/g/two\none\n"


def test_resources_take_placeholders_and_reject_bad_values(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/r/BUILD.yaml": """\
ok: {rule: command, resources: {cpus: "{{config:threads}}"}, outs: [t.txt], cmd: "echo $OMP_NUM_THREADS > {{out}}"}
"""})
    mlb.ok("build", "//r:ok", "--config=threads=1")
    assert mlb.out("threads=1", "//r:ok", "t.txt").read_text() == "1\n"
    mlb.write({"targets/r/BUILD.yaml": "bad: {rule: command, resources: {cpus: four}, outs: [t], cmd: 'true'}\n"})
    bad = mlb("build", "//r:bad")
    assert bad.code == 3, str(bad)
    assert "targets/r/BUILD.yaml:1:" in bad.stderr and "cpus" in bad.stderr and "Traceback" not in bad.stderr


def test_a_typo_in_a_values_toolchains_is_an_error_at_the_value(workspace):
    root = ROOT.replace("cuda: {env: {DEV: cuda}}", "cuda: {toolchains: [cudaa]}")
    mlb = workspace({"BUILD.yaml": root, "toolchains/host.yaml": "cuda: {kind: cuda}\n",
                     "targets/p/BUILD.yaml": "x: {rule: command, outs: [o], cmd: 'touch {{out}}'}\n"})
    for args in (["config", "list"], ["build", "//p:x"]):
        result = mlb(*args)
        assert result.code == 3, str(result)
        assert "BUILD.yaml:3:" in result.stderr and "'cudaa'" in result.stderr and "did you mean 'cuda'" in result.stderr


def test_a_chain_1500_deep_analyzes_and_fingerprints(tmp_path):
    depth = 1500
    lines = ["t0: {rule: command, outs: [o], cmd: 'touch {{out}}'}"]
    lines += [f"t{i}: {{rule: command, deps: [':t{i - 1}'], outs: [o], cmd: 'touch {{{{out}}}}'}}" for i in range(1, depth)]
    (tmp_path / "targets" / "c").mkdir(parents=True)
    (tmp_path / "targets" / "c" / "BUILD.yaml").write_text("\n".join(lines) + "\n")
    (tmp_path / "BUILD.yaml").write_text(ROOT)
    workspace = Workspace(tmp_path)
    configuration = workspace.configs.resolve([])
    registry = ToolchainRegistry(workspace.toolchain_decls, tmp_path / "cache")
    graph = Analyzer(workspace, configuration, DeclaredToolchains(registry)).analyze([Label("c", f"t{depth - 1}")])
    assert len(graph) == depth
    prints = fingerprints(workspace, graph)
    assert len(set(prints.values())) == depth  # each link's print covers the chain below it


def test_explain_against_config_names_what_differs_down_the_graph(workspace):
    mlb = workspace({"BUILD.yaml": ROOT, "targets/p/BUILD.yaml": """\
data: {rule: command, outs: [d.txt], cmd: "echo data > {{out}}"}
model: {rule: command, deps: [":data"], outs: [m.txt], cmd: "cat {{dep::data}} > {{out}}; echo {{config:framework}} >> {{out}}"}
check: {rule: command, deps: [":model"], configs: [device], outs: [c.txt], cmd: "cat {{dep::model}} > {{out}}"}
"""})
    text = mlb.ok("explain", "//p:check", "--config=tf", "--against-config=ort,cuda").stdout
    lines = text.splitlines()
    assert lines[0] == "//p:check: key differs between --config=tf and --config=ort,cuda:"
    assert any(line.startswith("  input changed: dep:out/p/model (") for line in lines[1:3])
    assert "//p:model (a dependency): key differs" in text and "echo tf >>" in text and "echo ort >>" in text
    assert "env variable added: DEV" in text  # check reads device: cuda's env reaches it
    same = mlb.ok("explain", "//p:data", "--config=tf", "--against-config=cuda").stdout
    assert "the same key" in same and "(device, framework)" in same
    assert not (mlb.root / "mlbuild-out").exists()  # nothing was built to answer
