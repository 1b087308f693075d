"""How a sandbox (execution/sandbox.py) stages an input: a small one is copied, a large one
hardlinked and checked after the action (test_build_cli.py covers that end to end), and a large
one on another filesystem, which cannot be hardlinked, copied like a small one; and what it
collects after the action: every declared output with its size, however it was reached."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mlbuild.actions import Action
from mlbuild.execution.sandbox import COPY_BELOW_BYTES, Sandbox
from mlbuild.storage.cas import ContentStore


@pytest.fixture
def workspace_elsewhere(tmp_path):
    """A workspace on tmpfs when the sandboxes (under tmp_path) are on another filesystem."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the temp directory's")
    root = Path(tempfile.mkdtemp(dir=shm, prefix="mlbuild-staging-"))
    yield root
    shutil.rmtree(root)


def test_a_large_input_on_another_filesystem_is_copied_with_its_mode_and_times(tmp_path, workspace_elsewhere):
    source = workspace_elsewhere / "weights.bin"
    source.write_bytes(os.urandom(1024) * (COPY_BELOW_BYTES // 1024 + 1))
    os.chmod(source, 0o750)
    os.utime(source, ns=(1_000_000_000, 2_000_000_000))
    action = Action(label="//p:t", mnemonic="Command", implementation="command/1", argv=("true",),
                    sources=(("targets/p/weights.bin", str(source)),))
    sandbox = Sandbox(tmp_path / "sandboxes", action)
    try:
        sandbox.stage(workspace_elsewhere, {}, ContentStore(tmp_path / "cache"))
        staged = sandbox.root / "targets/p/weights.bin"
        st, original = staged.stat(), source.stat()
        assert st.st_ino != original.st_ino and st.st_dev != original.st_dev
        assert staged.read_bytes() == source.read_bytes()
        assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o750, 2_000_000_000)
        with open(staged, "ab") as f:  # a copy: the action may change it, the workspace keeps its file
            f.write(b"changed")
        sandbox.check_inputs_untouched()
        assert source.stat().st_size == original.st_size
    finally:
        sandbox.remove()


def test_collected_outputs_carry_their_sizes(tmp_path):
    """A plain output, one declared through an in-sandbox symlink, and the files of an output
    directory: each comes back with the size it has (recorded as the blob's size)."""
    action = Action(label="//p:t", mnemonic="Command", implementation="command/1", argv=("true",),
                    outputs=("out/p/t/plain.txt", "out/p/t/linked.txt"), output_dirs=("out/p/t/dir",))
    sandbox = Sandbox(tmp_path / "sandboxes", action)
    try:
        sandbox.stage(tmp_path, {}, ContentStore(tmp_path / "cache"))
        outdir = sandbox.root / "out/p/t"
        (outdir / "plain.txt").write_bytes(b"x" * 3)
        (outdir / "real.txt").write_bytes(b"y" * 5)
        (outdir / "linked.txt").symlink_to("real.txt")
        (outdir / "dir/sub").mkdir(parents=True)
        (outdir / "dir/sub/a.bin").write_bytes(b"z" * 7)
        files, directories, _ = sandbox.collect("//p:t")
        assert {relative: size for relative, _, _, size in files} == {
            "plain.txt": 3, "linked.txt": 5, "dir/sub/a.bin": 7}
        assert directories == ["dir", "dir/sub"]
    finally:
        sandbox.remove()
