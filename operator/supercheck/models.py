"""The TestRun vocabulary: spec and status shapes, the single source of the CRD schema.

`supercheck.crdgen` turns these models into `crds/*.yaml`; a test holds the committed
files against them. Field names are camelCase because they are the Kubernetes API.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import JsonDict

from supercheck.vocabulary import GROUP, ConditionType, SlotState
from supercheck_contract import ArtifactLocation, FailureClass, K6Summary, TestSummary
from supercheck_contract.reserved import (
    ALLOWED_ENV_NAMES,
    K6_ARG_PATTERN,
    MSG_K6_ARG,
    MSG_OPERATOR_SECRET,
    MSG_RESERVED_ENV,
    MSG_RESERVED_PREFIX,
    OPERATOR_S3_SECRET,
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PATTERN,
    RESERVED_ENV_PREFIXES,
    UPLOAD_SECRET_SUFFIX,
    operator_secret,
    refused_k6_args_message,
    reserved_env,
    reserved_prefix,
)

VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Phase(str, enum.Enum):  # noqa: UP042 - str() and f-strings print the member name; .value is explicit
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    UPLOADING = "Uploading"
    PASSED = "Passed"
    FAILED = "Failed"
    ERROR = "Error"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset(
    {Phase.PASSED, Phase.FAILED, Phase.ERROR, Phase.TIMED_OUT, Phase.CANCELLED, Phase.REJECTED}
)
TERMINAL_PHASE_NAMES = frozenset(p.value for p in TERMINAL_PHASES)  # as a status (a plain string) holds them


# A ConfigMap key, as Kubernetes allows it; and a relative path in the run's project folder: segments
# of safe characters, none starting with a dot (so no `..`, no hidden files, never absolute).
KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
PATH_PATTERN = r"^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*(/[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*)*$"
MAX_SCRIPT_FILES = 64
MSG_PATH = ("must be a relative path such as fixtures/index.ts: letters, digits and . _ - @ + in each "
            "segment, no segment starting with a dot (so no '..'), not starting with '/'")


def _relative_path(description: str) -> Any:
    """A path field; a CEL rule rather than a pattern, so a mistake is answered in words."""
    return Field(default=None, min_length=1, max_length=253, description=description, json_schema_extra={
        "x-kubernetes-validations": [{"rule": f"self.matches('{PATH_PATTERN}')", "message": MSG_PATH}]})


def path_clash(paths: Iterable[str]) -> str | None:
    """Why these files cannot share a folder: one path twice, or a file where another needs a folder."""
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            return f"two files land at {path!r}"
        seen.add(path)
    for path in sorted(seen):
        parts = path.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in seen:
                return f"{folder!r} is a file, but {path!r} needs it to be a folder"
    return None


def _check_path(value: str | None, where: str) -> None:
    if value is not None and not re.match(PATH_PATTERN, value):
        raise ValueError(f"{where} {value!r} {MSG_PATH}")

# The script's place and its files' places (CEL): a file's path is its `path`, else its key.
_FILE_PATH = "(has({0}.path) ? {0}.path : {0}.key)"
_REF = "spec.script.configMapRef"
MSG_PATH_WITHOUT_KEY = (f"{_REF}.path places the script named by {_REF}.key: set key too (without key, every "
                        f"key of the ConfigMap is a file of the suite; place one with {_REF}.files[].path)")
MSG_FILES_LIST_THE_SCRIPT = (f"{_REF}.files lists the script's own key; list only the other files "
                             f"(the script's place is {_REF}.path)")
MSG_DUPLICATE_KEY = f"each key may be listed once in {_REF}.files"
MSG_DUPLICATE_PATH = (f"two files of {_REF} land at the same path; give each its own path "
                      "(files[].path, or path for the script)")
MSG_ONE_SOURCE = ("set exactly one of spec.script.inline (the script itself) or "
                  "spec.script.configMapRef (the ConfigMap holding it)")
MSG_K6_NEEDS_KEY = (f"type k6 runs one script: set {_REF}.key to it (its modules go in {_REF}.files); "
                    "a whole ConfigMap without key is a Playwright suite")


class ScriptFile(_Model):
    """A file beside the script: another key of the same ConfigMap, placed at its path in the run's folder."""

    key: str = Field(min_length=1, max_length=253, pattern=KEY_PATTERN, description="Key of the ConfigMap")
    path: str | None = _relative_path(
        "Where the file goes, relative to the suite's folder, e.g. fixtures/index.ts (default: the key)")

    @model_validator(mode="after")
    def _relative(self) -> ScriptFile:
        _check_path(self.path, f"{_REF}.files[].path")
        return self

    @property
    def place(self) -> str:
        return self.path or self.key


