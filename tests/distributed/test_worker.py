"""The worker side alone (no Ray): what it refuses before running anything."""

from __future__ import annotations

import pytest

from mlbuild import __version__
from mlbuild.actions import Action
from mlbuild.distributed import worker
from mlbuild.distributed.task import RemoteTask, ToolchainSpec
from mlbuild.errors import Location
from mlbuild.loading.yamlsource import LocatedDict
from mlbuild.storage.remote import RemoteOptions
from mlbuild.toolchains.host import detect_python


@pytest.fixture
def fresh_worker(monkeypatch, tmp_path):
    monkeypatch.setenv("MLBUILD_CACHE_DIR", str(tmp_path / "node-cache"))
    monkeypatch.setattr(worker, "_worker", None)


def _declaration(**fields) -> LocatedDict:
    """A toolchain declaration as the client loaded it from its toolchains/ file."""
    decl = LocatedDict(fields)
    decl.location, decl.key_locations, decl.marks = Location("toolchains/python.yaml", 1, 1), {}, frozenset()
    return decl


def _task(keyed_digest: str, client_fingerprint: dict, version: str = __version__) -> RemoteTask:
    action = Action(label="//p:train", mnemonic="Command", implementation="command/1", argv=("true",),
                    toolchains=(("py", keyed_digest),))
    return RemoteTask(action=action, key="0" * 64, inputs=(), dep_results=(),
                      toolchains=(ToolchainSpec("py", _declaration(kind="python"), client_fingerprint),),
                      remote=RemoteOptions("http://127.0.0.1:1"), is_test=False, publish=True,
                      client_version=version)


def test_a_toolchain_fingerprint_differing_from_the_key_is_refused_naming_both(fresh_worker):
    here = detect_python("py", {})
    client = {**here.fingerprint, "version": "3.99.0"}
    keyed = "f" * 64
    report = worker.run_task(_task(keyed, client), "a1b2c3d4e5f6a7b8")
    assert report.result is None and report.failure.kind == "toolchain"
    message = report.failure.message
    assert message.startswith("//p:train: toolchain unusable on node a1b2c3d4e5f6:")
    assert f"fingerprint {here.digest[:16]} on this node but {keyed[:16]} in the action's key" in message
    assert f"version: {here.fingerprint['version']} here vs 3.99.0 on the client" in message


def test_a_task_from_another_mlbuild_version_is_refused(fresh_worker):
    report = worker.run_task(_task("f" * 64, {}, version="0.0.1"), "a1b2c3d4e5f6a7b8")
    assert report.failure.kind == "version"
    assert f"runs mlbuild {__version__}, the client 0.0.1" in report.failure.message
