"""Validation: the allow-list policy (pure) and the TypeScript facts from runner-image/validate.mjs (node)."""

from __future__ import annotations

import pytest

from supercheck_runner import validate
from supercheck_runner.settings import DEFAULT_ALLOWED_MODULES, RunnerSettings
from supercheck_runner.validate import Issue, ValidationError, module_allowed, playwright_issues

from .conftest import NODE_MODULES, REPO

VALIDATOR = REPO / "runner-image" / "validate.mjs"


def facts(*imports, syntax=(), findings=()):
    return {
        "syntaxErrors": list(syntax),
        "imports": [{"specifier": s, "line": i + 1, "column": 1, "kind": "import"} for i, s in enumerate(imports)],
        "findings": list(findings),
    }


@pytest.mark.parametrize("spec", ["@playwright/test", "node:assert", "assert", "crypto", "node:crypto", "path"])
def test_default_allow_list_admits_the_usual_modules(spec):
    assert module_allowed(spec, DEFAULT_ALLOWED_MODULES)


@pytest.mark.parametrize("spec", ["child_process", "node:child_process", "net", "dgram", "tls", "fs",
                                  "node:fs", "fs/promises", "./helpers", "/etc/x", "lodash", "https://x.y/z.js"])
def test_default_allow_list_refuses_the_rest(spec):
    assert not module_allowed(spec, DEFAULT_ALLOWED_MODULES)


def test_node_scheme_and_subpaths_follow_their_module():
    assert module_allowed("node:fs", ["fs"]) and module_allowed("fs/promises", ["fs"])
    assert module_allowed("@playwright/test/reporter", ["@playwright/test"])
    assert not module_allowed("@playwright/testing", ["@playwright/test"])


def test_syntax_errors_come_first_and_alone():
    syntax = [{"line": 4, "column": 13, "message": "Expression expected."}]
    issues = playwright_issues(facts("child_process", syntax=syntax), DEFAULT_ALLOWED_MODULES)
    assert issues == [Issue(4, 13, "syntax error: Expression expected.")]


def test_refusal_names_the_line_the_module_and_why():
    issues = playwright_issues(facts("@playwright/test", "child_process"), DEFAULT_ALLOWED_MODULES)
    assert len(issues) == 1
    text = str(issues[0])
    assert text.startswith("line 2, column 1: import of 'child_process' is not allowed")
    assert "running programs" in text and "@playwright/test" in text


def test_the_allow_list_is_configurable():
    settings = RunnerSettings.from_env({"SUPERCHECK_ALLOWED_MODULES": "@playwright/test, fs"})
    assert settings.allowed_modules == ("@playwright/test", "fs")
    assert playwright_issues(facts("@playwright/test", "node:fs"), settings.allowed_modules) == []
    assert RunnerSettings.from_env({}).allowed_modules == DEFAULT_ALLOWED_MODULES


def test_size_limits():
    assert validate.size_issues(0, 100)[0].message == "the script is empty"
    assert "over the limit" in validate.size_issues(101, 100)[0].message
    assert validate.size_issues(100, 100) == []


def test_k6_messages_keep_their_line():
    out = ('time="x" level=error'
           ' msg="GoError: file:///w/script.js: Line 3:11 Unexpected token ; (and 1 more errors)\\n"'
           ' hint="script exception"')
    issue = validate.k6_issue(out)
    assert (issue.line, issue.column) == (3, 11)
    assert "Unexpected token" in issue.message


def test_a_k6_module_that_is_not_there_is_named_without_docker_advice():
    out = ('level=error msg="GoError: The moduleSpecifier \\"./lib/site.js\\" couldn\'t be found on local disk. '
           'Make sure that you\'ve specified the right path to the file. If you\'re running k6 using the Docker image '
           'make sure you have mounted the local directory (-v /local/path/:/inside/docker/path)"')
    issue = validate.k6_issue(out)
    assert issue.message == ("import of './lib/site.js' names no file beside the script; add the file to "
                             "spec.script.configMapRef.files, or fix the path")


# --- validate.mjs, the real TypeScript parser -----------------------------------------------------