class ConfigMapKeyRef(_Model):
    """The script in a ConfigMap: one key (plus the files it imports), or the whole ConfigMap as a suite."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.key) || !has(self.path)", "message": MSG_PATH_WITHOUT_KEY},
                {"rule": "!has(self.key) || !has(self.files) || self.files.all(f, f.key != self.key)",
                 "message": MSG_FILES_LIST_THE_SCRIPT},
                {"rule": "!has(self.files) || self.files.all(f, self.files.exists_one(g, g.key == f.key))",
                 "message": MSG_DUPLICATE_KEY},
                {"rule": "!has(self.files) || self.files.all(f, self.files.exists_one(g, "
                         f"{_FILE_PATH.format('g')} == {_FILE_PATH.format('f')}))",
                 "message": MSG_DUPLICATE_PATH},
                {"rule": "!has(self.key) || !has(self.files) || self.files.all(f, "
                         f"{_FILE_PATH.format('f')} != {_FILE_PATH.format('self')})",
                 "message": MSG_DUPLICATE_PATH},
            ]
        }
    )

    name: str = Field(min_length=1, max_length=253, description="ConfigMap in the TestRun's namespace")
    key: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=KEY_PATTERN,
        description="Key holding the script (k6: the script k6 runs); without it, every key of the ConfigMap "
        "is a file of a Playwright suite and every *.spec.* / *.test.* file runs",
    )
    path: str | None = _relative_path(
        "Where the script goes in the suite's folder, e.g. tests/todo.spec.ts (default: the key)")
    files: list[ScriptFile] = Field(
        default_factory=list, max_length=MAX_SCRIPT_FILES,
        description="Other keys of the ConfigMap the script imports, each placed at its path",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ConfigMapKeyRef:
        """The CEL rules, for an API server that does not run them (and for the operator's own check)."""
        _check_path(self.path, f"{_REF}.path")
        if self.path and not self.key:
            raise ValueError(MSG_PATH_WITHOUT_KEY)
        keys = [f.key for f in self.files]
        if self.key and self.key in keys:
            raise ValueError(MSG_FILES_LIST_THE_SCRIPT)
        if len(set(keys)) != len(keys):
            raise ValueError(MSG_DUPLICATE_KEY)
        places = ([self.place] if self.place else []) + [f.place for f in self.files]
        if len(set(places)) != len(places):
            raise ValueError(MSG_DUPLICATE_PATH)
        clash = path_clash(places) if self.key else None  # a whole ConfigMap's keys are known at admission
        if clash:
            raise ValueError(f"{_REF}: {clash}; give it another path")
        return self

    @property
    def place(self) -> str | None:
        """The script's path in the suite's folder; None for a whole ConfigMap."""
        return self.path or self.key


class ScriptSource(_Model):
    """Exactly one of `inline` or `configMapRef`."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.inline) != has(self.configMapRef)", "message": MSG_ONE_SOURCE}
            ]
        }
    )

    inline: str | None = Field(default=None, min_length=1, max_length=1_000_000, description="The script itself")
    configMapRef: ConfigMapKeyRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ScriptSource:
        if (self.inline is None) == (self.configMapRef is None):
            raise ValueError(MSG_ONE_SOURCE)
        return self


# A Secret's or ConfigMap's name (a DNS subdomain) and a key of it, as Pod validation wants them;
# a key may not be '.' nor start with '..'. Refused here, they would leave the run Pending while
# every pod creation is refused (422).
# ([.] rather than an escaped dot: a backslash is an escape in the CEL string literal the rule quotes it in.)
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
OBJECT_KEY_PATTERN = r"^([.][-_a-zA-Z0-9]|[-_a-zA-Z0-9])[-._a-zA-Z0-9]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MSG_ENV_NAME = "spec.env[].name must be letters, digits and _, not starting with a digit (e.g. BASE_URL)"
MSG_ENV_PREFIX = ("spec.envFrom[].prefix must be letters, digits and _, not starting with a digit "
                  "(e.g. APP_); no '=' or other characters")
MSG_ENV_VALUE_AND_FROM = "spec.env[]: set value or valueFrom, not both"
MSG_ENV_ONE_SOURCE = ("spec.env[].valueFrom: set exactly one of secretKeyRef or configMapKeyRef "
                      "(fieldRef and resourceFieldRef are not supported)")
MSG_ENV_FROM_ONE_SOURCE = "spec.envFrom[]: set exactly one of secretRef or configMapRef"
_RESERVED_LITERALS = "[" + ", ".join(f"'{r}'" for r in (*RESERVED_ENV_PREFIXES, *RESERVED_ENV_NAMES)) + "]"
_ALLOWED_LITERALS = "[" + ", ".join(f"'{n}'" for n in sorted(ALLOWED_ENV_NAMES)) + "]"
_FAMILY_START = "^(" + "|".join(RESERVED_ENV_PREFIXES) + ")"


MSG_OBJECT_NAME = ("must be the name of a Secret or ConfigMap: lower case letters, digits, '-' and '.', "
                   "starting and ending with a letter or digit (e.g. app-secrets)")
MSG_OBJECT_KEY = ("must be a key of a Secret or ConfigMap: letters, digits, '-', '_' and '.', "
                  "not '.' and not starting with '..' (e.g. api-token)")


def object_name_field(description: str) -> Any:
    return Field(min_length=1, max_length=253, description=description, json_schema_extra={
        "x-kubernetes-validations": [{"rule": f"self.matches('{OBJECT_NAME_PATTERN}')", "message": MSG_OBJECT_NAME}]})


def check_object_name(name: str, where: str) -> None:
    if not re.match(OBJECT_NAME_PATTERN, name):
        raise ValueError(f"{where} {name!r} {MSG_OBJECT_NAME}")


def check_not_operator_secret(name: str, where: str) -> None:
    if operator_secret(name):
        raise ValueError(f"{where} {name!r} {MSG_OPERATOR_SECRET}")


NOT_OPERATOR_SECRET_RULES: JsonDict = {"x-kubernetes-validations": [{
    "rule": f"self.name != '{OPERATOR_S3_SECRET}' && !self.name.endsWith('{UPLOAD_SECRET_SUFFIX}')",
    "message": MSG_OPERATOR_SECRET, "fieldPath": ".name"}]}


class KeyRef(_Model):
    """A key of a ConfigMap (or Secret) in the run's namespace."""

    name: str = object_name_field("ConfigMap or Secret in the run's namespace (a DNS subdomain: lower case)")
    key: str = Field(min_length=1, max_length=253, description="Key of it", json_schema_extra={
        "x-kubernetes-validations": [{"rule": f"self.matches('{OBJECT_KEY_PATTERN}')", "message": MSG_OBJECT_KEY}]})
    optional: bool | None = None

    @model_validator(mode="after")
    def _valid(self) -> KeyRef:
        check_object_name(self.name, "name")
        if not re.match(OBJECT_KEY_PATTERN, self.key):
            raise ValueError(f"key {self.key!r} {MSG_OBJECT_KEY}")
        return self


class SecretKeyRef(KeyRef):
    """A key of a Secret of the run's own: never one the operator owns."""

    model_config = ConfigDict(json_schema_extra=NOT_OPERATOR_SECRET_RULES)

    @model_validator(mode="after")
    def _not_operators(self) -> SecretKeyRef:
        check_not_operator_secret(self.name, "secretKeyRef.name")
        return self


class EnvVarSource(_Model):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.secretKeyRef) != has(self.configMapKeyRef)", "message": MSG_ENV_ONE_SOURCE}]})

    secretKeyRef: SecretKeyRef | None = None
    configMapKeyRef: KeyRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        if (self.secretKeyRef is None) == (self.configMapKeyRef is None):
            raise ValueError(MSG_ENV_ONE_SOURCE)
        return self


