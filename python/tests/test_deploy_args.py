"""Flow.deploy's arguments: the entrypoint computed from the flow's file and `path`, the
`ferry deployment build` flags each argument becomes, and bad arguments refused naming the
argument before anything runs (a FERRY_BIN that records its calls is never called)."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Type

import pytest

from conftest import load_module, write_project
from ferry import FerryError, flow
from ferry._flow import deploy_args, entrypoint_of

FLOWS = """
from ferry import flow

@flow(name="etl", retries=2, retry_delay=30, timeout=3600)
def nightly_etl(day: str, limit: int = 10) -> None:
    print(day, limit)

@flow
def takes_anything(**kwargs: object) -> None:
    pass

def _impl() -> None:
    pass

alias = flow(_impl)

def make() -> object:
    @flow
    def inner() -> None:
        pass
    return inner
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj", {"flows/etl.py": FLOWS, "README.md": "x"})


@pytest.fixture
def mod(project: Path) -> Any:
    return load_module(project / "flows" / "etl.py")


def test_the_entrypoint_is_the_flows_file_relative_to_path_and_its_top_level_name(
    project: Path, mod: Any
) -> None:
    assert entrypoint_of(mod.nightly_etl, project) == "flows/etl.py:nightly_etl"
    assert entrypoint_of(mod.nightly_etl, project / "flows") == "etl.py:nightly_etl"
    assert (
        entrypoint_of(mod.nightly_etl, str(project / "flows" / "..")) == "flows/etl.py:nightly_etl"
    )
    # Bound under another name than the function's: the name the agent can look up.
    assert entrypoint_of(mod.alias, project) == "flows/etl.py:alias"


