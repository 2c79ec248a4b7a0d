"""RFC 3339 timestamps as the Rust side writes them (chrono: `+00:00` or `Z`, up to nine
fractional digits), parsed on every Python from 3.9 (whose `fromisoformat` takes neither `Z`
nor more than six digits)."""

from __future__ import annotations

import re
from datetime import datetime

_FRACTION = re.compile(r"(\.\d+)")


def parse_rfc3339(value: str) -> datetime:
    """An aware datetime from an RFC 3339 timestamp; ValueError when it is not one."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # At most six fractional digits (microseconds): nanoseconds are cut, not rounded.
    text = _FRACTION.sub(lambda m: m.group(1)[:7].ljust(7, "0"), text, count=1)
    try:
        parsed = datetime.fromisoformat(text.replace("t", "T"))
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset (RFC 3339 needs one)")
    return parsed
