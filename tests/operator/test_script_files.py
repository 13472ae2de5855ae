"""A script with the files beside it: the schema's rules, where each file goes, the snapshot
ConfigMap, the pod's volume items and the runner's scriptPath/scriptName (all pure, no cluster)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from script_cases import ACCEPTED, REFUSED

from supercheck import crdgen, podspec, scriptfiles
from supercheck.config import Settings
from supercheck.models import ConfigMapKeyRef, ScriptSource, TestRunSpec
from supercheck_contract import RunnerConfig

RUN = podspec.RunRef("team-a", "todo", "0c5a1e2b-1111-2222-3333-444455556666", {})
TODO = {"name": "suite", "key": "todo.spec.ts", "path": "tests/todo.spec.ts",
        "files": [{"key": "fixtures.ts", "path": "fixtures/index.ts"}, {"key": "data.json"}]}


def spec(script: dict, test_type: str = "playwright") -> TestRunSpec:
    return TestRunSpec.model_validate({"type": test_type, "script": script})


def pod(s: TestRunSpec, files: scriptfiles.Layout | None = None) -> dict:
    cfg = Settings(S3_ENDPOINT_URL="http://s3:9000")
    return podspec.runner_pod(RUN, s, 1, cfg, podspec.resolve_resources(s, cfg), files=files)


def runner_config(p: dict) -> RunnerConfig:
    env = {e["name"]: e["value"] for e in p["spec"]["containers"][0]["env"] if "value" in e}
    return RunnerConfig.from_env(env)


def script_volume(p: dict) -> dict:
    return next(v for v in p["spec"]["volumes"] if v["name"] == "script")["configMap"]


# ---------------------------------------------------------------- the schema's rules


@pytest.mark.parametrize("case, test_type, script", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted_scripts(case, test_type, script):
    assert spec(script, test_type).script == ScriptSource.model_validate(script)


@pytest.mark.parametrize("case, test_type, script, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_contradictions_are_refused_saying_what_to_fix(case, test_type, script, words):
    """The models check what the CEL rules check, in the same words: a run the API server did not
    judge (no CEL, an older server) is refused InvalidSpec by the operator with that message."""
    with pytest.raises(ValidationError) as err:
        spec(script, test_type)
    assert words in str(err.value)


def _rules(schema: dict) -> dict[str, str]:
    return {r["message"]: r["rule"] for r in schema.get("x-kubernetes-validations", [])}


def test_every_refusal_of_the_models_is_a_rule_of_the_crd():
    root = crdgen.testrun_crd(Settings())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec_schema = root["properties"]["spec"]
    script = spec_schema["properties"]["script"]
    ref = script["properties"]["configMapRef"]
    file_item = ref["properties"]["files"]["items"]
    messages = {**_rules(spec_schema), **_rules(script), **_rules(ref),
                **_rules(ref["properties"]["path"]), **_rules(file_item["properties"]["path"])}
    for case, _, _, words in REFUSED:
        assert words in messages, f"{case}: no CRD rule says {words!r}"
    assert "key" not in ref["required"]  # without key: the whole ConfigMap
    assert ref["properties"]["files"]["maxItems"] == 64 and file_item["required"] == ["key"]
    assert ref["properties"]["key"]["pattern"] == file_item["properties"]["key"]["pattern"] == r"^[-._a-zA-Z0-9]+$"


# ---------------------------------------------------------------- where each file goes


def test_a_script_with_its_files_is_laid_out_at_their_paths():
    lay = scriptfiles.layout(spec({"configMapRef": TODO}), "todo")
    assert lay.entry == "tests/todo.spec.ts"
    assert [(f.key, f.path) for f in lay.files] == [
        ("todo.spec.ts", "tests/todo.spec.ts"), ("fixtures.ts", "fixtures/index.ts"), ("data.json", "data.json")]
    assert scriptfiles.source_keys(spec({"configMapRef": TODO})) == ["todo.spec.ts", "fixtures.ts", "data.json"]


def test_a_whole_configmap_puts_each_key_at_its_key_unless_files_place_it():
    s = spec({"configMapRef": {"name": "suite", "files": [{"key": "fixtures.ts", "path": "fixtures/index.ts"}]}})
    assert scriptfiles.whole_configmap(s) and scriptfiles.source_keys(s) is None
    lay = scriptfiles.layout(s, "todo", ["b.spec.ts", "fixtures.ts", "a.test.js", "README.md"])
    assert lay.entry is None
    assert {f.key: f.path for f in lay.files} == {"README.md": "README.md", "a.test.js": "a.test.js",
                                                  "b.spec.ts": "b.spec.ts", "fixtures.ts": "fixtures/index.ts"}
    assert scriptfiles.runnable_tests(lay) == ["a.test.js", "b.spec.ts"]
    with pytest.raises(ValueError, match="needs its keys"):
        scriptfiles.layout(s, "todo")


def test_a_whole_configmap_whose_files_collide_is_refused_naming_them():
    folder = spec({"configMapRef": {"name": "suite", "files": [{"key": "x.ts", "path": "fixtures"},
                                                               {"key": "y.ts", "path": "fixtures/index.ts"}]}})
    with pytest.raises(scriptfiles.LayoutError, match=r"'fixtures' is a file, but 'fixtures/index.ts' needs"):
        scriptfiles.layout(folder, "r", ["x.ts", "y.ts"])
    onto = spec({"configMapRef": {"name": "suite", "files": [{"key": "x.ts", "path": "y.ts"}]}})
    with pytest.raises(scriptfiles.LayoutError, match=r"two files land at 'y.ts'.*files\[\]\.path"):
        scriptfiles.layout(onto, "r", ["x.ts", "y.ts"])
    assert [f.path for f in scriptfiles.layout(onto, "r", ["x.ts"]).files] == ["y.ts"]


@pytest.mark.parametrize("paths, problem", [
    (["a.ts", "b.ts"], None),
    (["a/b.ts", "a/c.ts", "ab/c.ts"], None),
    (["a.ts", "a.ts"], "two files land at 'a.ts'"),
    (["lib", "lib/x.js"], "'lib' is a file, but 'lib/x.js' needs it to be a folder"),
])
def test_clash(paths, problem):
    assert scriptfiles.clash(paths) == problem


def test_a_script_whose_files_collide_is_an_invalid_spec():
    with pytest.raises(ValidationError, match=r"'lib' is a file, but 'lib/x.js' needs it to be a folder; give it"):
        spec({"configMapRef": {"name": "s", "key": "a.js", "path": "lib",
                               "files": [{"key": "x.js", "path": "lib/x.js"}]}})


def test_an_inline_script_is_named_after_its_run_within_a_key_s_length():
    assert scriptfiles.inline_name("checkout", "playwright") == "checkout.spec.ts"
    assert scriptfiles.inline_name("checkout", "k6") == "checkout.js"
    long_a, long_b = "a" * 253, "a" * 252 + "b"
    assert len(scriptfiles.inline_name(long_a, "playwright")) == 253
    assert scriptfiles.inline_name(long_a, "playwright").endswith(".spec.ts")
    assert scriptfiles.inline_name(long_a, "playwright") != scriptfiles.inline_name(long_b, "playwright")


# ---------------------------------------------------------------- snapshot, pod, runner config


def test_the_pod_mounts_every_file_at_its_path_and_names_the_script():
    s = spec({"configMapRef": TODO})
    p = pod(s)
    assert script_volume(p) == {"name": "todo-script", "items": [
        {"key": "todo.spec.ts", "path": "tests/todo.spec.ts"},
        {"key": "fixtures.ts", "path": "fixtures/index.ts"},
        {"key": "data.json", "path": "data.json"}]}
    mount = next(m for m in p["spec"]["containers"][0]["volumeMounts"] if m["name"] == "script")
    assert mount == {"name": "script", "mountPath": "/supercheck/script", "readOnly": True}
    cfg = runner_config(p)
    assert cfg.scriptPath == "/supercheck/script/tests/todo.spec.ts"
    assert cfg.scriptName == "tests/todo.spec.ts"


def test_the_script_s_key_is_its_name_when_it_has_no_path():
    cfg = runner_config(pod(spec({"configMapRef": {"name": "suite", "key": "about.spec.ts"}})))
    assert (cfg.scriptPath, cfg.scriptName) == ("/supercheck/script/about.spec.ts", "about.spec.ts")
    cfg = runner_config(pod(spec({"inline": "export default function () {}"}, "k6")))
    assert (cfg.scriptPath, cfg.scriptName) == ("/supercheck/script/todo.js", "todo.js")


def test_a_whole_configmap_mounts_the_snapshot_s_keys_and_points_at_the_folder():
    s = spec({"configMapRef": {"name": "suite", "files": [{"key": "fixtures.ts", "path": "fixtures/index.ts"}]}})
    lay = scriptfiles.layout(s, RUN.name, ["a.spec.ts", "fixtures.ts"])
    p = pod(s, lay)
    assert script_volume(p)["items"] == [{"key": "a.spec.ts", "path": "a.spec.ts"},
                                         {"key": "fixtures.ts", "path": "fixtures/index.ts"}]
    cfg = runner_config(p)
    assert (cfg.scriptPath, cfg.scriptName) == ("/supercheck/script", "")


def test_the_snapshot_keeps_text_and_binary_files_under_their_keys():
    s = spec({"configMapRef": TODO})
    cm = podspec.script_configmap(RUN, s, {"todo.spec.ts": "t", "fixtures.ts": "f"}, {"data.json": "e30="})
    assert cm["data"] == {"todo.spec.ts": "t", "fixtures.ts": "f"}
    assert cm["binaryData"] == {"data.json": "e30="}
    assert cm["metadata"]["name"] == "todo-script" and cm["metadata"]["ownerReferences"][0]["uid"] == RUN.uid


def test_every_file_is_a_required_reference_naming_where_it_is_asked_for():
    refs = podspec.required_references(spec({"configMapRef": TODO}))
    assert refs == [("ConfigMap", "suite", "todo.spec.ts", "spec.script.configMapRef"),
                    ("ConfigMap", "suite", "fixtures.ts", "spec.script.configMapRef.files[0]"),
                    ("ConfigMap", "suite", "data.json", "spec.script.configMapRef.files[1]")]
    whole = podspec.required_references(spec({"configMapRef": {"name": "suite", "files": [{"key": "f.ts"}]}}))
    assert whole == [("ConfigMap", "suite", None, "spec.script.configMapRef"),
                     ("ConfigMap", "suite", "f.ts", "spec.script.configMapRef.files[0]")]


def test_place_is_the_path_or_the_key():
    assert ConfigMapKeyRef.model_validate({"name": "s", "key": "a.ts"}).place == "a.ts"
    assert ConfigMapKeyRef.model_validate({"name": "s", "key": "a.ts", "path": "t/a.ts"}).place == "t/a.ts"
    assert ConfigMapKeyRef.model_validate({"name": "s"}).place is None
