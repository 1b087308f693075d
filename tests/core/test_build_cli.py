"""End to end through the CLI: real action processes, a real cache, the DESIGN §4 contracts."""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest

from .conftest import ROOT_BUILD, check_cache_consistent, write_tree

TOOLCHAINS = """\
python: {kind: python}
cuda: {kind: cuda}
nothere: {kind: tool, binary: mlbuild-test-no-such-tool}
"""

PKG_A = """\
gen: {rule: command, srcs: [in.txt], outs: [out.txt], cmd: "cat {{src:in.txt}} > {{out}}"}
up:  {rule: command, deps: [":gen"], outs: [up.txt], cmd: "tr a-z A-Z < {{dep::gen}} > {{out}}"}
size: {rule: command, srcs: [in.txt], outs: [n.txt], cmd: "wc -c < {{src:in.txt}} > {{out}}"}
after_size: {rule: command, deps: [":size"], outs: [m.txt], cmd: "cat {{dep::size}} > {{out}}; echo ok >> {{out}}"}
other: {rule: command, srcs: [other.txt], outs: [o.txt], cmd: "rev {{src:other.txt}} > {{out}}"}
envy: {rule: command, outs: [e.txt], env: {GREETING: hi}, cmd: 'echo "$GREETING" > {{out}}'}
"""
ALL_A = {f"//a:{n}" for n in ("gen", "up", "size", "after_size", "other", "envy")}


def base_files(**extra) -> dict:
    files = {
        "BUILD.yaml": ROOT_BUILD,
        "toolchains/host.yaml": TOOLCHAINS,
        "targets/a/BUILD.yaml": PKG_A,
        "targets/a/in.txt": "hello\n",
        "targets/a/other.txt": "abc\n",
    }
    files.update(extra)
    return files


@pytest.fixture
def mlb(workspace):
    return workspace(base_files())


# -- incremental builds --------------------------------------------------------------------------

def test_build_then_noop_rebuild(mlb):
    first = mlb.ok("build", "//...")
    assert first.built == ALL_A
    assert first.summary["executed"] == 6
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "HELLO\n"
    assert mlb.out("cpu", "//a:other", "o.txt").read_text() == "cba\n"
    assert mlb.out("cpu", "//a:envy", "e.txt").read_text() == "hi\n"
    assert (mlb.root / "mlbuild-bin").resolve() == (mlb.root / "mlbuild-out" / mlb.config_dir("cpu")).resolve()
    second = mlb.ok("build", "//...")
    assert second.events == {}
    assert second.summary == {"ok": True, "targets": 6, "executed": 0, "cached": 6, "up_to_date": 6, "hits": 0}
    check_cache_consistent(mlb.cache)


def test_source_byte_change_rebuilds_exactly_the_affected_actions(mlb):
    mlb.ok("build", "//...")
    mlb.write({"targets/a/in.txt": "hellp\n"})  # same size: `size` re-runs, its output does not change
    result = mlb.ok("build", "//...")
    assert result.built == {"//a:gen", "//a:up", "//a:size"}
    assert result.summary["executed"] == 3
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "HELLP\n"
    # Changing it back is a cache hit for each of them, not a re-run.
    mlb.write({"targets/a/in.txt": "hello\n"})
    back = mlb.ok("build", "//...")
    assert back.built == set()
    assert back.hits == {"//a:gen", "//a:up", "//a:size"}
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "HELLO\n"


def test_changing_a_declared_env_value_reruns_the_target(mlb):
    mlb.ok("build", "//...")
    mlb.write({"targets/a/BUILD.yaml": PKG_A.replace("GREETING: hi", "GREETING: ho")})
    result = mlb.ok("build", "//...")
    assert result.built == {"//a:envy"}
    assert mlb.out("cpu", "//a:envy", "e.txt").read_text() == "ho\n"


def test_changing_a_command_reruns_the_target_and_only_dependents_whose_input_changed(mlb):
    mlb.ok("build", "//...")
    mlb.write({"targets/a/BUILD.yaml": PKG_A.replace("tr a-z A-Z", "tr a-y A-Y")})
    result = mlb.ok("build", "//...")
    assert result.built == {"//a:up"}
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "HELLO\n"
    mlb.write({"targets/a/BUILD.yaml": PKG_A.replace("cat {{src:in.txt}} >", "cat {{src:in.txt}} {{src:in.txt}} >")})
    result = mlb.ok("build", "//...")
    assert result.built == {"//a:gen", "//a:up"}
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "HELLO\nHELLO\n"


