"""Configurations (DESIGN §3): groups, parametric values, implies, combinations,
incompatibilities, bundles, command-line tokens, and `select`."""

from __future__ import annotations

import textwrap

import pytest

from mlbuild.errors import BuildFileError
from mlbuild.loading.configs import Configuration
from mlbuild.loading.select import resolve_selects
from mlbuild.loading.workspace import Workspace
from mlbuild.loading.yamlsource import load_yaml

SCHEMA = """\
workspace: {name: t}
config:
  device:
    default: cpu
    values:
      cpu: {}
      gpu_sim: {env: {SIM: "1"}}
  precision:
    default: fp32
    values:
      fp32: {}
      int8: {implies: [calib=with]}
      int4: {implies: [int8_kernels]}
  kernels:
    default: generic
    values: {generic: {}, int8_kernels: {implies: [device=gpu_sim]}}
  calib:
    default: without
    values: {without: {}, with: {}}
  batch_size: {type: int, default: 1}
  threshold: {type: float, default: 0.5}
  verbose: {type: bool, default: false}
  model: {type: str, default: resnet50}
  scenario: {default: offline, values: {offline: {}, server: {}}}
  mode: {default: relaxed, values: {relaxed: {}, strict: {implies: [scenario=server]}}}
  a: {default: fast, values: {fast: {}, slow: {}}}
  b: {default: fast, values: {fast: {}, careful: {}}}
config_rules:
  combinations:
    - when: [device=gpu_sim, precision=int8]
      env: {TRT_INT8: "1"}
  incompatible:
    - [device=cpu, scenario=server]
  bundles:
    sim_int8: [gpu_sim, int8]
    big_sim: [device=gpu_sim, batch_size=64]
"""


def load(tmp_path, root_build: str = SCHEMA) -> Workspace:
    (tmp_path / "targets").mkdir(exist_ok=True)
    (tmp_path / "BUILD.yaml").write_text(root_build)
    return Workspace(tmp_path)


@pytest.fixture
def schema(tmp_path):
    return load(tmp_path).configs


def values(configuration: Configuration) -> dict:
    return dict(configuration.values)


# -- groups, defaults, parametric values --------------------------------------------------------

def test_defaults(schema):
    assert values(schema.resolve([])) == {
        "device": "cpu", "precision": "fp32", "kernels": "generic", "calib": "without",
        "batch_size": 1, "threshold": 0.5, "verbose": False, "model": "resnet50",
        "scenario": "offline", "mode": "relaxed", "a": "fast", "b": "fast",
    }


def test_bare_and_qualified_values(schema):
    assert schema.resolve(["gpu_sim"])["device"] == "gpu_sim"
    assert schema.resolve(["device=gpu_sim"])["device"] == "gpu_sim"


@pytest.mark.parametrize("token, group, value", [
    ("batch_size=8", "batch_size", 8),
    ("threshold=0.25", "threshold", 0.25),
    ("verbose=true", "verbose", True),
    ("verbose=0", "verbose", False),
    ("model=bert-large", "model", "bert-large"),
])
def test_parametric_values_are_typed(schema, token, group, value):
    got = schema.resolve([token])[group]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("token, message", [
    ("batch_size=eight", "takes a int"),
    ("batch_size=1.5", "takes a int"),
    ("threshold=high", "takes a float"),
    ("verbose=maybe", "takes a bool"),
])
def test_parametric_bad_type_is_an_error(schema, token, message):
    with pytest.raises(BuildFileError, match=message) as info:
        schema.resolve([token])
    assert token.split("=")[1] in str(info.value)


def test_parametric_default_must_have_the_declared_type(tmp_path):
    """A typed group's default is checked up front like a --config value would be."""
    with pytest.raises(BuildFileError, match="batch_size"):
        load(tmp_path, "config:\n  batch_size: {type: int, default: lots}\n")


def test_parametric_group_without_default_needs_a_value(tmp_path):
    schema = load(tmp_path, "config:\n  seed: {type: int}\n").configs
    with pytest.raises(BuildFileError, match="seed"):
        schema.resolve([])
    assert schema.resolve(["seed=3"])["seed"] == 3