class EnvVar(_Model):
    """As in a container: handed to the test (process.env in Playwright, __ENV in k6). A name the
    runner reserves (:mod:`supercheck_contract.reserved`) is refused."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": f"self.name.matches('{ENV_NAME_PATTERN}')", "message": MSG_ENV_NAME, "fieldPath": ".name"},
        {"rule": f"!self.name.matches('{RESERVED_ENV_PATTERN}') || self.name in {_ALLOWED_LITERALS}",
         "message": f"spec.env[].name {MSG_RESERVED_ENV}", "fieldPath": ".name"},
        {"rule": "!has(self.value) || !has(self.valueFrom)", "message": MSG_ENV_VALUE_AND_FROM},
    ]})

    name: str = Field(min_length=1, max_length=256)
    value: str | None = None
    valueFrom: EnvVarSource | None = None

    @model_validator(mode="after")
    def _allowed(self) -> EnvVar:
        if not re.match(ENV_NAME_PATTERN, self.name):
            raise ValueError(f"{MSG_ENV_NAME}; got {self.name!r}")
        if reserved_env(self.name) is not None:
            raise ValueError(f"spec.env[].name {self.name!r} {MSG_RESERVED_ENV}")
        if self.value is not None and self.valueFrom is not None:
            raise ValueError(MSG_ENV_VALUE_AND_FROM)
        return self


class NameRef(_Model):
    """A whole ConfigMap (or Secret) of the run's namespace."""

    name: str = object_name_field("ConfigMap or Secret in the run's namespace (a DNS subdomain: lower case)")
    optional: bool | None = None

    @model_validator(mode="after")
    def _valid(self) -> NameRef:
        check_object_name(self.name, "name")
        return self


