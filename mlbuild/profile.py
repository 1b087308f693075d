"""`--profile FILE`: the build as a Chrome trace-event JSON, loadable in Perfetto or chrome://tracing.

One complete ("X") event per action on the lane (tid) that ran it, named by its label, with
the outcome (executed, cached, remote, up-to-date, failed) as its category and, for an action
a cluster ran, the node in its args; up-to-date checks
done inline appear as zero-length events on lane 0.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


class TraceRecorder:
    def __init__(self):
        self._origin = time.monotonic()
        self._events: list[dict] = []
        self._open: dict[str, tuple[float, int]] = {}
        self._free_lanes: list[int] = []
        self._next_lane = 1
        self._lock = threading.Lock()

    def _now_us(self) -> float:
        return (time.monotonic() - self._origin) * 1e6

    def event(self, event: str, label: str, mnemonic: str, outcome) -> None:
        with self._lock:
            if event == "started":
                if self._free_lanes:
                    lane = self._free_lanes.pop()
                else:
                    lane, self._next_lane = self._next_lane, self._next_lane + 1
                self._open[label] = (self._now_us(), lane)
                return
            start, lane = self._open.pop(label, (self._now_us(), 0))
            if lane:
                self._free_lanes.append(lane)
            self._events.append({
                "name": label, "cat": outcome.status, "ph": "X", "ts": round(start, 1),
                "dur": round(self._now_us() - start, 1), "pid": os.getpid(), "tid": lane,
                "args": {"mnemonic": mnemonic, "outcome": outcome.status,
                         **({"node": outcome.node} if outcome.node else {})},
            })

    def write(self, path: Path) -> None:
        meta = [{"name": "thread_name", "ph": "M", "pid": os.getpid(), "tid": 0, "args": {"name": "inline checks"}}]
        meta += [{"name": "thread_name", "ph": "M", "pid": os.getpid(), "tid": lane, "args": {"name": f"worker {lane}"}}
                 for lane in range(1, self._next_lane)]
        Path(path).write_text(json.dumps({"traceEvents": meta + self._events, "displayTimeUnit": "ms"}))
