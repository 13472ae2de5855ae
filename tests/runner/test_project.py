"""The script's folder: where it is, what is in it (as a ConfigMap volume shows it), copying it,
resolving relative imports, and the checks on the suite as a whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supercheck_runner import project, validate
from supercheck_runner.project import Project, import_candidates, locate, resolve_import
from supercheck_runner.validate import Issue, ValidationError, project_issues

from .conftest import configmap_volume

SUITE = {"tests/todo.spec.ts", "fixtures/index.ts", "data.json", "lib/util.ts", "helpers.ts"}


def test_the_folder_is_scriptpath_less_scriptname():
    assert locate(Path("/supercheck/script/tests/todo.spec.ts"), "tests/todo.spec.ts") == \
        Project(Path("/supercheck/script"), "tests/todo.spec.ts")
    # an older operator (no scriptName), or a name that does not end the path: the script's own folder
    assert locate(Path("/supercheck/script/test.spec.ts"), "") == Project(Path("/supercheck/script"), "test.spec.ts")
    assert locate(Path("/m/a.spec.ts"), "other.spec.ts") == Project(Path("/m"), "a.spec.ts")


def test_a_folder_as_scriptpath_is_a_whole_suite(tmp_path):
    assert locate(tmp_path, "") == Project(tmp_path, None)


@pytest.mark.parametrize("importer, specifier, found", [
    ("tests/todo.spec.ts", "../fixtures", "fixtures/index.ts"),
    ("tests/todo.spec.ts", "../fixtures/", "fixtures/index.ts"),
    ("tests/todo.spec.ts", "../fixtures/index", "fixtures/index.ts"),
    ("tests/todo.spec.ts", "../data.json", "data.json"),
    ("tests/todo.spec.ts", "../lib/util.js", "lib/util.ts"),  # TypeScript's .js for .ts
    ("tests/todo.spec.ts", "./../helpers", "helpers.ts"),
    ("helpers.ts", "./lib/util", "lib/util.ts"),
])
def test_relative_imports_resolve_to_files_of_the_suite(importer, specifier, found):
    assert resolve_import(importer, specifier, SUITE) == (found, "")


def test_an_import_that_climbs_out_or_names_nothing_says_so():
    found, why = resolve_import("tests/todo.spec.ts", "../../etc/passwd", SUITE)
    assert found is None and why.startswith("climbs out of the suite's folder")
    found, why = resolve_import("helpers.ts", "../x", SUITE)
    assert found is None and "climbs out" in why
    found, why = resolve_import("tests/todo.spec.ts", "./fixtures", SUITE)
    assert found is None
    assert why.startswith("names no file of the suite (looked for tests/fixtures, tests/fixtures.ts,")
    assert "add the file to spec.script.configMapRef.files" in why


def test_import_candidates_follow_typescript_resolution():
    assert import_candidates("a", "./a")[:3] == ["a", "a.ts", "a.tsx"]
    assert "a/index.ts" in import_candidates("a", "./a")
    assert import_candidates("a.js", "./a.js") == ["a.js", "a.ts", "a.tsx"]
    assert import_candidates("d.json", "./d.json") == ["d.json"]
    assert import_candidates(".", ".")[0] == "index.ts"


def test_the_files_of_a_configmap_volume_are_listed_by_their_paths(tmp_path):
    configmap_volume(tmp_path, {"tests/todo.spec.ts": "t", "fixtures/index.ts": "f", "data.json": "{}"})
    assert sorted(os.listdir(tmp_path))[:1] == ["..2030_01_01_12_00_00.000000001"]  # what a pod sees
    files = project.list_files(tmp_path)
    assert sorted(files) == ["data.json", "fixtures/index.ts", "tests/todo.spec.ts"]
    assert files["fixtures/index.ts"].read_text() == "f"


def test_links_out_of_the_folder_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "a.spec.ts").write_text("a")
    (suite / "leak").symlink_to(outside)
    (suite / "loop").symlink_to(suite)
    assert sorted(project.list_files(suite)) == ["a.spec.ts"]


def test_copies_keep_the_layout_are_writable_and_give_the_script_a_code_suffix(tmp_path):
    configmap_volume(tmp_path / "m", {"smoke": "s", "fixtures/index.ts": "f"})
    files = project.list_files(tmp_path / "m")
    placed = project.copy_into(files, "smoke", tmp_path / "w", ".ts")
    assert placed == project.Placed(("fixtures/index.ts", "smoke.ts"), "smoke.ts")
    assert str(placed) == "smoke.ts and 1 more file"
    assert str(project.Placed(("a.spec.ts", "b.spec.ts"), None)) == "a suite of 2 files"
    assert (tmp_path / "w" / "fixtures" / "index.ts").read_text() == "f"
    assert os.access(tmp_path / "w" / "smoke.ts", os.W_OK)


def test_the_suite_is_within_the_size_limit_together():
    assert project_issues({"a.spec.ts": 10, "f.ts": 10}, "a.spec.ts", 20) == []
    [issue] = project_issues({"a.spec.ts": 10, "f.ts": 11}, "a.spec.ts", 20)
    assert issue.message == "the script and its files are 21 bytes (2 files), over the limit of 20 bytes"
    [issue] = project_issues({"a.spec.ts": 21}, "a.spec.ts", 20)
    assert issue.message == "the script is 21 bytes, over the limit of 20 bytes"
    assert project_issues({"a.spec.ts": 0, "f.ts": 1}, "a.spec.ts", 20)[0].message == "the script is empty"
    assert project_issues({}, None, 20)[0].message == "the suite's folder is empty"
    assert "is not in its folder (it has: f.ts)" in project_issues({"f.ts": 1}, "a.spec.ts", 20)[0].message


def test_a_suite_may_not_bring_node_modules():
    [issue] = project_issues({"a.spec.ts": 1, "node_modules/@playwright/test/index.js": 1}, "a.spec.ts", 100)
    assert issue.message.startswith("node_modules/@playwright/test/index.js: a suite may not bring node_modules")


def test_an_issue_in_a_file_beside_the_script_names_the_file():
    assert str(Issue(3, 1, "syntax error: x", file="fixtures/index.ts")) == \
        "fixtures/index.ts: line 3, column 1: syntax error: x"
    assert str(Issue(3, 1, "syntax error: x")) == "line 3, column 1: syntax error: x"


def test_code_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    (tmp_path / "a.spec.ts").write_text("import './f';")
    (tmp_path / "f.ts").write_bytes(b"\xff\xfe")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\xff")  # data need not be text
    with pytest.raises(ValidationError, match=r"f.ts is not UTF-8 text \(byte 0\)"):
        validate.read_project(Project(tmp_path, "a.spec.ts"), 1000)
    (tmp_path / "f.ts").write_text("export {};")
    assert sorted(validate.read_project(Project(tmp_path, "a.spec.ts"), 1000)) == ["a.spec.ts", "f.ts", "logo.png"]


def test_playwright_runs_the_script_by_its_path_or_every_test_file_of_a_whole_suite():
    from supercheck_runner.playwright import PlaywrightOptions, build_config

    one = build_config(PlaywrightOptions(out_dir="/w/out", test_dir="/w/tests", test_match="tests/todo.spec.ts"))
    assert (one["testDir"], one["testMatch"]) == ("/w/tests", "tests/todo.spec.ts")
    assert "testMatch" not in build_config(PlaywrightOptions(out_dir="/w/out", test_dir="/w/tests"))