class SecretNameRef(NameRef):
    """A whole Secret of the run's own: never one the operator owns."""

    model_config = ConfigDict(json_schema_extra=NOT_OPERATOR_SECRET_RULES)

    @model_validator(mode="after")
    def _not_operators(self) -> SecretNameRef:
        check_not_operator_secret(self.name, "envFrom[].secretRef.name")
        return self


class EnvFromSource(_Model):
    """Every key of a ConfigMap or Secret as a variable (``prefix`` + key). A prefix that could make a
    reserved name is refused here; without a prefix, the operator checks the source's keys before it
    starts the run (:func:`supercheck.envguard.reserved_env_from`)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.secretRef) != has(self.configMapRef)", "message": MSG_ENV_FROM_ONE_SOURCE},
        {"rule": f"!has(self.prefix) || self.prefix.matches('{ENV_NAME_PATTERN}')", "message": MSG_ENV_PREFIX,
         "fieldPath": ".prefix"},
        {"rule": f"!has(self.prefix) || !(self.prefix.matches('{_FAMILY_START}') || "
                 f"{_RESERVED_LITERALS}.exists(r, r.startsWith(self.prefix)))",
         "message": MSG_RESERVED_PREFIX, "fieldPath": ".prefix"},
    ]})

    prefix: str | None = Field(default=None, max_length=128,
                               description="Put before each key (letters, digits and _, e.g. APP_)")
    secretRef: SecretNameRef | None = None
    configMapRef: NameRef | None = None

    @model_validator(mode="after")
    def _allowed(self) -> EnvFromSource:
        if (self.secretRef is None) == (self.configMapRef is None):
            raise ValueError(MSG_ENV_FROM_ONE_SOURCE)
        if self.prefix is not None:
            if not re.match(ENV_NAME_PATTERN, self.prefix):
                raise ValueError(f"{MSG_ENV_PREFIX}; got {self.prefix!r}")
            if reserved_prefix(self.prefix):
                raise ValueError(f"{MSG_RESERVED_PREFIX}; got {self.prefix!r}")
        return self


class Resources(_Model):
    """Limits for the runner container; requests equal limits. Bounded by the operator's configuration."""

    cpu: str | None = Field(default=None, max_length=32, pattern=QUANTITY_PATTERN, description="e.g. 2 or 500m")
    memory: str | None = Field(default=None, max_length=32, pattern=QUANTITY_PATTERN, description="e.g. 3Gi")
    ephemeralStorage: str | None = Field(default=None, max_length=32, pattern=QUANTITY_PATTERN, description="e.g. 10Gi")