def test_exclusive_values_with_dashes_get_distinct_output_names(tmp_path):
    schema = load(tmp_path, "config:\n  x: {values: {d: {}, a-b: {}, a: {}}}\n  y: {values: {d2: {}, c: {}, b-c: {}}}\n").configs
    one, two = schema.resolve(["a-b", "c"]), schema.resolve(["a", "b-c"])
    assert one != two
    assert one.name != two.name


def test_configuration_names_are_stable_and_distinct(schema):
    cpu, sim = schema.resolve([]), schema.resolve(["gpu_sim"])
    assert cpu.name == schema.resolve(["cpu"]).name
    assert cpu.name != sim.name
    for name in (cpu.name, sim.name, schema.resolve(["model=a/b c"]).name):
        assert "/" not in name and " " not in name and name not in ("", ".", "..")


@pytest.mark.parametrize("first, second", [
    (["model=a/b"], ["model=a_b"]),
    (["model=x y"], ["model=x_y"]),
])
def test_distinct_configurations_get_distinct_output_names(schema, first, second):
    """Outputs of two configurations must coexist, so their directory names must differ."""
    one, two = schema.resolve(first), schema.resolve(second)
    assert one != two
    assert one.name != two.name


# -- implies -------------------------------------------------------------------------------

def test_implies(schema):
    config = schema.resolve(["int8"])
    assert config["calib"] == "with"


def test_implies_chains(schema):
    config = schema.resolve(["int4", "gpu_sim"])
    assert (config["kernels"], config["device"]) == ("int8_kernels", "gpu_sim")
    # int4 -> int8_kernels -> device=gpu_sim, so the cpu default yields instead of conflicting.
    assert schema.resolve(["int4"])["device"] == "gpu_sim"


def test_implication_conflicting_with_explicit_choice_is_an_error(schema):
    with pytest.raises(BuildFileError) as info:
        schema.resolve(["int8", "calib=without"])
    text = str(info.value)
    assert "calib=with" in text and "calib=without" in text and "int8" in text


def test_default_value_implications_hold(tmp_path):
    """A value implies others whether it was chosen explicitly or is its group's default."""
    schema = load(tmp_path, SCHEMA.replace("default: fp32", "default: int8")).configs
    config = schema.resolve(["gpu_sim"])
    assert config["precision"] == "int8"
    assert config["calib"] == "with"


def test_same_group_twice_is_an_error(schema):
    with pytest.raises(BuildFileError, match="twice"):
        schema.resolve(["cpu", "gpu_sim"])
    assert schema.resolve(["cpu", "device=cpu"])["device"] == "cpu"


# -- combinations, incompatibilities, bundles -----------------------------------------------

def test_combination_settings_apply_only_when_all_values_hold(schema):
    def env_for(tokens, groups):
        config = schema.resolve(tokens)
        env = {}
        for _, settings in schema.settings_for(config, frozenset(groups)):
            env.update(settings.env)
        return env

    assert env_for(["gpu_sim", "int8"], {"device", "precision"}) == {"SIM": "1", "TRT_INT8": "1"}
    # A target reading only one of the combination's groups does not get its env: its key
    # must not change with the group it does not read (the trimming bug of issue 7).
    assert env_for(["gpu_sim", "int8"], {"device"}) == {"SIM": "1"}
    assert env_for(["gpu_sim"], {"device"}) == {"SIM": "1"}
    assert env_for(["int8"], {"precision"}) == {}
    # A target that reads neither group gets nothing from them.
    assert env_for(["gpu_sim", "int8"], {"batch_size"}) == {}


def test_combination_implies(tmp_path):
    text = SCHEMA.replace("      env: {TRT_INT8: \"1\"}", "      implies: [batch_size=32]")
    schema = load(tmp_path, text).configs
    assert schema.resolve(["gpu_sim", "int8"])["batch_size"] == 32
    assert schema.resolve(["gpu_sim"])["batch_size"] == 1


@pytest.mark.parametrize("tokens", [["cpu", "server"], ["scenario=server"], ["strict"]])
def test_incompatible_combination_names_both_values(schema, tokens):
    # explicit, with a default, and reached through an implication (strict -> scenario=server)
    with pytest.raises(BuildFileError) as info:
        schema.resolve(tokens)
    text = str(info.value)
    assert "incompatible" in text and "device=cpu" in text and "scenario=server" in text
    assert "BUILD.yaml" in text  # where the rule was declared
    assert schema.resolve(["gpu_sim", *(t for t in tokens if t != "cpu")])["scenario"] == "server"


