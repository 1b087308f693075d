"""The action key (DESIGN §2): stable, order-independent, sensitive to exactly what can change
the result, and blind to display-only fields (label, mnemonic, resources, timeout, tags)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from mlbuild.actions import Action, Input, Resources, action_key, canonical_encoding
from mlbuild.hashing import digest_bytes

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10)
digests = st.binary(min_size=1, max_size=8).map(digest_bytes)
_lower = "abcdefghijklmnopqrstuvwxyz"
idents = st.text(alphabet=_lower, min_size=1, max_size=8)
paths = st.lists(st.text(alphabet=_lower + "0123456789_.", min_size=1, max_size=5), min_size=1, max_size=3).map(
    lambda parts: "/".join(["p" + parts[0], *parts[1:]]))
env_names = st.text(alphabet=_lower.upper() + "_0123456789", min_size=1, max_size=8).map(lambda s: "V" + s)
param_values = st.one_of(st.integers(-5, 5), text, st.booleans())


@st.composite
def actions(draw):
    inputs = draw(st.dictionaries(paths, st.tuples(digests, st.booleans()), max_size=6))
    action = Action(
        label=draw(st.sampled_from(["//a:x", "//b/c:y"])),
        mnemonic=draw(st.sampled_from(["Command", "Download"])),
        implementation=draw(st.sampled_from(["command/1", "python/1", "download/3"])),
        argv=tuple(draw(st.lists(text, min_size=1, max_size=5))),
        env=tuple(draw(st.dictionaries(env_names, text, max_size=5)).items()),
        sources=tuple((p, f"targets/{p}") for p in inputs),
        outputs=tuple(draw(st.lists(paths, unique=True, max_size=4))),
        output_dirs=tuple(draw(st.lists(paths.map(lambda p: p + "_d"), unique=True, max_size=2))),
        toolchains=tuple(draw(st.dictionaries(idents, digests, max_size=3)).items()),
        params=tuple(draw(st.dictionaries(idents, param_values, max_size=3)).items()),
        resources=Resources(cpus=draw(st.sampled_from([1.0, 2.0])), gpus=draw(st.integers(0, 2))),
        timeout_s=draw(st.sampled_from([None, 5.0])),
        tags=tuple(draw(st.lists(idents, max_size=2))),
    )
    return action, [Input(p, d, x) for p, (d, x) in inputs.items()]


def _changed(value: str) -> str:
    return value + "x"


def mutate(kind: str, action: Action, inputs: list[Input], data) -> tuple[Action, list[Input]]:
    """One change to one key component, or None when it cannot apply to this action."""
    r = dataclasses.replace
    if kind == "argv_element":
        i = data.draw(st.integers(0, len(action.argv) - 1))
        argv = list(action.argv)
        argv[i] = _changed(argv[i])
        return r(action, argv=tuple(argv)), inputs
    if kind == "argv_append":
        return r(action, argv=action.argv + (data.draw(text),)), inputs
    if kind == "argv_order":
        if len(set(action.argv)) < 2:
            return None
        argv = list(action.argv)
        i = next(j for j in range(1, len(argv)) if argv[j] != argv[0])
        argv[0], argv[i] = argv[i], argv[0]
        return r(action, argv=tuple(argv)), inputs
    if kind == "env_value":
        if not action.env:
            return None
        i = data.draw(st.integers(0, len(action.env) - 1))
        env = list(action.env)
        env[i] = (env[i][0], _changed(env[i][1]))
        return r(action, env=tuple(env)), inputs
    if kind == "env_name":
        if not action.env:
            return None
        names = dict(action.env)
        i = data.draw(st.integers(0, len(action.env) - 1))
        new = action.env[i][0] + "X"
        if new in names:
            return None
        env = list(action.env)
        env[i] = (new, env[i][1])
        return r(action, env=tuple(env)), inputs
    if kind == "env_add":
        name = data.draw(env_names)
        if name in dict(action.env):
            return None
        return r(action, env=action.env + ((name, data.draw(text)),)), inputs
    if kind == "input_digest":
        if not inputs:
            return None
        i = data.draw(st.integers(0, len(inputs) - 1))
        changed = list(inputs)
        changed[i] = r(changed[i], digest=digest_bytes(changed[i].digest.encode()))
        return action, changed
    if kind == "input_path":
        if not inputs:
            return None
        i = data.draw(st.integers(0, len(inputs) - 1))
        new = _changed(inputs[i].path)
        if new in {x.path for x in inputs}:
            return None
        changed = list(inputs)
        changed[i] = r(changed[i], path=new)
        return action, changed
    if kind == "input_executable":
        if not inputs:
            return None
        i = data.draw(st.integers(0, len(inputs) - 1))
        changed = list(inputs)
        changed[i] = r(changed[i], executable=not changed[i].executable)
        return action, changed
    if kind == "input_add":
        path = data.draw(paths)
        if path in {x.path for x in inputs}:
            return None
        return action, inputs + [Input(path, data.draw(digests))]
    if kind == "input_remove":
        if not inputs:
            return None
        return action, inputs[1:]
    if kind == "output_add":
        path = data.draw(paths)
        if path in action.outputs:
            return None
        return r(action, outputs=action.outputs + (path,)), inputs
    if kind == "output_rename":
        if not action.outputs:
            return None
        new = _changed(action.outputs[0])
        if new in action.outputs:
            return None
        return r(action, outputs=(new,) + action.outputs[1:]), inputs
    if kind == "output_dir_add":
        path = data.draw(paths)
        if path in action.output_dirs:
            return None
        return r(action, output_dirs=action.output_dirs + (path,)), inputs
    if kind == "toolchain_fingerprint":
        if not action.toolchains:
            return None
        name, digest = action.toolchains[0]
        return r(action, toolchains=((name, digest_bytes(digest.encode())),) + action.toolchains[1:]), inputs
    if kind == "toolchain_add":
        name = data.draw(idents)
        if name in dict(action.toolchains):
            return None
        return r(action, toolchains=action.toolchains + ((name, data.draw(digests)),)), inputs
    if kind == "implementation_version":
        rule, _, version = action.implementation.partition("/")
        return r(action, implementation=f"{rule}/{int(version) + 1}"), inputs
    if kind == "executor":
        return r(action, executor="ray"), inputs
    if kind == "params_value":
        if not action.params:
            return None
        name, value = action.params[0]
        new = data.draw(param_values)
        if json.dumps(new) == json.dumps(value):
            return None
        return r(action, params=((name, new),) + action.params[1:]), inputs
    if kind == "params_add":
        name = data.draw(idents)
        if name in dict(action.params):
            return None
        return r(action, params=action.params + ((name, data.draw(param_values)),)), inputs
    raise AssertionError(kind)


MUTATIONS = [
    "argv_element", "argv_append", "argv_order", "env_value", "env_name", "env_add",
    "input_digest", "input_path", "input_executable", "input_add", "input_remove",
    "output_add", "output_rename", "output_dir_add", "toolchain_fingerprint", "toolchain_add",
    "implementation_version", "executor", "params_value", "params_add",
]


@settings(max_examples=60)
@given(actions(), st.data())
def test_every_component_changes_the_key(pair, data):
    action, inputs = pair
    before = action_key(action, inputs)
    for kind in MUTATIONS:
        mutated = mutate(kind, action, inputs, data)
        if mutated is not None:
            assert action_key(*mutated) != before, kind


@settings(max_examples=20)
@given(st.data())
def test_every_mutation_applies_to_a_full_action(data):
    """Guard for the property above: no mutation is silently never exercised. The names below
    lie outside what the strategies draw, so no mutation can collide with them."""
    full = Action(label="//a:b", mnemonic="Command", implementation="command/1", argv=("x", "y"),
                  env=(("A", "1"),), outputs=("o",), output_dirs=("d",), toolchains=(("T", digest_bytes(b"t")),),
                  params=(("P", [1]),))
    inputs = [Input("i", digest_bytes(b"i"))]
    for kind in MUTATIONS:
        assert mutate(kind, full, inputs, data) is not None, kind


@given(actions(), st.randoms(use_true_random=False))
def test_key_ignores_ordering_of_env_inputs_outputs_toolchains_params(pair, rnd):
    action, inputs = pair

    def shuffled(items):
        items = list(items)
        rnd.shuffle(items)
        return tuple(items)

    reordered = dataclasses.replace(
        action, env=shuffled(action.env), outputs=shuffled(action.outputs),
        output_dirs=shuffled(action.output_dirs), toolchains=shuffled(action.toolchains),
        params=shuffled(action.params), sources=shuffled(action.sources),
    )
    assert action_key(reordered, list(shuffled(inputs))) == action_key(action, inputs)


@given(actions(), st.data())
def test_display_only_fields_do_not_change_the_key(pair, data):
    action, inputs = pair
    other = dataclasses.replace(
        action,
        label=data.draw(st.sampled_from(["//z:z", "//other/pkg:name"])),
        mnemonic=data.draw(st.sampled_from(["Bench", "Test", "Python"])),
        resources=Resources(cpus=data.draw(st.floats(0.5, 64)), gpus=data.draw(st.integers(0, 8)),
                            memory_mb=data.draw(st.integers(0, 10 ** 6)), exclusive=data.draw(st.booleans())),
        timeout_s=data.draw(st.one_of(st.none(), st.floats(0.1, 1e4))),
        tags=tuple(data.draw(st.lists(idents, max_size=3))),
        deps=tuple(data.draw(st.lists(st.sampled_from(["//a:b", "//c:d"]), max_size=2))),
        sources=tuple((p, f"elsewhere/{w}") for p, w in action.sources),
    )
    assert action_key(other, inputs) == action_key(action, inputs)


@given(actions())
def test_key_is_blake3_of_the_canonical_encoding(pair):
    action, inputs = pair
    components = action.key_components(inputs)
    assert action_key(action, inputs) == digest_bytes(canonical_encoding(components))
    # The encoding does not depend on the insertion order of the components mapping.
    assert canonical_encoding(dict(reversed(list(components.items())))) == canonical_encoding(components)
    json.loads(canonical_encoding(components))  # and it is plain JSON


def test_field_boundaries_are_unambiguous():
    base = Action(label="//a:b", mnemonic="Command", implementation="command/1", argv=("a", "b"))
    keys = {
        action_key(base, []),
        action_key(dataclasses.replace(base, argv=("a b",)), []),
        action_key(dataclasses.replace(base, argv=("ab",)), []),
        action_key(dataclasses.replace(base, env=(("A", "B=C"),)), []),
        action_key(dataclasses.replace(base, env=(("A=B", "C"),)), []),
        action_key(dataclasses.replace(base, outputs=("x",)), []),
        action_key(dataclasses.replace(base, output_dirs=("x",)), []),
        action_key(base, [Input("x", digest_bytes(b"1"))]),
        action_key(dataclasses.replace(base, params=(("n", 1),)), []),
        action_key(dataclasses.replace(base, params=(("n", "1"),)), []),
        action_key(dataclasses.replace(base, params=(("n", True),)), []),
    }
    assert len(keys) == 11


def _fixed_actions():
    rnd = random.Random(1234)
    found = []
    for i in range(6):
        inputs = [Input(f"targets/p/f{j}.txt", digest_bytes(bytes([i, j])), bool(rnd.getrandbits(1)))
                  for j in range(rnd.randint(0, 5))]
        env = {f"VAR_{rnd.randint(0, 99)}": "välue-" + str(rnd.random()) for _ in range(rnd.randint(0, 6))}
        found.append((Action(
            label=f"//p:t{i}", mnemonic="Command", implementation="command/1",
            argv=("/bin/bash", "-c", f"echo {i} > out/p/t{i}/o.txt ✓"),
            env=tuple(env.items()), outputs=(f"out/p/t{i}/o.txt",),
            toolchains=(("python", digest_bytes(b"py3.11")),), params=(("threads", i), ("mode", "x")),
        ), inputs))
    return found


_CHILD = """
import json, sys
from mlbuild.actions import Action, Input, action_key
for raw in json.load(sys.stdin):
    a = raw["action"]
    action = Action(label=a["label"], mnemonic=a["mnemonic"], implementation=a["implementation"],
                    argv=tuple(a["argv"]), env=tuple(map(tuple, a["env"])), outputs=tuple(a["outputs"]),
                    toolchains=tuple(map(tuple, a["toolchains"])), params=tuple(map(tuple, a["params"])))
    print(action_key(action, [Input(*i) for i in raw["inputs"]]))
"""


def test_key_is_stable_across_processes_and_hash_seeds():
    pairs = _fixed_actions()
    expected = [action_key(a, i) for a, i in pairs]
    payload = json.dumps([
        {"action": {"label": a.label, "mnemonic": a.mnemonic, "implementation": a.implementation,
                    "argv": a.argv, "env": a.env, "outputs": a.outputs, "toolchains": a.toolchains,
                    "params": a.params},
         "inputs": [[x.path, x.digest, x.executable] for x in reversed(inputs)]}
        for a, inputs in pairs
    ])
    for seed in ("1", "98765"):
        done = subprocess.run([sys.executable, "-c", _CHILD], input=payload, capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
        assert done.stdout.split() == expected
    assert len(set(expected)) == len(expected)