# The run's budget is spec.timeoutSeconds; this is each test's, as Playwright's own `timeout`.
DEFAULT_TEST_TIMEOUT_SECONDS = 30
MAX_TEST_TIMEOUT_SECONDS = 3600
# RFC 9110 field-name token; values without line breaks (they would end the header).
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
HEADER_VALUE_PATTERN = r"^[^\r\n]*$"


HeaderValue = Annotated[str, Field(max_length=4096, pattern=HEADER_VALUE_PATTERN)]


class Viewport(_Model):
    width: int = Field(ge=1, le=7680, description="Page width in CSS pixels")
    height: int = Field(ge=1, le=4320, description="Page height in CSS pixels")


class PlaywrightOptions(_Model):
    """Runner settings, and the common `use` options of the generated Playwright config."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.extraHTTPHeaders) || "
                    f"self.extraHTTPHeaders.all(k, k.matches(\"{HEADER_NAME_PATTERN}\"))",
                    "message": "spec.playwright.extraHTTPHeaders: a header name is letters, digits and "
                    "!#$%&'*+.^_`|~- only (e.g. X-Test-Run)",
                },
            ]
        }
    )

    retries: int | None = Field(default=None, ge=0, le=10, description="Default PLAYWRIGHT_RETRIES")
    trace: Literal["off", "on", "retain-on-failure", "on-first-retry"] | None = Field(
        default=None, description="Default PLAYWRIGHT_TRACE"
    )
    video: Literal["off", "on", "retain-on-failure", "on-first-retry"] | None = Field(
        default=None, description="Playwright's video: on-first-retry (a TestRun's default) films a failing test's "
        "retry; retain-on-failure records every test and keeps the failures' videos; off (a JobRun's default) "
        "records none")
    headless: bool | None = Field(default=None, description="Default PLAYWRIGHT_HEADLESS")
    workers: int | None = Field(default=None, ge=1, le=16, description="Default MAX_CONCURRENT_EXECUTIONS")
    testTimeoutSeconds: int | None = Field(
        default=None, ge=1, le=MAX_TEST_TIMEOUT_SECONDS,
        description=f"Each test's timeout (Playwright's `timeout`); default {DEFAULT_TEST_TIMEOUT_SECONDS}",
    )
    baseURL: str | None = Field(
        default=None, max_length=2048, pattern=r"^https?://[^\s/?#]+([/?#]\S*)?$",
        description="use.baseURL: page.goto('/path') resolves against it; an http(s) URL",
    )
    viewport: Viewport | None = Field(default=None, description="use.viewport; default 1280x720")
    locale: str | None = Field(
        default=None, max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
        description="use.locale, a BCP 47 tag: navigator.language, Accept-Language, number and date formats",
    )
    timezoneId: str | None = Field(
        default=None, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$",
        description="use.timezoneId, an IANA time zone such as Europe/Berlin",
    )
    extraHTTPHeaders: dict[str, HeaderValue] | None = Field(
        default=None, max_length=32,
        description="use.extraHTTPHeaders: sent with every request of the page (visible in the TestRun: "
        "no secrets)",
    )

    @field_validator("extraHTTPHeaders")
    @classmethod
    def _header_names(cls, headers: dict[str, str] | None) -> dict[str, str] | None:
        # The CRD says the same with a CEL rule: a structural schema cannot constrain map keys.
        for name in headers or {}:
            if not re.match(HEADER_NAME_PATTERN, name):
                raise ValueError(f"header name {name!r}: letters, digits and !#$%&'*+.^_`|~- only")
        return headers

    def use(self) -> dict[str, Any]:
        """The `use` options that are set, as the runner contract carries them."""
        return self.model_dump(include={"baseURL", "viewport", "locale", "timezoneId", "extraHTTPHeaders"},
                               exclude_none=True)


K6Arg = Annotated[str, Field(max_length=1024, json_schema_extra={"x-kubernetes-validations": [
    {"rule": f"!self.matches('{K6_ARG_PATTERN}')", "message": MSG_K6_ARG}]})]


class K6Options(_Model):
    args: list[K6Arg] = Field(
        default_factory=list, max_length=64,
        description="Extra `k6 run` arguments (not the runner's outputs, REST API or log files: --out, "
        "--summary-export, --address, ...)")

    @field_validator("args")
    @classmethod
    def _not_the_runners(cls, args: list[str]) -> list[str]:
        refused = refused_k6_args_message(args)
        if refused:
            raise ValueError(refused)
        return args


TerminalPhase = Literal["Passed", "Failed", "Error", "TimedOut", "Cancelled", "Rejected"]


class UrlFrom(_Model):
    secretKeyRef: SecretKeyRef


class WebhookTarget(_Model):
    """Where a webhook goes: a URL, or a Secret's key holding one (a URL carrying a token)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.url) != has(self.urlFrom)",
         "message": "set exactly one of notify[].url or notify[].urlFrom.secretKeyRef (for a URL carrying a token)"}]})

    url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://[^\s]+$",
                            description="http(s) URL (visible to every reader: a URL with a token goes in urlFrom)")
    urlFrom: UrlFrom | None = None

    @model_validator(mode="after")
    def _one_url(self) -> WebhookTarget:
        if (self.url is None) == (self.urlFrom is None):
            raise ValueError("set exactly one of notify[].url or notify[].urlFrom.secretKeyRef")
        return self


