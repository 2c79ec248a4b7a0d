"""Fixtures of the dashboard's browser tests: the real `ferry` binary and a real Chromium.

Mirrors the Rust end-to-end harness (tests/src/lib.rs): every test starts
`ferry server start --port 0` in a fresh FERRY_HOME, reads its URL from the first line it
prints, and drives it with the real CLI and real agents; the browser is Debian's Chromium,
driven by Playwright (never Playwright's own browser download). Run by
scripts/browser-tests.sh, which installs both and sets:

- FERRY_BIN: the ferry binary (without it, `cargo build -p ferry-cli --bin ferry` here);
- FERRY_CHROMIUM: the Chromium binary (default /usr/bin/chromium);
- FERRY_BROWSER_ARTIFACTS: where screenshots go (default <repo>/target/browser-artifacts);
- FERRY_EMULATORS=1 (scripts/test.sh): every server-backed test also runs on the AWS backend
  (DynamoDB Local + moto, a fresh table and bucket per server, as `Server::start_aws`). With
  FERRY_EMULATORS=1 and the emulators down, those tests fail; they are never skipped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(
    os.environ.get("FERRY_BROWSER_ARTIFACTS", REPO_ROOT / "target" / "browser-artifacts")
)
CHROMIUM = os.environ.get("FERRY_CHROMIUM", "/usr/bin/chromium")
EMULATORS = os.environ.get("FERRY_EMULATORS") == "1"
BACKENDS = ["embedded", "aws"] if EMULATORS else ["embedded"]
# Chromium's flags on these machines (/work/.library/env/machines/rust.md, "browsers"): no
# sandbox (root), no GPU, and none of Chromium's own connections to Google's hosts, which this
# closed network refuses. Playwright gives every launch a new empty profile directory itself
# (it refuses --user-data-dir in `args`).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
LONG = 60.0

# The AWS emulators' endpoints, set by `eval "$(scripts/emulators.sh env)"` (ferry_testkit).
EMULATOR_ENDPOINTS = ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
NOT_UP = "the AWS emulators are not up: run scripts/test.sh or scripts/emulators.sh start"


def pytest_report_header(config):
    return [
        f"ferry browser tests: backends {', '.join(BACKENDS)}; chromium {CHROMIUM}; "
        f"artifacts {ARTIFACTS}"
    ]


# ---------------------------------------------------------------------------------------------
# The binary


_BIN: list[str] = []


def ferry_bin() -> str:
    """FERRY_BIN, else a debug build made here once (as tests/src/lib.rs `ferry_bin`)."""
    if not _BIN:
        if os.environ.get("FERRY_BIN"):
            _BIN.append(os.environ["FERRY_BIN"])
        else:
            subprocess.run(
                ["cargo", "build", "--quiet", "-p", "ferry-cli", "--bin", "ferry"],
                cwd=REPO_ROOT,
                check=True,
            )
            target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
            if not target.is_absolute():
                target = REPO_ROOT / target
            _BIN.append(str(target / "debug" / "ferry"))
        assert os.access(_BIN[0], os.X_OK), f"FERRY_BIN={_BIN[0]} is not an executable"
    return _BIN[0]


# ---------------------------------------------------------------------------------------------
# Servers, the CLI, agents


def require_emulators() -> None:
    """Fails the test unless the AWS emulators answer (as `ferry_testkit::require_emulators`)."""
    if os.environ.get("FERRY_EMULATORS") != "1":
        pytest.fail(f"{NOT_UP} (FERRY_EMULATORS is not 1)", pytrace=False)
    for name in EMULATOR_ENDPOINTS:
        url = os.environ.get(name)
        if not url:
            pytest.fail(
                f'{NOT_UP} ({name} is not set: eval "$(scripts/emulators.sh env)")',
                pytrace=False,
            )
        parsed = urllib.parse.urlsplit(url)
        try:
            socket.create_connection((parsed.hostname, parsed.port or 80), timeout=2).close()
            answers = True
        except OSError:
            answers = False
        if not answers:
            pytest.fail(f"{NOT_UP} (nothing accepts connections at {name}={url})", pytrace=False)


class Cli:
    """Runs `ferry ARGS` against a server, in its scratch directory."""

    def __init__(self, server: "Server"):
        self.server = server

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [ferry_bin(), *args],
            cwd=self.server.work,
            env=self.server.client_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def ok(self, *args: str) -> str:
        """Runs `ferry ARGS`, asserts success, returns stdout."""
        out = self.run(*args)
        assert out.returncode == 0, (
            f"ferry {' '.join(args)} failed ({out.returncode}):\n"
            f"stdout: {out.stdout}\nstderr: {out.stderr}"
        )
        return out.stdout

    def json(self, *args: str):
        """Runs `ferry ARGS --json` and parses stdout."""
        return json.loads(self.ok(*args, "--json"))


class Agent:
    """A running `ferry agent start` (or `ferry ui`), killed at the end of the test."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


