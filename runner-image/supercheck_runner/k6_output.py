"""What k6 prints, read back: its log lines as plain sentences, and remote-module failures.

k6 logs in logfmt (``time="…" level=error msg="…" hint="…"``), with Go-quoted values, stack
frames pointing into ``file:///<work dir>/<script>`` and option errors as ``\\n\\t- `` lists.
Nothing of that syntax belongs in a TestRun's message, so every text the runner takes from k6
goes through :func:`sentence`: the ``msg`` text, the useful fields (``error``, a ``hint`` that
says something), the first frame of the user's own code as ``checkout.js line 2, column 33``,
paths relative to the work directory.

A remote module k6 could not fetch (``import … from 'https://jslib.k6.io/…'``) is told apart
from a script error by :func:`module_fetch_failure`: DNS, a refused or timed-out connection,
TLS, a server error are the network's (retried by the operator); a 404 is the script's.

Pure functions over text; the lines in tests/runner/test_k6_output.py are k6 1.1's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from supercheck_runner.outcome import strip_ansi

# key=value or key="Go-quoted value"; logrus' text format.
_PAIR = re.compile(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)')
_GO_ESCAPE = re.compile(r'\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)')
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
                   '"': '"', "\\": "\\", "'": "'"}
# Hints that add nothing to the message they come with.
_EMPTY_HINTS = {"script exception"}
# Error lines that only repeat what an earlier line said.
_ECHOES = ("test run was marked as failed",)


@dataclass(frozen=True)
class LogLine:
    level: str
    msg: str
    fields: Mapping[str, str]  # every other key but time, decoded

    @property
    def iteration_error(self) -> bool:
        """An exception in one iteration: logged, counted, not fatal to the run."""
        return self.fields.get("source") == "stacktrace"


def _unquote(value: str) -> str:
    if len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
        return value

    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] in "xuU" and len(code) > 1:
            return chr(int(code[1:], 16))
        return _SIMPLE_ESCAPES.get(code, code)

    return _GO_ESCAPE.sub(one, value[1:-1])


def parse_line(line: str) -> LogLine | None:
    """A k6 log line, or None for anything else (its banner, progress bars, the summary, console.log() output)."""
    pairs = {k: _unquote(v) for k, v in _PAIR.findall(strip_ansi(line))}
    if "level" not in pairs or "msg" not in pairs:
        return None
    level, msg = pairs.pop("level"), pairs.pop("msg")
    pairs.pop("time", None)
    return LogLine(level, msg, pairs)


def log_lines(text: str) -> Iterator[LogLine]:
    for raw in text.splitlines():
        parsed = parse_line(raw)
        if parsed is not None:
            yield parsed


def errors(text: str) -> list[LogLine]:
    return [ln for ln in log_lines(text) if ln.level in ("error", "fatal", "panic")]


def _summary_problem(line: LogLine) -> bool:
    return line.msg.startswith("failed to handle the end-of-test summary") or "at handleSummary (" in line.msg


def main_error(text: str) -> LogLine | None:
    """The error that ended the run: the last one that is not an iteration's exception, an echo of
    an earlier line or handleSummary's trouble (reported on its own, see :func:`summary_problems`)."""
    found = errors(text)
    for line in reversed(found):
        if not (line.iteration_error or line.msg.startswith(_ECHOES) or _summary_problem(line)):
            return line
    rest = [line for line in found if not _summary_problem(line)]
    return rest[-1] if rest else None


# --- k6's text as prose --------------------------------------------------------------------

# A stack frame: "\tat setup (file:///w/checkout.js:2:33(3))", "at file:///w/x.js:1:11(10)",
# "\tat go.k6.io/k6/js.(*Bundle).f (native)".
_FRAME = re.compile(r"\s*\bat (?:(?P<fn>\S+) )?\(?(?P<where>file://\S+?:\d+:\d+|native)(?:\(\d+\))?\)?")
_FILE_POS = re.compile(r"file://(?P<path>/[^\s:()\"']+):(?P<line>\d+):(?P<col>\d+)(?:\(\d+\))?")
_FILE_LINE = re.compile(r"file://(?P<path>/[^\s:()\"']+): Line (?P<line>\d+):(?P<col>\d+) ")
_FILE = re.compile(r"file://(?P<path>/[^\s:()\"']+)")


def _relative(path: str, work: str | None) -> str:
    if work:
        base = work.rstrip("/") + "/"
        if path.startswith(base):
            return path[len(base):]
    return path


def _where(path: str, line: str, col: str, work: str | None) -> str:
    return f"{_relative(path, work)} line {line}, column {col}"


def readable(text: str, work: str | None = None) -> str:
    """k6's message as prose: no GoError prefix, no stack, no file:// URLs, lists on one line."""
    text = strip_ansi(text).strip()
    text = re.sub(r"^(?:GoError: )+", "", text)
    # The first frame in the user's code, kept as a place; the rest of the stack dropped.
    place = None
    for m in _FRAME.finditer(text):
        pos = _FILE_POS.match(m.group("where"))
        if pos:
            fn = m.group("fn")
            place = (f"in {fn}(), " if fn else "") + _where(pos["path"], pos["line"], pos["col"], work)
            break
    first_frame = _FRAME.search(text)
    if first_frame:
        text = text[: first_frame.start()]
    text = _FILE_LINE.sub(lambda m: _where(m["path"], m["line"], m["col"], work) + ": ", text)
    text = _FILE_POS.sub(lambda m: _where(m["path"], m["line"], m["col"], work), text)
    text = _FILE.sub(lambda m: _relative(m["path"], work), text)
    if work:
        text = text.replace(work.rstrip("/") + "/", "")
    # "header:\n\t- a\n\t- b" -> "header: a; b"
    parts = [p.strip() for p in text.splitlines() if p.strip()]
    items = [p[2:].strip() if p.startswith("- ") else p for p in parts]
    if len(items) > 1 and items[0].endswith(":"):
        text = items[0] + " " + "; ".join(items[1:])
    else:
        text = " ".join(items)
    text = re.sub(r"\s+", " ", text).replace(" : ", ": ").strip()
    if place:
        text = f"{text.rstrip('.')} ({place})"
    return text


