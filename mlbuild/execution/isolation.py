"""What an action's process may reach beyond its sandbox directory: the network, the host.

An action runs without network unless it declares it (a `network` tag or attribute), as
Bazel's block-network does: its process starts in an empty network namespace (even loopback
is down), so a build step cannot quietly depend on a server, and an air-gapped machine
behaves like a connected one. Downloads are mlbuild's own in-process work and keep the
network. As root the thread that spawns the process enters the namespace for the spawn (a
network namespace belongs to a thread and a child starts in its parent thread's), which
spares exec'ing `unshare --net` before every action; the namespace, lent to one running
action at a time, serves the next action too while it is still empty, and is made anew when
an action left an interface up, added one, left a socket open in it, or left a process of
its process group running. (A daemon that left the group and opens a socket or brings an
interface up only after the next action started is the gap this reuse leaves against a
namespace per action.) Otherwise a user namespace mapping the caller to itself makes it
possible (`unshare --user --map-current-user --net`, a new one per action); where neither
works the action fails with a message saying so, rather than running with the network on.

An action whose toolchains include a container image runs inside that image instead: the
sandbox is bind-mounted at the same path (so every path in argv and env holds), as the
caller's uid:gid, `--network none` unless declared, its `resources:` as docker limits, and
`--gpus N` when it declares GPUs. The container is named after the sandbox so a timeout or
Ctrl-C, which kills the docker client, can remove it too.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import shutil
import socket
import struct
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..actions import Action
from ..errors import ActionError


@dataclass(frozen=True)
class Confined:
    """The command line that runs an action confined, and the env its first process gets."""

    argv: list[str]
    env: dict[str, str]
    no_network: bool = False  # spawn it in an empty network namespace (`empty_network_namespace`)
    container_name: str | None = None
    runtime: str | None = None

    def remove_container(self) -> None:
        """After a timeout or cancel: the container outlives its killed client; remove it."""
        if self.container_name:
            subprocess.run([self.runtime, "rm", "--force", self.container_name],
                           capture_output=True, timeout=60, check=False)


def run_confined(runner, sandbox, stdout, stderr):
    """Run the sandbox's action confined, through `runner` (a ProcessRunner); its result."""
    action = sandbox.action
    confined = confine(action, sandbox.argv(), sandbox.env(), sandbox.root)
    result = runner.run(confined.argv, sandbox.root, confined.env, stdout, stderr, action.timeout_s,
                        no_network=confined.no_network)
    if result.timed_out or result.cancelled:
        confined.remove_container()
    return result


def confine(action: Action, argv: list[str], env: dict[str, str], sandbox_root: Path) -> Confined:
    """`argv` as the action must run: in its container, else in a network namespace unless it
    declares network, else as is."""
    if action.container is not None:
        return container_command(action, argv, env, sandbox_root)
    if action.network:
        return Confined(list(argv), env)
    if _threads_can_unshare():
        return Confined(list(argv), env, no_network=True)
    return Confined([*network_namespace_prefix(action.label), *argv], env)


_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1


class _EmptyNetworkNamespace:
    """A network namespace with no interface up (loopback is down), kept open for one action
    after another: making a namespace costs more than a trivial action (the kernel sets up, and
    later tears down, every protocol's state for it), so it is made anew only when an action
    changed it."""

    def __init__(self):
        self._fd: int | None = None
        self._sockstat: int | None = None  # its /proc net files, opened inside it: they answer for it
        self._dev: int | None = None
        self._interfaces: list[bytes] = []  # as made: loopback, and a kernel's fallback tunnels
        self._probe: socket.socket | None = None  # a socket of the namespace: asks it about its interfaces

    @contextmanager
    def spawning(self):
        """Processes the calling thread spawns in the body start in this namespace, made (again)
        first if it is not, or no longer, empty; then the thread goes back to mlbuild's own."""
        home = _home_network_namespace()
        try:
            if self._fd is not None and self._still_empty():
                _namespace_call("setns", self._fd, _CLONE_NEWNET)
            else:
                self._make()
            yield
        finally:
            _namespace_call("setns", home, _CLONE_NEWNET)

    def _still_empty(self) -> bool:
        """Whether the actions that ran in it left it as made: no socket but the probe (a process
        an action left running and listening would hold one), the same interfaces, none up.
        Asked through /proc net files opened inside it when it was made (such a file answers
        for the namespace it was opened in, wherever it is read from, and a re-read costs no
        path lookup); not through netlink, whose sockets count for a while after closing.
        (A kernel that counts sockets system-wide gets a new namespace every time.)"""
        return (os.pread(self._sockstat, 64, 0).startswith(b"sockets: used 1\n")
                and _interfaces(self._dev) == self._interfaces
                and not any(map(self._is_up, self._interfaces)))

    def _is_up(self, interface: bytes) -> bool:
        request = struct.pack("16sH14x", interface, 0)
        return bool(struct.unpack_from("16sH", fcntl.ioctl(self._probe, _SIOCGIFFLAGS, request))[1] & _IFF_UP)

    def retire(self) -> None:
        """Let the next action have a new namespace; this one goes when the last process in it
        exits."""
        if self._fd is not None:
            for fd in (self._fd, self._sockstat, self._dev):
                os.close(fd)
            self._probe.close()
            self._fd = None

    def _make(self) -> None:
        """A new namespace, entered by the calling thread, in place of the old one."""
        _namespace_call("unshare", _CLONE_NEWNET)
        self.retire()
        self._fd, self._sockstat, self._dev = (os.open(f"/proc/thread-self/{name}", os.O_RDONLY | os.O_CLOEXEC)
                                               for name in ("ns/net", "net/sockstat", "net/dev"))
        self._probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._interfaces = _interfaces(self._dev)


