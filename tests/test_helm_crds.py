"""The chart's CRDs: templates generated from the models (crdgen), their CEL bounds the release's
config.RUNNER_MAX_*, kept on uninstall; and each release's own Kopf peering object."""

from __future__ import annotations

import copy
import shutil
import subprocess

import pytest
import yaml

from supercheck import crdgen
from supercheck.config import Settings
from supercheck.vocabulary import GROUP
from tests.conftest import wait_until
from tests.test_helm_chart import CHART, PINNED, operator_env, render

BOUNDS_ENV = ("RUNNER_MAX_CPU", "RUNNER_MAX_MEMORY", "RUNNER_MAX_EPHEMERAL_STORAGE")
HELM_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
               "app.kubernetes.io/managed-by", "helm.sh/chart")
KEEP = "helm.sh/resource-policy"



@pytest.fixture
def default_settings(monkeypatch):
    for name in BOUNDS_ENV:
        monkeypatch.delenv(name, raising=False)
    return Settings()


def crds_of(manifest: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(manifest)
            if d and d["kind"] == "CustomResourceDefinition"}


def without_helm_metadata(crd: dict) -> dict:
    """The CRD as crdgen writes it to crds/: without the chart's labels and keep annotation."""
    crd = copy.deepcopy(crd)
    meta = crd["metadata"]
    assert set(meta.pop("labels")) == set(HELM_LABELS)
    meta.get("annotations", {}).pop(KEEP, None)
    if meta.get("annotations") == {}:
        del meta["annotations"]
    return crd


def resource_rules(node) -> list[dict]:
    """Every CEL rule on a spec.resources (a run's, a schedule's templates', a monitor's checks')."""
    found = []
    if isinstance(node, dict):
        rules = node.get("x-kubernetes-validations", [])
        found += [r for r in rules if r.get("fieldPath") in (".cpu", ".memory", ".ephemeralStorage")]
        for value in node.values():
            found += resource_rules(value)
    elif isinstance(node, list):
        for value in node:
            found += resource_rules(value)
    return found


def committed_crds() -> dict[str, dict]:
    return crds_of("\n---\n".join(p.read_text() for p in sorted(crdgen.CRD_DIR.glob("*.yaml"))))


# ---------------------------------------------------------------- generated, both places


def test_committed_chart_templates_match_the_models(default_settings):
    for name, text in crdgen.chart_files(default_settings).items():
        committed = (crdgen.CHART_CRD_DIR / name).read_text()
        assert committed == text, f"{crdgen.CHART_CRD_DIR.name}/{name} is stale: run `python -m supercheck.crdgen`"
    assert {p.name for p in crdgen.CHART_CRD_DIR.iterdir()} == set(crdgen.files(default_settings))


def test_the_check_covers_the_chart_templates(default_settings, tmp_path):
    """`crdgen --check` fails on a stale chart template, not only on a stale crds/ file."""
    crds, chart = tmp_path / "crds", tmp_path / "chart"
    assert crdgen.main(["--out", str(crds), "--chart-out", str(chart)]) == 0
    assert crdgen.main(["--check", "--out", str(crds), "--chart-out", str(chart)]) == 0
    stale = chart / crdgen.TESTRUN_FILE
    stale.write_text(stale.read_text().replace("RUNNER_MAX_CPU", "RUNNER_MAX_CPUS"))
    assert crdgen.main(["--check", "--out", str(crds), "--chart-out", str(chart)]) == 1


def test_the_chart_is_not_a_symlink_to_crds():
    """Flux's Git sources drop symlinks, and `helm upgrade` never updates a chart's crds/ folder."""
    assert not (CHART / "crds").exists()
    assert not any(p.is_symlink() for p in CHART.rglob("*"))


def test_a_literal_double_brace_is_escaped():
    assert crdgen.escape_template("a {{ .Release.Name }} b {{{") == 'a {{ "{{" }} .Release.Name }} b {{ "{{" }}{'


# ---------------------------------------------------------------- rendered by helm


@pytest.mark.integration
def test_default_values_render_the_crds_of_the_crds_folder(helm):
    rendered = crds_of(render(helm))
    assert set(rendered) == set(committed_crds()) and len(rendered) == 6
    for name, crd in rendered.items():
        assert crd["metadata"]["annotations"][KEEP] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == "sc"
        assert without_helm_metadata(crd) == committed_crds()[name], name


