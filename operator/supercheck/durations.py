"""Go-style durations, as ``@every`` and ``Monitor.spec.interval`` take them: 90s, 1m30s, 1h, 500ms."""

from __future__ import annotations

import re

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (e.g. ``1m30s`` -> 90.0); ValueError saying what is wrong otherwise."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration: write a number and a unit (ms, s, m, h), e.g. 30s, 1m30s, 2h")
    return total