class Server:
    """A running `ferry server start --port 0` with its own FERRY_HOME."""

    def __init__(self, backend: str, token: str | None = None, args: tuple[str, ...] = ()):
        if backend == "aws":
            require_emulators()
        self.backend = backend
        self.token = token
        self._tmp = tempfile.mkdtemp(prefix="ferry-browser-")
        self.home = Path(self._tmp) / "home"
        self.work = Path(self._tmp) / "work"
        self.home.mkdir()
        self.work.mkdir()
        self.env: dict[str, str] = {}
        self.url = ""
        self.agents: list[Agent] = []
        self.cli = Cli(self)
        if backend == "aws":
            unique = f"{time.time_ns():x}{secrets.token_hex(2)}"
            self.env = {
                "FERRY_BACKEND": "aws",
                "FERRY_TABLE": f"ferry-browser-{unique}",
                "FERRY_BUCKET": f"ferry-browser-{unique}",
            }
            self.cli.ok("aws", "bootstrap")
        env = self.base_env()
        if token is not None:
            env["FERRY_API_TOKEN"] = token
        self.log = open(Path(self._tmp) / "server.log", "wb")
        self.proc = subprocess.Popen(
            [
                ferry_bin(),
                "server",
                "start",
                "--port",
                "0",
                "--tick-interval",
                "200ms",
                "--late-after",
                "2s",
                *args,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        first: list[str] = []
        reader = threading.Thread(target=self._read_stdout, args=(first,), daemon=True)
        reader.start()
        reader.join(timeout=60)
        if not first:
            self.stop()
            pytest.fail(f"the server printed no listening line in 60 s:\n{self.server_log()}")
        match = re.search(r"http://\S+", first[0])
        assert match, f"the listening line has no URL: {first[0]!r}"
        self.url = match.group(0).replace("0.0.0.0", "127.0.0.1").rstrip("/")

    def _read_stdout(self, first: list[str]) -> None:
        line = self.proc.stdout.readline()
        if line:
            first.append(line)
        # Keep draining so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("FERRY_API_TOKEN", None)
        env.update(self.env)
        env["FERRY_HOME"] = str(self.home)
        env["FERRY_LOG"] = "warn"
        return env

    def client_env(self) -> dict[str, str]:
        """The environment of a CLI command or agent: this server's URL, home and token."""
        env = self.base_env()
        if self.url:
            env["FERRY_API_URL"] = self.url
        if self.token is not None:
            env["FERRY_API_TOKEN"] = self.token
        return env

    def server_log(self) -> str:
        self.log.flush()
        return (Path(self._tmp) / "server.log").read_text(errors="replace")[-4000:]

    # -- data --------------------------------------------------------------------------------

    def project(self, files: dict[str, str]) -> Path:
        """Writes a project (path -> content; `.sh` files executable) and returns its dir."""
        root = self.work / f"proj-{secrets.token_hex(3)}"
        for rel, content in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
            if rel.endswith(".sh"):
                p.chmod(0o755)
        return root

    def deploy_script(self, name: str, script: str, *flags: str) -> str:
        """Builds and applies a deployment `flow/NAME` of a shell flow; returns its id."""
        proj = self.project({"flow.sh": "#!/bin/sh\n" + script})
        self.cli.ok(
            "deployment", "build", "flow.sh", "-n", name, "--path", str(proj),
            "-o", f"{name}.yaml", "-a", *flags,
        )  # fmt: skip
        return f"flow/{name}"

    def run_now(self, deployment: str, *flags: str) -> str:
        """`ferry deployment run DEPLOYMENT --json`: returns the new run's id."""
        return self.cli.json("deployment", "run", deployment, *flags)["id"]

    def flow_run(self, run_id: str) -> dict:
        return self.cli.json("flow-run", "inspect", run_id)

    def wait_state(self, run_id: str, state: str, timeout: float = LONG) -> dict:
        """Waits (through the CLI) until run RUN_ID is in STATE (lower case)."""
        return wait_for(
            lambda: (r := self.flow_run(run_id))["state"] == state and r,
            timeout,
            f"run {run_id} in state {state}",
        )

    def agent(self, *args: str) -> Agent:
        """`ferry agent start` on this server (fast polling, short lease), as lib.rs does. On
        the AWS backend the lease is 10 s: DynamoDB Local on a loaded 2-core machine can stall
        a 3 s lease's heartbeat long enough to crash the run (as in tests/tests/agent.rs)."""
        short = "10" if self.backend == "aws" else "3"
        lease = () if "--lease" in args else ("--lease", short)
        proc = subprocess.Popen(
            [ferry_bin(), "agent", "start", "--poll-interval", "0.1", "--kill-grace", "1",
             *lease, *args],
            cwd=self.work,
            env=self.client_env(),
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )  # fmt: skip
        agent = Agent(proc)
        self.agents.append(agent)
        return agent

    def ui(self) -> str:
        """Starts `ferry ui --port 0` for this server (with its token, as a user's shell would
        have it) and returns the proxy's URL; stopped with the server."""
        proc = subprocess.Popen(
            [ferry_bin(), "ui", "--port", "0"],
            cwd=self.work,
            env=self.client_env(),
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.agents.append(Agent(proc))
        first: list[str] = []
        reader = threading.Thread(
            target=lambda: first.append(proc.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(timeout=60)
        match = re.search(r"http://[0-9.:]+", first[0] if first else "")
        assert match, f"ferry ui printed no URL in 60 s: {first!r}\n{self.server_log()}"
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        return match.group(0)

    # -- HTTP without a browser ----------------------------------------------------------------

    def http(self, method: str, path: str, body=None, headers=None):
        """(status, headers, body text) of one request; no redirect is followed."""

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode(errors="replace")

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def wait_for(check, timeout: float, what: str):
    """Calls CHECK until it returns something truthy; fails the test after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def server(backend):
    """A server without a token (loopback only), on each backend."""
    s = Server(backend)
    yield s
    s.stop()


@pytest.fixture
def token():
    return "tok-" + secrets.token_urlsafe(24)


@pytest.fixture
def token_server(backend, token):
    """A server that needs FERRY_API_TOKEN (its CLI and agents send it), on each backend."""
    s = Server(backend, token=token)
    yield s
    s.stop()


@pytest.fixture
def cli(server) -> Cli:
    return server.cli


@pytest.fixture
def agent(server) -> Agent:
    """An agent of the `default` work queue on `server`."""
    return server.agent()


# ---------------------------------------------------------------------------------------------
# The browser


@pytest.fixture(scope="session")
def browser():
    assert os.access(CHROMIUM, os.X_OK), (
        f"{CHROMIUM} is not an executable: run scripts/browser-tests.sh, which installs "
        "Debian's chromium, or set FERRY_CHROMIUM"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            chromium_sandbox=False,
            args=CHROMIUM_ARGS,
        )
        yield b
        b.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def artifact_name(item) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", item.name).strip("-")


class Console:
    """What the page's console and scripts reported."""

    def __init__(self):
        self.errors: list[str] = []
        self.page_errors: list[str] = []

    def attach(self, page) -> None:
        page.on(
            "console",
            lambda m: m.type == "error" and self.errors.append(f"{m.text} ({m.location})"),
        )
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))


@pytest.fixture
def context(browser, request):
    """A fresh browser context (no cookies) at 1280x800. A failing test leaves a full-page
    screenshot of each of its pages in ARTIFACTS/failures/."""
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(15_000)
    ctx.consoles = []  # type: ignore[attr-defined]

    def on_page(page):
        console = Console()
        console.attach(page)
        ctx.consoles.append(console)  # type: ignore[attr-defined]

    ctx.on("page", on_page)
    yield ctx
    failed = any(
        getattr(request.node, f"rep_{when}", None) is not None
        and getattr(request.node, f"rep_{when}").failed
        for when in ("setup", "call")
    )
    if failed:
        (ARTIFACTS / "failures").mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(ctx.pages):
            try:
                page.screenshot(
                    path=str(ARTIFACTS / "failures" / f"{artifact_name(request.node)}-{i}.png"),
                    full_page=True,
                )
            except Exception as e:  # noqa: BLE001 - the test's own failure is what matters
                print(f"no failure screenshot of page {i}: {e}")
    ctx.close()
    # An uncaught script error or a blocked script/style (CSP) is a failure in any test.
    for console in ctx.consoles:  # type: ignore[attr-defined]
        assert not console.page_errors, f"uncaught script errors: {console.page_errors}"
        refused = [e for e in console.errors if "Refused to" in e]
        assert not refused, f"the page refused its own resources (CSP): {refused}"


@pytest.fixture
def page(context):
    """A page in a fresh context; `page.console` holds what its console reported."""
    p = context.new_page()
    p.console = context.consoles[-1]  # type: ignore[attr-defined]
    return p


def screenshot(page, name: str, full_page: bool = True) -> Path:
    """Writes ARTIFACTS/NAME.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 0
    return path