def check(tmp_path, source: str, name: str = "test.spec.ts", allowed=DEFAULT_ALLOWED_MODULES,
          files: dict[str, str] | None = None):
    for rel, text in {name: source, **(files or {})}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    validate.validate_playwright(tmp_path, [name, *(files or {})], name, node="node", validator=VALIDATOR,
                                 node_modules=NODE_MODULES, allowed=allowed, timeout=60)


def refused(tmp_path, source: str, **kw) -> str:
    with pytest.raises(ValidationError) as err:
        check(tmp_path, source, **kw)
    return str(err.value)


@pytest.mark.integration
def test_a_typescript_spec_passes(tmp_path):
    check(tmp_path, (
        "import { test, expect, type Page } from '@playwright/test';\n"
        "import type { Locator } from '@playwright/test';\n"
        "import assert from 'node:assert';\n"
        "interface Shop { url: string }\n"
        "const shop: Shop = { url: process.env.TARGET_URL ?? 'http://127.0.0.1' };\n"
        "async function open(page: Page): Promise<void> { await page.goto(shop.url); }\n"
        "test('x', async ({ page }, testInfo) => {\n"
        "  await open(page);\n"
        "  await page.screenshot({ path: testInfo.outputPath('shot.png') });\n"
        "  await page.screenshot({ path: 'relative.png' });\n"
        "  assert.ok(true);\n"
        "});\n"
    ))


@pytest.mark.integration
def test_typescript_syntax_error_points_at_its_line(tmp_path):
    message = refused(tmp_path,
                      "import { test } from '@playwright/test';\n\ntest('x', async () => {\n  const a: = 1;\n});\n")
    assert message.startswith("line 4, column") and "syntax error" in message


@pytest.mark.integration
@pytest.mark.parametrize("source, line, words", [
    ("import { exec } from 'child_process';", 1, "'child_process'"),
    ("const cp = require('node:child_process');", 1, "'node:child_process'"),
    ("const net = await import('net');", 1, "'net'"),
    ("import * as fs from 'fs';\nfs.writeFileSync('/tmp/x', 'y');", 1, "'fs'"),
    ("export * from 'dgram';", 1, "'dgram'"),
    ("import x = require('tls');", 1, "'tls'"),
    ("const name = 'child' + '_process';\nrequire(name);", 2, "computed module name"),
    ("const m = 'net';\nawait import(m);", 2, "computed module name"),
    ("eval('1 + 1');", 1, "eval()"),
    ("const f = new Function('return process');", 1, "new Function()"),
    ("const f = (() => {}).constructor.constructor('return 1');", 1, ".constructor reaches the constructors"),
    ("process.binding('tcp_wrap');", 1, "process.binding"),
    ("const r = process.mainModule;", 1, "process.mainModule"),
    ("import { test } from '@playwright/test';\ntest('x', async ({ page }) => {\n"
     "  await page.screenshot({ path: '/etc/shot.png' });\n});", 3, "outside the work directory"),
    ("import { test } from '@playwright/test';\ntest('x', async ({ page }) => {\n"
     "  const d = await page.waitForEvent('download');\n  await d.saveAs('../../escape.bin');\n});",
     4, "outside the work directory"),
    ("import helper from './helper';", 1, "import of './helper' names no file of the suite (looked for helper,"),
    ("import x from '../up/x';", 1, "import of '../up/x' climbs out of the suite's folder"),
    ("import x from '/etc/x';", 1, "an absolute path is outside the suite's folder"),
])
def test_refused_constructs_name_their_line(tmp_path, source, line, words):
    message = refused(tmp_path, source)
    assert message.startswith(f"line {line},"), message
    assert words in message


@pytest.mark.integration
def test_plain_javascript_specs_are_parsed_too(tmp_path):
    check(tmp_path, "const { test } = require('@playwright/test');\ntest('x', async () => {});\n", name="test.spec.js")
    assert "'child_process'" in refused(tmp_path, "const cp = require('child_process');\n", name="test.spec.js")


# --- k6: handleSummary's files stay in the work directory ------------------------------------------


def summary_facts(*paths):
    return {"summaryPaths": [{"path": p, "prefix": False, "line": i + 1, "column": 3}
                             for i, p in enumerate(paths)]}


