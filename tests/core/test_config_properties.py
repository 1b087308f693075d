"""Properties of configurations (hypothesis), each against an independent oracle:

- select: the branch chosen (AND/OR/NOT conditions, most specific wins, true ties and
  incomparable matches are errors naming both) equals brute force over every configuration;
- trimming: a target's key never changes with a group it does not read, through combinations,
  forces and transitions;
- the resolved configuration does not depend on the order of --config tokens.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlbuild.analysis.analyzer import Analyzer
from mlbuild.analysis.fingerprint import DeclaredToolchains, fingerprints
from mlbuild.errors import BuildFileError, Location
from mlbuild.loading.labels import Label
from mlbuild.loading.select import resolve_selects
from mlbuild.loading.workspace import Workspace
from mlbuild.loading.yamlsource import LocatedDict
from mlbuild.toolchains import ToolchainRegistry

GROUPS = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"], "c": ["c0", "c1", "c2"]}
SMALL = "workspace: {name: t}\nconfig:\n" + "".join(
    f"  {g}: {{values: {{{', '.join(f'{v}: {{}}' for v in vs)}}}}}\n" for g, vs in GROUPS.items())


def _located(items: dict, marks=frozenset()) -> LocatedDict:
    mapping = LocatedDict(items)
    mapping.location = Location("t.yaml", 1, 1)
    mapping.key_locations = {key: Location("t.yaml", line, 5) for line, key in enumerate(items, start=2)}
    mapping.marks = marks
    return mapping


def _workspace(tmp_path_factory, root_build: str, packages: dict | None = None) -> Workspace:
    root = tmp_path_factory.mktemp("ws")
    (root / "targets").mkdir()
    for package, text in (packages or {}).items():
        (root / "targets" / package).mkdir()
        (root / "targets" / package / "BUILD.yaml").write_text(text)
    (root / "BUILD.yaml").write_text(root_build)
    return Workspace(root)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _workspace(tmp_path_factory, SMALL).configs


# A term: (group, negated, values); a condition: terms on distinct groups.
terms = st.sampled_from(sorted(GROUPS)).flatmap(lambda g: st.tuples(
    st.just(g), st.booleans(), st.lists(st.sampled_from(GROUPS[g]), min_size=1, max_size=2, unique=True)))
conditions = st.lists(terms, min_size=1, max_size=3, unique_by=lambda t: t[0])


def _spell(condition) -> str:
    return ",".join(f"{g}{'!=' if negated else '='}{'|'.join(values)}" for g, negated, values in condition)


def _satisfying(condition) -> frozenset:
    everything = itertools.product(*GROUPS.values())
    return frozenset(point for point in everything
                     if all((point[list(GROUPS).index(g)] in values) != negated for g, negated, values in condition))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(branches=st.lists(conditions, min_size=1, max_size=5, unique_by=_spell),
       point=st.tuples(*(st.sampled_from(vs) for vs in GROUPS.values())))
def test_select_chooses_what_brute_force_chooses(small, branches, point):
    texts = [_spell(c) for c in branches]
    select = _located({"select": _located({**{t: t for t in texts}, "default": "default"})}, frozenset({"select"}))
    sat = {t: _satisfying(c) for t, c in zip(texts, branches)}
    matches = [t for t in texts if point in sat[t]]
    best = [t for t in matches if all(sat[t] <= sat[o] for o in matches)]
    configuration = small.resolve([f"{g}={v}" for g, v in zip(GROUPS, point)])
    try:
        chosen = resolve_selects(_located({"v": select}), small, configuration, set())["v"]
    except BuildFileError as error:
        text = str(error)
        if any(not s for s in sat.values()):
            assert "can never hold" in text
            return
        assert matches and len(best) != 1, text
        named = [t for t in matches if f"'{t}'" in text]
        assert len(named) == 2, text  # both branches of the tie are named
        return
    assert all(sat.values())
    assert chosen == (best[0] if len(best) == 1 else "default" if not matches else None)


TRIM_ROOT = """\
workspace: {name: t}
config:
  framework: {default: ort, values: {ort: {}, tf: {}, tensorflow: {alias: tf}}}
  device: {default: cpu, values: {cpu: {}, cuda: {}}}
  model: {default: resnet50, values: {resnet50: {}, retinanet: {forces: [batch_size=1]}}}
  batch_size: {type: int, default: 8, env: {BATCH: "{{config:batch_size}}"}}
  scenario: {default: Offline, values: {Offline: {}, Server: {}}}
