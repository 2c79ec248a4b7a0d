"""End to end through the real `ferry` binary: a decorated flow deployed from Python into a
real server (embedded, and AWS with FERRY_EMULATORS=1), run by a real agent, reading
ferry.runtime; the CLI's refusals as FerryError; run_agent serving a run in a subprocess and
stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import LONG, Server, load_module, wait_for, write_project
from ferry import FerryError

FLOWS = '''
import asyncio
import json

from ferry import flow, runtime


@flow(retries=1, timeout=300)
def report(who: str, n: int = 1) -> None:
    """Prints what the run knows about itself."""
    print("REPORT " + json.dumps({
        "who": who, "n": n, "in_run": runtime.in_run, "run_id": runtime.run_id,
        "attempt": runtime.attempt, "parameters": runtime.parameters,
        "scheduled_time": runtime.scheduled_time.isoformat(), "deployment": runtime.deployment,
    }))


@flow(name="async-report")
async def async_report(who: str) -> None:
    await asyncio.sleep(0)
    print(f"ASYNC hello {who}")


if __name__ == "__main__":
    report.run_agent(
        name="served", parameters={"who": "served"}, agent_args=["--poll-interval", "0.2"]
    )
    print("run_agent returned")
'''


def reported(out: str) -> Dict[str, Any]:
    lines = [line for line in out.splitlines() if "REPORT " in line]
    assert len(lines) == 1, f"expected one REPORT line in:\n{out}"
    got: Dict[str, Any] = json.loads(lines[0].split("REPORT ", 1)[1])
    return got


def test_a_deployed_flow_runs_on_an_agent_with_its_parameters_and_runtime(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = write_project(server.work / "proj", {"flows/report.py": FLOWS, "data.txt": "x"})
    mod = load_module(project / "flows" / "report.py")
    server.use(monkeypatch)

    d = mod.report.deploy(
        "py",
        path=project,
        parameters={"who": "deployed"},
        cron="0 0 1 1 *",
        timezone="Europe/Berlin",
        tags=["python"],
        version="v1",
        env={"GREETING": "hi"},
    )
    assert (d.id, d.flow, d.name, d.revision, d.created) == ("report/py", "report", "py", 1, True)
    assert d.entrypoint == "flows/report.py:report"
    assert d.parameters == {"who": "deployed"}
    assert (d.schedules[0].cron, d.schedules[0].timezone) == ("0 0 1 1 *", "Europe/Berlin")
    assert (d.retries, d.timeout_seconds, d.tags, d.version, d.env) == (
        1,
        300,
        ["python"],
        "v1",
        {"GREETING": "hi"},
    )
    assert d.bundle_sha256 and len(d.bundle_sha256) == 64
    assert d.manifest is None
    stored = server.json("deployment", "inspect", "report/py")
    assert stored["spec"] == d.spec

    again = mod.report.deploy(
        "py", path=project, parameters={"who": "deployed"}, cron="0 0 1 1 *",
        timezone="Europe/Berlin", tags=["python"], version="v1", env={"GREETING": "hi"},
    )  # fmt: skip
    assert (again.created, again.changed, again.revision) == (False, False, 1)

    server.agent("-q", "default")
    out = server.ok("deployment", "run", "report/py", "--param", "n=5", "--watch", timeout=LONG)
    got = reported(out)
    # The ad-hoc run (the cron's next fire time, on 1 January, may be listed as upcoming).
    runs = [
        r
        for r in server.json("flow-run", "ls", "--deployment", "report/py")
        if r["state"].lower() != "scheduled"
    ]
    assert [r["state"].lower() for r in runs] == ["completed"], runs
    assert got == {
        "who": "deployed",
        "n": 5,
        "in_run": True,
        "run_id": runs[0]["id"],
        "attempt": 1,
        "parameters": {"who": "deployed", "n": 5},
        "scheduled_time": got["scheduled_time"],
        "deployment": "report/py",
    }
    scheduled = datetime.fromisoformat(got["scheduled_time"])
    assert scheduled.utcoffset() is not None
    assert abs(scheduled.timestamp() - time.time()) < LONG

    a = mod.async_report.deploy("py", path=project, parameters={"who": "async"})
    assert (a.id, a.entrypoint) == ("async-report/py", "flows/report.py:async_report")
    out = server.ok("deployment", "run", "async-report/py", "--watch", timeout=LONG)
    assert "ASYNC hello async" in out


def test_an_eventbridge_schedule_is_deployed_as_written_and_a_mixed_up_one_is_refused(
    embedded_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = embedded_server
    project = write_project(server.work / "proj", {"flows/report.py": FLOWS})
    mod = load_module(project / "flows" / "report.py")
    server.use(monkeypatch)

    d = mod.report.deploy(
        "weekdays",
        path=project,
        parameters={"who": "eb"},
        schedule="cron(0 12 ? * MON-FRI *)",
        timezone="America/New_York",
    )
    assert [(s.schedule, s.cron, s.timezone) for s in d.schedules] == [
        ("cron(0 12 ? * MON-FRI *)", None, "America/New_York")
    ]
    stored = server.json("deployment", "inspect", "report/weekdays")
    assert stored["spec"]["schedules"][0]["schedule"] == "cron(0 12 ? * MON-FRI *)"

    # POSIX cron written as EventBridge cron: the CLI's explanation comes back, nothing is stored.
    with pytest.raises(FerryError) as e:
        mod.report.deploy(
            "mixed", path=project, parameters={"who": "x"}, schedule="cron(0 12 * * MON-FRI)"
        )
    assert "?" in e.value.message and "--cron" in e.value.message, e.value.message
    names = [x["spec"]["name"] for x in server.json("deployment", "ls")]
    assert names == ["weekdays"], names


def test_a_refusal_by_the_api_is_a_ferry_error_and_output_keeps_the_manifest(
    embedded_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = embedded_server
    project = write_project(server.work / "proj", {"flows/report.py": FLOWS})
    mod = load_module(project / "flows" / "report.py")
    server.use(monkeypatch)

    with pytest.raises(FerryError) as e:
        mod.report.deploy("py", path=project, work_queue="nope", parameters={"who": "x"})
    assert e.value.exit_code == 1
    assert "nope" in e.value.message, e.value.message
    assert server.json("deployment", "ls") == []

    kept = server.work / "deploy" / "report.yaml"
    d = mod.report.deploy("kept", path=project, parameters={"who": "x"}, output=kept)
    assert d.manifest == str(kept.resolve())
    assert kept.is_file() and (server.work / "deploy" / "report.ferry-bundle.tar.gz").is_file()
    assert "entrypoint: flows/report.py:report" in kept.read_text()

    monkeypatch.setenv("FERRY_API_URL", "http://127.0.0.1:9")
    with pytest.raises(FerryError, match="cannot reach the Ferry API at http://127.0.0.1:9") as e:
        mod.report.deploy("offline", path=project, parameters={"who": "x"})
    assert e.value.exit_code == 1


def children_of(pid: int) -> List[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_agent_registers_serves_a_run_and_stops_cleanly_on_sigterm_or_ctrl_c(
    embedded_server: Server, signum: signal.Signals
) -> None:
    server = embedded_server
    project = write_project(server.work / "proj", {"flows/report.py": FLOWS})
    env = server.client_env()
    env.pop("FERRY_PYTHON")  # run_agent gives the agent this interpreter itself
    proc = subprocess.Popen(
        [sys.executable, "flows/report.py"], cwd=project, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stderr: List[str] = []
    assert proc.stderr is not None
    err = proc.stderr
    reader = threading.Thread(target=lambda: stderr.extend(err), daemon=True)
    reader.start()
    try:
        wait_for(
            lambda: any("serving work queue" in line for line in stderr) or proc.poll() is not None,
            LONG,
            "run_agent to register and start the agent",
        )
        assert proc.poll() is None, "".join(stderr)
        d = server.json("deployment", "inspect", "report/served")
        assert d["spec"]["entrypoint"] == "flows/report.py:report"
        # The line is printed just before the agent starts.
        agents = wait_for(lambda: children_of(proc.pid), LONG, "the agent process")
        assert len(agents) == 1, agents

        out = server.ok("deployment", "run", "report/served", "--watch", timeout=LONG)
        assert reported(out)["who"] == "served"

        proc.send_signal(signum)
        stdout, _ = proc.communicate(timeout=LONG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    assert proc.returncode == 0, "".join(stderr)
    # The agent's own lines, then the script's: the agent stopped as on Ctrl-C, then returned.
    assert stdout.endswith(
        "Agent stopped: 1 runs claimed, 1 finished\nrun_agent returned\n"
    ), stdout
    assert not os.path.exists(f"/proc/{agents[0]}"), "the agent outlived run_agent"


def test_run_agent_raises_the_agents_exit_status_when_it_fails(
    embedded_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = embedded_server
    project = write_project(server.work / "proj", {"flows/report.py": FLOWS})
    mod = load_module(project / "flows" / "report.py")
    server.use(monkeypatch)
    with pytest.raises(FerryError, match="the agent serving 'default' ended with status 2") as e:
        mod.report.run_agent(path=project, parameters={"who": "x"}, agent_args=["--no-such-flag"])
    assert e.value.exit_code == 2
    # It registered before the agent refused its flag.
    assert (
        server.json("deployment", "inspect", "report/local")["spec"]["entrypoint"]
        == "flows/report.py:report"
    )
