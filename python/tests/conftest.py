"""Fixtures of the Python package's tests: the real `ferry` binary, servers and agents.

Mirrors the Rust end-to-end harness (tests/src/lib.rs) and tests/browser/conftest.py: a
server is `ferry server start --port 0` in a fresh FERRY_HOME whose URL is read from the first
line it prints; on the AWS backend (FERRY_EMULATORS=1, the emulators' variables set as by
`eval "$(scripts/emulators.sh env)"`) it gets a fresh table and bucket. scripts/python-tests.sh
sets FERRY_BIN; without it the tests that need the binary fail naming it (never skipped).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, TypeVar

import pytest

EMULATORS = os.environ.get("FERRY_EMULATORS") == "1"
BACKENDS = ["embedded", "aws"] if EMULATORS else ["embedded"]
EMULATOR_ENDPOINTS = ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
NOT_UP = "the AWS emulators are not up: run scripts/test.sh or scripts/emulators.sh start"
LONG = 120.0
T = TypeVar("T")


def pytest_report_header(config: pytest.Config) -> List[str]:
    return [
        f"ferry python tests: backends {', '.join(BACKENDS)}; "
        f"FERRY_BIN={os.environ.get('FERRY_BIN')}"
    ]


def ferry_bin() -> str:
    path = os.environ.get("FERRY_BIN")
    if not path:
        pytest.fail(
            "FERRY_BIN is not set: run scripts/python-tests.sh (it builds the binary)",
            pytrace=False,
        )
    assert os.access(path, os.X_OK), f"FERRY_BIN={path} is not an executable"
    return path


def require_emulators() -> None:
    """Fails the test unless the AWS emulators answer (as `ferry_testkit::require_emulators`)."""
    if os.environ.get("FERRY_EMULATORS") != "1":
        pytest.fail(f"{NOT_UP} (FERRY_EMULATORS is not 1)", pytrace=False)
    for name in EMULATOR_ENDPOINTS:
        url = os.environ.get(name)
        if not url:
            pytest.fail(
                f'{NOT_UP} ({name} is not set: eval "$(scripts/emulators.sh env)")', pytrace=False
            )
        parsed = urllib.parse.urlsplit(url)
        try:
            socket.create_connection(
                (parsed.hostname or "127.0.0.1", parsed.port or 80), timeout=2
            ).close()
        except OSError:
            pytest.fail(f"{NOT_UP} (nothing accepts connections at {name}={url})", pytrace=False)


def wait_for(check: Callable[[], Optional[T]], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


class Server:
    """A running `ferry server start --port 0` with its own FERRY_HOME and scratch directory."""

    def __init__(self, backend: str, tmp: Path) -> None:
        if backend == "aws":
            require_emulators()
        self.backend = backend
        self.tmp = tmp
        self.home = tmp / "home"
        self.work = tmp / "work"
        self.home.mkdir()
        self.work.mkdir()
        self.env: Dict[str, str] = {}
        self.url = ""
        self.procs: List["subprocess.Popen[bytes]"] = []
        self.log: IO[bytes] = open(tmp / "server.log", "wb")
        if backend == "aws":
            unique = f"{time.time_ns():x}{secrets.token_hex(2)}"
            self.env = {
                "FERRY_BACKEND": "aws",
                "FERRY_TABLE": f"ferry-py-{unique}",
                "FERRY_BUCKET": f"ferry-py-{unique}",
            }
            self.ok("aws", "bootstrap")
        self.proc = subprocess.Popen(
            [ferry_bin(), "server", "start", "--port", "0", "--tick-interval", "200ms"],
            env=self.base_env(),
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        first: List[str] = []
        reader = threading.Thread(target=self._read_stdout, args=(first,), daemon=True)
        reader.start()
        reader.join(timeout=LONG)
        if not first:
            self.stop()
            pytest.fail(f"the server printed no listening line in {LONG} s:\n{self.server_log()}")
        match = re.search(r"http://\S+", first[0])
        assert match, f"the listening line has no URL: {first[0]!r}"
        self.url = match.group(0).replace("0.0.0.0", "127.0.0.1").rstrip("/")

    def _read_stdout(self, first: List[str]) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line:
            first.append(line)
        stdout = self.proc.stdout
        threading.Thread(target=stdout.read, daemon=True).start()

    def base_env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.pop("FERRY_API_TOKEN", None)
        env.update(self.env)
        env["FERRY_HOME"] = str(self.home)
        env["FERRY_LOG"] = "warn"
        return env

    def client_env(self) -> Dict[str, str]:
        """A CLI command's or an agent's environment: this server, and this interpreter (which
        has the ferry package) for the flows agents run."""
        env = self.base_env()
        if self.url:
            env["FERRY_API_URL"] = self.url
        env["FERRY_PYTHON"] = sys.executable
        return env

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Points this process (and so `Flow.deploy`) at this server."""
        for k, v in self.client_env().items():
            if os.environ.get(k) != v:
                monkeypatch.setenv(k, v)

    def server_log(self) -> str:
        self.log.flush()
        return (self.tmp / "server.log").read_text(errors="replace")[-4000:]

    def run(self, *args: str, timeout: float = LONG) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            [ferry_bin(), *args], cwd=self.work, env=self.client_env(),
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def ok(self, *args: str, timeout: float = LONG) -> str:
        out = self.run(*args, timeout=timeout)
        assert out.returncode == 0, (
            f"ferry {' '.join(args)} failed ({out.returncode}):\nstdout: {out.stdout}\n"
            f"stderr: {out.stderr}\nserver log:\n{self.server_log()}"
        )
        return out.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def agent(self, *args: str) -> "subprocess.Popen[bytes]":
        lease = "10" if self.backend == "aws" else "3"
        proc = subprocess.Popen(
            [ferry_bin(), "agent", "start", "--poll-interval", "0.1", "--kill-grace", "1",
             "--lease", lease, *args],
            cwd=self.work, env=self.client_env(), stdout=subprocess.DEVNULL, stderr=self.log,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def scratch() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="ferry-py-"))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, scratch: Path) -> Iterator[Server]:
    s = Server(str(request.param), scratch)
    yield s
    s.stop()


@pytest.fixture
def embedded_server(scratch: Path) -> Iterator[Server]:
    s = Server("embedded", scratch)
    yield s
    s.stop()


def write_project(root: Path, files: Dict[str, str]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return root


_loaded = 0


def load_module(file: Path) -> Any:
    """Imports a flow file as a fresh top-level module (as a user's script would be)."""
    import importlib.util

    global _loaded
    _loaded += 1
    name = f"ferry_test_flow_{_loaded}"
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
