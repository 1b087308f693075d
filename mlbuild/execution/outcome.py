"""What became of each target in a build: one status, and a result, an error or a blocker.

The scheduler, the builder, the progress display and the CLI all speak in these terms, so a
status is written once here and nowhere as a string literal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Hashable

from ..storage.action_cache import ActionResult


class Status(StrEnum):
    UP_TO_DATE = "up-to-date"  # key and output tree unchanged since the last build: nothing done
    LOCAL_HIT = "cached"  # result found in the local action cache
    REMOTE_HIT = "remote"  # result found in the remote cache
    EXECUTED = "executed"  # ran in a sandbox
    NO_ACTION = "no-action"  # an alias or group: nothing to run
    TEST_FAILED = "test-failed"  # a test or benchmark failed: reported, but dependents still run
    FAILED = "failed"  # the action could not produce its outputs: dependents are skipped
    SKIPPED = "skipped"  # not attempted: a dependency failed, or the build stopped early

    @property
    def blocks_dependents(self) -> bool:
        return self in (Status.FAILED, Status.SKIPPED)

    @property
    def cached(self) -> bool:
        return self in (Status.UP_TO_DATE, Status.LOCAL_HIT, Status.REMOTE_HIT)


@dataclass(frozen=True)
class Outcome:
    status: Status
    result: ActionResult | None = None  # what the action produced (or reused)
    error: BaseException | None = None  # why it FAILED
    blocked_by: Hashable | None = None  # the failed dependency that SKIPPED it
    node: str | None = None  # the cluster node that EXECUTED it, when a remote executor did

    def __post_init__(self):
        object.__setattr__(self, "status", Status(self.status))  # "executed" reads as Status.EXECUTED
