"""`@flow`, `Flow.deploy` and `Flow.run_agent`."""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType, ModuleType
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    List,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    Union,
    overload,
)

if sys.version_info >= (3, 10):
    from typing import ParamSpec
else:  # pragma: no cover - exercised on 3.9 only
    from typing_extensions import ParamSpec

from ._cli import ferry_bin, run_cli
from .deployment import Deployment
from .errors import FerryError

__all__ = ["Flow", "flow", "entrypoint_of", "deploy_args"]

P = ParamSpec("P")
R = TypeVar("R")

Seconds = Union[int, float, timedelta]
"""A duration: whole seconds (`30`, `30.0`) or a `timedelta` of whole seconds."""
PathArg = Union[str, "os.PathLike[str]"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TAG_MAX = 50
_MAX_RETRY_DELAY = 604_800
_SCHEDULE_KINDS = ("cron", "interval", "rrule", "schedule")


def _check_name(argument: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{argument}: expected a str, got {type(value).__name__}")
    if not _NAME.match(value):
        raise ValueError(
            f"{argument}: {value!r} is not a valid name: use 1-100 letters, digits, '-', '_' "
            "or '.', starting with a letter or digit"
        )
    return value


def _seconds(argument: str, value: object, *, minimum: int, maximum: Optional[int] = None) -> int:
    """Whole seconds from an int, a whole float or a timedelta."""
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise TypeError(
            f"{argument}: expected seconds (int) or a datetime.timedelta, "
            f"got {type(value).__name__}"
        )
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or seconds != int(seconds):
        raise ValueError(f"{argument}: {value!r} is not a whole number of seconds")
    whole = int(seconds)
    if whole < minimum:
        raise ValueError(f"{argument}: must be at least {minimum} second(s), got {whole}")
    if maximum is not None and whole > maximum:
        raise ValueError(f"{argument}: must be at most {maximum} seconds, got {whole}")
    return whole


def _count(argument: str, value: object, *, minimum: int, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument}: expected an int, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ValueError(f"{argument}: must be at least {minimum}{upper}, got {value}")
    return value


def _opt_str(argument: str, value: object) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{argument}: expected a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{argument}: must not be empty")
    return value


def _str_map(argument: str, value: object) -> Dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{argument}: expected a mapping of str to str, got {type(value).__name__}")
    out: Dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise TypeError(f"{argument}: keys must be non-empty str, got {k!r}")
        if "=" in k:
            raise ValueError(f"{argument}: key {k!r} must not contain '='")
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise TypeError(
                f"{argument}: {k!r}: expected a str or a number, got {type(v).__name__}"
            )
        out[k] = str(v)
    return out


class Flow(Generic[P, R]):
    """A function registered as a Ferry flow by `@flow`.

    Calling it calls the function (a coroutine function stays one: call it and await, or
    `asyncio.run` it); `deploy()` registers it as a deployment; `run_agent()` registers it and
    serves its work queue with a local agent.
    """

    fn: Callable[P, R]
    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]
    name: str
    """The flow name: `name=`, else the function's name with `_` as `-`."""
    retries: int
    retry_delay_seconds: int
    timeout_seconds: Optional[int]

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: Optional[str] = None,
        retries: int = 0,
        retry_delay: Seconds = 0,
        timeout: Optional[Seconds] = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow: expected a function, got {type(fn).__name__}")
        if inspect.isclass(fn):
            raise TypeError("@flow: decorate a function, not a class")
        functools.update_wrapper(self, fn)
        self.fn = fn
        default = getattr(fn, "__name__", "flow").replace("_", "-")
        self.name = _check_name("name", name if name is not None else default.lstrip("-"))
        self.retries = _count("retries", retries, minimum=0, maximum=100)
        self.retry_delay_seconds = _seconds(
            "retry_delay", retry_delay, minimum=0, maximum=_MAX_RETRY_DELAY
        )
        self.timeout_seconds = None if timeout is None else _seconds("timeout", timeout, minimum=1)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<ferry.Flow {self.name!r} of {getattr(self.fn, '__qualname__', self.fn)!r}>"

    # -- deploy --------------------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        *,
        work_queue: str = "default",
        cron: Optional[str] = None,
        interval: Optional[Seconds] = None,
        rrule: Optional[str] = None,
        schedule: Optional[str] = None,
        anchor_date: Optional[Union[datetime, str]] = None,
        timezone: Optional[str] = None,
        parameters: Optional[Mapping[str, Any]] = None,
        tags: Sequence[str] = (),
        path: PathArg = ".",
        infra: Optional[str] = None,
        overrides: Optional[Mapping[str, Union[str, int]]] = None,
        version: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        description: Optional[str] = None,
        concurrency_limit: Optional[int] = None,
        python: Optional[str] = None,
        warm: bool = False,
        output: Optional[PathArg] = None,
    ) -> Deployment:
        """Registers this flow as deployment `FLOW/NAME` (as `ferry deployment build -a` does)
        and returns it as stored.

        `path` is the project directory packed into the bundle (default: the working
        directory); the flow's file must be inside it. At most one of `cron`, `interval`,
        `rrule` and `schedule` (an EventBridge expression: `cron(...)`, `rate(...)`,
        `at(...)`). `warm=True` forks each run from a warm process that imported the flow
        once (`ferry deployment build --warm`; see docs/agent.md, "Warm starts"). `output`
        keeps the manifest (and its bundle beside it) at that path;
        without it they are written to a temporary directory and removed.

        Bad arguments raise ValueError or TypeError naming the argument before anything
        runs; a refusal of the CLI or the API raises FerryError with its message.
        """
        root = Path(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
        if root is None:
            raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
        args = deploy_args(
            self,
            name=name,
            work_queue=work_queue,
            cron=cron,
            interval=interval,
            rrule=rrule,
            schedule=schedule,
            anchor_date=anchor_date,
            timezone=timezone,
            parameters=parameters,
            tags=tags,
            path=root,
            infra=infra,
            overrides=overrides,
            version=version,
            env=env,
            description=description,
            concurrency_limit=concurrency_limit,
            python=python,
            warm=warm,
        )
        if output is not None:
            if not isinstance(output, (str, os.PathLike)):
                raise TypeError(
                    f"output: expected a str or os.PathLike, got {type(output).__name__}"
                )
            manifest = str(Path(os.fspath(output)).resolve())
            return _build_and_apply(args, manifest, keep=True)
        with tempfile.TemporaryDirectory(prefix="ferry-deploy-") as tmp:
            return _build_and_apply(args, str(Path(tmp) / f"{name}-deployment.yaml"), keep=False)

    # -- run_agent -----------------------------------------------------------------------------

    def run_agent(
        self,
        work_queue: Optional[str] = None,
        *,
        name: str = "local",
        agent_args: Sequence[str] = (),
        **deploy_kwargs: Any,
    ) -> None:
        """Registers this flow (`deploy(name, work_queue=..., **deploy_kwargs)`; the deployment
        name defaults to `local`) and serves its work queue with a local agent in the
        foreground (`ferry agent start -q QUEUE [agent_args...]`) until the agent stops.

        SIGINT (Ctrl-C) and SIGTERM sent to this process are passed on to the agent, which
        stops claiming, lets running runs finish and exits; run_agent then returns. An agent
        that ends with a non-zero status raises FerryError with it. The agent runs flows
        with this interpreter (FERRY_PYTHON, unless it is set or `python=` is given).
        """
        queue = "default" if work_queue is None else work_queue
        _check_name("work_queue", queue)
        if isinstance(agent_args, str) or not all(isinstance(a, str) for a in agent_args):
            raise TypeError(
                "agent_args: expected a sequence of str (extra `ferry agent start` flags)"
            )
        if "work_queue" in deploy_kwargs:
            raise TypeError("run_agent: give the work queue as work_queue=, the first argument")
        # Check everything before registering anything.
        binary = ferry_bin()
        deployment = self.deploy(name, work_queue=queue, **deploy_kwargs)
        env = dict(os.environ)
        env.setdefault("FERRY_PYTHON", sys.executable)
        command = [binary, "agent", "start", "-q", queue, *agent_args]
        print(
            f"ferry: deployment {deployment.id} (revision {deployment.revision}) registered; "
            f"serving work queue {queue!r} (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        code = _run_foreground(command, env)
        if code != 0:
            raise FerryError(
                f"the agent serving {queue!r} ended with status {code}",
                exit_code=code,
                command=command,
            )


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: Optional[str] = None,
    retries: int = 0,
    retry_delay: Seconds = 0,
    timeout: Optional[Seconds] = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    fn: Optional[Callable[P, R]] = None,
    /,
    *,
    name: Optional[str] = None,
    retries: int = 0,
    retry_delay: Seconds = 0,
    timeout: Optional[Seconds] = None,
) -> Union[Flow[P, R], Callable[[Callable[P, R]], Flow[P, R]]]:
    """Marks a function as a Ferry flow: `@flow` or `@flow(name=..., retries=...,
    retry_delay=..., timeout=...)`.

    `retries` (0-100) and `retry_delay` (seconds or a timedelta) say how often and when a
    failed run is tried again; `timeout` kills a run taking longer. They become the
    deployment's `retries`, `retry_delay_seconds` and `timeout_seconds`.
    """
    if fn is not None:
        return Flow(fn, name=name, retries=retries, retry_delay=retry_delay, timeout=timeout)
    # Checked now, at decoration, not when the function is applied.
    Flow(_placeholder, name=name, retries=retries, retry_delay=retry_delay, timeout=timeout)

    def decorate(f: Callable[P, R]) -> Flow[P, R]:
        return Flow(f, name=name, retries=retries, retry_delay=retry_delay, timeout=timeout)

    return decorate


def _placeholder() -> None:
    """Stands in for the function while `@flow(...)`'s options are checked."""


# -- the entrypoint --------------------------------------------------------------------------


def _module_binding(f: Flow[Any, Any]) -> str:
    """The name under which the flow's module binds it at top level (what the agent's shim
    looks up), refusing a flow that is not bound there."""
    fn = f.fn
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    module: Optional[ModuleType] = sys.modules.get(module_name) if module_name else None
    if "<locals>" in qualname or "." in qualname or module is None:
        raise ValueError(
            f"flow {f.name!r}: {qualname or fn!r} is not defined at the top level of a module: "
            "the agent imports the flow's file and looks the function up by name, so define "
            "it with `def` at module top level"
        )
    own = getattr(fn, "__name__", "")
    if getattr(module, own, None) is f:
        return own
    for attr, value in vars(module).items():
        if value is f and not attr.startswith("__"):
            return attr
    if getattr(module, own, None) is fn:
        # `alias = flow(fn)` in a module that binds only `fn` itself (the shim calls that).
        return own
    raise ValueError(
        f"flow {f.name!r}: module {module_name} binds no top-level name to it: decorate the "
        "`def` at module top level with @flow"
    )


def entrypoint_of(f: Flow[Any, Any], root: PathArg) -> str:
    """`relative/path/to/file.py:function` of a flow, relative to the project directory
    `root` (symlinks resolved); ValueError when the file is not a `.py` file inside it."""
    function = _module_binding(f)
    try:
        source = inspect.getsourcefile(f.fn) or inspect.getfile(f.fn)
    except TypeError:
        source = None
    if not source or not source.endswith(".py") or not os.path.isfile(source):
        raise ValueError(
            f"flow {f.name!r}: its code is not in a .py file ({source or 'no file'}): define "
            "the flow in a Python file inside the project (path=)"
        )
    file = Path(source).resolve()
    project = Path(os.fspath(root)).resolve()
    if not project.is_dir():
        raise ValueError(f"path: {os.fspath(root)} is not a directory (the project to pack)")
    try:
        relative = file.relative_to(project)
    except ValueError:
        raise ValueError(
            f"path: the flow's file {file} is not inside the project directory {project}: "
            "give path= a directory that contains it"
        ) from None
    return f"{relative.as_posix()}:{function}"


# -- the CLI's arguments ---------------------------------------------------------------------


def deploy_args(
    f: Flow[Any, Any],
    *,
    name: str,
    work_queue: str = "default",
    cron: Optional[str] = None,
    interval: Optional[Seconds] = None,
    rrule: Optional[str] = None,
    schedule: Optional[str] = None,
    anchor_date: Optional[Union[datetime, str]] = None,
    timezone: Optional[str] = None,
    parameters: Optional[Mapping[str, Any]] = None,
    tags: Sequence[str] = (),
    path: PathArg = ".",
    infra: Optional[str] = None,
    overrides: Optional[Mapping[str, Union[str, int]]] = None,
    version: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    description: Optional[str] = None,
    concurrency_limit: Optional[int] = None,
    python: Optional[str] = None,
    warm: bool = False,
) -> List[str]:
    """The `ferry deployment build` arguments (without `-o`, `-a`, `--json`) for
    `f.deploy(...)`; every argument checked, ValueError/TypeError naming the first bad one."""
    _check_name("name", name)
    _check_name("work_queue", work_queue)
    given = [
        k
        for k, v in (
            ("cron", cron),
            ("interval", interval),
            ("rrule", rrule),
            ("schedule", schedule),
        )
        if v is not None
    ]
    if len(given) > 1:
        raise ValueError(
            f"{given[0]}/{given[1]}: give at most one schedule kind (cron=, interval=, rrule= or "
            "schedule=); deploy the flow again under another name for a second schedule"
        )
    entrypoint = entrypoint_of(f, path)
    args = ["deployment", "build", entrypoint, "-n", name, "--flow", f.name, "-q", work_queue]
    args += ["--path", str(Path(os.fspath(path)).resolve())]
    for kind, value in (("cron", cron), ("rrule", rrule), ("schedule", schedule)):
        text = _opt_str(kind, value)
        if text is not None:
            args += [f"--{kind}", text]
    if interval is not None:
        args += ["--interval", str(_seconds("interval", interval, minimum=1))]
    if anchor_date is not None:
        if interval is None and rrule is None:
            raise ValueError("anchor_date: only with interval= or rrule=")
        if isinstance(anchor_date, datetime):
            if anchor_date.tzinfo is None or anchor_date.utcoffset() is None:
                raise ValueError("anchor_date: give an aware datetime (with tzinfo)")
            args += ["--anchor-date", anchor_date.isoformat()]
        elif isinstance(anchor_date, str) and anchor_date.strip():
            args += ["--anchor-date", anchor_date]
        else:
            raise TypeError(
                f"anchor_date: expected a datetime or an RFC 3339 str, got {anchor_date!r}"
            )
    if timezone is not None:
        if not given:
            raise ValueError(
                "timezone: only with a schedule (cron=, interval=, rrule= or schedule=)"
            )
        args += ["--timezone", _opt_str("timezone", timezone) or ""]
    if parameters is not None:
        args += ["--params-json", _parameters_json(f, parameters)]
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise TypeError(f"tags: expected a list of str, got {type(tags).__name__}")
    if len(tags) > _TAG_MAX:
        raise ValueError(f"tags: at most {_TAG_MAX}, got {len(tags)}")
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"tags: expected str items, got {type(tag).__name__}")
        if not 1 <= len(tag) <= 100 or "," in tag:
            raise ValueError(f"tags: {tag!r} must be 1-100 characters without ','")
        args += ["-t", tag]
    if infra is not None:
        text = _opt_str("infra", infra) or ""
        if not text.startswith(("ecs/", "process/")):
            raise ValueError(
                f"infra: {text!r} must be ecs/NAME or process/NAME (see `ferry infra ls`)"
            )
        args += ["-ib", text]
    override_map = _str_map("overrides", overrides)
    if override_map and infra is None:
        raise ValueError("overrides: only with infra= (they change the profile's task)")
    for k, v in override_map.items():
        args += ["--override", f"{k}={v}"]
    for flag, value in (("-v", version), ("-d", description), ("--python", python)):
        text = _opt_str({"-v": "version", "-d": "description", "--python": "python"}[flag], value)
        if text is not None:
            args += [flag, text]
    for k, v in _str_map("env", env).items():
        if k.startswith("FERRY_"):
            raise ValueError(f"env: {k!r}: FERRY_ names are Ferry's own (set for every run)")
        args += ["--env", f"{k}={v}"]
    if concurrency_limit is not None:
        args += [
            "--concurrency-limit",
            str(_count("concurrency_limit", concurrency_limit, minimum=1)),
        ]
    if not isinstance(warm, bool):
        raise TypeError(f"warm: expected a bool, got {type(warm).__name__}")
    if warm and infra is not None:
        raise ValueError("warm: not with infra= (each run is a task of its own: nothing stays warm)")
    if warm:
        args.append("--warm")
    args += ["--retries", str(f.retries), "--retry-delay", str(f.retry_delay_seconds)]
    if f.timeout_seconds is not None:
        args += ["--timeout", str(f.timeout_seconds)]
    return args