def test_host_environment_does_not_leak_into_actions_or_keys(mlb):
    mlb.write({"targets/e/BUILD.yaml": "dump: {rule: command, outs: [env.txt], cmd: 'env | sort > {{out}}'}\n"})
    mlb.ok("build", "//e:dump", env={"MY_SECRET_TOKEN": "s3cr3t", "OMP_NUM_THREADS": "77"})
    seen = mlb.out("cpu", "//e:dump", "env.txt").read_text()
    assert "s3cr3t" not in seen and "MY_SECRET_TOKEN" not in seen
    assert "OMP_NUM_THREADS=1\n" in seen
    assert "PATH=/usr/local/bin:/usr/bin:/bin\n" in seen
    again = mlb.ok("build", "//e:dump", env={"MY_SECRET_TOKEN": "other", "PATH": os.environ["PATH"] + ":/nowhere"})
    assert again.built == set()


def test_edited_output_in_the_output_tree_is_detected_and_rebuilt(mlb):
    mlb.ok("build", "//...")
    out = mlb.out("cpu", "//a:gen", "out.txt")
    os.chmod(out, 0o644)
    with open(out, "r+b") as f:  # in place, as an editor without atomic save would
        f.write(b"HACKED")
    result = mlb.ok("build", "//...")
    assert "//a:gen" in result.built
    assert "//a:up" not in result.built  # same key once gen's real output is back
    assert out.read_text() == "hello\n"
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "HELLO\n"
    check_cache_consistent(mlb.cache)


def test_incremental_builds_equal_clean_builds(workspace, tmp_path):
    """The à-la-carte `correctBuild` oracle: after any sequence of edits, the output tree of an
    incremental build equals that of a clean build of the same sources in a fresh cache."""
    rnd = random.Random(7)
    mlb = workspace(base_files())
    mlb.ok("build", "//...")
    edits = [
        lambda: mlb.write({"targets/a/in.txt": rnd.choice(["hello\n", "hellp\n", "a longer line\n", "x\n"])}),
        lambda: mlb.write({"targets/a/other.txt": rnd.choice(["abc\n", "xyz\n", "q\n"])}),
        lambda: mlb.write({"targets/a/BUILD.yaml": PKG_A.replace("GREETING: hi", f"GREETING: h{rnd.randint(0, 3)}")}),
        lambda: mlb.write({"targets/a/BUILD.yaml": PKG_A.replace("tr a-z A-Z", rnd.choice(["tr a-z A-Z", "tr a-m A-M"]))}),
    ]
    for round_ in range(4):
        rnd.choice(edits)()
        mlb.ok("build", "//...")
        fresh = workspace({}, name=f"clean{round_}", cache=tmp_path / f"clean-cache{round_}")
        shutil.rmtree(fresh.root)
        shutil.copytree(mlb.root / "targets", fresh.root / "targets")
        write_tree(fresh.root, {"BUILD.yaml": ROOT_BUILD, "toolchains/host.yaml": TOOLCHAINS})
        fresh.ok("build", "//...")
        assert _tree(mlb.root / "mlbuild-out") == _tree(fresh.root / "mlbuild-out")