def test_incompatible_default_combination_is_caught(tmp_path):
    schema = load(tmp_path, SCHEMA.replace("[device=cpu, scenario=server]", "[device=cpu, scenario=offline]")).configs
    with pytest.raises(BuildFileError, match="incompatible"):
        schema.resolve([])
    assert schema.resolve(["gpu_sim"])["device"] == "gpu_sim"


def test_bundles(schema):
    config = schema.resolve(["sim_int8"])
    assert (config["device"], config["precision"], config["calib"]) == ("gpu_sim", "int8", "with")
    config = schema.resolve(["big_sim", "int8"])
    assert (config["device"], config["batch_size"], config["precision"]) == ("gpu_sim", 64, "int8")
    with pytest.raises(BuildFileError, match="twice"):
        schema.resolve(["sim_int8", "cpu"])


def test_bundles_can_include_bundles(tmp_path):
    """`_expand_bundles` expands bundles recursively (and guards against self-inclusion), so a
    bundle naming another bundle must be declarable."""
    text = SCHEMA.replace("big_sim: [device=gpu_sim, batch_size=64]", "everything: [sim_int8, batch_size=64]")
    schema = load(tmp_path, text).configs
    config = schema.resolve(["everything"])
    assert (config["device"], config["precision"], config["calib"], config["batch_size"]) == (
        "gpu_sim", "int8", "with", 64)


def test_self_including_bundle_is_an_error(tmp_path):
    text = SCHEMA.replace("big_sim: [device=gpu_sim, batch_size=64]", "everything: [sim_int8, loop]\n    loop: [everything]")
    with pytest.raises(BuildFileError, match="includes itself"):
        load(tmp_path, text).configs.resolve(["everything"])


# -- bad tokens and bad declarations ---------------------------------------------------------

def test_unknown_value_lists_the_valid_ones(schema):
    with pytest.raises(BuildFileError) as info:
        schema.resolve(["device=tpu"])
    assert "unknown value 'tpu'" in str(info.value)
    assert "cpu, gpu_sim" in str(info.value)


def test_unknown_bare_value_lists_the_valid_ones(schema):
    with pytest.raises(BuildFileError) as info:
        schema.resolve(["quantum"])
    text = str(info.value)
    assert "unknown config value 'quantum'" in text
    assert "device: cpu, gpu_sim" in text and "batch_size: int" in text


def test_misspelled_value_gets_did_you_mean(schema):
    with pytest.raises(BuildFileError, match="did you mean 'gpu_sim'"):
        schema.resolve(["gpu_sm"])


def test_unknown_group_gets_did_you_mean(schema):
    with pytest.raises(BuildFileError, match="did you mean 'device'"):
        schema.resolve(["devic=cpu"])


def test_ambiguous_bare_value(schema):
    with pytest.raises(BuildFileError) as info:
        schema.resolve(["fast"])
    text = str(info.value)
    assert "ambiguous" in text and "a=fast" in text and "b=fast" in text
    assert schema.resolve(["b=fast", "a=slow"])["a"] == "slow"


@pytest.mark.parametrize("text, message", [
    ("config:\n  g: {values: {x: {}}, defualt: x}\n", "unknown key 'defualt'"),
    ("config:\n  g: {default: z, values: {x: {}, y: {}}}\n", "default 'z'"),
    ("config:\n  g: {values: {}}\n", "has no values"),
    ("config:\n  g: {type: complex}\n", "key 'type': expected one of int, float, str, bool, got the string 'complex'"),
    ("config:\n  g: {type: int, values: {x: {}}}\n", "cannot list values"),
    ("config:\n  g: {values: {x: {implies: [h=nope]}}}\n", "unknown config group 'h'"),
    ("config:\n  g: {values: {x: {envv: {}}}}\n", "unknown key 'envv'"),
    ("config:\n  g: {values: {x: {}}}\nconfig_rules:\n  incompatible: [[g=y]]\n", "unknown value 'y'"),
    ("config:\n  g: {values: {x: {}}}\nconfig_rules:\n  bundles: {b: [nope]}\n", "unknown config value 'nope'"),
    ("config:\n  g: {values: {x: {}}}\nconfig_rule: {}\n", "did you mean 'config_rules'"),
])
def test_bad_declarations_are_located_errors(tmp_path, text, message):
    with pytest.raises(BuildFileError, match=message) as info:
        load(tmp_path, text)
    assert str(info.value).startswith("BUILD.yaml:")


