"""Ferry's Python SDK: mark a function as a flow, register it, serve it, and read the run it
is in.

    from ferry import flow, runtime

    @flow(retries=2, retry_delay=30)
    def etl(day: str = "today") -> None:
        print("run", runtime.run_id, "attempt", runtime.attempt, "for", day)

    if __name__ == "__main__":
        etl.deploy("nightly", cron="0 2 * * *", work_queue="prod")

Registering drives the `ferry` binary (FERRY_BIN, else `ferry` on PATH), exactly as
`ferry deployment build -a` does.
"""

from . import runtime
from ._flow import Flow, flow
from .deployment import Deployment, Schedule
from .errors import FerryError, NotInRunError

__all__ = [
    "flow",
    "Flow",
    "Deployment",
    "Schedule",
    "FerryError",
    "NotInRunError",
    "runtime",
]
__version__ = "0.1.0"