def _interfaces(dev: int) -> list[bytes]:
    """The names of the interfaces of the network namespace whose /proc net/dev `dev` is."""
    table = os.pread(dev, 1 << 16, 0)
    return [line.partition(b":")[0].strip() for line in table.splitlines()[2:]]


_idle_namespaces: list[_EmptyNetworkNamespace] = []
_idle_namespaces_lock = threading.Lock()


@contextmanager
def empty_network_namespace():
    """Lend an action an empty network namespace for the body, its whole run (no two running
    actions share one): its `spawning()` starts the action's process in it, and `retire()`
    keeps it from the next action when processes of this one outlive it."""
    with _idle_namespaces_lock:
        namespace = _idle_namespaces.pop() if _idle_namespaces else _EmptyNetworkNamespace()
    try:
        yield namespace
    finally:
        with _idle_namespaces_lock:
            _idle_namespaces.append(namespace)


@functools.cache
def _home_network_namespace() -> int:
    """mlbuild's own network namespace, opened by a thread that is in it (every thread is,
    outside `spawning`)."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _namespace_call(name: str, *args) -> None:
    if getattr(_libc(), name)(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{name}: {os.strerror(error)}")


@functools.cache
def _libc():
    return ctypes.CDLL(None, use_errno=True)


@functools.lru_cache(maxsize=None)
def _threads_can_unshare() -> bool:
    """Whether this process may give a thread a network namespace of its own (root with
    CAP_SYS_ADMIN; a user namespace cannot be entered by one thread of many)."""
    if os.geteuid() != 0:
        return False
    try:
        with empty_network_namespace() as namespace, namespace.spawning():
            return True
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def _namespace_prefix() -> tuple[str, ...] | str:
    """The working `unshare` invocation for a private network namespace, or why there is none."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "util-linux's `unshare` is not installed"
    attempts = [(unshare, "--net", "--")] if os.geteuid() == 0 else []
    attempts.append((unshare, "--user", "--map-current-user", "--net", "--"))
    error = ""
    for prefix in attempts:
        done = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return prefix
        error = done.stderr.strip()
    return f"the kernel refused a new network namespace ({error})"


def network_namespace_prefix(label: str) -> tuple[str, ...]:
    prefix = _namespace_prefix()
    if isinstance(prefix, str):
        raise ActionError(
            f"{label}: cannot run without network: {prefix}",
            hint="allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 or "
                 "user.max_user_namespaces), run as root, or tag the target `network` to let it reach the network",
        )
    return prefix


def container_command(action: Action, argv: list[str], env: dict[str, str], sandbox_root: Path) -> Confined:
    """`docker run` (or podman) of `argv` in the action's image, the sandbox mounted in place."""
    runtime = action.container_runtime or "docker"
    name = f"mlbuild-{sandbox_root.name}"
    resources = action.resources
    command = [
        runtime, "run", "--rm", "--init", "--name", name,
        "--network", "host" if action.network else "none",
        "--user", f"{os.getuid()}:{os.getgid()}",
        "--volume", f"{sandbox_root}:{sandbox_root}", "--workdir", str(sandbox_root),
        "--cpus", f"{max(resources.cpus, 0.01):g}",
    ]
    if resources.memory_mb:
        command += ["--memory", f"{resources.memory_mb}m"]
    if resources.gpus:
        command += ["--gpus", str(resources.gpus)]
    for key, value in sorted(env.items()):
        command += ["--env", f"{key}={value}"]
    command += [action.container, *argv]
    client_env = {k: v for k, v in os.environ.items() if k.startswith(("DOCKER_", "CONTAINER_", "XDG_RUNTIME"))}
    client_env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    client_env["HOME"] = env.get("HOME", str(sandbox_root))
    return Confined(command, client_env, container_name=name, runtime=runtime)
