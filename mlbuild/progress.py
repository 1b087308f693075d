"""Build progress: a live display on a terminal (rich), plain lines otherwise, and the summary."""

from __future__ import annotations

import sys
import threading
import time

from .execution.builder import BuildSummary
from .execution.outcome import Status


class PlainProgress:
    """One line per action that did something; quiet about what was already up to date."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.done = 0
        self.started: dict[str, float] = {}
        self._lock = threading.Lock()

    def event(self, event: str, label: str, mnemonic: str, outcome) -> None:
        with self._lock:
            if event == "started":
                self.started[label] = time.monotonic()
                return
            self.done += 1
            elapsed = time.monotonic() - self.started.pop(label, time.monotonic())
            self.report(label, mnemonic, outcome.status, elapsed, outcome.node)

    def report(self, label: str, mnemonic: str, status: str, elapsed: float, node: str | None) -> None:
        if status in (Status.UP_TO_DATE, Status.NO_ACTION, Status.SKIPPED):
            return
        words = {Status.EXECUTED: "built", Status.LOCAL_HIT: "cache hit", Status.REMOTE_HIT: "remote hit",
                 Status.FAILED: "FAILED", Status.TEST_FAILED: "FAILED"}[status]
        self.message(f"[{self.done}/{self.total}] {words} {label} ({mnemonic}, {elapsed:.1f}s){where(node)}")

    def message(self, text: str) -> None:
        self.stream.write(text + "\n")  # one write(2) per line; print() makes two

    def download(self, label: str):
        """Where a download of `label` reports bytes; plain output shows none."""
        from .downloads import NullProgress

        return NullProgress()

    def close(self) -> None:
        pass


class LiveProgress(PlainProgress):
    """A rich live panel: running actions with their elapsed time, done/total and hit counts."""

    def __init__(self, total: int, stream=None):
        super().__init__(total, stream)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=self.stream)
        self.counts = {Status.EXECUTED: 0, Status.LOCAL_HIT: 0, Status.REMOTE_HIT: 0, Status.UP_TO_DATE: 0}
        self.transfers: dict[str, TransferProgress] = {}
        self.live = Live(self._render(), console=self.console, refresh_per_second=8,
                         get_renderable=self._render, transient=True)
        self.live.start()

    def report(self, label, mnemonic, status, elapsed, node):
        if status in self.counts:
            self.counts[status] += 1
        if status in (Status.EXECUTED, Status.REMOTE_HIT, Status.FAILED, Status.TEST_FAILED):
            self.live.console.print(f"[{self.done}/{self.total}] " + {
                Status.EXECUTED: "[green]built[/]", Status.REMOTE_HIT: "[cyan]remote hit[/]",
                Status.FAILED: "[red]FAILED[/]", Status.TEST_FAILED: "[red]FAILED[/]"}[status]
                + f" {label} ({mnemonic}, {elapsed:.1f}s){where(node)}", highlight=False)

    def _render(self):
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        cached = self.counts[Status.LOCAL_HIT] + self.counts[Status.UP_TO_DATE]
        table.add_row(f"[bold]{self.done}/{self.total}[/] done, {self.counts[Status.EXECUTED]} executed, "
                      f"{cached} cached, {self.counts[Status.REMOTE_HIT]} remote hits, {len(self.started)} running")
        now = time.monotonic()
        for label, since in sorted(self.started.items(), key=lambda item: item[1])[:8]:
            transfer = self.transfers.get(label)
            table.add_row(f"  [yellow]running[/] {label} {now - since:.1f}s" + (transfer.describe() if transfer else ""))
        return table

    def download(self, label: str):
        transfer = self.transfers[label] = TransferProgress()
        return transfer

    def message(self, text: str) -> None:
        self.live.console.print(text, highlight=False)

    def close(self) -> None:
        self.live.stop()


class TransferProgress:
    """A download's bytes, rate and ETA, shown on its action's line of the live display."""

    def __init__(self):
        self.total, self.done, self.since = None, 0, time.monotonic()

    def start(self, url: str, total_bytes: int | None) -> None:
        self.total, self.done, self.since = total_bytes, 0, time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n

    def finish(self) -> None:
        pass

    def describe(self) -> str:
        rate = self.done / max(time.monotonic() - self.since, 1e-3)
        text = f"  {self.done / 2**20:.1f}"
        if self.total:
            eta = (self.total - self.done) / rate if rate else 0
            text += f"/{self.total / 2**20:.1f} MiB, {rate / 2**20:.1f} MiB/s, ETA {eta:.0f}s"
        else:
            text += f" MiB, {rate / 2**20:.1f} MiB/s"
        return text


def where(node: str | None) -> str:
    """" on node 3f2a9c1e" for an action a cluster ran (Ray node ids are long hex strings)."""
    return f" on node {node[:8]}" if node else ""


def make_progress(total: int, stream=None):
    stream = stream or sys.stderr
    return LiveProgress(total, stream) if stream.isatty() else PlainProgress(total, stream)


def summary_line(summary: BuildSummary) -> str:
    return summary_text(
        targets=len(summary.outcomes), executed=summary.count(Status.EXECUTED),
        up_to_date=summary.count(Status.UP_TO_DATE), hits=summary.count(Status.LOCAL_HIT),
        remote=summary.count(Status.REMOTE_HIT), failed=summary.count(Status.FAILED, Status.TEST_FAILED),
        skipped=summary.count(Status.SKIPPED), wall_s=summary.wall_s, executed_remotely=summary.remote_executions,
    )


def summary_text(*, targets: int, executed: int, up_to_date: int, hits: int, remote: int, failed: int,
                 skipped: int, wall_s: float, executed_remotely: int = 0) -> str:
    """The one summary line every build ends with (also the no-op fast path's; tests parse it)."""
    verdict = "OK" if failed + skipped == 0 else "FAILED"
    text = (f"Build {verdict}: {targets} targets, {executed} executed, "
            f"{up_to_date + hits} cached ({up_to_date} up to date, {hits} local hits), {remote} remote hits")
    if executed_remotely:
        text += f", {executed_remotely} executed remotely"
    if failed or skipped:
        text += f", {failed} failed, {skipped} skipped"
    return text + f" in {wall_s:.2f}s"
