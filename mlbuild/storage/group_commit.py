"""Group commit: action-cache entries recorded in batches by one background thread.

Executing an action ends with its blobs written to the CAS; making them durable and recording
the entry costs a filesystem sync, which for thousands of trivial actions would cost more
than running them. So a worker hands the entry over and moves on, and this thread records
whatever has accumulated: one sync for the whole batch's blobs, then the batch's entries
(ActionCache.store_all), then each entry's callbacks (release its per-key lock, report the
action as built). Whatever is reported has its entry on disk: a kill -9 loses only work that
was never reported. Syncs are at least GATHER_S apart (unless a flush waits): with trivial
actions finishing every few milliseconds a batch would otherwise be one entry, and every sync
would also write out the files of sandboxes about to be deleted.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from .action_cache import ActionCache, ActionResult

GATHER_S = 0.05


class GroupCommit:
    def __init__(self, actions: ActionCache):
        self._actions = actions
        self._queue: list[tuple[str, ActionResult, bytes | None]] = []
        self._callbacks: dict[str, list[Callable[[], None]]] = {}  # key -> to call once it is recorded
        self._unfinished = 0  # entries handed over whose callbacks have not all run
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._flushing = 0  # flush() calls waiting: record at once
        self._idle = False  # the thread waits for an entry; while it gathers, a new one need not wake it

    def store(self, key: str, result: ActionResult, then: Callable[[], None],
              key_components: bytes | None = None) -> None:
        """Record `result` under `key` soon (with the key's canonical encoding, for `explain`);
        call `then` once it is recorded (or failed to be)."""
        with self._condition:
            self._queue.append((key, result, key_components))
            self._unfinished += 1
            self._callbacks.setdefault(key, []).append(then)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mlbuild-commit", daemon=True)
                self._thread.start()
            if self._idle:
                self._condition.notify_all()

    def after(self, key: str, callback: Callable[[], None]) -> None:
        """Call `callback` once `key`'s pending entry is recorded: now if none is pending."""
        with self._condition:
            pending = self._callbacks.get(key)
            if pending is not None:
                pending.append(callback)
                return
        callback()

    def flush(self) -> None:
        """Wait until every entry handed over so far is recorded; raise what recording raised."""
        with self._condition:
            self._flushing += 1
            self._condition.notify_all()
            self._condition.wait_for(lambda: self._unfinished == 0)
            self._flushing -= 1
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self) -> None:
        last_sync = 0.0
        while True:
            with self._condition:
                self._idle = True
                self._condition.wait_for(lambda: self._queue)
                self._idle = False
                gather = last_sync + GATHER_S - time.monotonic()
                if gather > 0:
                    self._condition.wait_for(lambda: self._flushing, timeout=gather)
                batch, self._queue = self._queue, []
            last_sync = time.monotonic()
            try:
                self._actions.store_all(batch)
            except BaseException as exc:  # noqa: BLE001 - reported by flush(); the callbacks still run
                self._error = self._error or exc
            with self._condition:
                callbacks = [c for key, _, _ in batch for c in self._callbacks.pop(key, [])]
            for callback in callbacks:
                try:
                    callback()
                except BaseException as exc:  # noqa: BLE001 - reported by flush(); the others still run
                    self._error = self._error or exc
            with self._condition:
                self._unfinished -= len(batch)
                self._condition.notify_all()
