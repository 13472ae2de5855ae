"""The chart's conventions: values.schema.json refuses bad values naming the key, each conventions value
reaches the rendered objects, names follow `helm create`'s fullname, the NOTES and the helm test render."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.test_helm_chart import CHART, PINNED, render

pytestmark = pytest.mark.integration


def objects(manifest: str) -> list[dict]:
    return [o for o in yaml.safe_load_all(manifest) if o]


def installed(manifest: str) -> list[dict]:
    """The release's objects, without the helm test's hooks."""
    return [o for o in objects(manifest) if "helm.sh/hook" not in o["metadata"].get("annotations", {})]


def one(manifest: str, kind: str, name: str | None = None) -> dict:
    return next(o for o in objects(manifest) if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def pod_spec(manifest: str) -> dict:
    return one(manifest, "Deployment")["spec"]["template"]


def refused(helm: str, *args: str) -> str:
    res = subprocess.run([helm, "template", "sc", str(CHART), "--kube-version", PINNED, *args],
                         capture_output=True, text=True)
    assert res.returncode != 0, res.stdout[:500]
    return res.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--set", "replicaCount=two"], "/replicaCount': got string, want integer"),
    (["--set", "replicaCount=-1"], "/replicaCount"),
    (["--set", "config.RUNNING_CAPACITY=lots"], "/config/RUNNING_CAPACITY': 'lots' does not match"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy': value must be one of"),
    (["--set", "replicas=2"], "additional properties 'replicas' not allowed"),
    (["--set", "image.name=x"], "/image': additional properties 'name' not allowed"),
    (["--set", "serviceAccount.nmae=x"], "/serviceAccount': additional properties 'nmae' not allowed"),
    (["--set", "crds.install=maybe"], "/crds/install"),
    (["--set", "podDisruptionBudget.minAvailable=half"], "/podDisruptionBudget/minAvailable"),
])
def test_bad_values_are_refused_naming_the_key(helm, args, says):
    assert says in refused(helm, *args)


def test_numbers_given_as_numbers_or_strings_pass(helm):
    for args in (["--set", "config.RUNNING_CAPACITY=3"], ["--set-string", "config.RUNNING_CAPACITY=3"],
                 ["--set", "config.SUPERCHECK_MONITOR_CONCURRENCY=20"], ["--set", "crds.install=false"]):
        render(helm, *args)


def test_fullname_follows_helm_create(helm):
    def deployment_name(release: str, *args: str) -> str:
        res = subprocess.run([helm, "template", release, str(CHART), "--kube-version", PINNED,
                              "--show-only", "templates/deployment.yaml", *args], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return yaml.safe_load(res.stdout)["metadata"]["name"]

    assert deployment_name("supercheck") == "supercheck"  # not supercheck-supercheck
    assert deployment_name("sc") == "sc-supercheck"
    assert deployment_name("prod-supercheck-eu") == "prod-supercheck-eu"
    assert deployment_name("sc", "--set", "nameOverride=checks") == "sc-checks"
    assert deployment_name("sc", "--set", "fullnameOverride=tests-operator") == "tests-operator"
    manifest = render(helm, "--set", "nameOverride=checks")
    assert pod_spec(manifest)["metadata"]["labels"]["app.kubernetes.io/name"] == "checks"


def test_pod_conventions_reach_the_deployment(helm, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}],
        "podAnnotations": {"example.com/team": "qa"}, "podLabels": {"team": "qa"},
        "priorityClassName": "system-cluster-critical",
        "extraEnv": [{"name": "SUPERCHECK_TRACING", "value": "1"}],
        "extraEnvFrom": [{"configMapRef": {"name": "more-settings"}}],
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/sc"}},
    }))
    manifest = render(helm, "-f", str(values))
    template = pod_spec(manifest)
    spec, container = template["spec"], template["spec"]["containers"][0]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RUNNER_IMAGE_PULL_SECRETS"] == "regcred,mirror"  # the runner pods, made by the operator
    assert env["SUPERCHECK_TRACING"] == "1"
    assert container["envFrom"][1] == {"configMapRef": {"name": "more-settings"}}
    assert template["metadata"]["annotations"]["example.com/team"] == "qa"
    assert template["metadata"]["labels"]["team"] == "qa"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"  # selector kept
    assert spec["priorityClassName"] == "system-cluster-critical"
    sa = one(manifest, "ServiceAccount", "sc-supercheck")
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/sc"}

    from supercheck.config import Settings
    assert Settings(RUNNER_IMAGE_PULL_SECRETS=env["RUNNER_IMAGE_PULL_SECRETS"]).runner_image_pull_secrets == [
        "regcred", "mirror"]
    default = pod_spec(render(helm))
    assert "imagePullSecrets" not in default["spec"] and "priorityClassName" not in default["spec"]
    assert "RUNNER_IMAGE_PULL_SECRETS" not in {e["name"] for e in default["spec"]["containers"][0]["env"]}


def test_an_existing_service_account_is_bound_not_made(helm):
    manifest = render(helm, "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops-sa")
    assert pod_spec(manifest)["spec"]["serviceAccountName"] == "ops-sa"
    assert not [o for o in installed(manifest) if o["kind"] == "ServiceAccount"]
    binding = one(manifest, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ops-sa", "namespace": "supercheck-system"}]
    manifest = render(helm, "--set", "watchNamespaces={team-a}", "--set", "serviceAccount.name=named")
    assert one(manifest, "RoleBinding", "sc-supercheck")["subjects"][0]["name"] == "named"
    assert [o["metadata"]["name"] for o in installed(manifest) if o["kind"] == "ServiceAccount"] == ["named"]
    assert "serviceAccount.name" in refused(helm, "--set", "serviceAccount.create=false")


def test_pod_disruption_budget_only_with_more_than_one_replica(helm):
    pdb = one(render(helm), "PodDisruptionBudget")  # replicaCount 2 by default
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == pod_spec(render(helm))["metadata"]["labels"]
    assert not [o for o in objects(render(helm, "--set", "replicaCount=1")) if o["kind"] == "PodDisruptionBudget"]
    assert not [o for o in objects(render(helm, "--set", "podDisruptionBudget.enabled=false"))
                if o["kind"] == "PodDisruptionBudget"]
    pdb = one(render(helm, "--set", "replicaCount=3", "--set", "podDisruptionBudget.maxUnavailable=1"),
              "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": pdb["spec"]["selector"]}


def test_replicas_spread_over_nodes_softly_by_default(helm):
    spec = pod_spec(render(helm))["spec"]
    (constraint,) = spec["topologySpreadConstraints"]
    assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"  # a one-node cluster still runs both
    assert constraint["topologyKey"] == "kubernetes.io/hostname"
    assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "sc"
    assert "topologySpreadConstraints" not in pod_spec(render(helm, "--set", "topologySpreadConstraints=null"))["spec"]
    own = pod_spec(render(helm, "--set-json", 'topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"zone",'
                          '"whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"a":"b"}}}]'))
    assert own["spec"]["topologySpreadConstraints"][0]["labelSelector"] == {"matchLabels": {"a": "b"}}


def test_service_monitor_values(helm):
    sm = one(render(helm, "--set", "metrics.serviceMonitor.enabled=true",
                    "--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
                    "--set", "metrics.serviceMonitor.interval=15s", "--set", "metrics.serviceMonitor.scrapeTimeout=5s",
                    "--set-json", 'metrics.serviceMonitor.relabelings=[{"targetLabel":"cluster","replacement":"eu"}]',
                    "--set-json", 'metrics.serviceMonitor.metricRelabelings=[{"action":"drop","regex":"go_.*",'
                    '"sourceLabels":["__name__"]}]'), "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = sm["spec"]["endpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")
    assert endpoint["relabelings"] == [{"targetLabel": "cluster", "replacement": "eu"}]
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    assert "scrapeTimeout" in refused(helm, "--set", "metrics.serviceMonitor.scrapeTimeout=soon")


def test_connections_checksum_follows_the_rendered_secret(helm):
    def checksum(*args: str) -> str:
        return pod_spec(render(helm, "--set", "connections.redisPassword=pw", *args))["metadata"]["annotations"][
            "checksum/connections"]

    assert checksum() == checksum()
    assert checksum("--set", "connections.redisUrl=redis://other-redis:6379/0") != checksum()
    assert checksum("--set", "connections.databaseUrl=postgresql://x@y/z") != checksum()
    # One generated password per render: the checksum is of the Secret the render made, the same as when
    # that password is given.
    manifest = render(helm)
    generated = one(manifest, "Secret")["stringData"]["REDIS_PASSWORD"]
    assert pod_spec(manifest)["metadata"]["annotations"]["checksum/connections"] == pod_spec(render(
        helm, "--set", f"connections.redisPassword={generated}"))["metadata"]["annotations"]["checksum/connections"]
    # An existing Secret is not the chart's to read: no checksum of it.
    assert "checksum/connections" not in pod_spec(render(helm, "--set", "connections.existingSecret=mine"))[
        "metadata"]["annotations"]


def notes(helm: str, tmp_path, *args: str) -> str:
    """NOTES.txt rendered: `helm template` leaves it out and `helm install --dry-run` needs a cluster, so a
    copy of the chart renders it as a named template inside a plain object."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart, symlinks=False)
    text = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_under_test.tpl").write_text(
        '{{- define "notes.under.test" -}}' + text + "{{- end -}}")
    (chart / "templates" / "notes-under-test.yaml").write_text('notes: {{ include "notes.under.test" . | toJson }}\n')
    res = subprocess.run([helm, "template", "sc", str(chart), "--namespace", "supercheck-system", "--kube-version",
                          PINNED, "--show-only", "templates/notes-under-test.yaml", *args],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)["notes"]


