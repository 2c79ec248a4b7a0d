"""What a flow knows about the run it is in, from the environment the agent gives every run.

Inside a run (the agent sets FERRY_RUN_ID and the rest)::

    from ferry import runtime

    runtime.run_id          # str, FERRY_RUN_ID
    runtime.attempt         # int, FERRY_ATTEMPT (1 for the first attempt, 2 for its retry ...)
    runtime.parameters      # dict, FERRY_PARAMETERS (the deployment's defaults and the run's own)
    runtime.scheduled_time  # aware datetime (UTC), FERRY_SCHEDULED_TIME
    runtime.deployment      # str `flow/name`, FERRY_DEPLOYMENT
    runtime.in_run          # bool: whether this process runs inside a Ferry run

Outside a run (the function called directly, a test), reading any of them except `in_run`
raises `NotInRunError` naming the attribute: a flow that also runs outside Ferry checks
`runtime.in_run` first. Values are read from the environment at each access (never cached),
and a value the agent would never write (FERRY_ATTEMPT that is no number ...) raises
`RuntimeError` naming the variable.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict

from ._time import parse_rfc3339
from .errors import NotInRunError

__all__ = [
    "run_id",
    "attempt",
    "parameters",
    "scheduled_time",
    "deployment",
    "in_run",
    "NotInRunError",
]

_VARIABLES = {
    "run_id": "FERRY_RUN_ID",
    "attempt": "FERRY_ATTEMPT",
    "parameters": "FERRY_PARAMETERS",
    "scheduled_time": "FERRY_SCHEDULED_TIME",
    "deployment": "FERRY_DEPLOYMENT",
}


def _in_run() -> bool:
    return bool(os.environ.get("FERRY_RUN_ID"))


def _raw(attribute: str) -> str:
    variable = _VARIABLES[attribute]
    if not _in_run():
        raise NotInRunError(
            f"ferry.runtime.{attribute}: not inside a Ferry run (FERRY_RUN_ID is not set; "
            "the agent sets it for every run): check ferry.runtime.in_run first when the "
            "flow also runs outside Ferry"
        )
    value = os.environ.get(variable)
    if value is None:
        raise RuntimeError(
            f"ferry.runtime.{attribute}: {variable} is not set although FERRY_RUN_ID is: "
            "this process was not started by a Ferry agent of this version"
        )
    return value


def _value(attribute: str) -> Any:
    raw = _raw(attribute)
    variable = _VARIABLES[attribute]
    if attribute == "attempt":
        try:
            return int(raw)
        except ValueError:
            raise RuntimeError(
                f"ferry.runtime.attempt: {variable}={raw!r} is not a number"
            ) from None
    if attribute == "parameters":
        try:
            parsed = json.loads(raw or "{}")
        except ValueError as e:
            raise RuntimeError(f"ferry.runtime.parameters: {variable} is not JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise RuntimeError(f"ferry.runtime.parameters: {variable} is not a JSON object")
        return parsed
    if attribute == "scheduled_time":
        try:
            return parse_rfc3339(raw)
        except ValueError as e:
            raise RuntimeError(f"ferry.runtime.scheduled_time: {variable}: {e}") from None
    return raw


if TYPE_CHECKING:
    run_id: str
    attempt: int
    parameters: Dict[str, Any]
    scheduled_time: datetime
    deployment: str
    in_run: bool
else:

    def __getattr__(name: str) -> Any:
        if name == "in_run":
            return _in_run()
        if name in _VARIABLES:
            return _value(name)
        raise AttributeError(f"module 'ferry.runtime' has no attribute {name!r}")

    def __dir__() -> list:
        return sorted([*globals(), *_VARIABLES, "in_run"])