def test_handle_summary_paths_inside_the_work_directory_pass():
    assert validate.summary_path_issues(summary_facts("summary.json", "stdout", "stderr", "reports/x.html",
                                                      "./junit.xml", "")) == []


@pytest.mark.parametrize("path, why", [
    ("/tmp/results/summary.json", "an absolute path"),
    ("../summary.json", "climbs out with '..'"),
    ("reports/../../x.json", "climbs out with '..'"),
    ("~/summary.json", "home directory"),
])
def test_handle_summary_paths_outside_are_refused_with_the_fix(path, why):
    (issue,) = validate.summary_path_issues(summary_facts("summary.json", path))
    text = str(issue)
    assert text.startswith("line 2, column 3: handleSummary writes") and f"'{path}'" in text
    assert why in text and "use a relative name such as 'summary.json'" in text


K6_SUMMARY_SCRIPT = """\
import http from 'k6/http';
export default function () {}
function report(data) {
  const out = { stdout: 'text', 'summary.json': JSON.stringify(data) };
  out['/results/raw.json'] = JSON.stringify(data);
  out[`${__ENV.DIR}/x.json`] = '';
  return out;
}
export { report as handleSummary };
export const other = () => ({ '/not/a/summary': 1 });
"""


@pytest.mark.integration
@pytest.mark.parametrize("source, expected", [
    (K6_SUMMARY_SCRIPT, [("/results/raw.json", False, 5), ("", True, 6), ("stdout", False, 4),
                         ("summary.json", False, 4)]),
    ("export const handleSummary = (data) => ({ '../up.json': '', [`/abs/${data.x}.txt`]: 'x', stdout: 'y' });\n",
     [("../up.json", False, 1), ("/abs/", True, 1), ("stdout", False, 1)]),
    ("export function handleSummary(data) {\n  return { 'summary.json': JSON.stringify(data) };\n}\n",
     [("summary.json", False, 2)]),
    ("export default function () {}\n", []),
])
def test_validate_mjs_finds_the_files_handle_summary_returns(tmp_path, source, expected):
    script = tmp_path / "script.ts"
    script.write_text(source)
    facts = validate.script_facts(script, node="node", validator=VALIDATOR, node_modules=NODE_MODULES, timeout=60)
    assert [(p["path"], p["prefix"], p["line"]) for p in facts["summaryPaths"]] == expected


FIXTURES = (
    "import { test as base } from '@playwright/test';\n"
    "export { expect } from '@playwright/test';\n"
    "export const test = base.extend({});\n"
)


@pytest.mark.integration
@pytest.mark.parametrize("name, import_from", [("todo.spec.ts", "./fixtures"),
                                               ("tests/todo.spec.ts", "../fixtures")])
def test_a_spec_importing_its_fixtures_passes(tmp_path, name, import_from):
    check(tmp_path, f"import {{ test, expect }} from '{import_from}';\ntest('x', async () => {{}});\n", name=name,
          files={"fixtures.ts": FIXTURES})


@pytest.mark.integration
def test_every_file_of_the_suite_is_checked_and_named(tmp_path):
    message = refused(tmp_path, "import { test } from './fixtures';\n", files={
        "fixtures.ts": "import { test } from '@playwright/test';\nimport { exec } from 'child_process';\n"
                       "export { test };\n",
        "helpers/util.ts": "const a: = 1;\n"})
    assert message.startswith("fixtures.ts: line 2, column 1: import of 'child_process' is not allowed"), message
    assert "helpers/util.ts: line 1, column 10: syntax error" in message


@pytest.mark.integration
def test_an_import_of_a_missing_or_outside_file_is_refused_naming_it(tmp_path):
    message = refused(tmp_path, "import { test } from '../fixtures';\n", name="tests/todo.spec.ts",
                      files={"fixtures/other.ts": "export {};\n"})
    assert message.startswith("line 1, column 1: import of '../fixtures' names no file of the suite"), message
    message = refused(tmp_path / "b", "import { test } from './fixtures';\n",
                      files={"fixtures.ts": "import x from '../../outside/x';\nexport const test = x;\n"})
    assert message.startswith("fixtures.ts: line 1, column 1: import of '../../outside/x' climbs out"), message


