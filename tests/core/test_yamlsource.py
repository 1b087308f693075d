"""Loading a BUILD file (loading/yamlsource.py) under the conditions a command runs in."""

from __future__ import annotations

import gc

from mlbuild.loading.yamlsource import load_yaml


def test_a_loaded_build_file_leaves_nothing_for_the_cyclic_collector(tmp_path):
    """Commands run with the cyclic collector off (cli/main.py), so whatever parsing leaves in a
    reference cycle stays in memory until the process ends: at 100,000 targets, 400 MiB."""
    path = tmp_path / "BUILD.yaml"
    path.write_text("defaults: &d {rule: command, outs: [o.txt]}\n"
                    "a: {<<: *d, cmd: 'echo {{config:device}} > {{out}}', tags: [x, y]}\n"
                    "b: {rule: command, deps: [':a'], cmd: {select: {default: 'true'}}, when: 2026-12-02}\n")
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    try:
        assert load_yaml(path)["a"]["outs"] == ["o.txt"]
        assert gc.collect() == 0
    finally:
        if collecting:
            gc.enable()
