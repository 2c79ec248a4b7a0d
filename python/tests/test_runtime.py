"""ferry.runtime: the run's values from the agent's FERRY_* variables inside a run, a
NotInRunError naming the attribute outside one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ferry import NotInRunError, runtime

RUN_ENV = {
    "FERRY_RUN_ID": "0193a1b2-03c1-7000-8000-000000000001",
    "FERRY_DEPLOYMENT": "etl/nightly",
    "FERRY_ATTEMPT": "2",
    # chrono's to_rfc3339 keeps nanoseconds: Python 3.9's fromisoformat takes six digits.
    "FERRY_SCHEDULED_TIME": "2026-12-01T21:00:05.123456789+00:00",
    "FERRY_PARAMETERS": '{"day": "2026-12-01", "n": 3}',
}


@pytest.fixture
def outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in RUN_ENV:
        monkeypatch.delenv(k, raising=False)


@pytest.fixture
def inside(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in RUN_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.mark.usefixtures("outside")
@pytest.mark.parametrize(
    "attribute", ["run_id", "attempt", "parameters", "scheduled_time", "deployment"]
)
def test_outside_a_run_each_value_raises_naming_itself_and_in_run_is_false(attribute: str) -> None:
    assert runtime.in_run is False
    with pytest.raises(
        NotInRunError, match=rf"ferry\.runtime\.{attribute}: not inside a Ferry run"
    ):
        getattr(runtime, attribute)


@pytest.mark.usefixtures("inside")
def test_inside_a_run_the_values_are_typed() -> None:
    assert runtime.in_run is True
    assert runtime.run_id == RUN_ENV["FERRY_RUN_ID"]
    assert runtime.deployment == "etl/nightly"
    assert runtime.attempt == 2
    assert runtime.parameters == {"day": "2026-12-01", "n": 3}
    assert runtime.scheduled_time == datetime(2026, 12, 1, 21, 0, 5, 123456, tzinfo=timezone.utc)
    assert runtime.scheduled_time.utcoffset() == timedelta(0)


@pytest.mark.usefixtures("inside")
def test_a_z_suffix_and_an_offset_parse_to_the_same_instant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FERRY_SCHEDULED_TIME", "2026-12-01T21:00:05Z")
    z = runtime.scheduled_time
    monkeypatch.setenv("FERRY_SCHEDULED_TIME", "2026-12-01T22:00:05+01:00")
    assert runtime.scheduled_time == z


@pytest.mark.usefixtures("inside")
@pytest.mark.parametrize(
    ("variable", "value", "attribute"),
    [
        ("FERRY_ATTEMPT", "two", "attempt"),
        ("FERRY_PARAMETERS", "[1, 2]", "parameters"),
        ("FERRY_PARAMETERS", "{not json", "parameters"),
        ("FERRY_SCHEDULED_TIME", "2026-12-01 21:00", "scheduled_time"),
    ],
)
def test_a_value_no_agent_writes_raises_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, attribute: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(RuntimeError, match=rf"ferry\.runtime\.{attribute}: {variable}"):
        getattr(runtime, attribute)


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="run_idd"):
        getattr(runtime, "run_idd")
