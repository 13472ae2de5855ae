"""Generate the TestRun, JobRun, RunSchedule and Monitor CRDs (and Kopf's peering CRDs) from the pydantic models.

    python -m supercheck.crdgen            # writes crds/*.yaml and the chart's templates/crds/*.yaml
    python -m supercheck.crdgen --check    # exits 1 when a committed file differs

The models are the one source of the spec and status shapes; this module only translates their JSON
schema into a Kubernetes structural OpenAPI v3 schema: ``$ref`` inlined, ``Optional``
unwrapped, pydantic's draft-2020 keywords turned into OpenAPI 3.0 ones. What a model
cannot say (bounds that come from the operator's configuration, printer columns) is
added here.

The same CRDs twice: ``crds/*.yaml`` with the operator's default bounds (``kubectl apply -f crds/``,
the local environment), and the Helm chart's templates, whose CEL bounds are the release's own
``config.RUNNER_MAX_*`` (the values its operator gets) and which ``helm upgrade`` updates, unlike
files in a chart's ``crds/`` folder.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from supercheck.config import Settings
from supercheck.jobmodels import JobRunSpec, JobRunStatus
from supercheck.models import VERSION, TestRunSpec, TestRunStatus
from supercheck.monitormodels import MonitorSpec, MonitorStatus
from supercheck.schedmodels import RunScheduleSpec, RunScheduleStatus
from supercheck.vocabulary import GROUP

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
CHART_CRD_DIR = REPO_ROOT / "charts" / "supercheck" / "templates" / "crds"
TESTRUN_FILE = "testruns.supercheck.io.yaml"
JOBRUN_FILE = "jobruns.supercheck.io.yaml"
PEERING_FILE = "kopf-peering.yaml"
RUNSCHEDULE_FILE = "runschedules.supercheck.io.yaml"
MONITOR_FILE = "monitors.supercheck.io.yaml"

_DROP = {"title", "$defs", "additionalProperties", "discriminator"}


def structural(schema: dict[str, Any], *, keep_defaults: bool = True) -> dict[str, Any]:
    """A pydantic JSON schema as a Kubernetes structural schema."""
    defs = schema.get("$defs", {})

    def conv(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            target.update(extra)
            return conv(target)
        if "anyOf" in node:
            branches = [b for b in node["anyOf"] if b.get("type") != "null"]
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if len(branches) != 1:
                raise ValueError(f"cannot express a union in a structural schema: {node}")
            merged = conv(branches[0])
            for key in ("description", "default"):
                if key in rest:
                    merged[key] = rest[key]
            for key, value in rest.items():
                if key.startswith("x-kubernetes"):
                    merged[key] = value
            return clean(merged)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP:
                continue
            if key == "properties":
                out[key] = {k: conv(v) for k, v in value.items()}
            elif key == "items":
                out[key] = conv(value)
            elif key == "const":
                out["enum"] = [value]
            elif key == "exclusiveMinimum":
                out["minimum"], out["exclusiveMinimum"] = value, True
            elif key == "exclusiveMaximum":
                out["maximum"], out["exclusiveMaximum"] = value, True
            else:
                out[key] = value
        if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = conv(node["additionalProperties"])
        if "enum" in out and "type" not in out:
            out["type"] = "string"
        return clean(out)

    def clean(node: dict[str, Any]) -> dict[str, Any]:
        default = node.get("default", ...)
        if default is None or default == [] or default == {} or not keep_defaults:
            node.pop("default", None)
        return node

    converted: dict[str, Any] = conv({k: v for k, v in schema.items() if k != "$defs"})
    return converted


def _quantity_rule(field: str, maximum: str, setting: str) -> dict[str, Any]:
    return {
        "rule": f"!has(self.{field}) || (isQuantity(self.{field}) && "
        f"quantity(self.{field}).isGreaterThan(quantity('0')) && "
        f"quantity(self.{field}).compareTo(quantity('{maximum}')) <= 0)",
        "message": f"spec.resources.{field} must be more than 0 and at most {maximum} "
        f"(the operator's {setting}); ask for less",
        "fieldPath": f".{field}",
    }


def _bound_resources(spec: dict[str, Any], settings: Settings) -> None:
    """The configured runner limits as CEL bounds on ``spec.resources`` (a spec's, or a template's)."""
    spec["properties"]["resources"]["x-kubernetes-validations"] = [
        _quantity_rule("cpu", settings.runner_max_cpu, "RUNNER_MAX_CPU"),
        _quantity_rule("memory", settings.runner_max_memory, "RUNNER_MAX_MEMORY"),
        _quantity_rule("ephemeralStorage", settings.runner_max_ephemeral_storage, "RUNNER_MAX_EPHEMERAL_STORAGE"),
    ]


def _unique_test_names(spec: dict[str, Any]) -> None:
    # Unique test names, said by the API server itself ("Duplicate value"), at no CEL cost.
    spec["properties"]["tests"]["x-kubernetes-list-type"] = "map"
    spec["properties"]["tests"]["x-kubernetes-list-map-keys"] = ["name"]


def spec_schema(settings: Settings, model: type[TestRunSpec] | type[JobRunSpec] = TestRunSpec) -> dict[str, Any]:
    schema = structural(model.model_json_schema(mode="validation"))
    _bound_resources(schema, settings)
    return schema


def status_schema(model: type[TestRunStatus | JobRunStatus | RunScheduleStatus | MonitorStatus] = TestRunStatus
                  ) -> dict[str, Any]:
    schema = structural(model.model_json_schema(mode="serialization"), keep_defaults=False)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Result", "type": "string", "jsonPath": ".status.result"},
    {"name": "Attempts", "type": "integer", "jsonPath": ".status.attempts"},
    {"name": "Duration", "type": "string", "jsonPath": ".status.duration"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority", "priority": 1},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
    {"name": "Pod", "type": "string", "jsonPath": ".status.podName", "priority": 1},
]


JOBRUN_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progressText"},
    {"name": "Result", "type": "string", "jsonPath": ".status.result"},
    {"name": "Duration", "type": "string", "jsonPath": ".status.duration"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Parallelism", "type": "integer", "jsonPath": ".spec.parallelism", "priority": 1},
    {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority", "priority": 1},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
]


def jobrun_crd(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings()
    spec = spec_schema(settings, JobRunSpec)
    default = settings.job_execution_timeout_ms // 1000
    _unique_test_names(spec)
    spec["properties"]["timeoutSeconds"]["description"] = (
        f"The whole job's budget; default JOB_EXECUTION_TIMEOUT_MS / 1000 ({default} s here)")
    return _run_crd("JobRun", "jobruns", "jr", JOBRUN_PRINTER_COLUMNS,
                    "A suite of Playwright or k6 tests run as one job, in shards of runner pods.",
                    spec, status_schema(JobRunStatus))


RUNSCHEDULE_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
    {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
    {"name": "Active", "type": "string", "jsonPath": ".status.active[*].name", "priority": 1},
    {"name": "Last Schedule", "type": "date", "jsonPath": ".status.lastScheduleTime"},
    {"name": "Last Result", "type": "string", "jsonPath": ".status.lastRun.phase"},
    {"name": "Passed", "type": "integer", "jsonPath": ".status.passedRuns"},
    {"name": "Failed", "type": "integer", "jsonPath": ".status.failedRuns"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    # A time to come: as written (a "date" column shows an age, which kubectl prints as <invalid> for the future).
    {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime", "priority": 1},
]


def runschedule_crd(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings()
    spec = structural(RunScheduleSpec.model_json_schema(mode="validation"))
    _bound_resources(spec["properties"]["testRun"], settings)
    _bound_resources(spec["properties"]["jobRun"], settings)
    _unique_test_names(spec["properties"]["jobRun"])
    return _run_crd("RunSchedule", "runschedules", "rsched", RUNSCHEDULE_PRINTER_COLUMNS,
                    "A TestRun or JobRun started on a cron schedule (a CronJob's semantics).",
                    spec, status_schema(RunScheduleStatus))


MONITOR_PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {"name": "Since", "type": "date", "jsonPath": ".status.since"},
    {"name": "Latency", "type": "integer", "jsonPath": ".status.lastLatencyMs"},
    {"name": "Uptime 24h", "type": "number", "jsonPath": ".status.uptime.last24h"},
    {"name": "Interval", "type": "string", "jsonPath": ".spec.interval"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Failures", "type": "integer", "jsonPath": ".status.consecutiveFailures", "priority": 1},
    {"name": "Uptime 7d", "type": "number", "jsonPath": ".status.uptime.last7d", "priority": 1},
    {"name": "Last Result", "type": "string", "jsonPath": ".status.lastResult", "priority": 1},
]


def monitor_crd(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings()
    spec = structural(MonitorSpec.model_json_schema(mode="validation"))
    _bound_resources(spec["properties"]["playwright"], settings)
    _bound_resources(spec["properties"]["k6"], settings)
    return _run_crd("Monitor", "monitors", "mon", MONITOR_PRINTER_COLUMNS,
                    "A site checked every interval (HTTP, TCP, or a Playwright or k6 script), with a state, "
                    "uptime and alerts.", spec, status_schema(MonitorStatus))


def _run_crd(kind: str, plural: str, short: str, columns: list[dict[str, Any]], description: str,
             spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "annotations": {"supercheck.io/generated-by": "python -m supercheck.crdgen"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["supercheck"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def testrun_crd(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings()
    return _run_crd("TestRun", "testruns", "tr", PRINTER_COLUMNS,
                    "One execution of a Playwright or k6 test, in its own runner pod.",
                    spec_schema(settings), status_schema())


def _peering_crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    """Kopf's peering resources (kopf documents these CRDs; the schema is theirs)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": plural[:-1]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                        }
                    },
                }
            ],
        },
    }