# -- select --------------------------------------------------------------------------------

def _select(tmp_path, body: str, schema, tokens):
    path = tmp_path / "attr.yaml"
    path.write_text(textwrap.dedent(body))
    doc = load_yaml(path, "attr.yaml")
    groups_read: set = set()
    return resolve_selects(doc, schema, schema.resolve(tokens), groups_read)["value"], groups_read


SELECT = """\
value:
  select:
    device=gpu_sim: sim
    device=gpu_sim,precision=int8: sim_int8
    default: other
"""


@pytest.mark.parametrize("tokens, expected", [
    ([], "other"),
    (["gpu_sim"], "sim"),
    (["gpu_sim", "int8"], "sim_int8"),
    (["int8"], "other"),
])
def test_select_most_specific_match_wins(tmp_path, schema, tokens, expected):
    value, groups_read = _select(tmp_path, SELECT, schema, tokens)
    assert value == expected
    assert groups_read == {"device", "precision"}


def test_select_most_specific_wins_whatever_the_order(tmp_path, schema):
    body = """\
    value:
      select:
        device=gpu_sim: sim
        precision=int8: int8
        device=gpu_sim,precision=int8: both
        default: other
    """
    assert _select(tmp_path, body, schema, ["gpu_sim", "int8"])[0] == "both"
    assert _select(tmp_path, body, schema, ["int8"])[0] == "int8"


def test_select_equally_specific_matches_are_ambiguous(tmp_path, schema):
    body = """\
    value:
      select:
        device=gpu_sim: sim
        precision=int8: int8
        default: other
    """
    with pytest.raises(BuildFileError) as info:
        _select(tmp_path, body, schema, ["gpu_sim", "int8"])
    text = str(info.value)
    assert "ambiguous" in text and "device=gpu_sim" in text and "precision=int8" in text
    assert text.startswith("attr.yaml:")


def test_select_without_match_or_default_is_an_error(tmp_path, schema):
    body = "value:\n  select:\n    gpu_sim: sim\n"
    with pytest.raises(BuildFileError, match="no select branch matches"):
        _select(tmp_path, body, schema, [])


def test_select_in_a_list_is_a_conditional_part_spliced_in(tmp_path, schema):
    body = """\
    value:
      - always
      - select:
          batch_size=8: [eight, more]
          batch_size=16: sixteen
          default: []
    """
    assert _select(tmp_path, body, schema, ["batch_size=8"])[0] == ["always", "eight", "more"]
    assert _select(tmp_path, body, schema, ["batch_size=16"])[0] == ["always", "sixteen"]
    value, groups_read = _select(tmp_path, body, schema, [])
    assert value == ["always"] and groups_read == {"batch_size"}


def test_select_with_unknown_condition_is_an_error(tmp_path, schema):
    body = "value:\n  select:\n    device=tpu: x\n    default: y\n"
    with pytest.raises(BuildFileError, match="unknown value 'tpu'"):
        _select(tmp_path, body, schema, [])


# -- the rest of CM's variation language (issue 7) ---------------------------------------------

CM = """\
workspace: {name: t}
config:
  framework:
    default: onnxruntime
    values:
      onnxruntime: {env: {CM_MLPERF_BACKEND: onnxruntime}}
      tf: {env: {CM_MLPERF_BACKEND: tf}}
      tensorflow: {alias: tf}
  precision:
    default: fp32
    values: {fp32: {}, int8: {}, quantized: {alias: int8}}
  model:
    default: resnet50
    values:
      resnet50: {}
      retinanet: {forces: [batch_size=1], defaults: [dataset=openimages]}
      bert-99: {defaults: [precision=int8]}
  dataset: {default: imagenet, values: {imagenet: {}, openimages: {}}}
  batch_size:
    type: int
    default: 8
    env: {CM_MLPERF_LOADGEN_MAX_BATCHSIZE: "{{config:batch_size}}"}
  threads: {type: int, default: 4}
  device:
    default: cpu
    values:
      cpu: {}
      cuda: {env: {CUDA_THREADS: "{{config:threads}}"}, forces: [dataset=imagenet]}
"""