class NotifyTarget(WebhookTarget):
    """A webhook POSTed a JSON summary when the run ends."""

    on: list[TerminalPhase] = Field(default_factory=list, max_length=6,
                                    description="The terminal phases to notify; default all of them")


TEST_TIMEOUT_ABOVE_RUN = (
    "spec.playwright.testTimeoutSeconds (one test) must not exceed spec.timeoutSeconds (the whole run)"
)


class TestRunSpec(_Model):
    __test__ = False
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type == 'k6' || !has(self.k6)",
                    "message": "spec.k6 applies only to type k6; use spec.playwright for type playwright",
                },
                {
                    "rule": "self.type == 'playwright' || !has(self.playwright)",
                    "message": "spec.playwright applies only to type playwright; use spec.k6 for type k6",
                },
                {
                    "rule": "!has(self.playwright) || !has(self.playwright.testTimeoutSeconds) || "
                    "!has(self.timeoutSeconds) || self.playwright.testTimeoutSeconds <= self.timeoutSeconds",
                    "message": TEST_TIMEOUT_ABOVE_RUN,
                },
                {
                    "rule": "self.type != 'k6' || !has(self.script.configMapRef) || has(self.script.configMapRef.key)",
                    "message": MSG_K6_NEEDS_KEY,
                },
            ]
        }
    )

    type: Literal["playwright", "k6"]
    script: ScriptSource
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first")
    timeoutSeconds: int | None = Field(
        default=None, ge=1, le=86400, description="Default TEST_EXECUTION_TIMEOUT_MS / 1000"
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=256)
    envFrom: list[EnvFromSource] = Field(default_factory=list, max_length=32)
    resources: Resources | None = None
    playwright: PlaywrightOptions | None = None
    k6: K6Options | None = None
    ttlSecondsAfterFinished: int | None = Field(
        default=None, ge=0, le=31_536_000, description="Delete the TestRun this long after it ends"
    )
    notify: list[NotifyTarget] = Field(default_factory=list, max_length=10,
                                       description="Webhooks POSTed a JSON summary when the run ends")

    @model_validator(mode="after")
    def _test_timeout_within_run(self) -> TestRunSpec:
        pw = self.playwright
        if pw and pw.testTimeoutSeconds and self.timeoutSeconds and pw.testTimeoutSeconds > self.timeoutSeconds:
            raise ValueError(TEST_TIMEOUT_ABOVE_RUN)
        return self

    @model_validator(mode="after")
    def _k6_runs_one_script(self) -> TestRunSpec:
        ref = self.script.configMapRef
        if self.type == "k6" and ref is not None and ref.key is None:
            raise ValueError(MSG_K6_NEEDS_KEY)
        return self