def peering_crds() -> list[dict[str, Any]]:
    return [
        _peering_crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
        _peering_crd("KopfPeering", "kopfpeerings", "Namespaced"),
    ]


def documents(settings: Settings | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each CRD file's objects."""
    return {
        TESTRUN_FILE: [testrun_crd(settings)],
        JOBRUN_FILE: [jobrun_crd(settings)],
        PEERING_FILE: peering_crds(),
        RUNSCHEDULE_FILE: [runschedule_crd(settings)],
        MONITOR_FILE: [monitor_crd(settings)],
    }


def render(docs: list[dict[str, Any]]) -> str:
    header = "# Generated by `python -m supercheck.crdgen` from operator/supercheck/models.py. Do not edit.\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False, width=120)


def files(settings: Settings | None = None) -> dict[str, str]:
    return {name: render(docs) for name, docs in documents(settings).items()}


# The settings the chart renders into its CRDs, each a values.yaml `config` key (the operator's
# environment variable of the same name): the generated text holds a placeholder where the
# setting's value goes, and the chart's template a call of supercheck.crdQuantity (templates/_crds.tpl)
# with the operator's default for when the key is not set.
CHART_SETTINGS = {
    "runner_max_cpu": "RUNNER_MAX_CPU",
    "runner_max_memory": "RUNNER_MAX_MEMORY",
    "runner_max_ephemeral_storage": "RUNNER_MAX_EPHEMERAL_STORAGE",
}


def _placeholder(variable: str) -> str:
    return f"__SUPERCHECK_CHART_{variable}__"


def escape_template(text: str) -> str:
    """Text Helm prints as it is: every ``{{`` would open an action (``}}`` alone is plain text)."""
    return text.replace("{{", '{{ "{{" }}')


def _go_string(text: str) -> str:
    # A JSON string (ASCII, with \" \\ \n \uXXXX escapes) is a Go template string literal too.
    return json.dumps(text)


def _chart_metadata(meta: dict[str, Any]) -> str:
    if set(meta) - {"name", "annotations"}:
        raise ValueError(f"the chart's CRD template writes only a name and annotations: {sorted(meta)}")
    annotations = "".join(f" {_go_string(k)} {_go_string(v)}" for k, v in meta.get("annotations", {}).items())
    return ('metadata: {{- include "supercheck.crdMetadata" (dict "context" $ "name" '
            f'{_go_string(meta["name"])} "annotations" (dict{annotations})) | nindent 2 }}}}\n')


def chart_template(docs: list[dict[str, Any]], settings: Settings) -> str:
    """A chart template of ``docs`` (made with placeholders for CHART_SETTINGS): rendered when
    crds.install is true, with the chart's labels and annotations (templates/_crds.tpl)."""
    calls = {
        _placeholder(variable): '{{ include "supercheck.crdQuantity" (list $ '
        f'{_go_string(variable)} {_go_string(str(getattr(settings, field)))}) }}}}'
        for field, variable in CHART_SETTINGS.items()
    }
    parts = []
    for doc in docs:
        head = yaml.safe_dump({"apiVersion": doc["apiVersion"], "kind": doc["kind"]}, sort_keys=False)
        body = escape_template(yaml.safe_dump({"spec": doc["spec"]}, sort_keys=False, width=120))
        for placeholder, call in calls.items():
            body = body.replace(placeholder, call)
        parts.append(escape_template(head) + _chart_metadata(doc["metadata"]) + body)
    header = ("{{- /* Generated by `python -m supercheck.crdgen` from the models in operator/supercheck. "
              "Do not edit. */ -}}\n")
    return header + "{{- if .Values.crds.install }}\n" + "---\n".join(parts) + "{{- end }}\n"


def chart_files(settings: Settings | None = None) -> dict[str, str]:
    settings = settings or Settings()
    # model_copy does not validate: the placeholders stand where the quantities go.
    marked = settings.model_copy(update={field: _placeholder(variable) for field, variable in CHART_SETTINGS.items()})
    templates = {name: chart_template(docs, settings) for name, docs in documents(marked).items()}
    for name, text in templates.items():
        if "__SUPERCHECK_CHART_" in text:
            raise ValueError(f"a placeholder the chart cannot fill is left in {name}")
    return templates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed files differ")
    parser.add_argument("--out", type=Path, default=CRD_DIR)
    parser.add_argument("--chart-out", type=Path, default=CHART_CRD_DIR)
    args = parser.parse_args(argv)
    stale = []
    settings = Settings()
    outputs = [(args.out / name, text) for name, text in files(settings).items()]
    outputs += [(args.chart_out / name, text) for name, text in chart_files(settings).items()]
    for path, text in outputs:
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("out of date (run `python -m supercheck.crdgen`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
