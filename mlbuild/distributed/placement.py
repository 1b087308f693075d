"""Which actions a remote executor runs, and which stay on the client.

Downloads stay (they use the client's network, mirrors and --distdir), as do actions that
cannot run anywhere yet (`unavailable`), targets tagged `local` (they need something only the
client has), actions in a container (the image is loaded on the client; nodes do not fetch
images yet), and tiny actions: one that took less than a round trip through the cluster and
the remote CAS last time is cheaper to run here.
"""

from __future__ import annotations

from ..actions import Action

TINY_ACTION_S = 0.05
_CLIENT_EXECUTORS = ("download", "unavailable")


def runs_remotely(action: Action, last_duration_s: float | None) -> bool:
    if action.executor in _CLIENT_EXECUTORS or "local" in action.tags or action.container is not None:
        return False
    return last_duration_s is None or last_duration_s >= TINY_ACTION_S