config_rules:
  combinations:
    - when: [framework=ort, device=cuda]
      env: {PROVIDER: cuda}
"""
TRIM_PKG = """\
plain: {rule: command, outs: [o], cmd: "touch {{out}}"}
fw: {rule: command, deps: [":plain"], outs: [o], cmd: "echo {{config:framework}} > {{out}}"}
both: {rule: command, configs: [framework, device], outs: [o], cmd: "touch {{out}}"}
batched: {rule: command, configs: [batch_size], outs: [o], cmd: "touch {{out}}"}
pinned: {rule: command, deps: [{target: ":fw", config: [tf]}, {target: ":batched", config: [scenario=Server]}], outs: [o], cmd: "touch {{out}}"}
top:
  rule: command
  deps: [":pinned", {select: {device=cuda: [":both"], default: []}}]
  outs: [o]
  cmd: "touch {{out}}"
"""
# What each target reads, itself and through its dependencies, as a user would say it.
READS = {"plain": set(), "fw": {"framework"}, "both": {"framework", "device"}, "batched": {"batch_size"},
         "pinned": {"batch_size"}, "top": {"device", "batch_size", "framework"}}
TOKENS = ["framework=ort", "framework=tf", "tensorflow", "cuda", "cpu", "retinanet", "resnet50",
          "batch_size=1", "batch_size=8", "batch_size=16", "Offline", "Server"]


@pytest.fixture(scope="module")
def trim_workspace(tmp_path_factory):
    return _workspace(tmp_path_factory, TRIM_ROOT, {"p": TRIM_PKG})


def _prints(workspace, configuration) -> dict:
    registry = ToolchainRegistry(workspace.toolchain_decls, workspace.root / "cache")
    analyzer = Analyzer(workspace, configuration, DeclaredToolchains(registry))
    graph = analyzer.analyze([Label("p", name) for name in READS])
    prints = fingerprints(workspace, graph)
    return {name: prints[Label("p", name)] for name in READS}


def _one_per_group(schema, tokens):
    chosen = {}
    for token in tokens:
        chosen.setdefault(schema.resolve_ref(token)[0], token)
    return list(chosen.values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(st.sampled_from(TOKENS), max_size=5), second=st.lists(st.sampled_from(TOKENS), max_size=5))
def test_a_key_never_changes_with_a_group_the_target_does_not_read(trim_workspace, first, second):
    schema = trim_workspace.configs
    one = schema.resolve(_one_per_group(schema, first))
    two = schema.resolve(_one_per_group(schema, second))
    prints_one, prints_two = _prints(trim_workspace, one), _prints(trim_workspace, two)
    for name, reads in READS.items():
        if all(one[g] == two[g] for g in reads):
            assert prints_one[name] == prints_two[name], (name, one.describe(), two.describe())
    if one["framework"] != two["framework"]:  # not vacuous: a read group does change the key
        assert prints_one["fw"] != prints_two["fw"]


ORDER_ROOT = TRIM_ROOT.replace("config_rules:", """\
  precision: {default: fp32, values: {fp32: {}, int8: {implies: [calib=with]}, quantized: {alias: int8}}}
  calib: {default: without, values: {without: {}, with: {}}}
  dataset: {default: imagenet, values: {imagenet: {}, coco: {}}}
  task: {default: classify, values: {classify: {}, detect: {defaults: [dataset=coco], implies: [precision=fp32]}}}
config_rules:
  bundles:
    fast: [int8, batch_size=16]""")
ORDER_TOKENS = TOKENS + ["int8", "quantized", "fp32", "calib=with", "calib=without", "coco", "imagenet",
                         "detect", "classify", "fast"]


@pytest.fixture(scope="module")
def order_schema(tmp_path_factory):
    return _workspace(tmp_path_factory, ORDER_ROOT).configs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_resolved_configuration_does_not_depend_on_token_order(order_schema, data):
    tokens = data.draw(st.lists(st.sampled_from(ORDER_TOKENS), max_size=6))
    shuffled = data.draw(st.permutations(tokens))

    def outcome(order):
        try:
            configuration = order_schema.resolve(list(order))
        except BuildFileError as error:
            return ("error", error.message.split(":")[0])
        return (configuration.values, configuration.name, configuration.origins)

    assert outcome(tokens) == outcome(shuffled)