def test_the_entrypoint_of_a_symlinked_project_is_relative_to_the_real_directory(
    project: Path, mod: Any, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(project)
    assert entrypoint_of(mod.nightly_etl, link) == "flows/etl.py:nightly_etl"


def test_a_flow_outside_path_or_not_at_top_level_is_refused(
    project: Path, mod: Any, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(
        ValueError, match=r"^path: the flow's file .*etl\.py is not inside the project directory"
    ):
        entrypoint_of(mod.nightly_etl, other)
    with pytest.raises(ValueError, match=r"^path: .* is not a directory"):
        entrypoint_of(mod.nightly_etl, project / "README.md")
    with pytest.raises(ValueError, match=r"is not defined at the top level of a module"):
        entrypoint_of(mod.make(), project)


def test_every_argument_becomes_its_build_flag(project: Path, mod: Any) -> None:
    args = deploy_args(
        mod.nightly_etl,
        name="nightly",
        work_queue="prod",
        cron="0 2 * * *",
        timezone="Europe/Berlin",
        parameters={"day": "today", "limit": 5},
        tags=["etl", "team-a"],
        path=project,
        infra="ecs/prod",
        overrides={"cpu": 1024, "env.MODE": "fast"},
        version="abc123",
        env={"REGION": "eu"},
        description="Nightly ETL",
        concurrency_limit=1,
        python="/usr/bin/python3",
    )
    assert args == [
        "deployment", "build", "flows/etl.py:nightly_etl", "-n", "nightly", "--flow", "etl",
        "-q", "prod", "--path", str(project.resolve()),
        "--cron", "0 2 * * *", "--timezone", "Europe/Berlin",
        "--params-json", '{"day": "today", "limit": 5}',
        "-t", "etl", "-t", "team-a",
        "-ib", "ecs/prod", "--override", "cpu=1024", "--override", "env.MODE=fast",
        "-v", "abc123", "-d", "Nightly ETL", "--python", "/usr/bin/python3",
        "--env", "REGION=eu", "--concurrency-limit", "1",
        "--retries", "2", "--retry-delay", "30", "--timeout", "3600",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "flags"),
    [
        ({"interval": timedelta(hours=1)}, ["--interval", "3600"]),
        ({"interval": 90, "anchor_date": datetime(2027, 1, 1, tzinfo=timezone.utc)},
         ["--interval", "90", "--anchor-date", "2027-01-01T00:00:00+00:00"]),
        ({"rrule": "FREQ=WEEKLY;BYDAY=MO", "anchor_date": "2027-01-04T09:00:00Z"},
         ["--rrule", "FREQ=WEEKLY;BYDAY=MO", "--anchor-date", "2027-01-04T09:00:00Z"]),
        ({"schedule": "rate(5 minutes)"}, ["--schedule", "rate(5 minutes)"]),
        ({"schedule": "cron(0 12 ? * MON-FRI *)", "timezone": "UTC"},
         ["--schedule", "cron(0 12 ? * MON-FRI *)", "--timezone", "UTC"]),
    ],
)  # fmt: skip
def test_each_schedule_kind_becomes_its_flag(
    project: Path, mod: Any, kwargs: Dict[str, Any], flags: List[str]
) -> None:
    args = deploy_args(mod.nightly_etl, name="n", path=project, **kwargs)
    at = args.index("--path") + 2
    assert args[at : at + len(flags)] == flags


def test_warm_becomes_the_warm_flag_only_when_true(project: Path, mod: Any) -> None:
    assert "--warm" in deploy_args(mod.nightly_etl, name="n", path=project, warm=True)
    assert "--warm" not in deploy_args(mod.nightly_etl, name="n", path=project)


def test_parameters_are_checked_against_the_signature_unless_it_takes_kwargs(
    project: Path, mod: Any
) -> None:
    with pytest.raises(
        ValueError, match=r"^parameters: 'dya' not accepted by nightly_etl\(day, limit\)"
    ):
        deploy_args(mod.nightly_etl, name="n", path=project, parameters={"dya": 1})
    args = deploy_args(
        mod.takes_anything, name="n", path=project, parameters={"anything": [1, None]}
    )
    assert args[args.index("--params-json") + 1] == '{"anything": [1, null]}'


BAD = [
    ({"name": "has space"}, ValueError, "name"),
    ({"name": None}, TypeError, "name"),
    ({"work_queue": "q/1"}, ValueError, "work_queue"),
    ({"cron": "0 * * * *", "interval": 60}, ValueError, "cron/interval"),
    ({"rrule": "FREQ=DAILY", "schedule": "rate(1 day)"}, ValueError, "rrule/schedule"),
    ({"interval": 0}, ValueError, "interval"),
    ({"interval": "1h"}, TypeError, "interval"),
    ({"cron": ""}, ValueError, "cron"),
    ({"timezone": "UTC"}, ValueError, "timezone"),
    ({"cron": "0 * * * *", "anchor_date": "2027-01-01T00:00:00Z"}, ValueError, "anchor_date"),
    ({"interval": 60, "anchor_date": datetime(2027, 1, 1)}, ValueError, "anchor_date"),
    ({"parameters": {"day": object()}}, TypeError, "parameters"),
    ({"parameters": {"day": float("nan")}}, TypeError, "parameters"),
    ({"parameters": ["day"]}, TypeError, "parameters"),
    ({"tags": "etl"}, TypeError, "tags"),
    ({"tags": ["a,b"]}, ValueError, "tags"),
    ({"tags": [1]}, TypeError, "tags"),
    ({"infra": "prod"}, ValueError, "infra"),
    ({"overrides": {"cpu": 1024}}, ValueError, "overrides"),
    ({"infra": "ecs/x", "overrides": {"cpu": [1]}}, TypeError, "overrides"),
    ({"env": {"FERRY_RUN_ID": "x"}}, ValueError, "env"),
    ({"env": {"A": None}}, TypeError, "env"),
    ({"version": 3}, TypeError, "version"),
    ({"concurrency_limit": 0}, ValueError, "concurrency_limit"),
    ({"path": 3}, TypeError, "path"),
    ({"output": 3}, TypeError, "output"),
    ({"warm": "yes"}, TypeError, "warm"),
    ({"warm": True, "infra": "ecs/x"}, ValueError, "warm"),
]


@pytest.fixture
def recording_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A FERRY_BIN that records each call in a file (and fails)."""
    calls = tmp_path / "calls"
    fake = tmp_path / "fake-ferry"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\necho 'error: fake' >&2\nexit 9\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FERRY_BIN", str(fake))
    return calls


@pytest.mark.parametrize(("kwargs", "error", "argument"), BAD)
def test_a_bad_argument_is_refused_naming_it_before_ferry_runs(
    project: Path,
    mod: Any,
    recording_bin: Path,
    kwargs: Dict[str, Any],
    error: Type[Exception],
    argument: str,
) -> None:
    call: Dict[str, Any] = {"name": "nightly", "path": project, **kwargs}
    with pytest.raises(error, match=rf"^{argument}: "):
        mod.nightly_etl.deploy(**call)
    assert not recording_bin.exists(), "ferry ran although an argument was bad"


def test_a_cli_failure_raises_ferry_error_with_its_message_and_exit_code(
    project: Path, mod: Any, recording_bin: Path
) -> None:
    with pytest.raises(FerryError) as e:
        mod.nightly_etl.deploy("nightly", path=project)
    assert e.value.message == "fake"
    assert e.value.exit_code == 9
    assert "--json" in e.value.command and "-a" in e.value.command
    assert recording_bin.read_text().startswith(
        "deployment build flows/etl.py:nightly_etl -n nightly"
    )


def test_without_ferry_bin_or_ferry_on_path_deploy_says_how_to_get_one(
    project: Path, mod: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FERRY_BIN", raising=False)
    monkeypatch.setenv("PATH", str(project))
    with pytest.raises(FerryError, match="set FERRY_BIN to its path or put `ferry` on PATH"):
        mod.nightly_etl.deploy("nightly", path=project)
    monkeypatch.setenv("FERRY_BIN", str(project / "README.md"))
    with pytest.raises(FerryError, match=r"^FERRY_BIN=.*README\.md is not an executable file"):
        mod.nightly_etl.deploy("nightly", path=project)


def test_run_agent_refuses_bad_arguments_before_registering(
    project: Path, mod: Any, recording_bin: Path
) -> None:
    with pytest.raises(ValueError, match="^work_queue: "):
        mod.nightly_etl.run_agent("bad queue")
    with pytest.raises(TypeError, match="^agent_args: "):
        mod.nightly_etl.run_agent(agent_args="--limit 2")
    assert not recording_bin.exists()


def test_flows_defined_in_this_file_deploy_from_the_tests_directory(recording_bin: Path) -> None:
    @flow
    def local_only() -> None:
        pass

    with pytest.raises(ValueError, match="not defined at the top level"):
        local_only.deploy("x", path=os.path.dirname(__file__))