@pytest.fixture
def cm(tmp_path):
    return load(tmp_path, CM).configs


def test_aliases_stand_for_their_value_everywhere(cm):
    assert cm.resolve(["tensorflow"])["framework"] == "tf"
    assert cm.resolve(["framework=tensorflow"])["framework"] == "tf"
    assert cm.resolve(["precision=quantized"]) == cm.resolve(["int8"])


def test_a_force_wins_over_what_was_asked(cm):
    config = cm.resolve(["retinanet", "batch_size=32"])
    assert config["batch_size"] == 1
    assert dict(config.origins)["batch_size"] == "forced by model=retinanet (32 asked)"


def test_a_default_override_changes_only_the_default(cm):
    assert cm.resolve(["retinanet"])["dataset"] == "openimages"
    assert dict(cm.resolve(["retinanet"]).origins)["dataset"] == "default override by model=retinanet"
    assert cm.resolve(["retinanet", "imagenet"])["dataset"] == "imagenet"
    assert cm.resolve(["bert-99"])["precision"] == "int8"
    assert cm.resolve(["bert-99", "fp32"])["precision"] == "fp32"


def test_contradictory_forces_name_both(tmp_path):
    text = CM.replace("cuda: {env: {CUDA_THREADS: \"{{config:threads}}\"}, forces: [dataset=imagenet]}",
                      "cuda: {forces: [batch_size=2]}")
    schema = load(tmp_path, text).configs
    with pytest.raises(BuildFileError) as info:
        schema.resolve(["retinanet", "cuda"])
    text = str(info.value)
    assert "contradictory forces" in text and "model=retinanet" in text and "device=cuda" in text


def test_origins_say_where_each_value_came_from(cm, tmp_path):
    config = cm.resolve(["retinanet", "tensorflow"])
    origins = dict(config.origins)
    assert origins["framework"] == "command line" and origins["precision"] == "default"
    assert origins["dataset"].startswith("default override")


def test_parametric_and_value_env_expand_config_placeholders(workspace):
    mlb = workspace({"BUILD.yaml": CM, "targets/e/BUILD.yaml": """\
e: {rule: command, configs: [batch_size, device], outs: [o.txt], cmd: 'echo "$CM_MLPERF_LOADGEN_MAX_BATCHSIZE $CUDA_THREADS" > {{out}}'}
"""})
    mlb.ok("build", "//e:e", "--config=batch_size=16,cuda,threads=3")
    assert mlb.out("batch_size=16,cuda,threads=3", "//e:e", "o.txt").read_text() == "16 3\n"
    # Reading `device` reads `threads` through cuda's env: the target's key follows it.
    mlb.ok("build", "//e:e", "--config=batch_size=16,cuda,threads=5")
    assert mlb.out("batch_size=16,cuda,threads=5", "//e:e", "o.txt").read_text() == "16 5\n"


def test_env_assembled_from_a_fixed_and_a_conditional_part(workspace):
    mlb = workspace({"BUILD.yaml": CM, "targets/e/BUILD.yaml": """\
e:
  rule: command
  outs: [o.txt]
  env:
    - {A: fixed}
    - select: {device=cuda: {B: gpu}, default: {}}
  cmd: 'echo "$A ${B:-none}" > {{out}}'
"""})
    mlb.ok("build", "//e:e")
    mlb.ok("build", "//e:e", "--config=cuda")
    assert mlb.out("", "//e:e", "o.txt").read_text() == "fixed none\n"
    assert mlb.out("cuda", "//e:e", "o.txt").read_text() == "fixed gpu\n"


