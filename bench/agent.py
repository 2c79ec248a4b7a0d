#!/usr/bin/env python3
"""Agent benchmark (embedded mode, separate `ferry server` and `ferry agent` processes): prints a table.

1. throughput: 500 trivial runs due now, one agent (--limit 16): runs/min, agent CPU-seconds per run,
   agent RSS idle and under load (the agent process alone), and the flow's parent pid (must be the
   agent: no wrapper process per run);
2. ad-hoc start latency (started_at - scheduled_time) for 20 runs created one at a time;
3. a burst of 50 runs scheduled at the same instant (--limit 50): lateness p50/p99.

Usage: bench/agent.py [--runs 500] [--poll-interval 0.2]   (builds the release binary first)
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERRY = os.path.join(ROOT, "target", "release", "ferry")
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


class Env:
    def __init__(self):
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
        self.ferry("work-queue", "create", "bench")
        self.ferry("deployment", "build", "flow.sh", "-n", "trivial", "-q", "bench", "--path", proj,
                   "-o", os.path.join(self.home, "m.yaml"), "-a")

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
        return http(f"{self.url}/v1/deployments/flow/trivial/runs", "POST", body)["id"]

    def runs(self, state=None):
        q = f"?limit=10000" + (f"&state={state}" if state else "")
        return http(f"{self.url}/v1/flow-runs{q}")

    def close(self):
        self.stop_agent()
        self.server.terminate()
        self.server.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def throughput(n, poll):
    e = Env()
    try:
        e.ferry("work-queue", "pause", "bench")
        pid = e.start_agent("--limit", "16", "--poll-interval", str(poll))
        time.sleep(2)
        idle = rss_kib(pid)
        for _ in range(n):
            e.create()
        cpu0 = cpu_s(pid)
        t0 = time.perf_counter()
        e.ferry("work-queue", "resume", "bench")
        peak = idle
        while True:
            peak = max(peak, rss_kib(pid))
            done = len(e.runs("completed"))
            if done >= n:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        cpu = cpu_s(pid) - cpu0
        with open(e.ppid_file) as f:
            ppids = {int(x) for x in f.read().split()}
        return {"runs_per_min": n / elapsed * 60, "elapsed": elapsed, "idle_rss": idle, "peak_rss": peak,
                "cpu_per_run": cpu / n, "wrapper_free": ppids == {pid}, "failed": len(e.runs("failed"))}
    finally:
        e.close()


def adhoc_latency(count, poll):
    e = Env()
    try:
        e.start_agent("--limit", "4", "--poll-interval", str(poll))
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


def burst(count, poll):
    e = Env()
    try:
        e.start_agent("--limit", str(count), "--poll-interval", str(poll), "--prefetch", "10")
        ids = []
        # One instant for all: the same start_in from one moment (created within a few ms).
        for _ in range(count):
            ids.append(e.create(start_in_seconds=6))
        while len(e.runs("completed")) < count:
            time.sleep(0.1)
        late = []
        sched = set()
        for r in e.runs("completed"):
            late.append(ts(r["started_at"]) - ts(r["scheduled_time"]))
            sched.add(r["scheduled_time"][:19])
        return late, len(sched)
    finally:
        e.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--poll-interval", type=float, default=0.2)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferry-cli"], cwd=ROOT, check=True)
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
    headers = ("measure", "Ferry", "target", "Prefect 2.20 (issue)")
    w = [max(len(str(r[i])) for r in rows + [headers]) for i in range(4)]
    line = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip()
    print(line(headers))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print(line(r))
    print(f"\nmachine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}; embedded store (SQLite WAL)")


if __name__ == "__main__":
    sys.exit(main())
