"""Errors a user can cause, each carrying where it happened and the exit code it maps to.

The CLI prints a `UserError` as one message (no traceback) and exits with its code; anything
else is an internal error (traceback only with --verbose). The exit-code table lives here so
the CLI help, the README and the code agree.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_BUILD_FAILED = 1  # an action failed, a test or benchmark verdict was FAIL
EXIT_USAGE = 2  # bad command line (click's own code for usage errors)
EXIT_BAD_INPUT = 3  # build files, labels, configurations: analysis could not finish
EXIT_TOOLCHAIN = 4  # a toolchain required by the configuration is missing or too old
EXIT_NO_TARGETS = 5  # a pattern or test command matched nothing to do
EXIT_INTERRUPTED = 8  # Ctrl-C
EXIT_INTERNAL = 70  # a bug in mlbuild (EX_SOFTWARE)

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_BUILD_FAILED: "build or test failed",
    EXIT_USAGE: "command-line usage error",
    EXIT_BAD_INPUT: "error in build files, labels or configuration",
    EXIT_TOOLCHAIN: "required toolchain missing",
    EXIT_NO_TARGETS: "nothing matched (no targets or no tests)",
    EXIT_INTERRUPTED: "interrupted",
    EXIT_INTERNAL: "internal error (please report)",
}


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a file, 1-based, as editors and compilers print it. Slotted: every key and
    item of every BUILD file has one, kept in the parse cache."""

    file: str
    line: int | None = None
    column: int | None = None

    def __reduce__(self):
        # The parse cache holds one per key and item: rebuilt by the constructor, not by
        # dataclasses' slotted __setstate__ (which looks up the fields for every object).
        return Location, (self.file, self.line, self.column)

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class UserError(Exception):
    """Something the user can fix: printed as `location: error: message` plus a hint."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, location: Location | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.location}: error: {self.message}" if self.location else f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class BuildFileError(UserError):
    """A malformed BUILD.yaml, an unknown attribute, label, config value, or a cycle."""

    exit_code = EXIT_BAD_INPUT


class ToolchainError(UserError):
    """A toolchain the configuration requires is missing or fails its version constraint."""

    exit_code = EXIT_TOOLCHAIN


class ActionError(UserError):
    """An action ran and failed: non-zero exit, timeout, missing output, bad download."""

    exit_code = EXIT_BUILD_FAILED


class NothingToDoError(UserError):
    """A pattern matched no targets, or `test` found no test targets."""

    exit_code = EXIT_NO_TARGETS


def show(value, quote: bool = True, limit: int = 60) -> str:
    """Any value as a short, printable snippet for a message (never raises)."""
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:  # a value whose repr fails still gets a message
        text = f"<{type(value).__name__}>"
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"'{text}'" if quote and isinstance(value, str) else text


def describe(value) -> str:
    """What a value is, for 'got ...' in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {show(value)}"
    if isinstance(value, float):
        return f"the number {show(value)}"
    if isinstance(value, str):
        return f"the string {show(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def did_you_mean(word, choices) -> str | None:
    """A hint naming the closest known spelling, or None when nothing is close."""
    import difflib

    if not isinstance(word, str):
        return None
    close = difflib.get_close_matches(word, [c for c in choices if isinstance(c, str)], n=1)
    return f"did you mean '{close[0]}'?" if close else None