FS_FOR_A_DOWNLOAD = """
import { test, expect } from '@playwright/test';
import * as fs from 'node:fs';

test('export', async ({ page }) => {
  const downloading = page.waitForEvent('download');
  await page.getByText('Export orders').click();
  const download = await downloading;
  const csv = fs.readFileSync(await download.path(), 'utf8');
  expect(csv).toContain('9.99');
});
"""


@pytest.mark.integration
def test_fs_is_refused_with_the_playwright_api_that_replaces_what_the_script_does(tmp_path):
    message = refused(tmp_path, FS_FOR_A_DOWNLOAD)
    assert message.startswith("line 3, column 1: import of 'node:fs' is not allowed (file access is not allowed; "
                              "line 9 calls fs.readFileSync(); instead, read a download with "
                              "`await download.createReadStream()`"), message
    assert "page.setInputFiles(selector, { name, mimeType, buffer })" in message
    assert "testInfo.attach" not in message  # the script reads; writing hints would be noise


@pytest.mark.parametrize("uses, present, absent", [
    ([{"member": "writeFileSync", "expression": "fs.writeFileSync", "line": 5}],
     ["line 5 calls fs.writeFileSync()", "testInfo.attach(name, { body })", "testInfo.outputPath(name)"],
     ["download.createReadStream"]),
    ([{"member": "readFile", "expression": "readFile", "line": 7}],
     ["line 7 calls readFile()", "download.createReadStream()"], ["testInfo.attach"]),
    ([], ["download.createReadStream()", "testInfo.attach(name, { body })"], ["calls"]),  # imported, never used
])
def test_the_fs_hint_follows_what_the_script_does(uses, present, absent):
    for specifier in ("fs", "node:fs", "fs/promises", "node:fs/promises"):
        imports = [{"specifier": specifier, "line": 1, "column": 1, "kind": "import", "uses": uses}]
        text = str(playwright_issues({"imports": imports}, DEFAULT_ALLOWED_MODULES)[0])
        assert text.startswith(f"line 1, column 1: import of '{specifier}' is not allowed (file access is not allowed")
        for words in present:
            assert words in text, text
        for words in absent:
            assert words not in text, text


WITHOUT_FS = """
import { test, expect } from '@playwright/test';

test('export and import orders', async ({ page }, testInfo) => {
  await page.goto('/files');
  // A download's content, without touching its file:
  const downloading = page.waitForEvent('download');
  await page.getByText('Export orders').click();
  const download = await downloading;
  const csv = Buffer.concat(await (await download.createReadStream()).toArray()).toString('utf8');
  expect(csv).toContain('1,9.99');
  // An upload from memory:
  await page.locator('#upload').setInputFiles({ name: 'orders.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
  await expect(page.locator('#uploaded')).toContainText('orders.csv: id,total');
  // Data kept with the report (an attachment), or a file Playwright writes for the report:
  await testInfo.attach('orders.csv', { body: csv, contentType: 'text/csv' });
  await page.screenshot({ path: testInfo.outputPath('after-upload.png') });
});
"""  # as docs/runner.md shows it


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_api_the_fs_hint_points_at_passes_validation_and_works_in_chromium(run_runner, site):
    run = run_runner("playwright", WITHOUT_FS, playwrightRetries=0, playwrightUse={"baseURL": site.url})
    assert run.exit_code == 0, run.result.message if run.result else run.output
    assert run.result.summary.passed == 1
    doc = (REPO / "docs" / "runner.md").read_text()
    assert WITHOUT_FS in doc  # the documented example is this one


# --- issue 10: nesting, escapes, k6 file reads ---------------------------------------------------


def test_too_deep_nesting_is_an_issue_with_its_place_and_the_fix():
    (issue,) = playwright_issues({"tooDeep": {"line": 2, "column": 267, "limit": 256},
                                  "syntaxErrors": [{"line": 2, "column": 1, "message": "x"}]}, DEFAULT_ALLOWED_MODULES)
    assert str(issue).startswith("line 2, column 267: brackets nested more than 256 levels deep")
    assert "flatten it" in str(issue)
    (issue,) = validate.nesting_issues({"tooDeep": {"line": None, "column": None, "limit": 256}})
    assert issue.line is None and "the parser ran out of stack" in issue.message
    assert validate.k6_issues({"tooDeep": {"line": 1, "column": 1, "limit": 256},
                               "fileReads": [{"call": "open", "path": "/etc/x", "line": 3, "column": 1}]}) == [
        Issue(1, 1, validate.nesting_issues({"tooDeep": {"line": 1, "column": 1, "limit": 256}})[0].message)]


