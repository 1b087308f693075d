"""Every failure site the mutation fuzzer found (issue 12), reduced to one workspace each: a
user's mistake gets one located error and a documented exit code, never a traceback.

Each case is {relative path: text or bytes}, the command, the exit code, and what the
message must say (file:line:col where there is a file).
"""

from __future__ import annotations

import os
import shutil

import pytest

ROOT = """\
workspace: {name: t}
config:
  device: {default: cpu, values: {cpu: {}, sim: {}}}
  batch_size: {type: int, default: 4}
  scale: {type: float, default: 1.5}
"""
OK = "ok: {rule: command, outs: [o.txt], cmd: 'echo ok > {{out}}'}\n"


def root_with(extra: str) -> dict:
    return {"BUILD.yaml": ROOT + extra, "targets/a/BUILD.yaml": OK}


def package(text: str) -> dict:
    return {"BUILD.yaml": ROOT, "targets/a/BUILD.yaml": text}


def toolchain(text: str) -> dict:
    return {"BUILD.yaml": ROOT, "toolchains/t.yaml": text,
            "targets/a/BUILD.yaml": "x: {rule: command, toolchains: [t], outs: [o], cmd: 'echo > {{out}}'}\n"}


def bomb() -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\nbomb: *a8\n"


CASES = {
    # YAML itself
    "binary_build_file": (package(b"x: 1\ny: \xff\xfe\n"), ["query", "//..."], 3,
                          ["targets/a/BUILD.yaml:2:4: error: not UTF-8 text: byte 0xff at byte offset 8"]),
    "deep_nesting_200k": (package("x: " + "[" * 200_000 + "]" * 200_000 + "\n"), ["query", "//..."], 3,
                          ["targets/a/BUILD.yaml:1:103: error: YAML nested more than 100 levels deep"]),
    # fewer brackets than the pre-scan looks at, but deeper than PyYAML 6.0.4's C scanner allows
    "deep_flow_mappings_1200": (package("x: " + "{a: " * 1200 + "1" + "}" * 1200 + "\n"), ["query", "//..."], 3,
                                ["targets/a/BUILD.yaml:1:", "error: YAML nested more than 100 levels deep"]),
    "deep_block_nesting": (package("x:\n" + "".join(" " * i + "a:\n" for i in range(1, 200)) + " " * 200 + "b: 1\n"),
                           ["query", "//..."], 3, ["YAML nested more than 100 levels deep"]),
    "alias_bomb": (package(bomb()), ["query", "//..."], 3, ["targets/a/BUILD.yaml:", "an alias bomb"]),
    # the root BUILD.yaml
    "group_is_a_string": (root_with("  g: x\n"), ["config", "list"], 3,
                          ["BUILD.yaml:6:3: error: section 'config', config group 'g': expected a config group"]),
    "value_settings_a_list": (root_with("  g: {values: {a: [1]}}\n"), ["config", "list"], 3,
                              ["config group 'g', key 'values', value 'a': expected a mapping of value settings"]),
    "type_a_list": (root_with("  g: {type: [int]}\n"), ["config", "list"], 3,
                    ["key 'type': expected one of int, float, str, bool, got a list"]),
    "implies_a_number": (root_with("  g: {values: {a: {implies: 5}}}\n"), ["config", "list"], 3,
                         ["key 'implies': expected a list of config values", "got the integer 5"]),
    "bundles_a_string": (root_with("config_rules: {bundles: x}\n"), ["config", "list"], 3,
                         ["BUILD.yaml:6:16: error: section 'config_rules', key 'bundles': expected a mapping"]),
    "when_a_number": (root_with("config_rules: {combinations: [{when: 5, env: {A: b}}]}\n"), ["config", "list"], 3,
                      ["key 'when': expected a list of config values"]),
    "incompatible_a_string": (root_with("config_rules: {incompatible: x}\n"), ["config", "list"], 3,
                              ["BUILD.yaml:6:16: error: section 'config_rules', key 'incompatible': expected a list"]),
    "bundle_includes_itself": (root_with("config_rules: {bundles: {b: [b]}}\n"), ["config", "list"], 3,
                               ["BUILD.yaml:6:26: error: config bundle 'b' includes itself"]),
    "no_default_blames_the_declaration": (root_with("  n: {type: int}\n"), ["query", "//..."], 3,
                                          ["BUILD.yaml:6:3: error: config group 'n' has no default",
                                           "--config=n=VALUE"]),
    "workspace_setting_of_wrong_type": (root_with("workspace_x: 1\n"), ["config", "list"], 3,
                                        ["unknown section 'workspace_x'", "did you mean 'workspace'?"]),
    "remote_timeout_a_string": ({"BUILD.yaml": ROOT.replace("{name: t}", "{name: t, remote_timeout: soon}"),
                                 "targets/a/BUILD.yaml": OK}, ["build", "//..."], 3,
                                ["BUILD.yaml:1:22: error: section 'workspace', setting 'remote_timeout': expected a number"]),
    # target attributes
    "source_a_number": (package("x: {rule: command, srcs: [5], cmd: 'true'}\n"), ["query", "//..."], 3,
                        ["targets/a/BUILD.yaml:1:27: error: //a:x, attribute 'srcs', item 1: expected a string, "
                         "got the integer 5"]),
    "configs_a_mapping": (package("x: {rule: command, configs: [{a: 1}], cmd: 'true'}\n"), ["query", "//..."], 3,
                          ["attribute 'configs', item 1: expected a string, got a mapping"]),
    "int_attribute_huge": (package("x: {rule: download, urls: [file:///x], checksum: 'sha256:00', "
                                   "strip_components: 1000000000000000000000000000000}\n"), ["query", "//..."], 3,
                           ["attribute 'strip_components': expected an integer from 0 to 255"]),
    "env_name_with_equals": (package("x: {rule: command, env: {A=B: x}, cmd: 'true'}\n"), ["build", "//..."], 3,
                             ["attribute 'env', key 'A=B': expected an environment variable name"]),
    "env_value_with_nul": (package('x: {rule: command, env: {A: "a\\0b"}, cmd: "true"}\n'), ["build", "//..."], 3,
                           ["attribute 'env', key 'A': 'a\\x00b' holds a NUL character"]),
    "out_dir_name_too_long": (package(f"x: {{rule: command, out_dirs: [{'d' * 300}], cmd: 'true'}}\n"),
                              ["build", "//..."], 3, ["is too long for the file system"]),
    "timeout_infinite": (package("x: {rule: command, timeout: .inf, cmd: 'true'}\n"), ["build", "//..."], 3,
                         ["attribute 'timeout': expected a number from 0 to 604800, got the number inf"]),
    # toolchain declarations
    "packages_a_number": (toolchain("t: {kind: python, packages: 5}\n"), ["build", "//..."], 3,
                          ["toolchains/t.yaml:1:19: error: toolchain 't', key 'packages': expected a mapping"]),
    "packages_a_string": (toolchain("t: {kind: python, packages: numpy}\n"), ["build", "//..."], 3,
                          ["key 'packages': expected a mapping", "got the string 'numpy'"]),
    "version_args_a_number": (toolchain("t: {kind: tool, binary: bash, version_args: 5}\n"), ["build", "//..."], 3,
                              ["key 'version_args': expected a list"]),
    "version_regex_invalid": (toolchain("t: {kind: tool, binary: bash, version_regex: '((('}\n"), ["build", "//..."],
                              3, ["key 'version_regex': invalid regular expression '((('"]),
    "version_regex_without_group": (toolchain("t: {kind: tool, binary: bash, version_regex: '\\d+'}\n"),
                                    ["build", "//..."], 3, ["expected a regular expression with 1 capturing group"]),
    "version_constraint_invalid": (toolchain("t: {kind: tool, binary: bash, version: '>=>=1'}\n"),
                                   ["build", "//..."], 3, ["key 'version': expected a version constraint"]),
    # command-line values
    "config_int_too_large": (package(OK), ["build", "//...", "--config=batch_size=999999999999999999999999999999"], 3,
                             ["--config: error: config group 'batch_size' takes a int between -2^63 and 2^63"]),
    "config_float_infinite": (package(OK), ["build", "//...", "--config=scale=-inf"], 3,
                              ["config group 'scale' takes a float", "got '-inf'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_located_user_error(workspace, case):
    files, command, code, expected = CASES[case]
    mlb = workspace(files)
    result = mlb(*command)
    output = result.stdout + result.stderr
    assert result.code == code, str(result)
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output}"
    assert "Traceback" not in output and "internal error" not in output
    assert output.count("error:") == 1, output


def test_config_list_runs_when_a_group_has_no_default(workspace):
    mlb = workspace(root_with("  n: {type: int}\n"))
    assert "n  (int, default None)" in mlb.ok("config", "list").stdout


def test_state_dir_and_output_tree_blocked_by_files_name_what_to_remove(workspace):
    mlb = workspace(package(OK))
    (mlb.root / "mlbuild-out").write_text("")
    result = mlb("build", "//...")
    assert result.code == 3 and f"hint: remove {mlb.root / 'mlbuild-out'}" in result.stderr, str(result)
    (mlb.root / "mlbuild-out").unlink()
    shutil.rmtree(mlb.root / ".mlbuild")
    (mlb.root / ".mlbuild").write_text("")
    result = mlb("build", "//...")
    assert result.code == 3 and f"hint: remove {mlb.root / '.mlbuild'}" in result.stderr, str(result)


def test_data_dir_reaching_special_file_systems_is_refused(workspace, tmp_path):
    for directory in ("/", "/proc", "/dev"):
        mlb = workspace(package(f"x: {{rule: command, data_dir: '{directory}', outs: [o], cmd: 'true'}}\n"))
        result = mlb("build", "//...")
        assert result.code == 3, str(result)
        assert f"targets/a/BUILD.yaml:1:20: error: data_dir '{directory}' of //a:x reaches the special file system" \
            in result.stderr, str(result)


def test_special_entries_in_a_dataset_are_skipped_with_one_warning(workspace, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "real.bin").write_bytes(b"1")
    os.mkfifo(data / "pipe")
    (data / "null").symlink_to("/dev/null")
    mlb = workspace(package(f"x: {{rule: command, data_dir: '{data}', outs: [o], cmd: 'ls data > {{{{out}}}}'}}\n"))
    result = mlb.ok("build", "//...")
    assert result.stderr.count("warning:") == 1 and "skipped 2 entries" in result.stderr, str(result)
    assert "null (is a symlink into /dev/null)" in result.stderr and "pipe (is a FIFO" in result.stderr
    assert (mlb.root / "mlbuild-out/default/a/x/o").read_text() == "real.bin\n"


def test_sources_must_be_regular_files_inside_the_workspace(workspace):
    mlb = workspace(package("x: {rule: command, srcs: ['*.txt'], outs: [o], cmd: 'cat {{srcs}} > {{out}}'}\n"))
    (mlb.root / "targets/a/in.txt").write_text("in")
    (mlb.root / "targets/a/leak.txt").symlink_to("/etc/hostname")
    result = mlb("build", "//...")
    assert result.code == 3 and "source targets/a/leak.txt of //a:x is a symlink leaving the workspace" \
        in result.stderr, str(result)
    (mlb.root / "targets/a/leak.txt").unlink()
    os.mkfifo(mlb.root / "targets/a/pipe.txt")
    result = mlb("build", "//...")
    assert result.code == 3 and "source targets/a/pipe.txt of //a:x is a FIFO, not a regular file" \
        in result.stderr, str(result)


def test_a_file_that_is_not_a_program_is_a_failed_action_not_an_internal_error(workspace):
    mlb = workspace(package("x: {rule: command, srcs: [prog], outs: [o], argv: [targets/a/prog]}\n"))
    (mlb.root / "targets/a/prog").write_bytes(b"\x00\x01garbage")
    (mlb.root / "targets/a/prog").chmod(0o755)
    result = mlb("build", "//...")
    assert result.code == 1 and "internal error" not in result.stderr, str(result)
    # Run directly, exec fails with ENOEXEC; run through a network-isolating wrapper, the shell says so.
    assert ("//a:x: cannot run targets/a/prog: Exec format error" in result.stderr
            or "//a:x: command not found" in result.stderr), str(result)


def test_an_unexpected_exception_in_an_action_is_an_internal_error(workspace, monkeypatch):
    from mlbuild.execution import executors

    def broken(ctx, sandbox, logs):
        raise KeyError("a bug")

    monkeypatch.setitem(executors.BUILTIN_EXECUTORS, "subprocess", broken)
    mlb = workspace(package(OK))
    result = mlb("build", "//...")
    assert result.code == 70 and "internal error: KeyError('a bug')" in result.stderr, str(result)
    assert "FAILED" in result.stderr and "Build FAILED" not in result.stderr  # not reported as a failed build


def test_overlapping_output_directories_are_one_error_naming_both_targets(workspace):
    files = {"BUILD.yaml": ROOT,
             "targets/a/BUILD.yaml": "gen: {rule: command, outs: [gen.txt], cmd: 'echo a > {{out}}'}\n",
             "targets/a/gen/BUILD.yaml": "gen.txt: {rule: command, outs: [x], cmd: 'echo b > {{out}}'}\n"}
    mlb = workspace(files)
    for pattern in ("//a:gen", "//a/gen:gen.txt", "//..."):  # whichever is requested, in any order
        result = mlb("build", pattern)
        assert result.code == 3, str(result)
        assert "the outputs of //a:gen and //a/gen:gen.txt overlap: out/a/gen/ holds out/a/gen/gen.txt/" \
            in result.stderr, str(result)
        assert result.stderr.startswith("targets/a/"), result.stderr
    assert not (mlb.root / "mlbuild-out").exists()
