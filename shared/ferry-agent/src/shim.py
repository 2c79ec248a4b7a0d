# Ferry's Python shim, run by the agent as `python -u -c SHIM ...` (see process.rs, warm.rs).
#
#   SHIM FILE.py FUNCTION          a cold run: import the file, call the function, exit.
#   SHIM --warm FILE.py FUNCTION   a warm process: import the file once, then fork one child per
#                                  run the agent asks for; each child calls the function.
#
# A run (cold, or a forked child) reads its parameters from FERRY_PARAMETERS (a JSON object),
# calls `function(**parameters)` (through `asyncio.run` for a coroutine) and writes the return
# value as compact JSON to FERRY_RESULT_PATH when that is set. An exception prints its traceback
# and exits 1; a missing function or bad parameters exit 2; SystemExit keeps its code.
#
# The warm protocol (one JSON object per line): the agent writes requests on the process's stdin
#   {"fork": ID, "env": {...}, "cwd": DIR, "out": FIFO, "err": FIFO}   fork a run
#   {"retire": true}                                                    fork no more; exit once
#                                                                       the children are done
# and reads replies on the process's stdout (which the shim keeps for them: the module's own
# output goes to stderr):
#   {"ready": PID, "rss_kb": N} | {"unfit": REASON}                     once, after the import
#   {"forked": ID, "pid": PID, "rss_kb": N} | {"refused": ID, "error": MESSAGE}
#   {"exited": PID, "status": WAIT_STATUS}
# End of stdin without "retire" means the agent is gone: the children's groups are killed.
import asyncio, importlib.util, inspect, json, os, sys, traceback


def load(path):
    sys.path[:0] = [os.path.dirname(os.path.abspath(path)), os.getcwd()]
    spec = importlib.util.spec_from_file_location("__ferry_flow__", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["__ferry_flow__"] = module
    spec.loader.exec_module(module)
    return module


def print_exception(e):
    # The traceback without this shim's own frames.
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
        tb = tb.tb_next
    traceback.print_exception(type(e), e, tb)


def parameters():
    try:
        params = json.loads(os.environ.get("FERRY_PARAMETERS") or "{}")
    except ValueError as e:
        sys.exit(f"ferry: FERRY_PARAMETERS is not valid JSON: {e}")
    if not isinstance(params, dict):
        sys.exit("ferry: FERRY_PARAMETERS must be a JSON object")
    return params


def call(function, params):
    try:
        result = function(**params)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except Exception as e:
        print_exception(e)
        sys.exit(1)
    return result


def write_result(result):
    out = os.environ.get("FERRY_RESULT_PATH")
    if not out:
        return
    try:
        text = json.dumps(result, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except Exception as e:
        kind = type(result).__name__
        print(f"ferry: the flow's return value (a {kind}) is not JSON-serialisable: no result stored ({e})", file=sys.stderr)
        return
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        print(f"ferry: cannot write the flow's return value to {out}: {e}: no result stored", file=sys.stderr)


def function_of(module, path, name):
    function = getattr(module, name, None)
    if not callable(function):
        print(f"ferry: module {path} has no function {name}", file=sys.stderr)
        sys.exit(2)
    return function


def cold(path, name):
    params = parameters()
    try:
        module = load(path)
    except Exception as e:
        print_exception(e)
        sys.exit(1)
    write_result(call(function_of(module, path, name), params))


def rss_kb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak


class Warm:
    """The fork server's state; `serve` returns only in a forked child, with its request."""

    def __init__(self, replies):
        self.replies = replies
        self.children = set()

    def reply(self, **message):
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.replies, data):]

    def serve(self):
        import selectors, signal
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        sel = selectors.DefaultSelector()
        sel.register(0, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        buf, retiring, eof = b"", False, False
        while True:
            if (retiring or eof) and not self.children:
                os._exit(0)
            for key, _ in sel.select():
                if key.fd == wake_r:
                    while os.read(wake_r, 512) == 512:
                        pass
                    self.reap()
                    continue
                chunk = os.read(0, 65536)
                if not chunk:
                    eof = True
                    sel.unregister(0)
                    if not retiring:
                        self.kill_children()
                    continue
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    request = json.loads(line)
                    if request.get("retire"):
                        retiring = True
                    elif retiring:
                        self.reply(refused=request["fork"], error="the warm process is retiring")
                    else:
                        child = self.fork(request, sel, wake_r, wake_w)
                        if child is not None:
                            return child
            self.reap()

    def reap(self):
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.reply(exited=pid, status=status)

    def kill_children(self):
        import signal
        for pid in self.children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    def fork(self, request, sel, wake_r, wake_w):
        import signal
        fds = []
        try:
            # Non-blocking: a FIFO whose reader is gone fails (ENXIO) instead of hanging here.
            for path in (request["out"], request["err"]):
                fds.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                os.set_blocking(fds[-1], True)
        except OSError as e:
            for fd in fds:
                os.close(fd)
            self.reply(refused=request["fork"], error=f"cannot open the run's output: {e}")
            return None
        out, err = fds
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as e:
            os.close(out)
            os.close(err)
            self.reply(refused=request["fork"], error=f"fork failed: {e}")
            return None
        if pid == 0:
            # The run: its own process group, stdin on /dev/null, its output on the FIFOs.
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sel.close()
            for fd in (wake_r, wake_w, self.replies):
                os.close(fd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            for fd in (null, out, err):
                os.close(fd)
            os.chdir(request["cwd"])
            os.environ.update(request["env"])
            return request
        try:
            os.setpgid(pid, pid)  # as the child does: whichever runs first
        except OSError:
            pass
        os.close(out)
        os.close(err)
        self.children.add(pid)
        self.reply(forked=request["fork"], pid=pid, rss_kb=rss_kb())
        return None


def warm(path, name):
    # Replies go on their own descriptor; stray output of the import goes to stderr.
    replies = os.dup(1)
    os.set_inheritable(replies, False)
    os.dup2(2, 1)
    server = Warm(replies)
    sys.argv = [path]
    try:
        module = load(path)
        function = getattr(module, name, None)
        if not callable(function):
            raise LookupError(f"module {path} has no function {name}")
    except BaseException as e:
        line = traceback.format_exception_only(type(e), e)[-1].strip()
        server.reply(unfit=f"importing the flow failed ({line})")
        os._exit(0)
    import threading
    if threading.active_count() > 1:
        server.reply(unfit=f"the flow's module started {threading.active_count() - 1} thread(s) at import, and a process with threads cannot be forked safely")
        os._exit(0)
    # What the import allocated stays out of the collector's way: children do not touch
    # (and so copy) those pages.
    import gc
    gc.freeze()
    server.reply(ready=os.getpid(), rss_kb=rss_kb())
    server.serve()  # returns only in a forked child
    try:
        write_result(call(function, parameters()))
        code = 0
    except SystemExit as e:
        code = e.code
    exit_child(code, threading)


def exit_child(code, threading):
    """Ends a forked run as interpreter exit would — its non-daemon threads joined, exit
    handlers run, output flushed, SystemExit's code kept — but without tearing down the
    interpreter it shares with the warm process (~20 ms of CPU per run, for nothing)."""
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        threading._shutdown()
        import atexit
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code & 0xFF)


if sys.argv[1] == "--warm":
    warm(sys.argv[2], sys.argv[3])
else:
    path, name = sys.argv[1], sys.argv[2]
    sys.argv = [path]
    cold(path, name)