def _parameters_json(f: Flow[Any, Any], parameters: Mapping[str, Any]) -> str:
    if not isinstance(parameters, Mapping):
        raise TypeError(
            f"parameters: expected a mapping of str to JSON values, got {type(parameters).__name__}"
        )
    for k in parameters:
        if not isinstance(k, str):
            raise TypeError(f"parameters: keys must be str, got {k!r}")
    try:
        text = json.dumps(dict(parameters), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"parameters: not JSON-serialisable: {e}") from None
    try:
        signature = inspect.signature(f.fn)
    except (TypeError, ValueError):
        return text
    accepts_any = any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )
    if not accepts_any:
        known = {
            n
            for n, p in signature.parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        unknown = sorted(set(parameters) - known)
        if unknown:
            raise ValueError(
                f"parameters: {', '.join(map(repr, unknown))} not accepted by "
                f"{getattr(f.fn, '__name__', f.name)}({', '.join(signature.parameters)}); "
                "the agent calls the function with the parameters as keyword arguments"
            )
    return text


def _build_and_apply(args: List[str], manifest: str, *, keep: bool) -> Deployment:
    out = run_cli([*args, "-o", manifest, "-a", "--json"], cwd=os.getcwd())
    try:
        report = json.loads(out)
        applied = report["applied"]
        return Deployment.from_apply(applied, manifest=manifest if keep else None)
    except (ValueError, KeyError, TypeError) as e:
        raise FerryError(
            f"`ferry deployment build --json -a` printed no apply outcome ({e}): is FERRY_BIN "
            f"a ferry of this version? It printed: {out[:500]!r}"
        ) from None


# -- the foreground agent --------------------------------------------------------------------


def _run_foreground(command: List[str], env: Dict[str, str]) -> int:
    """Runs the agent in a process group of its own, passing SIGINT and SIGTERM on to it (once
    each: a Ctrl-C at the terminal reaches only this process then), and returns its exit
    status (-N when signal N ended it)."""
    try:
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        raise FerryError(f"cannot start {command[0]}: {e}", command=command) from e
    forwarded = (signal.SIGINT, signal.SIGTERM)
    previous: Dict[int, Any] = {}
    in_main = threading.current_thread() is threading.main_thread()

    def forward(signum: int, _frame: Optional[FrameType]) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    try:
        if in_main:
            for s in forwarded:
                previous[s] = signal.signal(s, forward)
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # a SIGINT before the handler was installed
                forward(signal.SIGINT, None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