@pytest.mark.integration
def test_the_bounds_are_the_release_config(helm, monkeypatch):
    manifest = render(helm, "--set", "config.RUNNER_MAX_CPU=2", "--set", "config.RUNNER_MAX_MEMORY=1Gi")
    rules = [r for crd in crds_of(manifest).values() for r in resource_rules(crd)]
    assert len(rules) == 3 * 6  # a TestRun, a JobRun, a schedule's two templates, a monitor's two scripts
    by_field = {f: [r for r in rules if r["fieldPath"] == f] for f in (".cpu", ".memory", ".ephemeralStorage")}
    assert all("quantity('2')" in r["rule"] and "at most 2 (the operator's RUNNER_MAX_CPU)" in r["message"]
               for r in by_field[".cpu"])
    assert all("quantity('1Gi')" in r["rule"] and "at most 1Gi (the operator's RUNNER_MAX_MEMORY)" in r["message"]
               for r in by_field[".memory"])
    assert all("quantity('20Gi')" in r["rule"] for r in by_field[".ephemeralStorage"])  # left at its default
    # The whole of each CRD is what crdgen makes for an operator with that configuration.
    monkeypatch.setenv("RUNNER_MAX_CPU", "2")
    monkeypatch.setenv("RUNNER_MAX_MEMORY", "1Gi")
    monkeypatch.delenv("RUNNER_MAX_EPHEMERAL_STORAGE", raising=False)
    expected = crds_of("\n---\n".join(crdgen.files(Settings()).values()))
    assert {n: without_helm_metadata(c) for n, c in crds_of(manifest).items()} == expected
    # And the operator gets the same values.
    env = operator_env(manifest)
    assert [env[name] for name in BOUNDS_ENV] == ["2", "1Gi", "20Gi"]


@pytest.mark.integration
def test_a_bound_left_out_of_config_is_the_operators_default_and_gb_reads_as_gi(helm):
    manifest = render(helm, "--set", "config.RUNNER_MAX_CPU=null", "--set", "config.RUNNER_MAX_MEMORY=1.5GB",
                      "--show-only", "templates/crds/testruns.supercheck.io.yaml")
    rules = {r["fieldPath"]: r for r in resource_rules(yaml.safe_load(manifest))}
    assert "quantity('4')" in rules[".cpu"]["rule"]
    assert "quantity('1.5Gi')" in rules[".memory"]["rule"]  # as the operator reads "1.5GB"
    assert Settings(RUNNER_MAX_MEMORY="1.5GB")  # which it accepts


@pytest.mark.integration
@pytest.mark.parametrize("value", ["4'", "4) || true", "lots", "-1"])
def test_a_bound_that_is_not_a_quantity_fails_the_render(helm, value):
    res = subprocess.run([helm, "template", "sc", str(CHART), "--kube-version", PINNED,
                          "--set-string", f"config.RUNNER_MAX_CPU={value}"], capture_output=True, text=True)
    assert res.returncode != 0 and "config.RUNNER_MAX_CPU=" in res.stderr and "not a Kubernetes quantity" in res.stderr


@pytest.mark.integration
def test_crds_install_and_keep(helm):
    assert not crds_of(render(helm, "--set", "crds.install=false"))
    assert render(helm, "--set", "crds.install=false", "--show-only", "templates/deployment.yaml")  # the rest stays
    unkept = crds_of(render(helm, "--set", "crds.keep=false"))
    assert len(unkept) == 6
    assert not [c for c in unkept.values() if KEEP in c["metadata"].get("annotations", {})]
    assert unkept[f"testruns.{GROUP}"]["metadata"]["annotations"] == {
        "supercheck.io/generated-by": "python -m supercheck.crdgen"}


