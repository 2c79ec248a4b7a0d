#!/usr/bin/env python3
"""Dashboard scale benchmark: are the pages' queries fast with 10 000 runs? Prints a table.

For each backend (the embedded SQLite store, and DynamoDB Local when the emulator environment
is set: `eval "$(scripts/emulators.sh env)"`):

1. `shared/ferry-aws/examples/dashboard_scale.rs` seeds --runs flow runs through the store port
   (a week of one run a minute, 20 deployments on 3 queues, mostly Completed, 3 % Failed, a few
   Late and Running; see its docs for why not through the API) and times the use cases the
   pages call in-process: runs page 1 and page 50 (keyset `before=`), state and queue filters,
   a deployment's history strip, the counts of the last 24 h by state, the queue stats. On
   DynamoDB it also reports the calls and read capacity units per query (ReturnConsumedCapacity).
2. `ferry server start` on the same data; every URL in URLS below is timed over HTTP
   (--repeat GETs each, p50/p95). DynamoDB Local has no network latency and its own speed, so
   on DynamoDB read the calls and capacity, not the milliseconds.

Adding a page is one line in URLS.

Usage: bench/dashboard_scale.py [--runs 10000] [--repeat 20] [--backends sqlite,dynamodb]
                                [--profile release|dev]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (label, path) of every URL timed over HTTP; `{page50_before}`, `{deployment}` (flow/name) and
# `{queue}` are filled from the seeded data.
URLS = [
    ("GET /v1/flow-runs page 1", "/v1/flow-runs?view=recent&limit=50"),
    ("GET /v1/flow-runs page 50", "/v1/flow-runs?view=recent&limit=50&before={page50_before}"),
    ("GET /v1/flow-runs?state=failed", "/v1/flow-runs?state=failed&limit=50"),
    ("GET /v1/flow-runs?work_queue=", "/v1/flow-runs?work_queue={queue}&limit=50"),
    ("GET /v1/flow-runs?deployment= (10)", "/v1/flow-runs?deployment={deployment}&view=recent&limit=10"),
    ("GET /v1/work-queues", "/v1/work-queues"),
    ("page /", "/"),
    ("page /runs", "/runs"),
    ("page /runs, page 50", "/runs?view=recent&before={page50_before}"),
    ("page /runs?state=failed", "/runs?state=failed"),
    ("page /runs?work_queue=", "/runs?work_queue={queue}"),
    ("page /deployments", "/deployments"),
    ("page /deployments/FLOW/NAME", "/deployments/{deployment}"),
    ("page /work-queues", "/work-queues"),
]


def get(url):
    with urllib.request.urlopen(url) as r:
        r.read()
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}")


def time_urls(ferry, env, seeded, repeat):
    server = subprocess.Popen([ferry, "server", "start", "--port", "0", "--tick-interval", "24h"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        base = "http://" + server.stdout.readline().split("http://")[1].split()[0]
        rows = []
        for label, path in URLS:
            url = base + path.format(**seeded)
            get(url)  # warm
            ms = []
            for _ in range(repeat):
                t = time.perf_counter()
                get(url)
                ms.append((time.perf_counter() - t) * 1000)
            ms.sort()
            rows.append({"query": label, "p50_ms": statistics.median(ms),
                         "p95_ms": ms[min(len(ms) - 1, round((len(ms) - 1) * 0.95))]})
        return rows
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--backends", default="sqlite,dynamodb")
    ap.add_argument("--profile", choices=["release", "dev"], default="release")
    a = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    out_dir = os.path.join(target, "release" if a.profile == "release" else "debug")
    build = ["cargo", "build", "-q"] + (["--release"] if a.profile == "release" else [])
    subprocess.run(build + ["-p", "ferry-aws", "--example", "dashboard_scale"], cwd=ROOT, check=True)
    subprocess.run(build + ["-p", "ferry-cli", "--bin", "ferry"], cwd=ROOT, check=True)
    example = os.path.join(out_dir, "examples", "dashboard_scale")
    ferry = os.path.join(out_dir, "ferry")

    table = []
    for backend in a.backends.split(","):
        if backend == "dynamodb" and not os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
            print("dynamodb skipped: no emulator environment (eval \"$(scripts/emulators.sh env)\")",
                  file=sys.stderr)
            continue
        home = tempfile.mkdtemp(prefix=f"ferry-dash-{backend}-")
        try:
            cmd = [example, "--backend", backend, "--home", home, "--runs", str(a.runs),
                   "--repeat", str(a.repeat)]
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
            lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
            seeded = lines[0]["seeded"]
            print(f"{backend}: seeded {seeded['runs']} runs in {seeded['seconds']:.1f} s", file=sys.stderr)
            for row in lines[1:]:
                table.append((backend, "use case", row))
            env = dict(os.environ, FERRY_HOME=home, FERRY_LOG="warn")
            if backend == "dynamodb":
                env.update(FERRY_BACKEND="aws", FERRY_TABLE=seeded["table"], FERRY_BUCKET=seeded["table"])
                subprocess.run([ferry, "aws", "bootstrap"], env=env, check=True, stdout=subprocess.DEVNULL)
            for row in time_urls(ferry, env, seeded, a.repeat):
                table.append((backend, "HTTP", row))
        finally:
            shutil.rmtree(home, ignore_errors=True)

    print(f"\n{a.runs} runs, {a.repeat} repetitions each, profile {a.profile}\n")
    print("| backend | via | query | rows | p50 ms | p95 ms | calls | read units |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for backend, via, r in table:
        dynamo = backend == "dynamodb" and via == "use case"
        calls = f"{r['calls']:.0f}" if dynamo else ""
        rcu = f"{r['rcu']:.1f}" if dynamo else ""
        rows = r.get("rows", "")
        print(f"| {backend} | {via} | {r['query']} | {rows} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {calls} | {rcu} |")


if __name__ == "__main__":
    main()
