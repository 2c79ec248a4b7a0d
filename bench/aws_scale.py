#!/usr/bin/env python3
"""Exactly-once at scale on the AWS backend (DynamoDB Local + moto): N agents, M runs.

Starts `ferry server` with FERRY_BACKEND=aws on a fresh table and bucket, creates M ad-hoc runs
of a trivial flow that appends its run id to a file, starts N agents, and reports runs/min,
duplicates (a run id executed twice), lost runs (never executed or not Completed) and S3 log
objects per run. Needs the emulator environment: `eval "$(scripts/emulators.sh env)"`.

Usage: bench/aws_scale.py [--agents 5] [--runs 1000] [--limit 16]
"""
import argparse, collections, json, os, shutil, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERRY = os.path.join(ROOT, "target", "release", "ferry")


def http(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=5)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=16)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ferry-cli"], cwd=ROOT, check=True)
    home = tempfile.mkdtemp(prefix="ferry-aws-bench-")
    name = f"ferry-bench-{int(time.time()*1000)}"
    env = dict(os.environ, FERRY_HOME=home, FERRY_LOG="warn", FERRY_BACKEND="aws", FERRY_TABLE=name, FERRY_BUCKET=name)
    subprocess.run([FERRY, "aws", "bootstrap"], env=env, check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([FERRY, "server", "start", "--port", "0", "--tick-interval", "2s"], env=env,
                              stdout=subprocess.PIPE, text=True)
    agents = []
    try:
        url = "http://" + server.stdout.readline().split("http://")[1].split()[0]
        env["FERRY_API_URL"] = url
        proj = os.path.join(home, "proj")
        os.makedirs(proj)
        out = os.path.join(home, "executions")
        with open(os.path.join(proj, "flow.sh"), "w") as f:
            f.write(f'#!/bin/sh\necho "$FERRY_RUN_ID" >> {out}\n')
        os.chmod(os.path.join(proj, "flow.sh"), 0o755)
        subprocess.run([FERRY, "work-queue", "create", "scale"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([FERRY, "work-queue", "pause", "scale"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([FERRY, "deployment", "build", "flow.sh", "-n", "scale", "-q", "scale", "--path", proj,
                        "-o", os.path.join(home, "m.yaml"), "-a"], env=env, check=True, stdout=subprocess.DEVNULL)
        t = time.perf_counter()
        ids = [http(f"{url}/v1/deployments/flow/scale/runs", "POST", {})["id"] for _ in range(a.runs)]
        create_s = time.perf_counter() - t
        for i in range(a.agents):
            agents.append(subprocess.Popen([FERRY, "agent", "start", "-q", "scale", "--limit", str(a.limit),
                                            "--name", f"agent-{i}", "--poll-interval", "0.5"],
                                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1)
        t0 = time.perf_counter()
        subprocess.run([FERRY, "work-queue", "resume", "scale"], env=env, check=True, stdout=subprocess.DEVNULL)
        # Progress is read from the flows' own record (cheap), not by listing the store, so the
        # benchmark does not load the emulator it measures.
        deadline = time.time() + 900
        while time.time() < deadline:
            try:
                with open(out) as f:
                    if len(set(f.read().split())) >= a.runs:
                        break
            except FileNotFoundError:
                pass
            time.sleep(0.2)
        # Executed; wait until the store has recorded every final state.
        while time.time() < deadline:
            done = http(f"{url}/v1/flow-runs?state=completed&limit=10000&work_queue=scale")
            if len(done) >= a.runs:
                break
            time.sleep(2)
        elapsed = time.perf_counter() - t0
        with open(out) as f:
            executed = collections.Counter(f.read().split())
        dup = sum(1 for c in executed.values() if c > 1)
        lost = sum(1 for i in ids if executed.get(i, 0) == 0)
        completed = {r["id"] for r in done}
        not_completed = sum(1 for i in ids if i not in completed)
        logs = None
        py = os.path.join(ROOT, ".emulators", "venv", "bin", "python")
        if os.path.exists(py):
            code = ("import boto3,os,sys;s=boto3.client('s3',endpoint_url=os.environ['AWS_ENDPOINT_URL']);"
                    "p=s.get_paginator('list_objects_v2');"
                    f"print(sum(len(pg.get('Contents',[])) for pg in p.paginate(Bucket='{name}',Prefix='logs/')))")
            logs = int(subprocess.run([py, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    finally:
        for ag in agents:
            ag.terminate()
        for ag in agents:
            ag.wait()
        server.terminate()
        server.wait()
        shutil.rmtree(home, ignore_errors=True)
    rows = [
        (f"runs created through the API", f"{a.runs} in {create_s:.1f} s"),
        (f"{a.agents} agents (--limit {a.limit}): all completed in", f"{elapsed:.1f} s = {a.runs/elapsed*60:.0f} runs/min"),
        ("executions counted by the flow", str(sum(executed.values()))),
        ("duplicates (a run executed twice)", str(dup)),
        ("lost (never executed)", str(lost)),
        ("not Completed in the store", str(not_completed)),
    ]
    if logs is not None:
        rows.append(("S3 log objects (PUTs) per run", f"{logs / a.runs:.2f}"))
    w = max(len(r[0]) for r in rows)
    print(f"{'measure (AWS backend on DynamoDB Local + moto)'.ljust(w)}  value")
    print(f"{'-'*w}  -----")
    for k, v in rows:
        print(f"{k.ljust(w)}  {v}")
    return 0 if dup == 0 and lost == 0 and not_completed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