@pytest.mark.integration
def test_a_double_brace_in_a_generated_text_renders_as_written(helm, tmp_path, default_settings):
    """A description with `{{` (none today) would otherwise be a Helm action, or break the render."""
    crd = crdgen.testrun_crd(default_settings)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = "say {{ .Release.Name }} and {{{ }}"
    chart = tmp_path / "supercheck"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "crds" / crdgen.TESTRUN_FILE).write_text(crdgen.chart_template([crd], default_settings))
    res = subprocess.run([helm, "template", "sc", str(chart), "--kube-version", PINNED,
                          "--show-only", f"templates/crds/{crdgen.TESTRUN_FILE}"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert without_helm_metadata(yaml.safe_load(res.stdout)) == crd


# ---------------------------------------------------------------- a peering object per release


@pytest.mark.integration
def test_each_release_peers_on_its_own(helm):
    """Two releases in one cluster: each operator's replicas peer with each other, never with the
    other release's (one shared peering would leave only one operator of the two active)."""
    first = operator_env(render(helm))
    other = subprocess.run([helm, "template", "other", str(CHART), "--kube-version", PINNED],
                           capture_output=True, text=True, check=True).stdout
    assert first["SUPERCHECK_PEERING"] == "sc-supercheck"
    assert operator_env(other)["SUPERCHECK_PEERING"] == "other-supercheck"
    # Namespaced mode: a KopfPeering of that name in each watched namespace.
    env = operator_env(render(helm, "--set", "watchNamespaces={team-a,team-b}"))
    settings = Settings(**{k: v for k, v in env.items() if v is not None})
    assert settings.peering == "sc-supercheck" and settings.namespaces == ["team-a", "team-b"]
    # A value of config's own wins (e.g. standalone), once.
    manifest = render(helm, "--set", "config.SUPERCHECK_PEERING=standalone")
    deployment = next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Deployment")
    names = [e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.count("SUPERCHECK_PEERING") == 1 and operator_env(manifest)["SUPERCHECK_PEERING"] == "standalone"


# ---------------------------------------------------------------- the API server (cluster)


def test_the_rendered_crds_are_accepted_and_their_bounds_enforced(helm, kubectl, namespace, custom_objects):
    """The API server takes every rendered CRD (server-side dry run: the real CRDs are shared with the
    running operator and keep their bounds), and enforces a release's bound: the TestRun CRD rendered
    with RUNNER_MAX_CPU=2 is made for real under a group of this test's own."""
    from kubernetes.client import ApiException

    crds = crds_of(render(helm, "--set", "config.RUNNER_MAX_CPU=2", "--set", "config.RUNNER_MAX_MEMORY=1Gi"))
    res = kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(crds.values()))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("customresourcedefinition.apiextensions.k8s.io/") == 6

    # Another group, kind and plural, no short name or category: kubectl's `tr`, `testruns` and
    # `supercheck` must keep meaning the real ones for the tests running beside this one.
    crd = crds[f"testruns.{GROUP}"]
    group = f"{namespace}.supercheck.test"
    crd["metadata"] = {"name": f"boundsruns.{group}"}
    crd["spec"]["group"] = group
    crd["spec"]["names"] = {"kind": "BoundsRun", "listKind": "BoundsRunList", "plural": "boundsruns",
                            "singular": "boundsrun"}
    version = crd["spec"]["versions"][0]["name"]
    assert kubectl("apply", "-f", "-", input=yaml.safe_dump(crd)).returncode == 0
    try:
        res = kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/boundsruns.{group}")
        assert res.returncode == 0, res.stderr

        def create(resources: dict) -> str:
            body = {"apiVersion": f"{group}/{version}", "kind": "BoundsRun", "metadata": {"generateName": "bounds-"},
                    "spec": {"type": "playwright", "script": {"inline": "x"}, "resources": resources}}

            def attempt() -> str | None:
                try:
                    custom_objects.create_namespaced_custom_object(group, version, namespace, "boundsruns", body,
                                                                   dry_run="All")
                    return "accepted"
                except ApiException as exc:
                    return None if exc.status == 404 else exc.body  # served a moment after Established

            return wait_until(attempt, 10, what=f"boundsruns.{group} served")

        assert create({"cpu": "2", "memory": "1Gi"}) == "accepted"
        refused = create({"cpu": "2500m"})
        assert "spec.resources.cpu must be more than 0 and at most 2 (the operator's RUNNER_MAX_CPU)" in refused
        refused = create({"memory": "2Gi"})
        assert "at most 1Gi (the operator's RUNNER_MAX_MEMORY)" in refused
    finally:
        kubectl("delete", "crd", f"boundsruns.{group}", "--wait=false")
