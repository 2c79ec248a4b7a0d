#!/usr/bin/env python3
"""Control-plane benchmark (embedded mode): prints a table.

- `ferry deployment build -a` wall time for the small example project (median of 5);
- registering 1 000 deployments through the API;
- the tick with 1 000 scheduled deployments: the first tick (every horizon needs extending)
  and a steady-state tick (nothing due), each timed by `ferry server tick`.

Usage: bench/control_plane.py [--deployments N]   (builds the release binary first)
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERRY = os.path.join(ROOT, "target", "release", "ferry")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deployments", type=int, default=1000)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferry-cli"], cwd=ROOT, check=True)
    home = tempfile.mkdtemp(prefix="ferry-bench-")
    env = dict(os.environ, FERRY_HOME=home, FERRY_LOG="warn")
    server = subprocess.Popen([FERRY, "server", "start", "--port", "0", "--tick-interval", "24h"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split("http://")[1].split()[0]
        env["FERRY_API_URL"] = "http://" + url
        rows = []

        times = []
        work = tempfile.mkdtemp()
        for i in range(5):
            t = time.perf_counter()
            subprocess.run([FERRY, "deployment", "build", "flows/hello.py:hello", "-n", f"b{i}",
                            "--path", os.path.join(ROOT, "examples"), "--interval", "60",
                            "-o", os.path.join(work, "m.yaml"), "-a"],
                           env=env, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t)
        rows.append(("deployment build -a (examples/, 2 files)", f"{statistics.median(times)*1000:.0f} ms median of 5"))

        crons = ["*/5 * * * *", "0 * * * *", "30 2 * * *", "0 9 * * 1-5", "*/15 * * * *"]
        t = time.perf_counter()
        for i in range(args.deployments):
            body = {"flow": "bench", "name": f"d{i:05}", "entrypoint": "run.sh",
                    "schedules": [{"cron": crons[i % len(crons)], "timezone": "Europe/Berlin"}]}
            req = urllib.request.Request(f"http://{url}/v1/deployments", data=json.dumps(body).encode(),
                                         method="PUT", headers={"content-type": "application/json"})
            urllib.request.urlopen(req).read()
        el = time.perf_counter() - t
        rows.append((f"apply {args.deployments} deployments (API, sequential)",
                     f"{el:.2f} s ({args.deployments/el:.0f}/s)"))

        def tick():
            out = subprocess.run([FERRY, "server", "tick"], env=env, check=True,
                                 capture_output=True, text=True).stdout
            return json.loads(out)

        first = tick()
        rows.append(("first tick: horizons extended / runs written",
                     f"{first['deployments_extended']} / {first['runs_created']}"))
        rows.append(("first tick: time", f"{first['elapsed_ms']:.0f} ms"))
        steady = [tick() for _ in range(5)]
        rows.append(("steady tick: deployments touched", str(max(s["deployments_extended"] for s in steady))))
        rows.append(("steady tick: time (median of 5)",
                     f"{statistics.median(s['elapsed_ms'] for s in steady):.1f} ms"))
        db = os.path.join(home, "ferry.db")
        rows.append(("store size after first tick", f"{os.path.getsize(db)/1e6:.1f} MB (+WAL)"))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(home, ignore_errors=True)

    w = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(w)}  value")
    print(f"{'-'*w}  -----")
    for k, v in rows:
        print(f"{k.ljust(w)}  {v}")
    print(f"\nmachine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}")


if __name__ == "__main__":
    sys.exit(main())
