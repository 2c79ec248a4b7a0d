#!/usr/bin/env python3
"""Agent benchmark (embedded mode, separate `ferry server` and `ferry agent` processes): prints a table.

1. throughput: 500 trivial runs due now, one agent (--limit 16): runs/min, agent CPU-seconds per run,
   agent RSS idle and under load (the agent process alone), and the flow's parent pid (must be the
   agent: no wrapper process per run);
2. ad-hoc start latency (started_at - scheduled_time) for 20 runs created one at a time;
3. a burst of 50 runs scheduled at the same instant (--limit 50): lateness p50/p99;
4. the same trivial Python flow (`flows.py:main`) started cold and warm (`--warm`): throughput
   for 500 runs due now, due-now start p50/p99, a 50-run burst's lateness p50/p99, agent + flow
   CPU-seconds per run (the agent, its warm processes and every flow process, reaped or not) and
   the RSS of the agent and of its warm processes.

Usage: bench/agent.py [--runs 500] [--poll-interval 0.2] [--python-only]
(builds the release binary first)
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERRY = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release", "ferry")
TICKS = os.sysconf("SC_CLK_TCK")


def http(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid):
    """Pids whose parent is `pid` (the agent's warm processes and cold flows)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def cpu_tree_s(pid):
    """CPU-seconds of `pid` and of its children, reaped (cutime/cstime) or alive, one level
    down: the agent, its cold flows, and its warm processes with the runs they forked."""
    def own(p):
        with open(f"/proc/{p}/stat") as f:
            x = f.read().rsplit(")", 1)[1].split()
        return sum(int(v) for v in x[11:15]) / TICKS
    total = own(pid)
    for c in children(pid):
        try:
            total += own(c)
        except OSError:
            pass
    return total


PY_FLOW = "def main(n=0):\n    return n\n"


class Env:
    def __init__(self, warm=None):
        self.home = tempfile.mkdtemp(prefix="ferry-bench-")
        self.env = dict(os.environ, FERRY_HOME=self.home, FERRY_LOG="warn")
        self.server = subprocess.Popen([FERRY, "server", "start", "--port", "0", "--tick-interval", "1s"],
                                       env=self.env, stdout=subprocess.PIPE, text=True)
        self.url = "http://" + self.server.stdout.readline().split("http://")[1].split()[0]
        self.env["FERRY_API_URL"] = self.url
        self.agent = None
        proj = os.path.join(self.home, "proj")
        os.makedirs(proj)
        self.ppid_file = os.path.join(self.home, "ppids")
        with open(os.path.join(proj, "flow.sh"), "w") as f:
            f.write(f'#!/bin/sh\necho "$PPID" >> {self.ppid_file}\necho done\n')
        os.chmod(os.path.join(proj, "flow.sh"), 0o755)
        with open(os.path.join(proj, "flows.py"), "w") as f:
            f.write(PY_FLOW)
        self.ferry("work-queue", "create", "bench")
        if warm is None:
            self.deployment = "flow/trivial"
            self.ferry("deployment", "build", "flow.sh", "-n", "trivial", "-q", "bench", "--path", proj,
                       "-o", os.path.join(self.home, "m.yaml"), "-a")
        else:
            self.deployment = "main/py"
            self.ferry("deployment", "build", "flows.py:main", "-n", "py", "-q", "bench", "--path", proj,
                       "-o", os.path.join(self.home, "m.yaml"), "-a", *(["--warm"] if warm else []))

    def ferry(self, *args):
        return subprocess.run([FERRY, *args], env=self.env, check=True, capture_output=True, text=True).stdout

    def start_agent(self, *args):
        self.agent = subprocess.Popen([FERRY, "agent", "start", "-q", "bench", *args], env=self.env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        return self.agent.pid

    def stop_agent(self):
        if self.agent:
            self.agent.terminate()
            self.agent.wait()
            self.agent = None

    def create(self, **body):
        return http(f"{self.url}/v1/deployments/{self.deployment}/runs", "POST", body)["id"]

    def runs(self, state=None):
        q = f"?limit=10000" + (f"&state={state}" if state else "")
        return http(f"{self.url}/v1/flow-runs{q}")

    def close(self):
        self.stop_agent()
        self.server.terminate()
        self.server.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def warm_up(e):
    """One run first, so a warm agent has its warm process (as it has in steady state)."""
    rid = e.create()
    while http(f"{e.url}/v1/flow-runs/{rid}")["state"] not in ("completed", "failed", "crashed"):
        time.sleep(0.02)
    return 1


def throughput(n, poll, warm=None, limit=16):
    e = Env(warm)
    try:
        pid = e.start_agent("--limit", str(limit), "--poll-interval", str(poll))
        first = warm_up(e) if warm is not None else 0
        e.ferry("work-queue", "pause", "bench")
        time.sleep(2)
        idle = rss_kib(pid)
        for _ in range(n):
            e.create()
        cpu0 = cpu_tree_s(pid)
        t0 = time.perf_counter()
        e.ferry("work-queue", "resume", "bench")
        peak = idle
        warm_rss = 0
        while True:
            peak = max(peak, rss_kib(pid))
            if warm:
                warm_rss = max([warm_rss] + [rss_kib(c) for c in children(pid) if is_warm(c)])
            done = len(e.runs("completed")) - first
            if done >= n:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        cpu = cpu_tree_s(pid) - cpu0
        ppids = set()
        if os.path.exists(e.ppid_file):
            with open(e.ppid_file) as f:
                ppids = {int(x) for x in f.read().split()}
        return {"runs_per_min": n / elapsed * 60, "elapsed": elapsed, "idle_rss": idle, "peak_rss": peak,
                "cpu_per_run": cpu / n, "wrapper_free": ppids == {pid}, "failed": len(e.runs("failed")),
                "warm_rss": warm_rss}
    finally:
        e.close()


def is_warm(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"--warm" in f.read()
    except OSError:
        return False


def adhoc_latency(count, poll, warm=None):
    e = Env(warm)
    try:
        e.start_agent("--limit", "4", "--poll-interval", str(poll))
        if warm is not None:
            warm_up(e)
        lat = []
        for _ in range(count):
            rid = e.create()
            while True:
                r = http(f"{e.url}/v1/flow-runs/{rid}")
                if r["state"] in ("completed", "failed", "crashed"):
                    break
                time.sleep(0.02)
            lat.append(ts(r["started_at"]) - ts(r["scheduled_time"]))
            time.sleep(0.3)  # runs arrive one at a time, at a random phase of the poll
        return lat
    finally:
        e.close()


def burst(count, poll, warm=None):
    e = Env(warm)
    try:
        e.start_agent("--limit", str(count), "--poll-interval", str(poll), "--prefetch", "10")
        first = warm_up(e) if warm is not None else 0
        ids = []
        # One instant for all: the same start_in from one moment (created within a few ms).
        for _ in range(count):
            ids.append(e.create(start_in_seconds=6))
        while len(e.runs("completed")) < count + first:
            time.sleep(0.1)
        late = []
        sched = set()
        for r in e.runs("completed")[: count]:
            late.append(ts(r["started_at"]) - ts(r["scheduled_time"]))
            sched.add(r["scheduled_time"][:19])
        return late, len(sched)
    finally:
        e.close()


def table(headers, rows):
    w = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    line = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip()
    print(line(headers))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print(line(r))


def shell_rows(a):
    rows = []
    t = throughput(a.runs, a.poll_interval)
    rows += [
        (f"throughput, {a.runs} trivial runs, 1 agent --limit 16", f"{t['runs_per_min']:.0f} runs/min ({t['elapsed']:.1f} s, {t['failed']} failed)", ">= 500 runs/min", "17 runs/min"),
        ("agent CPU per run", f"{t['cpu_per_run']*1000:.1f} ms", "", ""),
        ("agent RSS idle", f"{t['idle_rss']/1024:.1f} MiB", "<= 15 MiB", "180 MiB (2.20), 91 MiB (3.9 worker)"),
        ("agent RSS under load (peak)", f"{t['peak_rss']/1024:.1f} MiB", "", ""),
        ("flow parent process is the agent (no wrapper)", "yes" if t["wrapper_free"] else "NO", "yes", ""),
    ]
    for poll in (a.poll_interval, 0.5):
        lat = adhoc_latency(20, poll)
        rows.append((f"ad-hoc start latency p50/p99, 20 runs, --poll-interval {poll}" + (" (default)" if poll == 0.5 else ""),
                     f"{pct(lat,50):.3f} s / {pct(lat,99):.3f} s", "p50 <= 0.5 s", "p50 11.5 s"))
    late, distinct = burst(50, a.poll_interval)
    rows.append((f"burst of 50 at one instant ({distinct} distinct second(s)), --limit 50, lateness p50/p99",
                 f"{pct(late,50):.3f} s / {pct(late,99):.3f} s", "p99 <= 1 s", "p50 127 s"))
    return rows


def python_rows(a):
    """The trivial Python flow, cold and warm side by side."""
    res = {}
    for warm in (False, True):
        t = throughput(a.runs, a.poll_interval, warm=warm, limit=a.python_limit)
        lat = adhoc_latency(20, a.poll_interval, warm=warm)
        late, _ = burst(50, a.poll_interval, warm=warm)
        res[warm] = (t, lat, late)
    c, w = res[False], res[True]
    ms = lambda x: f"{x*1000:.0f} ms"
    return [
        (f"throughput, {a.runs} runs due now, --limit {a.python_limit}",
         f"{c[0]['runs_per_min']:.0f} runs/min ({c[0]['failed']} failed)",
         f"{w[0]['runs_per_min']:.0f} runs/min ({w[0]['failed']} failed)", "warm >= 5000 runs/min"),
        ("due-now start p50 / p99 (started_at - scheduled_time, 20 runs)",
         f"{ms(pct(c[1],50))} / {ms(pct(c[1],99))}", f"{ms(pct(w[1],50))} / {ms(pct(w[1],99))}", "warm p50 <= 50 ms"),
        ("burst of 50 at one instant, lateness p50 / p99",
         f"{ms(pct(c[2],50))} / {ms(pct(c[2],99))}", f"{ms(pct(w[2],50))} / {ms(pct(w[2],99))}", "warm p99 <= 500 ms"),
        ("agent + flow CPU-seconds per run",
         f"{c[0]['cpu_per_run']*1000:.1f} ms", f"{w[0]['cpu_per_run']*1000:.1f} ms", ""),
        ("agent RSS idle / peak",
         f"{c[0]['idle_rss']/1024:.0f} / {c[0]['peak_rss']/1024:.0f} MiB",
         f"{w[0]['idle_rss']/1024:.0f} / {w[0]['peak_rss']/1024:.0f} MiB", ""),
        ("warm process RSS (peak)", "-", f"{w[0]['warm_rss']/1024:.0f} MiB", "bounded: --warm-max-rss 512"),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--poll-interval", type=float, default=0.2)
    ap.add_argument("--python-limit", type=int, default=32, help="the agent's --limit for the Python throughput case")
    ap.add_argument("--python-only", action="store_true", help="only the Python flow, cold vs warm")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferry-cli"], cwd=ROOT, check=True)
    if not a.python_only:
        table(("measure", "Ferry", "target", "Prefect 2.20 (issue)"), shell_rows(a))
        print()
    table(("Python flow (flows.py:main)", "cold", "warm (--warm)", "target"), python_rows(a))
    print(f"\nmachine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}; embedded store (SQLite WAL); "
          f"{sys.version.split()[0]} ({sys.executable})")


if __name__ == "__main__":
    sys.exit(main())