class Condition(_Model):
    """As the Kubernetes API conventions have it (metav1.Condition): a reason always, the spec's
    generation it was set for, and lastTransitionTime moved only by a change of status."""

    type: str = Field(description=", ".join(ConditionType))
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(min_length=1, description="CamelCase, e.g. the phase or the run's reason")
    message: str | None = None
    lastTransitionTime: str | None = None
    observedGeneration: int | None = Field(
        default=None, ge=0, description="metadata.generation of the spec this condition was set for")


class AttemptRecord(_Model):
    """One runner pod and how it ended."""

    attempt: int
    podName: str
    phase: str | None = None
    failureClass: FailureClass | None = None
    exitCode: int | None = None
    message: str | None = None
    startedAt: str | None = None
    completedAt: str | None = None


class Notification(_Model):
    """How delivering one webhook went (``spec.notify``)."""

    target: str = Field(description="The webhook, without its query or credentials")
    ok: bool
    tries: int = 0
    message: str | None = None


class TestRunStatus(_Model):
    __test__ = False

    phase: Phase | None = None
    reason: str | None = None
    message: str | None = None
    attempts: int = 0
    startedAt: str | None = None
    completedAt: str | None = None
    queuedAt: str | None = None
    retryAfterSeconds: int | None = None
    nextAttemptAt: str | None = None
    podName: str | None = None
    failureClass: FailureClass | None = None
    summary: TestSummary | None = None
    k6: K6Summary | None = None
    artifacts: ArtifactLocation | None = None
    slot: SlotState | None = Field(
        default=None, description="What the capacity ledger holds for this run, if anything"
    )
    queueSeq: int | None = Field(default=None, description="Arrival order in the queue (FIFO within a priority)")
    result: str | None = Field(default=None, description="One-line outcome: test counts or the k6 verdict")
    duration: str | None = Field(default=None, description="Wall time from start to end, e.g. 1m12s")
    attemptHistory: list[AttemptRecord] = Field(default_factory=list)
    recorded: list[int] = Field(
        default_factory=list, description="Attempts whose final row is in PostgreSQL"
    )
    notifications: list[Notification] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    observedGeneration: int | None = None
    # Tracing (docs/tracing.md): set at admission when the operator traces.
    traceId: str | None = Field(default=None, description="The run's OpenTelemetry trace id (32 hex digits)")
    traceParent: str | None = Field(
        default=None, description="W3C traceparent of the run's root span: a restarted operator continues the trace"
    )