@pytest.mark.integration
def test_a_validator_that_runs_out_of_stack_is_the_scripts_fault_not_ours(tmp_path):
    # validate.mjs reports depth itself; should node still die of it, the verdict is the same (not
    # ValidatorUnavailable, which is classed infrastructure and retried).
    recurse = tmp_path / "recurse.mjs"
    recurse.write_text("const f = (n) => f(n + 1) + 1; f(0);\n")
    script = tmp_path / "x.spec.ts"
    script.write_text("x\n")
    with pytest.raises(ValidationError, match="nests too deeply to be checked"):
        validate.file_facts([script], node="node", validator=recurse, node_modules=NODE_MODULES, timeout=60)
    crash = tmp_path / "crash.mjs"
    crash.write_text("throw new Error('boom');\n")
    with pytest.raises(validate.ValidatorUnavailable, match="boom"):
        validate.file_facts([script], node="node", validator=crash, node_modules=NODE_MODULES, timeout=60)


def reads(*entries):
    return {"fileReads": [{"call": c, "path": p, "prefix": pre, "line": i + 1, "column": 7}
                          for i, (c, p, pre) in enumerate(entries)]}


def test_k6_reads_inside_the_suite_pass_and_outside_are_refused_with_the_fix():
    assert validate.k6_read_issues(reads(("open", "./data.json", False), ("open", "data/u.csv", False),
                                         ("load", None, False), ("loadProtoset", "x.pb", False))) == []
    issues = validate.k6_read_issues(reads(("open", "/proc/self/environ", False), ("open", "~/.aws/x", False),
                                           ("open", "a/../../x", False), ("load", "/etc", False),
                                           ("open", None, False), ("open", "./data/", True)))
    texts = [str(i) for i in issues]
    assert texts[0].startswith("line 1, column 7: open('/proc/self/environ') reads an absolute path, outside")
    assert "a path in a home directory" in texts[1] and "climbs out with '..'" in texts[2]
    assert texts[3].startswith("line 4, column 7: load('/etc') reads an absolute path")
    assert all("spec.script.configMapRef.files" in t for t in texts[:4])
    assert texts[4].startswith("line 5, column 7: open() with a computed path cannot be checked")
    assert texts[5].startswith("line 6, column 7: open() with a computed path")  # a template's tail is computed


def test_k6_imports_of_files_outside_the_suite_are_refused():
    imports = [{"specifier": s, "line": i + 1, "column": 1, "kind": "import"} for i, s in enumerate(
        ["k6/http", "https://jslib.k6.io/k6-summary/0.0.2/index.js", "./lib/a.js", "/etc/x.js", "file:///etc/y.js",
         "../../z.js"])]
    issues = validate.k6_import_issues({"imports": imports})
    assert [(i.line, i.message.split(" is ")[1].split(",")[0]) for i in issues] == [
        (4, "an absolute path"), (5, "an absolute path"), (6, "a path that climbs out with '..'")]


def test_playwrights_command_line_is_refused_whatever_the_allow_list():
    issues = playwright_issues(facts("@playwright/test/cli", "@playwright/test/reporter"), DEFAULT_ALLOWED_MODULES)
    assert [str(i) for i in issues] == ["line 1, column 1: import of '@playwright/test/cli' is not allowed (it is "
                                        "Playwright's command line, which installs browsers and starts test runs "
                                        "and servers; a test imports @playwright/test)"]