def test_notes_say_how_to_check_the_operator_and_run_a_first_test(helm, tmp_path):
    text = notes(helm, tmp_path)
    assert "rollout status deployment/sc-supercheck" in text
    assert "kubectl -n supercheck-system create -f - <<'YAML'\n" in text and "\nYAML\n" in text
    run = yaml.safe_load(text.split("<<'YAML'\n", 1)[1].split("\nYAML\n", 1)[0])
    from supercheck.models import TestRunSpec
    TestRunSpec.model_validate(run["spec"])  # the operator's model takes the NOTES' run
    assert "wait testrun/hello-supercheck --for=condition=Completed" in text
    assert "helm test sc -n supercheck-system" in text
    namespaced = notes(helm, tmp_path / "ns", "--set", "watchNamespaces={team-a,team-b}")
    assert "kubectl -n team-a create -f -" in namespaced and "kubectl -n team-a wait" in namespaced
    assert "rollout restart" in notes(helm, tmp_path / "es", "--set", "connections.existingSecret=mine")


def test_helm_test_runs_the_cli_with_just_the_rights_it_uses(helm):
    hooks = objects(render(helm, "--show-only", "templates/tests/test-testrun.yaml"))
    assert {o["kind"] for o in hooks} == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Pod"}
    for o in hooks:
        assert o["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert o["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    weight = {o["kind"]: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for o in hooks}
    assert max(weight[k] for k in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap")) < weight["Pod"]
    pod = one_of(hooks, "Pod")
    container = pod["spec"]["containers"][0]
    assert container["command"][:2] == ["supercheck", "run"] and "--wait" in container["command"]
    assert container["image"] == pod_spec(render(helm))["spec"]["containers"][0]["image"]  # the operator's
    assert pod["metadata"]["namespace"] == "supercheck-system"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["requests"] == {"cpu": "10m", "memory": "64Mi"}
    # The script the CLI reads: a k6 TestRun from one file, as its own code plans it.
    from supercheck.cli import submit
    script = one_of(hooks, "ConfigMap")["data"]["helm-test.k6.js"]
    plan = submit.testrun_plan(submit.TestFile("helm-test.k6.js", text=script),
                               submit.detect_type([submit.TestFile("helm-test.k6.js", text=script)], None),
                               "t", "supercheck-system")
    assert plan.kind == "TestRun" and plan.run["spec"]["type"] == "k6" and plan.config_map is None
    # Its rights: exactly the calls of `supercheck run FILE --wait` (kubeapi.KubeCluster) on TestRuns.
    role = one_of(hooks, "Role")
    assert role["rules"] == [{"apiGroups": ["supercheck.io"], "resources": ["testruns"],
                              "verbs": ["create", "get", "list", "watch", "delete"]}]
    binding = one_of(hooks, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["spec"]["serviceAccountName"],
                                    "namespace": "supercheck-system"}]


def test_helm_test_in_namespaced_mode_runs_in_a_watched_namespace(helm):
    hooks = objects(render(helm, "--set", "watchNamespaces={team-a,team-b}",
                           "--show-only", "templates/tests/test-testrun.yaml"))
    pod = one_of(hooks, "Pod")
    command = pod["spec"]["containers"][0]["command"]
    assert command[command.index("-n") + 1] == "team-a"  # a namespace the operator serves
    assert pod["metadata"]["namespace"] == "supercheck-system"  # the pod stays in the release's
    assert one_of(hooks, "Role")["metadata"]["namespace"] == "team-a"
    assert one_of(hooks, "RoleBinding")["subjects"][0]["namespace"] == "supercheck-system"


def one_of(items: list[dict], kind: str) -> dict:
    (found,) = [o for o in items if o["kind"] == kind]
    return found


@pytest.mark.parametrize("args", [
    [], ["--set", "replicaCount=1"], ["--set", "watchNamespaces={team-a}", "--set", "serviceAccount.create=false",
                                      "--set", "serviceAccount.name=x"],
    ["--set", "metrics.serviceMonitor.enabled=true", "--set", "imagePullSecrets[0].name=regcred",
     "--set", "fullnameOverride=ops", "--set", "topologySpreadConstraints=null"],
])
def test_chart_lints_strictly(helm, args):
    res = subprocess.run([helm, "lint", "--strict", str(CHART), "--kube-version", PINNED, *args],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
