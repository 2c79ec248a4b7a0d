"""Errors of the ferry package."""

from __future__ import annotations

from typing import Optional, Sequence


class FerryError(Exception):
    """The `ferry` CLI failed, or could not be found or started.

    `message` is what the CLI said (its last error line, without the `error: ` prefix), or
    why it could not run; `exit_code` is its exit status (None when it never ran; -N when
    signal N ended it); `command` is the argv it ran and `stderr` all it printed there.
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: Optional[int] = None,
        command: Sequence[str] = (),
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.command = list(command)
        self.stderr = stderr

    def __str__(self) -> str:
        if self.exit_code is None:
            return self.message
        return f"{self.message} (ferry exited with status {self.exit_code})"


class NotInRunError(RuntimeError):
    """`ferry.runtime` was read outside a Ferry run (FERRY_RUN_ID is not set)."""
