"""Finding and running the `ferry` binary."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Mapping, Optional, Sequence

from .errors import FerryError

__all__ = ["ferry_bin", "run_cli", "error_message"]


def ferry_bin() -> str:
    """The `ferry` binary: FERRY_BIN when set, else `ferry` on PATH.

    Raises FerryError naming both when neither is there.
    """
    configured = os.environ.get("FERRY_BIN")
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise FerryError(
                f"FERRY_BIN={configured} is not an executable file: point it at the ferry "
                "binary (e.g. target/debug/ferry) or unset it to use `ferry` on PATH"
            )
        return configured
    found = shutil.which("ferry")
    if found is None:
        raise FerryError(
            "the ferry binary was not found: set FERRY_BIN to its path or put `ferry` on PATH "
            "(cargo build -p ferry-cli --bin ferry builds it)"
        )
    return found


def error_message(stderr: str) -> str:
    """The CLI's error from its stderr: the last `error: ` line (and what follows it), else
    the last non-empty line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error: "):
            return "\n".join([lines[i][len("error: ") :], *lines[i + 1 :]]).strip()
    return lines[-1].strip() if lines else "no message on stderr"


def run_cli(
    args: Sequence[str],
    *,
    cwd: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
) -> str:
    """Runs `ferry ARGS`, returns its stdout; a non-zero exit raises FerryError with the
    CLI's message and exit code."""
    command = [ferry_bin(), *args]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as e:
        raise FerryError(f"cannot run {command[0]}: {e}", command=command) from e
    if done.returncode != 0:
        raise FerryError(
            error_message(done.stderr),
            exit_code=done.returncode,
            command=command,
            stderr=done.stderr,
        )
    return done.stdout
