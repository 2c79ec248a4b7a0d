#!/usr/bin/env python3
"""Durability benchmark (embedded mode): the cost per run of `PRAGMA synchronous = FULL` against
`NORMAL` in the SQLite store (WAL). Prints a table.

With WAL, NORMAL syncs the log only at checkpoints, so a power loss can drop the last
acknowledged transactions; FULL syncs the log at every commit. What that costs per run:

1. run lifecycle: N trivial runs created while their queue is paused, then one agent (--limit 16)
   claims, starts, heartbeats and finishes them all: ms per run and runs/min, wall clock;
2. ad-hoc run creation, one request at a time (one write transaction each): ms per request.

The two variants are two `ferry` binaries that differ only in that pragma line of
shared/ferry-embedded/src/sqlite.rs: the script builds the NORMAL one from a temporary edit of
that line (restored right after the build, and on any exit), then the tree as it is. Variants
alternate for --repeat rounds; the table shows medians. FERRY_HOME lives under --dir, which
must be on the disk whose fsync is measured (not a tmpfs).

Usage: bench/durability.py [--runs 300] [--creates 200] [--repeat 3] [--profile release|dev]
                           [--dir target/bench-durability]
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SQLITE_RS = os.path.join(ROOT, "shared", "ferry-embedded", "src", "sqlite.rs")
PRAGMA = "PRAGMA synchronous = {};"


def http(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def build_variants(profile, out_dir):
    """Builds ferry with synchronous = NORMAL and FULL; returns {mode: binary path}."""
    with open(SQLITE_RS) as f:
        original = f.read()
    current = [m for m in ("NORMAL", "FULL") if PRAGMA.format(m) in original]
    if len(current) != 1:
        sys.exit(f"durability.py: {SQLITE_RS} has no single `{PRAGMA.format('NORMAL|FULL')}` line")
    target = "release" if profile == "release" else "debug"
    cargo = ["cargo", "build", "-q", "-p", "ferry-cli", "--bin", "ferry", "--profile", profile]
    bins = {}
    other = "NORMAL" if current[0] == "FULL" else "FULL"

    def restore(*_):
        with open(SQLITE_RS, "w") as f:
            f.write(original)

    old = {s: signal.signal(s, lambda *a: (restore(), sys.exit(130))) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open(SQLITE_RS, "w") as f:
            f.write(original.replace(PRAGMA.format(current[0]), PRAGMA.format(other)))
        subprocess.run(cargo, cwd=ROOT, check=True)
        bins[other] = os.path.join(out_dir, f"ferry-{other}")
        shutil.copy2(os.path.join(ROOT, "target", target, "ferry"), bins[other])
    finally:
        restore()
        for s, h in old.items():
            signal.signal(s, h)
    subprocess.run(cargo, cwd=ROOT, check=True)
    bins[current[0]] = os.path.join(out_dir, f"ferry-{current[0]}")
    shutil.copy2(os.path.join(ROOT, "target", target, "ferry"), bins[current[0]])
    return bins


class Env:
    def __init__(self, ferry, base):
        self.ferry_bin = ferry
        self.home = tempfile.mkdtemp(prefix="home-", dir=base)
        self.env = dict(os.environ, FERRY_HOME=self.home, FERRY_LOG="warn")
        self.server = subprocess.Popen([ferry, "server", "start", "--port", "0", "--tick-interval", "1s"],
                                       env=self.env, stdout=subprocess.PIPE, text=True)
        self.url = "http://" + self.server.stdout.readline().split("http://")[1].split()[0]
        self.env["FERRY_API_URL"] = self.url
        self.agent = None
        proj = os.path.join(self.home, "proj")
        os.makedirs(proj)
        with open(os.path.join(proj, "flow.sh"), "w") as f:
            f.write("#!/bin/sh\necho done\n")
        os.chmod(os.path.join(proj, "flow.sh"), 0o755)
        self.ferry("work-queue", "create", "bench")
        self.ferry("deployment", "build", "flow.sh", "-n", "trivial", "-q", "bench", "--path", proj,
                   "-o", os.path.join(self.home, "m.yaml"), "-a")

    def ferry(self, *args):
        return subprocess.run([self.ferry_bin, *args], env=self.env, check=True, capture_output=True, text=True).stdout

    def create(self):
        return http(f"{self.url}/v1/deployments/flow/trivial/runs", "POST", {})["id"]

    def count(self, state):
        return len(http(f"{self.url}/v1/flow-runs?limit=10000&state={state}"))

    def close(self):
        for p in (self.agent, self.server):
            if p:
                p.terminate()
                p.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def lifecycle(ferry, base, n):
    """Seconds for one agent to take n queued trivial runs to completed."""
    e = Env(ferry, base)
    try:
        e.ferry("work-queue", "pause", "bench")
        for _ in range(n):
            e.create()
        e.agent = subprocess.Popen([ferry, "agent", "start", "-q", "bench", "--limit", "16", "--poll-interval", "0.2"],
                                   env=e.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        t0 = time.perf_counter()
        e.ferry("work-queue", "resume", "bench")
        while e.count("completed") < n:
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        failed = e.count("failed") + e.count("crashed")
        if failed:
            sys.exit(f"durability.py: {failed} runs failed or crashed")
        return elapsed
    finally:
        e.close()


def creates(ferry, base, n):
    """Seconds per ad-hoc run creation, sequential requests."""
    e = Env(ferry, base)
    try:
        e.ferry("work-queue", "pause", "bench")
        t0 = time.perf_counter()
        for _ in range(n):
            e.create()
        return (time.perf_counter() - t0) / n
    finally:
        e.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--creates", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", choices=("release", "dev"), default="release")
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", "bench-durability"))
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    bins = build_variants(a.profile, a.dir)
    life = {m: [] for m in bins}
    create = {m: [] for m in bins}
    for _ in range(a.repeat):
        for m in ("NORMAL", "FULL"):
            life[m].append(lifecycle(bins[m], a.dir, a.runs))
            create[m].append(creates(bins[m], a.dir, a.creates))
    rows = []
    for m in ("NORMAL", "FULL"):
        s = statistics.median(life[m])
        rows.append((f"synchronous = {m}",
                     f"{s / a.runs * 1000:.1f} ms", f"{a.runs / s * 60:.0f}",
                     f"{statistics.median(create[m]) * 1000:.2f} ms"))
    n, f = (statistics.median(life[m]) for m in ("NORMAL", "FULL"))
    cn, cf = (statistics.median(create[m]) for m in ("NORMAL", "FULL"))
    rows.append(("FULL - NORMAL", f"{(f - n) / a.runs * 1000:+.1f} ms", f"{a.runs / f * 60 - a.runs / n * 60:+.0f}",
                 f"{(cf - cn) * 1000:+.2f} ms"))
    headers = ("store", f"wall per run ({a.runs} runs, 1 agent --limit 16)", "runs/min", "ad-hoc create (1 request)")
    w = [max(len(str(r[i])) for r in rows + [headers]) for i in range(4)]
    line = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip()
    print(line(headers))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print(line(r))
    dev = subprocess.run(["df", "--output=source,fstype", a.dir], capture_output=True, text=True).stdout.split("\n")[1]
    print(f"\nmedians of {a.repeat} rounds; {a.profile} build; {os.cpu_count()} cores, "
          f"{os.uname().sysname} {os.uname().release}; FERRY_HOME on {dev.strip()}")


if __name__ == "__main__":
    sys.exit(main())
