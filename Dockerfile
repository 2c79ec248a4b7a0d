# The Ferry agent image: one image for both ways Ferry runs flows on ECS Fargate
#   - `ferry agent start -q QUEUE`  the long-running agent service (polls a work queue)
#   - `ferry agent execute RUN_ID`  one task per run, launched by Ferry (the container command
#                                   of the task's RunTask override)
# Flows run as `python3` subprocesses of the agent, so the base is a slim Python image.
#
# Build context: the repo root (this Dockerfile, `python/src/ferry`) with a `ferry` binary next to
# this file (scripts/agent-image.sh build stages exactly those; the binary must be built for
# glibc <= the base's, i.e. on Debian 12 or older).
#
#   docker build -t ferry-agent:TAG .                       # production base (python:3.12-slim)
#   docker build --build-arg BASE=localhost/ferry-base:bookworm -t ferry-agent:dev .
#                                                           # no registry: scripts/agent-image.sh base
#
# Shared pip packages: bake them into a derived image, once per team:
#
#   FROM ferry-agent:TAG
#   USER root
#   RUN pip install --no-cache-dir pandas==2.2.3 boto3==1.35.0
#   USER ferry
#
# Custom modules (the project's own code) are NOT baked in: Ferry packs the project directory
# into a content-addressed bundle in S3 at `ferry deployment apply`, and the agent fetches and
# verifies it for every run, so a code change needs no image rebuild. See docs/agent-image.md.
#
# Secrets never go in this image nor in container overrides: the task definition's `secrets`
# block (SSM Parameter Store / Secrets Manager ARNs) is resolved by ECS when the task starts.

ARG BASE=python:3.12-slim-bookworm
FROM ${BASE}

# Flows are started with this interpreter; unbuffered output so logs stream as they happen.
ENV FERRY_PYTHON=python3 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/ferry

# A fixed non-root uid, so a task definition or a pod security policy can name it.
RUN groupadd --system --gid 10001 ferry \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/ferry --create-home \
        --shell /usr/sbin/nologin ferry

# The Python package (`from ferry import flow, runtime` in a flow), pure Python, on the path of
# every interpreter in the image: flows written with the SDK import it when they run.
COPY python/src/ferry /opt/ferry-python/ferry
ENV PYTHONPATH=/opt/ferry-python

# Last, so a new binary rebuilds only this layer (its mode, 0755, comes from the context).
COPY ferry /usr/local/bin/ferry

USER 10001:10001
WORKDIR /home/ferry

ENTRYPOINT ["ferry"]
CMD ["--help"]