def _tree(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- hermeticity ---------------------------------------------------------------------------------

def test_an_action_cannot_modify_its_workspace_sources(workspace):
    mlb = workspace(base_files(**{"targets/h/BUILD.yaml": (
        "w: {rule: command, srcs: [in.txt], outs: [o.txt],"
        " cmd: 'echo TAMPERED >> {{src:in.txt}} 2>/dev/null; cat {{src:in.txt}} > {{out}}'}\n"),
        "targets/h/in.txt": "pristine\n"}))
    mlb.ok("build", "//h:w")
    assert (mlb.root / "targets/h/in.txt").read_text() == "pristine\n"


def test_an_action_cannot_modify_its_dependencies_outputs(workspace):
    mlb = workspace(base_files(**{"targets/h/BUILD.yaml": (
        "w: {rule: command, deps: ['//a:gen'], outs: [o.txt],"
        " cmd: 'echo TAMPERED >> {{dep://a:gen}} 2>/dev/null; cat {{dep://a:gen}} > {{out}}'}\n")}))
    mlb.ok("build", "//h:w")
    check_cache_consistent(mlb.cache)  # gen's blob must still match its digest
    assert mlb.out("cpu", "//a:gen", "out.txt").read_text() == "hello\n"


def test_a_sandbox_holds_only_its_inputs_whatever_an_earlier_action_left_in_its_directories(workspace):
    """Used sandboxes' directories and files are kept for the next ones (execution/sandbox.py,
    Disposal): files, contents, directories and modes an action leaves behind must never reach
    a later action, nor its staged inputs or its logs."""
    mlb = workspace(base_files(**{"targets/h/BUILD.yaml": (
        "messy: {rule: command, outs: [o.txt], cmd: 'mkdir -p .tmp/d out/extra && for f in .tmp/d/1 .tmp/d/2"
        " .tmp/d/3 .home/f out/extra/f; do echo secret > $f; done && chmod 4755 .tmp/d/* .home/f out/extra/f"
        " && chmod 700 .tmp .home out && echo x > {{out}}'}\n"
        "look: {rule: command, deps: [':messy'], outs: [l.txt],"
        " cmd: 'exec 3>&1; (find . | sort; stat -c %a .tmp .home out; cat {{dep::messy}};"
        " stat -c %a {{dep::messy}}; stat -L -c %a:%s /proc/self/fd/3 /proc/self/fd/2) > {{out}}'}\n")}))
    mlb.ok("build", "//h:look", "-j", "1")
    lines = mlb.out("cpu", "//h:look", "l.txt").read_text().splitlines()
    assert lines[:9] == [".", "./.home", "./.tmp", "./out", "./out/h", "./out/h/look", "./out/h/look/l.txt",
                         "./out/h/messy", "./out/h/messy/o.txt"]
    assert "700" not in lines[9:12] and len(set(lines[9:12])) == 1, lines
    assert lines[12:14] == ["x", "444"]  # the staged copy: the blob's bytes and mode
    umask = os.umask(0)
    os.umask(umask)
    assert lines[14:] == [f"{0o666 & ~umask:o}:0"] * 2  # its logs: empty, as a new file's mode


# -- configurations: the DESIGN contract --------------------------------------------------------

CONFIG_PKG = """\
plain: {rule: command, srcs: [in.txt], outs: [o.txt], cmd: "cat {{src:in.txt}} > {{out}}"}
by_select:
  rule: command
  outs: [o.txt]
  cmd: {select: {"device=gpu_sim": "echo sim > {{out}}", default: "echo host > {{out}}"}}
by_placeholder: {rule: command, outs: [o.txt], cmd: "echo {{config:device}} > {{out}}"}
by_attr: {rule: command, outs: [o.txt], configs: [device], cmd: 'echo "[$SIM_DEVICE]" > {{out}}'}
below_plain: {rule: command, deps: [":plain"], outs: [o.txt], cmd: "cp {{dep::plain}} {{out}}"}
"""


def test_unread_config_values_do_not_change_keys(workspace):
    mlb = workspace(base_files(**{"targets/c/BUILD.yaml": CONFIG_PKG, "targets/c/in.txt": "data\n"}))
    cpu = mlb.ok("build", "//c/...", "--config=cpu")
    assert cpu.summary["executed"] == 5
    sim = mlb.ok("build", "//c/...", "--config=device=gpu_sim")
    assert sim.hits == {"//c:plain", "//c:below_plain"}
    assert sim.built == {"//c:by_select", "//c:by_placeholder", "//c:by_attr"}
    for label in ("//c:plain", "//c:below_plain"):
        assert mlb.key("cpu", label) == mlb.key("gpu_sim", label)
    for label in ("//c:by_select", "//c:by_placeholder", "//c:by_attr"):
        assert mlb.key("cpu", label) != mlb.key("gpu_sim", label)
    # Both configurations' outputs coexist.
    assert mlb.config_dir("cpu") != mlb.config_dir("gpu_sim")
    expected = {
        "cpu": {"plain": "data\n", "by_select": "host\n", "by_placeholder": "cpu\n", "by_attr": "[]\n"},
        "gpu_sim": {"plain": "data\n", "by_select": "sim\n", "by_placeholder": "gpu_sim\n", "by_attr": "[1]\n"},
    }
    for config, contents in expected.items():
        for name, text in contents.items():
            assert mlb.out(config, f"//c:{name}", "o.txt").read_text() == text, (config, name)
    # And switching back is a no-op.
    assert mlb.ok("build", "//c/...", "--config=cpu").summary["executed"] == 0


def test_query_reports_which_groups_a_target_reads(workspace):
    mlb = workspace(base_files(**{"targets/c/BUILD.yaml": CONFIG_PKG, "targets/c/in.txt": "data\n"}))
    rows = {row["label"]: row for row in json.loads(mlb.ok("query", "//c/...", "--output", "json").stdout)}
    assert rows["//c:plain"]["reads_config"] == []
    assert rows["//c:below_plain"]["reads_config"] == []
    for name in ("by_select", "by_placeholder", "by_attr"):
        assert rows[f"//c:{name}"]["reads_config"] == ["device"]


# -- explain -------------------------------------------------------------------------------------

def test_explain_names_the_changed_input(mlb):
    assert "never built" in mlb.ok("explain", "//a:gen").stdout
    mlb.ok("build", "//...")
    mlb.write({"targets/a/in.txt": "changed\n"})
    before = mlb.ok("explain", "//a:gen").stdout
    assert "will run" in before and "input changed: targets/a/in.txt" in before
    mlb.ok("build", "//...")
    after = mlb.ok("explain", "//a:gen").stdout
    assert "up to date" in after and "input changed: targets/a/in.txt" in after


def test_explain_names_env_and_command_changes(mlb):
    mlb.ok("build", "//...")
    mlb.write({"targets/a/BUILD.yaml": PKG_A.replace("GREETING: hi", "GREETING: ho").replace("tr a-z", "tr b-z")})
    assert "env variable changed: GREETING" in mlb.ok("explain", "//a:envy").stdout
    text = mlb.ok("explain", "//a:up").stdout
    assert "command changed" in text and "tr b-z" in text


def test_explain_of_a_no_cache_target_says_why_its_earlier_key_is_unknown(mlb):
    mlb.write({"targets/n/BUILD.yaml": "fresh: {rule: command, srcs: [in.txt], outs: [o.txt], tags: [no-cache], "
                                       "cmd: 'cat {{src:in.txt}} > {{out}}'}\n",
               "targets/n/in.txt": "one\n"})
    mlb.ok("build", "//n:fresh")
    mlb.write({"targets/n/in.txt": "two\n"})
    text = mlb.ok("explain", "//n:fresh").stdout
    assert "will run" in text and "a no-cache action keeps no cache entry" in text


def test_an_action_writing_into_a_large_hardlinked_input_fails_and_the_damaged_blob_is_rebuilt(mlb):
    size = 9 << 20  # above COPY_BELOW_BYTES: staged as a hardlink of the CAS blob, checked afterwards
    mlb.write({"targets/l/BUILD.yaml": (
        f"big: {{rule: command, outs: [big.bin], cmd: 'head -c {size} /dev/zero > {{{{out}}}}'}}\n"
        "user: {rule: command, deps: [':big'], outs: [o.txt], cmd: 'echo x >> {{dep::big}}; echo done > {{out}}'}\n")})
    result = mlb("build", "//l:user")
    assert result.code == 1, str(result)
    assert "modified its input(s) out/l/big/big.bin" in result.stderr and "Traceback" not in result.stderr
    blob = mlb.cache / "cas"  # the damaged blob was dropped: no blob of big.bin's size is left
    assert not [p for p in blob.rglob("*") if p.is_file() and p.stat().st_size == size + 2]
    again = mlb.ok("build", "//l:big")
    assert again.built == {"//l:big"}  # its tree file was damaged too: rebuilt, not taken from the cache
    assert (mlb.root / "mlbuild-out/default/l/big/big.bin").stat().st_size == size


# -- bad input: one clear error, the right exit code, an undamaged cache -------------------------

GOOD = {"targets/good/BUILD.yaml": "ok: {rule: command, outs: [o.txt], cmd: 'echo good > {{out}}'}\n"}

BAD_INPUTS = {
    "malformed_yaml": (
        "x: {rule: command, outs: [o.txt\ny: 2\n", [], 3, ["targets/bad/BUILD.yaml:", "malformed YAML"]),
    "duplicate_key": (
        "x: {rule: command, cmd: 'true'}\nx: {rule: command, cmd: 'true'}\n", [], 3,
        ["targets/bad/BUILD.yaml:2:", "duplicate key 'x'"]),
    "unknown_attribute": (
        "x: {rule: command, outz: [o.txt], cmd: 'true'}\n", [], 3,
        ["targets/bad/BUILD.yaml:1:", "unknown attribute 'outz'", "did you mean 'outs'?"]),
    "unknown_rule": ("x: {rule: comand, cmd: 'true'}\n", [], 3, ["unknown rule 'comand'", "did you mean 'command'?"]),
    "wrong_attribute_type": ("x: {rule: command, outs: o.txt, cmd: 'true'}\n", [], 3, ["attribute 'outs': expected a list of relative paths, got the string 'o.txt'"]),
    "unknown_label": (
        "x: {rule: command, deps: [':nope'], cmd: 'true'}\n", [], 3, ["no target 'nope' in package '//bad'"]),
    "unknown_package": (
        "x: {rule: command, deps: ['//nowhere:y'], cmd: 'true'}\n", [], 3, ["no package '//nowhere'"]),
    "cycle": (
        ("x: {rule: command, deps: [':y'], cmd: 'true'}\ny: {rule: command, deps: [':z'], cmd: 'true'}\n"
         "z: {rule: command, deps: [':x'], cmd: 'true'}\n"), [], 3,
        ["dependency cycle:", "//bad:x -> //bad:y -> //bad:z -> //bad:x"]),
    "unknown_placeholder": ("x: {rule: command, outs: [o], cmd: 'echo {{oot}} > {{out}}'}\n", [], 3,
                            ["targets/bad/BUILD.yaml:1:", "unknown placeholder", "oot"]),
    "undeclared_output_placeholder": ("x: {rule: command, outs: [o], cmd: 'echo > {{out:p}}'}\n", [], 3,
                                      ["targets/bad/BUILD.yaml:1:", "'p' is not a declared output of //bad:x"]),
    "missing_source": ("x: {rule: command, srcs: [nope.txt], cmd: 'true'}\n", [], 3, ["source 'nope.txt'", "not found"]),
    "output_dotdot": ("x: {rule: command, outs: ['../x'], cmd: 'true'}\n", [], 3, ["attribute 'outs', item 1: path '../x' escapes the sandbox"]),
    "output_absolute": ("x: {rule: command, outs: ['/x'], cmd: 'true'}\n", [], 3, ["attribute 'outs', item 1: path '/x' escapes the sandbox"]),
    "source_dotdot": ("x: {rule: command, srcs: ['../good/BUILD.yaml'], cmd: 'true'}\n", [], 3, ["escapes the sandbox"]),
    "unknown_config_value": (
        "x: {rule: command, cmd: 'true'}\n", ["--config=device=tpu"], 3, ["unknown value 'tpu'", "cpu, gpu_sim"]),
    "unknown_bare_config_value": (
        "x: {rule: command, cmd: 'true'}\n", ["--config=quantum"], 3, ["unknown config value 'quantum'", "cpu, gpu_sim"]),
    "missing_output": (
        "x: {rule: command, outs: [o.txt], cmd: 'true'}\n", [], 1, ["//bad:x did not produce its declared output 'o.txt'"]),
    "command_not_found_argv": (
        "x: {rule: command, outs: [o.txt], argv: [mlbuild-test-no-such-command, x]}\n", [], 1,
        ["command not found", "mlbuild-test-no-such-command"]),
    "command_not_found_shell": (
        "x: {rule: command, outs: [o.txt], cmd: 'mlbuild-test-no-such-command > {{out}}'}\n", [], 1,
        ["command not found"]),
    "failing_command": (
        "x: {rule: command, outs: [o.txt], cmd: 'echo the-reason >&2; exit 9'}\n", [], 1, ["exit 9", "the-reason"]),
    "timeout": (
        "x: {rule: command, outs: [o.txt], timeout: 0.3, cmd: 'sleep 30; touch {{out}}'}\n", [], 1, ["timed out after 0.3 s"]),
    "symlink_absolute_escape": (
        "x: {rule: command, outs: [o.txt], cmd: 'ln -s /etc/hostname {{out}}'}\n", [], 1,
        ["symlink escaping the sandbox", "/etc/hostname"]),
    "symlink_relative_escape": (
        "x: {rule: command, outs: [o.txt], cmd: 'ln -s ../../../../../../../../../../etc/hostname {{out}}'}\n", [], 1,
        ["symlink escaping the sandbox"]),
    "symlink_in_out_dir_escape": (
        "x: {rule: command, out_dirs: [d], cmd: 'mkdir -p {{outdir}}/d && ln -s /etc {{outdir}}/d/etc'}\n", [], 1,
        ["escaping the sandbox"]),
    "toolchain_missing": (
        "x: {rule: command, toolchains: [nothere], cmd: 'true'}\n", [], 4,
        ["//bad:x needs toolchain 'nothere'", "mlbuild-test-no-such-tool"]),
    "dep_not_in_deps": ("x: {rule: command, outs: [o], cmd: 'cat {{dep://good:ok}} > {{out}}'}\n", [], 3,
                        ["//good:ok is not in deps of //bad:x"]),
    "out_needs_one_output": ("x: {rule: command, outs: [a, b], cmd: 'echo > {{out}}'}\n", [], 3,
                             ["{{out}} needs exactly one declared output"]),
    "cmd_and_argv": ("x: {rule: command, cmd: 'true', argv: ['true']}\n", [], 3, ["exactly one of 'cmd' or 'argv'"]),
    "unknown_resource": ("x: {rule: command, cmd: 'true', resources: {cpu: 2}}\n", [], 3,
                         ["unknown resource 'cpu'", "did you mean 'cpus'?"]),
    "unknown_toolchain": ("x: {rule: command, toolchains: [nothing_declared], cmd: 'true'}\n", [], 3,
                          ["unknown toolchain 'nothing_declared'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_one_clear_error_and_leaves_the_cache_intact(workspace, case):
    package, args, code, expected = BAD_INPUTS[case]
    mlb = workspace(base_files(**GOOD, **{"targets/bad/BUILD.yaml": package}))
    mlb.ok("build", "//good/...")  # something in the cache already
    result = mlb("build", "//bad/...", *args)
    assert result.code == code, str(result)
    output = result.stdout + result.stderr
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output}"
    assert "Traceback" not in output and "internal error" not in output
    assert output.count("error:") == 1, output
    counts = check_cache_consistent(mlb.cache)
    assert counts["entries"] == 1  # nothing of the failed action was recorded
    assert list((mlb.cache / "sandbox").iterdir()) == [] if (mlb.cache / "sandbox").exists() else True
    mlb.ok("build", "//good/...", "--config=gpu_sim")
    assert mlb.out("gpu_sim", "//good:ok", "o.txt").read_text() == "good\n"


def test_toolchain_required_by_a_config_value_names_the_value(workspace):
    root = ROOT_BUILD.replace("gpu_sim: {env: {SIM_DEVICE: \"1\"}}",
                              "gpu_sim: {env: {SIM_DEVICE: \"1\"}}, accel: {toolchains: [nothere]}")
    mlb = workspace(base_files(**{"BUILD.yaml": root, "targets/c/BUILD.yaml": CONFIG_PKG, "targets/c/in.txt": "x\n"}))
    result = mlb("build", "//c:by_select", "--config=accel")
    assert result.code == 4, str(result)
    assert "device=accel" in result.stderr and "nothere" in result.stderr
    # A target that does not read the group does not need the toolchain.
    assert mlb.ok("build", "//c:plain", "--config=accel").summary["executed"] == 1


def test_incompatible_configuration_is_refused_up_front(workspace):
    root = ROOT_BUILD + "  precision: {default: fp32, values: {fp32: {}, int8: {}}}\n" \
                        "config_rules:\n  incompatible:\n    - [device=cpu, precision=int8]\n"
    mlb = workspace(base_files(**{"BUILD.yaml": root}))
    result = mlb("build", "//...", "--config=int8")
    assert result.code == 3, str(result)
    assert "device=cpu" in result.stderr and "precision=int8" in result.stderr
    assert not (mlb.root / "mlbuild-out").exists()  # nothing ran
    mlb.ok("build", "//...", "--config=int8,gpu_sim")


@pytest.mark.parametrize("args, code, text", [
    (["build", "//a:nope"], 3, "no target 'nope'"),
    (["build", "//a:gen", "--config=device=tpu"], 3, "unknown value 'tpu'"),
    (["build", "//a:gen", "--jobs=0"], 2, "Invalid value"),
    (["test", "//a/..."], 5, "no test or bench targets"),
])
def test_exit_codes_from_the_installed_script(mlb, args, code, text):
    result = mlb.process(*args)
    assert result.code == code, str(result)
    assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_action_failure_exit_code_from_the_installed_script(workspace):
    mlb = workspace(base_files(**{"targets/bad/BUILD.yaml": "x: {rule: command, cmd: 'exit 4'}\n"}))
    result = mlb.process("build", "//...", "--keep-going")
    assert result.code == 1, str(result)
    assert "//bad:x" in result.stderr and "Traceback" not in result.stderr
    assert result.summary["executed"] == 6  # keep going built everything else


def test_failure_stops_the_build_without_keep_going(workspace):
    mlb = workspace(base_files(**{"targets/bad/BUILD.yaml": "x: {rule: command, cmd: 'exit 4'}\n"
                                                           "y: {rule: command, deps: [':x'], cmd: 'true'}\n"}))
    result = mlb("build", "//bad/...", "//a:up", "-j1")
    assert result.code == 1
    assert "skipped" in result.stderr
    assert "//bad:y" not in result.built


# -- toolchains ----------------------------------------------------------------------------------

def test_toolchain_version_change_rebuilds_exactly_its_users(workspace, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "fakecc"

    def install(version):
        tool.write_text(f"#!/bin/sh\necho fakecc {version}\n")
        tool.chmod(0o755)

    install("1.2.3")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    mlb = workspace(base_files(**{
        "toolchains/fake.yaml": "fakecc: {kind: tool, version: '>=1'}\n",
        "targets/tc/BUILD.yaml": "use: {rule: command, toolchains: [fakecc], outs: [v.txt],"
                                 " cmd: '{{toolchain:fakecc}} > {{out}}'}\n"}))
    assert mlb.ok("build", "//...", env=env).summary["executed"] == 7
    assert mlb.out("cpu", "//tc:use", "v.txt").read_text() == "fakecc 1.2.3\n"
    install("1.2.4")
    result = mlb.ok("build", "//...", env=env)
    assert result.built == {"//tc:use"}
    assert mlb.out("cpu", "//tc:use", "v.txt").read_text() == "fakecc 1.2.4\n"
    assert "toolchain changed: fakecc" in mlb.ok("explain", "//tc:use", env=env).stdout
    install("0.9")
    too_old = mlb("build", "//tc:use", env=env)
    assert too_old.code == 4, str(too_old)
    assert "0.9" in too_old.stderr and ">=1" in too_old.stderr and "//tc:use" in too_old.stderr


def test_run_builds_then_runs_in_the_foreground(workspace):
    mlb = workspace(base_files(**{"targets/r/BUILD.yaml": (
        "app: {rule: command, deps: ['//a:gen'], outs: [o.txt], cmd: 'tr a-z A-Z < {{dep://a:gen}} > {{out}}',"
        " run: 'cat {{out}}; exit 7'}\n"
        "norun: {rule: command, cmd: 'true'}\n")}))
    result = mlb.process("run", "//r:app")
    assert result.code == 7, str(result)
    assert "HELLO" in result.stdout
    assert {"//a:gen", "//r:app"} <= result.built
    nothing = mlb.process("run", "//r:norun")
    assert nothing.code == 5 and "nothing to run" in nothing.stderr


# -- query ---------------------------------------------------------------------------------------

def test_query_outputs(mlb):
    assert mlb.ok("query", "deps(//a:up)").stdout.split() == ["//a:gen", "//a:up"]
    rows = json.loads(mlb.ok("query", "deps(//a:up)", "--output", "json").stdout)
    assert [(r["label"], r["deps"], r["outputs"]) for r in rows] == [
        ("//a:gen", [], ["out.txt"]), ("//a:up", ["//a:gen"], ["up.txt"])]
    dot = mlb.ok("query", "deps(//a:up)", "--output", "dot").stdout
    assert dot.startswith("digraph") and '"//a:up" -> "//a:gen";' in dot
    assert set(mlb.ok("query", "rdeps(//..., //a:gen)").stdout.split()) == {"//a:gen", "//a:up"}
    assert set(mlb.ok("query", "rdeps(//..., //a:size)").stdout.split()) == {"//a:size", "//a:after_size"}
    assert set(mlb.ok("query", "//...").stdout.split()) == ALL_A
    assert not (mlb.root / "mlbuild-out").exists()  # query builds nothing
    bad = mlb("query", "rdeps(//...)")
    assert bad.code == 3 and "rdeps takes two arguments" in bad.stderr


# -- info and cache commands ---------------------------------------------------------------------

def test_config_list(workspace):
    root = ROOT_BUILD + "  batch_size: {type: int, default: 4}\n" \
                        "config_rules:\n  bundles: {fast: [gpu_sim, batch_size=64]}\n" \
                        "  incompatible: [[device=cpu, batch_size=128]]\n"
    text = workspace(base_files(**{"BUILD.yaml": root})).ok("config", "list").stdout
    assert "device" in text and "cpu  (default)" in text and "gpu_sim" in text
    assert "batch_size  (int, default 4)" in text
    assert "bundle fast = gpu_sim,batch_size=64" in text
    assert "incompatible: device=cpu,batch_size=128" in text


def test_toolchain_list(mlb):
    text = mlb.ok("toolchain", "list").stdout
    lines = {line.split()[0]: line for line in text.splitlines()}
    assert " ok " in lines["python"]
    assert "MISSING" in lines["nothere"] and "mlbuild-test-no-such-tool" in lines["nothere"]
    if shutil.which("nvidia-smi") is None:
        assert "MISSING" in lines["cuda"]


def test_cache_stats_gc_and_clean(mlb):
    mlb.ok("build", "//...")
    stats = mlb.ok("cache", "stats").stdout
    assert "action entries: 6" in stats and str(mlb.cache) in stats
    gc = mlb.ok("cache", "gc", "--max-size", "0").stdout
    assert "removed 6 entries" in gc
    assert "action entries: 0" in mlb.ok("cache", "stats").stdout
    assert "blobs:         0" in mlb.ok("cache", "stats").stdout
    assert mlb.ok("build", "//...").summary["executed"] == 0  # the output tree is still intact
    mlb.ok("clean")
    assert not (mlb.root / "mlbuild-out").exists() and not (mlb.root / "mlbuild-bin").exists()
    assert mlb.ok("build", "//...").summary["executed"] == 6  # the cache was emptied
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "HELLO\n"
    assert mlb.ok("build", "//...").summary["executed"] == 0
    check_cache_consistent(mlb.cache)
    assert mlb("cache", "gc", "--max-size", "lots").code == 3


def test_rebuild_after_gc_when_only_a_dependent_changed(mlb):
    """After `cache gc`, an up-to-date dependency's blobs are gone from the CAS, but its outputs
    are intact in the output tree; a dependent that must re-run still has to get its inputs."""
    mlb.ok("build", "//...")
    mlb.ok("cache", "gc", "--max-size", "0")
    mlb.write({"targets/a/BUILD.yaml": PKG_A.replace("tr a-z A-Z", "tr a-y A-Y")})
    result = mlb("build", "//...")
    assert result.code == 0, str(result)
    assert result.built == {"//a:up"}
    assert mlb.out("cpu", "//a:up", "up.txt").read_text() == "HELLO\n"
    check_cache_consistent(mlb.cache)


def test_clean_expunge(mlb):
    mlb.ok("build", "//...")
    mlb.ok("clean", "--expunge")
    assert mlb.ok("cache", "stats").stdout.count(" 0") >= 2
    assert mlb.ok("build", "//...").summary["executed"] == 6


# -- tests ---------------------------------------------------------------------------------------

TESTS_PKG = """\
check: {rule: command, deps: ["//a:gen"], test: true, cmd: "grep -q hello {{dep://a:gen}}"}
broken: {rule: command, test: true, cmd: "echo the-failure-reason >&2; exit 3"}
"""


def _verdicts(stdout: str) -> dict:
    rows = {}
    for line in stdout.splitlines()[1:]:
        parts = line.split(None, 1)
        if parts and parts[0].startswith("//"):
            rows[parts[0]] = parts[1]
    return rows


def test_passing_test_is_cached_and_can_be_rerun(workspace):
    mlb = workspace(base_files(**{"targets/t/BUILD.yaml": TESTS_PKG}))
    first = mlb.ok("test", "//t:check")
    assert _verdicts(first.stdout)["//t:check"].startswith("PASSED") and "cached" not in first.stdout
    assert "//t:check" in first.built
    second = mlb.ok("test", "//t:check")
    assert _verdicts(second.stdout)["//t:check"].startswith("PASSED (cached)")
    assert second.summary["executed"] == 0
    third = mlb.ok("test", "//t:check", "--no-cache-test-results")
    assert "cached" not in _verdicts(third.stdout)["//t:check"]
    assert third.built == {"//t:check"}


def test_failing_test_exits_1_says_why_and_is_not_cached(workspace, tmp_path):
    mlb = workspace(base_files(**{"targets/t/BUILD.yaml": TESTS_PKG}))
    for _ in range(2):
        result = mlb("test", "//t:broken", "--results-json", str(tmp_path / "r.json"))
        assert result.code == 1, str(result)
        assert _verdicts(result.stdout)["//t:broken"].startswith("FAILED")
        assert "cached" not in result.stdout
        assert "//t:broken" in result.failed
        rows = json.loads((tmp_path / "r.json").read_text())
        assert rows[0]["verdict"] == "FAILED" and rows[0]["cached"] is False
    assert check_cache_consistent(mlb.cache)["entries"] == 0
    # The reason is shown to the user, not only written to --results-json.
    assert "exit 3" in result.stdout + result.stderr


def test_build_skips_test_actions(workspace):
    mlb = workspace(base_files(**{"targets/t/BUILD.yaml": TESTS_PKG}))
    result = mlb.ok("build", "//t/...")
    assert result.built == {"//a:gen"}


# -- manual --------------------------------------------------------------------------------------

def test_manual_targets_are_built_only_when_named(workspace):
    mlb = workspace(base_files(**{"targets/m/BUILD.yaml": (
        "auto: {rule: command, outs: [o.txt], cmd: 'echo a > {{out}}'}\n"
        "hand: {rule: command, outs: [o.txt], tags: [manual], cmd: 'echo h > {{out}}'}\n")}))
    assert mlb.ok("build", "//m/...").built == {"//m:auto"}
    assert mlb.ok("build", "//...").built == ALL_A
    assert mlb.ok("build", "//m:all").built == set()
    assert mlb.ok("build", "//m:hand").built == {"//m:hand"}
    assert mlb.out("cpu", "//m:hand", "o.txt").read_text() == "h\n"
    only_manual = workspace({"BUILD.yaml": ROOT_BUILD, "targets/m/BUILD.yaml":
                             "hand: {rule: command, cmd: 'true', tags: [manual]}\n"}, name="only_manual")
    result = only_manual("build", "//...")
    assert result.code == 5 and "manual" in result.stderr
