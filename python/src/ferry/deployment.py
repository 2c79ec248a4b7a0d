"""The deployment `Flow.deploy` returns, parsed from `ferry deployment build --json -a`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional

from ._time import parse_rfc3339

__all__ = ["Deployment", "Schedule"]


@dataclass(frozen=True)
class Schedule:
    """One schedule of a deployment: exactly one of `cron`, `interval` (seconds), `rrule` and
    `schedule` (an EventBridge expression) is set."""

    timezone: str
    active: bool
    cron: Optional[str] = None
    interval: Optional[int] = None
    anchor_date: Optional[datetime] = None
    rrule: Optional[str] = None
    schedule: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Schedule":
        anchor = d.get("anchor_date")
        interval = d.get("interval")
        return cls(
            timezone=str(d.get("timezone", "UTC")),
            active=bool(d.get("active", True)),
            cron=_opt_str(d.get("cron")),
            interval=None if interval is None else int(interval),
            anchor_date=None if anchor is None else parse_rfc3339(str(anchor)),
            rrule=_opt_str(d.get("rrule")),
            schedule=_opt_str(d.get("schedule")),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Deployment:
    """A deployment as the API stored it (`ferry deployment inspect --json`), and what the
    apply did (`created`, `changed`)."""

    id: str
    """`flow/name`."""
    flow: str
    name: str
    revision: int
    """1 at creation, +1 on every change a user makes."""
    work_queue: str
    entrypoint: str
    """`path/file.py:function`, relative to the project directory that was packed."""
    parameters: Dict[str, Any]
    tags: List[str]
    schedules: List[Schedule]
    env: Dict[str, str]
    retries: int
    retry_delay_seconds: int
    timeout_seconds: Optional[int]
    paused: bool
    created: bool
    """The apply created it (it did not exist before)."""
    changed: bool
    """The apply changed it (False when the same spec was applied again)."""
    version: Optional[str] = None
    description: Optional[str] = None
    bundle_sha256: Optional[str] = None
    infra_block: Optional[str] = None
    infra_overrides: Dict[str, Any] = field(default_factory=dict)
    concurrency_limit: Optional[int] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None
    manifest: Optional[str] = None
    """The manifest file written, when `deploy(output=...)` kept it."""
    spec: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The whole spec as the API returned it (the manifest's fields)."""

    @classmethod
    def from_apply(
        cls, outcome: Mapping[str, Any], *, manifest: Optional[str] = None
    ) -> "Deployment":
        """From an apply outcome (`{deployment, created, changed, removed_runs}`)."""
        d = outcome["deployment"]
        spec: Dict[str, Any] = dict(d["spec"])
        bundle = spec.get("bundle") or {}
        timeout = spec.get("timeout_seconds")
        limit = spec.get("concurrency_limit")
        created_at = d.get("created_at")
        updated_at = d.get("updated_at")
        return cls(
            id=str(d["id"]),
            flow=str(spec["flow"]),
            name=str(spec["name"]),
            revision=int(d["revision"]),
            work_queue=str(spec.get("work_queue", "default")),
            entrypoint=str(spec["entrypoint"]),
            parameters=dict(spec.get("parameters") or {}),
            tags=[str(t) for t in spec.get("tags") or []],
            schedules=[Schedule.from_json(s) for s in spec.get("schedules") or []],
            env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
            retries=int(spec.get("retries", 0)),
            retry_delay_seconds=int(spec.get("retry_delay_seconds", 0)),
            timeout_seconds=None if timeout is None else int(timeout),
            paused=bool(spec.get("paused", False)),
            created=bool(outcome.get("created", False)),
            changed=bool(outcome.get("changed", False)),
            version=_opt_str(spec.get("version")),
            description=_opt_str(spec.get("description")),
            bundle_sha256=_opt_str(bundle.get("sha256")),
            infra_block=_opt_str(spec.get("infra_block")),
            infra_overrides=dict(spec.get("infra_overrides") or {}),
            concurrency_limit=None if limit is None else int(limit),
            created_at=None if created_at is None else parse_rfc3339(str(created_at)),
            updated_at=None if updated_at is None else parse_rfc3339(str(updated_at)),
            manifest=manifest,
            spec=spec,
        )


def _opt_str(v: Any) -> Optional[str]:
    return None if v is None else str(v)