@pytest.mark.parametrize("tokens, expected", [
    ([], "cpu"), (["cuda"], "not-cpu"), (["tf"], "tf-or-int8"), (["int8"], "tf-or-int8"),
    (["tf", "cuda"], "tf-on-gpu"), (["tensorflow", "int8", "cuda"], "tf-on-gpu"),
])
def test_select_or_and_not(tmp_path, cm, tokens, expected):
    body = """\
    value:
      select:
        device=cpu,framework=onnxruntime,precision=fp32: cpu
        device!=cpu: not-cpu
        framework=tf,precision=fp32,device=cpu: tf-or-int8
        precision=int8,framework=onnxruntime|tf,device=cpu: tf-or-int8
        framework=tensorflow,device=cuda: tf-on-gpu
        default: cpu
    """
    assert _select(tmp_path, body, cm, tokens)[0] == expected


def test_select_not_on_a_parametric_group(tmp_path, cm):
    body = "value:\n  select:\n    batch_size!=1: batched\n    batch_size=1: single\n"
    assert _select(tmp_path, body, cm, ["batch_size=4"])[0] == "batched"
    assert _select(tmp_path, body, cm, ["batch_size=1"])[0] == "single"


@pytest.mark.parametrize("body, message", [
    ("device=cpu: a\n    device!=cuda: b\n", "are equivalent"),
    ("framework=tf|onnxruntime: a\n    device=cpu: b\n", "neither is more specific"),
])
def test_select_ties_name_both_branches(tmp_path, cm, body, message):
    with pytest.raises(BuildFileError) as info:
        _select(tmp_path, "value:\n  select:\n    " + body, cm, [])
    text = str(info.value)
    assert message in text and text.startswith("attr.yaml:4:")  # at the second of the two
    first, second = (line.split(":")[0] for line in body.strip().splitlines())
    assert f"'{first.strip()}'" in text and f"'{second.strip()}'" in text


@pytest.mark.parametrize("condition, message", [
    ("device=cpu|tpu", "unknown value 'tpu'"),
    ("device!=gpu", "unknown value 'gpu'"),
    ("cpu|tf", "mixes values of config groups device, framework"),
    ("device=cpu,device=cuda", "can never hold"),
])
def test_bad_select_conditions_are_located_errors(tmp_path, cm, condition, message):
    with pytest.raises(BuildFileError, match=message) as info:
        _select(tmp_path, f"value:\n  select:\n    {condition}: x\n    default: y\n", cm, [])
    assert str(info.value).startswith("attr.yaml:3:5")


@pytest.mark.parametrize("old, new, message", [
    ("quantized: {alias: int8}", "quantized: {alias: int4}", "points to 'int4', which is not one of its values"),
    ("quantized: {alias: int8}", "cuda: {alias: int8}", "collides with a value of config group 'device'"),
    ("quantized: {alias: int8}", "quantized: {alias: int8, env: {}}", "unknown key 'env' in alias"),
    ("forces: [batch_size=1]", "forces: [batch_size=one]", "takes a int"),
    ("defaults: [dataset=openimages]", "defaults: [dataset=coco]", "unknown value 'coco'"),
    ("\"{{config:batch_size}}\"", "\"{{config:batchsize}}\"", "did you mean 'batch_size'"),
])
def test_bad_cm_declarations_are_located_errors(tmp_path, old, new, message):
    assert old in CM
    with pytest.raises(BuildFileError, match=message) as info:
        load(tmp_path, CM.replace(old, new))
    assert str(info.value).startswith("BUILD.yaml:")
    assert str(info.value).split(":")[1] != "None"


def test_config_list_and_show(workspace):
    mlb = workspace({"BUILD.yaml": CM, "targets/e/BUILD.yaml": ""})
    listing = mlb.ok("config", "list").stdout
    assert "  tf  (alias tensorflow; env CM_MLPERF_BACKEND=tf)" in listing
    assert "  retinanet  (forces batch_size=1; defaults dataset=openimages)" in listing
    assert "  env CM_MLPERF_LOADGEN_MAX_BATCHSIZE={{config:batch_size}}" in listing
    shown = mlb.ok("config", "show", "--config=retinanet,tensorflow,batch_size=4").stdout.splitlines()
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in shown[1:]}
    assert rows["framework"] == ["tf", "command line"]
    assert rows["batch_size"] == ["1", "forced by model=retinanet (4 asked)"]
    assert rows["dataset"] == ["openimages", "default override by model=retinanet"]
    assert rows["precision"] == ["fp32", "default"]
