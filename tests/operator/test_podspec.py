"""The runner pod and script ConfigMap, built by pure functions (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from supercheck import podspec
from supercheck.config import Settings
from supercheck.models import TestRunSpec
from supercheck_contract import UPLOAD_GRANT_ENV, UPLOAD_GRANT_PATH, RunnerConfig, UploadGrant

RUN = podspec.RunRef("team-a", "checkout", "0c5a1e2b-1111-2222-3333-444455556666",
                     {"team": "qa", "supercheck.io/testrun": "spoof"})


def settings(**kw) -> Settings:
    base = dict(S3_ENDPOINT_URL="http://s3:9000", AWS_ACCESS_KEY_ID="ak", AWS_SECRET_ACCESS_KEY="sk")
    base.update(kw)
    return Settings(**base)


def spec(**kw) -> TestRunSpec:
    data = {"type": "k6", "script": {"inline": "export default function () {}"}}
    data.update(kw)
    return TestRunSpec.model_validate(data)


def pod(s: TestRunSpec | None = None, attempt: int = 1, cfg: Settings | None = None) -> dict:
    s = s or spec()
    cfg = cfg or settings()
    return podspec.runner_pod(RUN, s, attempt, cfg, podspec.resolve_resources(s, cfg))


def env_of(p: dict) -> dict[str, dict]:
    return {e["name"]: e for e in p["spec"]["containers"][0]["env"]}


def test_pod_name_is_deterministic_per_attempt_and_bounded():
    assert podspec.pod_name("checkout", 1) == "checkout-a1"
    assert podspec.pod_name("checkout", 2) != podspec.pod_name("checkout", 1)
    long = "x" * 80
    a, b = podspec.pod_name(long, 3), podspec.pod_name(long + "y", 3)
    assert len(a) <= 63 and a.endswith("-a3") and a != b
    assert a == podspec.pod_name(long, 3)


def test_labels_owner_and_restart_policy():
    p = pod(attempt=2)
    meta = p["metadata"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "supercheck"
    assert meta["labels"]["supercheck.io/testrun"] == "checkout"  # the user's spoofed label does not win
    assert meta["labels"]["supercheck.io/attempt"] == "2"
    assert meta["labels"]["supercheck.io/type"] == "k6"
    assert meta["labels"]["team"] == "qa"
    owner = meta["ownerReferences"][0]
    assert owner["kind"] == "TestRun" and owner["uid"] == RUN.uid and owner["controller"] is True
    assert p["spec"]["restartPolicy"] == "Never"


def test_hardened_security_context():
    p = pod()
    ps, cs = p["spec"]["securityContext"], p["spec"]["containers"][0]["securityContext"]
    assert p["spec"]["automountServiceAccountToken"] is False
    assert ps["runAsNonRoot"] is True and ps["runAsUser"] == 1000
    assert ps["seccompProfile"] == {"type": "RuntimeDefault"}
    assert cs["allowPrivilegeEscalation"] is False and cs["capabilities"] == {"drop": ["ALL"]}
    assert cs["privileged"] is False


def test_default_resources_from_the_specification():
    limits = pod()["spec"]["containers"][0]["resources"]
    assert limits["limits"] == {"cpu": "2", "memory": "3Gi", "ephemeral-storage": "10Gi"}
    assert limits["requests"] == limits["limits"]


def test_resources_override_within_bounds_and_refusal_beyond():
    s = spec(resources={"memory": "150Mi", "cpu": "500m"})
    res = pod(s)["spec"]["containers"][0]["resources"]["limits"]
    assert res["memory"] == "150Mi" and res["cpu"] == "500m" and res["ephemeral-storage"] == "10Gi"
    with pytest.raises(podspec.ResourceBoundsError, match=r"spec.resources.memory=9Gi is above .* 8Gi"):
        podspec.resolve_resources(spec(resources={"memory": "9Gi"}), settings())
    with pytest.raises(podspec.ResourceBoundsError, match="RUNNER_MAX_CPU"):
        podspec.resolve_resources(spec(resources={"cpu": "3"}), settings(RUNNER_MAX_CPU="2"))


def test_deadline_is_timeout_plus_upload_window_plus_margin():
    assert pod(spec(timeoutSeconds=5))["spec"]["activeDeadlineSeconds"] == 5 + 300 + 90
    assert pod(spec())["spec"]["activeDeadlineSeconds"] == 120 + 300 + 90  # TEST_EXECUTION_TIMEOUT_MS default
    p = pod(spec(), cfg=settings(TEST_EXECUTION_TIMEOUT_MS="60000", RUNNER_UPLOAD_WINDOW_SECONDS="30",
                                 RUNNER_DEADLINE_MARGIN_SECONDS="5"))
    assert p["spec"]["activeDeadlineSeconds"] == 60 + 30 + 5
    # the runner is told the same window the deadline was sized for
    env = {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}
    assert env["SUPERCHECK_UPLOAD_WINDOW_SECONDS"] == "30"


def test_runner_environment_round_trips_through_the_contract():
    p = pod(spec(type="playwright", playwright={"workers": 4, "trace": "on"}), attempt=3)
    env = {k: v["value"] for k, v in env_of(p).items() if "value" in v}
    cfg = RunnerConfig.from_env(env)
    assert cfg.type == "playwright" and cfg.attempt == 3 and cfg.playwrightWorkers == 4
    assert cfg.playwrightTrace == "on" and cfg.playwrightRetries == 1 and cfg.playwrightHeadless is True
    assert cfg.playwrightVideo == "on-first-retry"  # a failing test's retry is filmed, not every first try
    video = pod(spec(type="playwright", playwright={"video": "off"}))
    assert RunnerConfig.from_env({e["name"]: e["value"] for e in video["spec"]["containers"][0]["env"]
                                  if "value" in e}).playwrightVideo == "off"
    assert cfg.bucket == "playwright-test-artifacts"
    assert cfg.prefix == f"team-a/checkout/{RUN.uid}/attempt-3"
    assert cfg.scriptPath == "/supercheck/script/checkout.spec.ts"  # an inline script is named after its run
    assert cfg.scriptName == "checkout.spec.ts"
    assert cfg.timeoutSeconds == 120


def test_test_timeout_and_use_options_reach_the_runner_config():
    use = {"baseURL": "http://shop.test:8080/app/", "viewport": {"width": 390, "height": 844}, "locale": "de-DE",
           "timezoneId": "Europe/Berlin", "extraHTTPHeaders": {"X-Test-Run": "nightly"}}
    p = pod(spec(type="playwright", timeoutSeconds=300, playwright={"testTimeoutSeconds": 45, "retries": 0, **use}))
    env = {k: v["value"] for k, v in env_of(p).items() if "value" in v}
    assert env["SUPERCHECK_PLAYWRIGHT_TEST_TIMEOUT_SECONDS"] == "45"
    cfg = RunnerConfig.from_env(env)
    assert cfg.playwrightTestTimeoutSeconds == 45 and cfg.timeoutSeconds == 300
    assert cfg.playwrightUse == use  # only the `use` options: retries is a runner setting of its own


def test_without_playwright_options_the_test_timeout_is_playwrights_default_and_use_is_empty():
    for s in (spec(type="playwright"), spec(type="playwright", playwright={"workers": 2})):
        cfg = RunnerConfig.from_env({k: v["value"] for k, v in env_of(pod(s)).items() if "value" in v})
        assert cfg.playwrightTestTimeoutSeconds == 30 and cfg.playwrightUse == {}


def test_only_the_use_options_that_are_set_are_passed():
    cfg = podspec.runner_config(RUN, spec(type="playwright", playwright={"locale": "fr-FR"}), 1, settings())
    assert cfg.playwrightUse == {"locale": "fr-FR"}


def test_workers_default_to_max_concurrent_executions():
    p = pod(spec(type="playwright"), cfg=settings(MAX_CONCURRENT_EXECUTIONS="3"))
    assert env_of(p)["SUPERCHECK_PLAYWRIGHT_WORKERS"]["value"] == "3"


def test_user_env_is_passed_but_cannot_shadow_the_contract():
    """A reserved name is refused by the model (tests/operator/test_spec_guards.py); the order stays a
    backstop: the user's variables come first, so the contract's, later, would win."""
    s = spec(env=[{"name": "BASE_URL", "value": "http://x"},
                  {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
             envFrom=[{"secretRef": {"name": "more"}}], k6={"args": ["--vus", "2"]})
    p = pod(s)
    c = p["spec"]["containers"][0]
    names = [e["name"] for e in c["env"]]
    assert names.index("TOKEN") < names.index("SUPERCHECK_ATTEMPT")
    assert env_of(p)["TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "creds", "key": "token"}
    assert c["envFrom"] == [{"secretRef": {"name": "more"}}]
    assert env_of(p)["SUPERCHECK_K6_ARGS"]["value"] == '["--vus", "2"]'


def test_no_s3_key_in_a_pod_only_its_own_upload_grant_mounted_read_only():
    p = pod()
    env = env_of(p)
    assert not any(name.startswith("AWS_") or name == "S3_ENDPOINT_URL" for name in env)
    assert "sk" not in str(p) and "supercheck-runner-s3" not in str(p)
    assert env[UPLOAD_GRANT_ENV]["value"] == UPLOAD_GRANT_PATH
    volume = next(v for v in p["spec"]["volumes"] if v["name"] == podspec.UPLOAD_VOLUME)
    assert volume["secret"] == {"secretName": "checkout-a1-upload"}
    mount = next(m for m in p["spec"]["containers"][0]["volumeMounts"] if m["name"] == podspec.UPLOAD_VOLUME)
    assert mount == {"name": podspec.UPLOAD_VOLUME, "mountPath": "/var/run/supercheck/upload", "readOnly": True}
    assert f"{mount['mountPath']}/{podspec.GRANT_FILE}" == UPLOAD_GRANT_PATH


def test_the_upload_secret_is_the_pods_own_owned_by_the_run_and_expires_after_its_deadline():
    p = pod(spec(timeoutSeconds=60))
    config = podspec.pod_runner_config(p)
    assert config.prefix == f"team-a/checkout/{RUN.uid}/attempt-1" and config.bucket == "k6-performance-artifacts"
    now = datetime(2030, 1, 1, tzinfo=UTC)
    expires = podspec.grant_expiry(p, now)
    assert expires == now + timedelta(seconds=p["spec"]["activeDeadlineSeconds"] + podspec.GRANT_EXPIRY_MARGIN_SECONDS)
    grant = UploadGrant(bucket=config.bucket, prefix=config.prefix, url="http://s3/b", fields={"policy": "p"},
                        expires="2030-01-01T00:20:00Z", maxObjectBytes=5)
    secret = podspec.upload_secret(p, grant)
    assert secret["metadata"]["name"] == "checkout-a1-upload" and secret["metadata"]["namespace"] == "team-a"
    assert secret["metadata"]["ownerReferences"] == p["metadata"]["ownerReferences"]
    assert secret["metadata"]["ownerReferences"][0]["uid"] == RUN.uid
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "supercheck"
    assert UploadGrant.model_validate_json(secret["stringData"][podspec.GRANT_FILE]) == grant


def test_artifact_caps_reach_the_runner():
    config = podspec.pod_runner_config(pod(cfg=settings(RUNNER_MAX_ARTIFACT_BYTES="1000",
                                                        RUNNER_MAX_ARTIFACT_FILES="7")))
    assert (config.maxArtifactBytes, config.maxArtifactFiles) == (1000, 7)
    default = podspec.pod_runner_config(pod())
    assert (default.maxArtifactBytes, default.maxArtifactFiles) == (1024**3, 5000)


def test_extra_runner_env_from_settings():
    p = pod(cfg=settings(RUNNER_EXTRA_ENV='{"PLAYWRIGHT_BROWSERS_PATH": "/opt/ms"}'))
    assert env_of(p)["PLAYWRIGHT_BROWSERS_PATH"]["value"] == "/opt/ms"


def test_script_configmap_and_mounts():
    s = spec()
    cm = podspec.script_configmap(RUN, s, {"checkout.js": "export default function () {}"})
    assert cm["metadata"]["name"] == "checkout-script"
    assert cm["data"] == {"checkout.js": "export default function () {}"} and "binaryData" not in cm
    assert cm["metadata"]["ownerReferences"][0]["uid"] == RUN.uid
    p = pod(s)
    vols = {v["name"]: v for v in p["spec"]["volumes"]}
    assert vols["script"]["configMap"] == {"name": "checkout-script",
                                           "items": [{"key": "checkout.js", "path": "checkout.js"}]}
    assert vols["tmp"]["emptyDir"]["sizeLimit"] == "10Gi"
    mounts = {m["name"]: m for m in p["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["script"]["readOnly"] is True


def test_required_references_skip_optional_ones():
    s = spec(script={"configMapRef": {"name": "scripts", "key": "smoke.js"}},
             env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}},
                  {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k", "optional": True}}}],
             envFrom=[{"configMapRef": {"name": "c1"}}])
    refs = podspec.required_references(s)
    assert ("ConfigMap", "scripts", "smoke.js", "spec.script.configMapRef") in refs
    assert ("Secret", "s1", "k", "spec.env[0].valueFrom.secretKeyRef") in refs
    assert ("ConfigMap", "c1", None, "spec.envFrom[0].configMapRef") in refs
    assert all(r[1] != "s2" for r in refs)


def test_runtime_class_only_when_configured():
    """RUNNER_RUNTIME_CLASS_NAME puts the user's script in a sandboxed runtime (gVisor, Kata)."""
    assert "runtimeClassName" not in pod()["spec"]
    assert pod(cfg=settings(RUNNER_RUNTIME_CLASS_NAME="gvisor"))["spec"]["runtimeClassName"] == "gvisor"


def test_image_pull_secrets_only_when_configured():
    """A private registry (the chart's imagePullSecrets): every runner pod names the Secrets, in order."""
    assert "imagePullSecrets" not in pod()["spec"]
    cfg = settings(RUNNER_IMAGE_PULL_SECRETS=" regcred, mirror-cred ,")
    assert pod(cfg=cfg)["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-cred"}]