@pytest.mark.integration
@pytest.mark.parametrize("source", [
    "const base = process.env.BASE_URL ?? 'http://x';\nconst all = { ...process.env };\n",
    "const keys = Object.keys(process.env);\nif (process.platform === 'linux') {}\n",
    "class A {}\nconst n = new A().constructor.name;\nconst k = { constructor: 1 };\n",
    "module.exports = { a: 1 };\nexports.b = 2;\n",
    "globalThis.shared = 1;\nconst f = globalThis.fetch;\n",
    "function sum() { return Array.prototype.slice.call(arguments); }\n",
    "import { chromium } from '@playwright/test';\nconst p = chromium.executablePath();\n"
    "const b = await chromium.launch({ headless: true, args: ['--lang=de'] });\n",
    "import { test } from '@playwright/test';\ntest.use({ launchOptions: { slowMo: 10 } });\n",
    "setTimeout(() => {}, 1);\nconst t: Function = () => {};\ntype R = typeof require;\n",
    "const a = [[[[1]]]];\nconst deep = " + "(" * 200 + "1" + ")" * 200 + ";\n",
    "const re = /[(((((]/;\nconst s = `${'('.repeat(3)}`;\n",
])
def test_what_tests_do_passes(tmp_path, source):
    check(tmp_path, source)


@pytest.mark.integration
def test_the_nesting_count_skips_strings_comments_and_regular_expressions(tmp_path):
    check(tmp_path, "const s = '" + "(" * 400 + "'; /* " + "[" * 400 + " */\nconst r = /" + "\\(" * 400 + "/;\n"
                    "// " + "{" * 400 + "\nconst t = `" + "[" * 400 + "`;\n")
    message = refused(tmp_path / "deep", "const s = `" + "${[" * 300 + "1" + "]}" * 300 + "`;\n")
    assert message.startswith("line 1, column ") and "nested more than 256 levels deep" in message


def test_k6_paths_are_judged_from_the_file_that_names_them():
    imports = {"imports": [{"specifier": "../lib/site.js", "line": 1, "column": 1, "kind": "import"}],
               "fileReads": [{"call": "open", "path": "../data/u.json", "prefix": False, "line": 2, "column": 1}]}
    assert validate.k6_issues(imports, "load/home.k6.js") == []
    texts = [i.message for i in validate.k6_issues(imports, "home.k6.js")]
    assert "climbs out with '..'" in texts[0] and "climbs out with '..'" in texts[1]
    assert validate.k6_read_issues(reads(("open", "load/../../../x", False)), "a/b.js")[0].line == 1
    assert validate.k6_read_issues(reads(("open", "load/../../x", False)), "a/b.js") == []  # a/load/../../x is x


def example_suites() -> list[tuple[str, str, dict[str, str]]]:
    """(example, type, files) for every run in examples/: its inline script, or the files of the ConfigMap
    it names, at the paths it gives them (as the operator lays them out)."""
    import yaml

    found = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
        for doc in docs:
            if doc["kind"] not in ("TestRun", "JobRun"):
                continue
            spec = doc["spec"]
            source = spec.get("script") or spec.get("testsFrom") or {}
            if "inline" in source:
                files = {"script.js" if spec["type"] == "k6" else "test.spec.ts": source["inline"]}
            else:
                ref = source["configMapRef"]
                data = maps[ref["name"]]
                placed = {f["key"]: f.get("path", f["key"]) for f in ref.get("files", [])}
                keys = [ref["key"], *placed] if "key" in ref else list(data)
                files = {placed.get(k, ref.get("path", k) if k == ref.get("key") else k): data[k] for k in keys}
            found.append((f"{path.name}:{doc['metadata']['name']}", spec["type"], files))
    return found


@pytest.mark.integration
@pytest.mark.parametrize("example, kind, files", example_suites(), ids=[e for e, _, _ in example_suites()])
def test_the_examples_pass_validation(tmp_path, example, kind, files):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    if kind == "playwright":
        validate.validate_playwright(tmp_path, list(files), None, node="node", validator=VALIDATOR,
                                     node_modules=NODE_MODULES, allowed=DEFAULT_ALLOWED_MODULES, timeout=60)
    else:
        for rel in files:
            facts = validate.script_facts(tmp_path / rel, node="node", validator=VALIDATOR,
                                          node_modules=NODE_MODULES, timeout=60)
            assert validate.k6_issues(facts, rel) == []


@pytest.mark.integration
def test_words_a_page_shows_are_not_refused_as_names(tmp_path):
    check(tmp_path, "import { test } from '@playwright/test';\ntest('constructor', async ({ page }) => {\n"
                    "  await page.getByText('caller').click();\n  await page.getByLabel('arguments').fill('x');\n"
                    "});\n")
