"""Container log files in the CRI format kubelet reads, and the queries `kubectl logs` makes.

Each record is one line: ``<RFC3339Nano time> <stdout|stderr> <F|P> <content>``; ``P``
marks a piece of a line too long for one record (or cut at 16 KiB), ``F`` its end. Keeping
the timestamps is what makes ``--timestamps`` and ``--since`` work. Everything here is pure
(bytes in, bytes out) except the small file helpers at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MAX_RECORD = 16 * 1024  # containerd splits longer lines into partial records


def format_timestamp(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_timestamp(text: str) -> int:
    """RFC 3339 (any fraction up to nanoseconds) to Unix nanoseconds."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    frac_ns = 0
    main, tz = text[:19], text[19:]
    if tz.startswith("."):
        digits = ""
        i = 1
        while i < len(tz) and tz[i].isdigit():
            digits += tz[i]
            i += 1
        frac_ns = int((digits + "000000000")[:9])
        tz = tz[i:]
    dt = datetime.fromisoformat(main + (tz or "+00:00"))
    return int(dt.timestamp()) * 1_000_000_000 + frac_ns


def encode_record(ts_ns: int, stream: str, content: bytes, partial: bool = False) -> bytes:
    return b"%s %s %s %s\n" % (format_timestamp(ts_ns).encode(), stream.encode(),
                               b"P" if partial else b"F", content)


class LineSplitter:
    """Turns a pipe's chunks into (content, partial) records: whole lines, long lines cut."""

    def __init__(self, max_record: int = MAX_RECORD):
        self._buf = bytearray()
        self._max = max_record

    def feed(self, chunk: bytes) -> list[tuple[bytes, bool]]:
        self._buf.extend(chunk)
        out: list[tuple[bytes, bool]] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl == -1 or nl > self._max:
                break
            out.append((bytes(self._buf[:nl]), False))
            del self._buf[: nl + 1]
        while len(self._buf) > self._max:
            out.append((bytes(self._buf[: self._max]), True))
            del self._buf[: self._max]
            nl = self._buf.find(b"\n")
            while nl != -1 and nl <= self._max:
                out.append((bytes(self._buf[:nl]), False))
                del self._buf[: nl + 1]
                nl = self._buf.find(b"\n")
        return out

    def flush(self) -> list[tuple[bytes, bool]]:
        """At end of stream an unterminated last line counts as a whole line (as in containerd)."""
        if not self._buf:
            return []
        out = [(bytes(self._buf), False)]
        self._buf.clear()
        return out


@dataclass(frozen=True)
class LogRecord:
    timestamp: str
    stream: str
    partial: bool
    content: bytes

    @property
    def time_ns(self) -> int:
        return parse_timestamp(self.timestamp)

    def render(self, timestamps: bool = False, continuation: bool = False) -> bytes:
        prefix = (self.timestamp.encode() + b" ") if timestamps and not continuation else b""
        return prefix + self.content + (b"" if self.partial else b"\n")


def parse_record(line: bytes) -> LogRecord | None:
    line = line.rstrip(b"\n")
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[2] not in (b"F", b"P"):
        return None
    content = parts[3] if len(parts) == 4 else b""
    return LogRecord(parts[0].decode(), parts[1].decode(), parts[2] == b"P", content)


def parse_records(data: bytes) -> list[LogRecord]:
    """Complete records in ``data``; a trailing line without newline (being written) is ignored."""
    lines = data.split(b"\n")
    return [r for r in (parse_record(ln) for ln in lines[:-1]) if r is not None]


def select(records: Sequence[LogRecord], *, tail_lines: int | None = None,
           since_ns: int | None = None) -> list[LogRecord]:
    """Apply ``sinceSeconds``/``sinceTime`` then ``tailLines`` (counted in whole lines)."""
    recs = list(records)
    if since_ns is not None:
        recs = [r for r in recs if r.time_ns >= since_ns]
    if tail_lines is not None:
        if tail_lines <= 0:
            return []
        # walk back over `tail_lines` line ends (F records); partial pieces belong to the next F
        count, start = 0, len(recs)
        for i in range(len(recs) - 1, -1, -1):
            if not recs[i].partial:
                count += 1
                if count > tail_lines:
                    break
            start = i
        recs = recs[start:]
    return recs


def render(records: Iterable[LogRecord], *, timestamps: bool = False,
           after_partial: bool = False) -> tuple[bytes, bool]:
    """Records as `kubectl logs` prints them; returns the bytes and whether the last was partial."""
    out = bytearray()
    cont = after_partial
    for r in records:
        out += r.render(timestamps, continuation=cont)
        cont = r.partial
    return bytes(out), cont


def tail_text(records: Sequence[LogRecord], max_lines: int = 80, max_bytes: int = 2048) -> str:
    """The end of a log, as kubelet uses it for FallbackToLogsOnError termination messages."""
    data, _ = render(select(records, tail_lines=max_lines))
    return data[-max_bytes:].decode("utf-8", "replace")


# ---------------------------------------------------------------- files


def read_records(path: Path) -> list[LogRecord]:
    try:
        return parse_records(path.read_bytes())
    except FileNotFoundError:
        return []


def now_ns() -> int:
    return time.time_ns()


def utc_from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)