def sentence(line: LogLine, work: str | None = None) -> str:
    """One log line as prose: its message, then its error and its hint."""
    text = readable(line.msg, work)
    error = line.fields.get("error")
    if error:
        text = f"{text.rstrip('.:')}: {readable(error, work)}"
    hint = line.fields.get("hint", "").strip()
    if hint and hint not in _EMPTY_HINTS:
        text = f"{text.rstrip('.')}. {hint[0].upper()}{hint[1:]}"
    return text


def first_sentence(text: str, work: str | None = None, limit: int = 400) -> str:
    """The error that ended the run as prose; else the last non-empty line of the text."""
    line = main_error(text)
    if line is not None:
        out = sentence(line, work)
    else:
        rest = [ln.strip() for ln in strip_ansi(text).splitlines() if ln.strip() and not ln.startswith("[supercheck]")]
        panics = [ln for ln in rest if ln.startswith("panic: ")]  # a Go panic: its first line, not its stack
        out = readable((panics or rest or [""])[-1], work)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def summary_problems(text: str, work: str | None = None) -> list[str]:
    """handleSummary's failures: it threw, or k6 could not write a file it returned. k6 still exits 0."""
    problems = []
    for line in errors(text):
        if not _summary_problem(line):
            continue
        if "error" in line.fields:
            detail = readable(line.fields["error"], work)
            detail = re.sub(r"^Could not save some summary information: ", "", detail)
            if "no such file or directory" in detail:
                detail += " (k6 does not create folders: write 'summary.json', not 'reports/summary.json')"
            problems.append(detail)
        else:
            problems.append(readable(line.msg, work))
    return problems


# --- remote modules ------------------------------------------------------------------------

_MODULE_FETCH = re.compile(
    r"The moduleSpecifier \"(?P<spec>[^\"]*)\" couldn't be retrieved from the resolved url "
    r"\"(?P<url>[^\"]*)\"\. Error : \"(?P<error>.*)\"", re.S)
_STATUS = re.compile(r"wrong status code \((?P<code>\d+)\)")


@dataclass(frozen=True)
class ModuleFetchFailure:
    url: str
    cause: str  # what went wrong, as prose
    network: bool  # the network's fault (retry may help); False: the URL is wrong
    host: str
    port: int


def module_fetch_failure(text: str) -> ModuleFetchFailure | None:
    """A remote module k6 could not fetch, from any k6 output (log lines or plain text)."""
    msgs = [ln.msg for ln in errors(text)] or [strip_ansi(text)]
    for msg in msgs:
        m = _MODULE_FETCH.search(msg)
        if m:
            return _classify_fetch(m["url"], m["error"].strip())
    return None


def _classify_fetch(url: str, error: str) -> ModuleFetchFailure:
    parts = urlsplit(url)
    host = parts.hostname or url
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 443
    # Go's error after 'Get "<url>": ', when there is one.
    detail = error.split('": ', 1)[1] if error.startswith("Get ") and '": ' in error else error
    low = detail.lower()
    status = _STATUS.search(detail)

    def failure(cause: str, network: bool = True) -> ModuleFetchFailure:
        return ModuleFetchFailure(url, cause, network, host, port)

    if detail.startswith("not found:") or (status and 400 <= int(status["code"]) < 500):
        code = status["code"] if status else "404"
        return failure(f"the server answered HTTP {code}" + (" (not found)" if code == "404" else ""), False)
    if status:
        return failure(f"the server answered HTTP {status['code']}")
    if "no such host" in low or "server misbehaving" in low or ("lookup " in low and "timeout" in low):
        return failure(f"the host name {host} could not be resolved (DNS)")
    if "connection refused" in low:
        return failure(f"the connection to {host}:{port} was refused")
    if "timeout" in low or "deadline exceeded" in low:
        return failure(f"the connection to {host}:{port} timed out")
    if "network is unreachable" in low or "no route to host" in low:
        return failure(f"{host} is unreachable from the runner (no route)")
    if "connection reset" in low or low.endswith("eof"):
        return failure(f"the connection to {host}:{port} was cut ({detail})")
    if "tls:" in low or "x509:" in low or "certificate" in low:
        return failure(f"the TLS connection to {host}:{port} failed ({detail})")
    return failure(detail)


def fetch_message(failure: ModuleFetchFailure) -> str:
    """What the user reads: what could not be reached, that it is retried, and how to fix it."""
    if not failure.network:
        return (f"the remote module {failure.url} could not be fetched: {failure.cause}; "
                "check the URL in the script's import")
    return (f"the remote module {failure.url} could not be fetched: {failure.cause}. "
            "A network failure is retried with backoff; if it persists, vendor the module "
            "(paste its code into the script, or ship it beside the script and import it by a relative path) "
            f"or allow the runner pod egress to {failure.host}:{failure.port}")
