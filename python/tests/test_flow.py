"""@flow: the decorated function stays the function; the options are checked at decoration;
the agent's shim (shared/ferry-agent/src/shim.py, read from the source)
calls it as it calls a plain function."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Type

import pytest

import ferry
from ferry import Flow, flow

REPO_ROOT = Path(__file__).resolve().parents[2]


@flow
def add(a: int, b: int = 2) -> int:
    """Adds."""
    return a + b


@flow(name="async-job", retries=3, retry_delay=timedelta(minutes=1), timeout=600)
async def fetch_it(n: int) -> str:
    """Fetches."""
    await asyncio.sleep(0)
    return f"got {n}"


def test_calling_a_flow_calls_the_function_and_keeps_its_name_doc_and_signature() -> None:
    assert add(1) == 3
    assert add(1, b=5) == 6
    assert isinstance(add, Flow)
    assert add.__name__ == "add"
    assert add.__doc__ == "Adds."
    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 2) -> 'int'"
    assert add.name == "add"
    assert (add.retries, add.retry_delay_seconds, add.timeout_seconds) == (0, 0, None)


def test_an_async_flow_returns_a_coroutine_to_await_and_takes_its_options() -> None:
    coro = fetch_it(4)
    assert inspect.iscoroutine(coro)
    assert asyncio.run(coro) == "got 4"
    assert fetch_it.__name__ == "fetch_it"
    assert fetch_it.__doc__ == "Fetches."
    assert fetch_it.name == "async-job"
    assert (fetch_it.retries, fetch_it.retry_delay_seconds, fetch_it.timeout_seconds) == (
        3,
        60,
        600,
    )


def test_the_default_flow_name_is_the_function_name_with_dashes() -> None:
    @flow
    def nightly_etl_job() -> None:
        pass

    assert nightly_etl_job.name == "nightly-etl-job"


@pytest.mark.parametrize(
    ("options", "error", "names"),
    [
        ({"retries": -1}, ValueError, "retries"),
        ({"retries": 101}, ValueError, "retries"),
        ({"retries": "2"}, TypeError, "retries"),
        ({"retries": True}, TypeError, "retries"),
        ({"retry_delay": 1.5}, ValueError, "retry_delay"),
        ({"retry_delay": -5}, ValueError, "retry_delay"),
        ({"retry_delay": "30s"}, TypeError, "retry_delay"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": timedelta(milliseconds=1500)}, ValueError, "timeout"),
        ({"name": "bad name"}, ValueError, "name"),
        ({"name": "-dash-first"}, ValueError, "name"),
        ({"name": 7}, TypeError, "name"),
    ],
)
def test_bad_flow_options_are_refused_at_decoration_naming_the_option(
    options: Dict[str, Any], error: Type[Exception], names: str
) -> None:
    with pytest.raises(error, match=rf"^{names}: "):
        flow(**options)
    with pytest.raises(error, match=rf"^{names}: "):
        flow(_plain, **options)


def test_the_package_is_typed_and_exports_its_api() -> None:
    package = Path(ferry.__file__).parent
    assert (package / "py.typed").is_file()
    assert set(ferry.__all__) >= {
        "flow",
        "Flow",
        "Deployment",
        "FerryError",
        "runtime",
        "NotInRunError",
    }


def shim() -> str:
    return (REPO_ROOT / "shared" / "ferry-agent" / "src" / "shim.py").read_text()


@pytest.mark.parametrize("function", ["sync_flow", "async_flow"])
def test_the_agents_shim_calls_a_decorated_flow_with_the_run_parameters(
    tmp_path: Path, function: str
) -> None:
    (tmp_path / "flows.py").write_text(
        "from ferry import flow\n\n"
        "@flow(retries=1)\n"
        "def sync_flow(who: str, times: int = 1) -> None:\n"
        "    print(f'hello {who} x{times}')\n\n"
        "@flow\n"
        "async def async_flow(who: str, times: int = 1) -> None:\n"
        "    print(f'hello {who} x{times}')\n"
    )
    env = dict(os.environ, FERRY_PARAMETERS='{"who": "shim", "times": 2}')
    done = subprocess.run(
        [sys.executable, "-u", "-c", shim(), "flows.py", function],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello shim x2\n"


def _plain() -> None:
    pass


def test_empty_parentheses_are_the_bare_decorator() -> None:
    @flow()
    def with_parens(x: int) -> int:
        return x * 2

    assert isinstance(with_parens, Flow)
    assert with_parens(4) == 8
    assert with_parens.name == "with-parens"
