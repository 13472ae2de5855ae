"""Fixtures on the real local environment (`make dev-up`).

`kube_env` starts the environment if it is not running (or reuses it); each test that
asks for `namespace` gets a fresh namespace whose default ServiceAccount exists, and
starts from clean Redis, PostgreSQL and S3 state (`clean_services`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from supercheck_localenv import cli
from supercheck_localenv import services as dev_services
from supercheck_localenv.layout import PORTS, REPO_ROOT, Layout, default_layout
from supercheck_localenv.procs import Proc

CLUSTER_MARK = "cluster"


def pytest_collection_modifyitems(config, items):
    # A test that uses the environment is a cluster test, whether or not it says so.
    for item in items:
        if {"kube_env", "namespace"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(CLUSTER_MARK)


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].split("=", 1)
            env[k] = shlex.split(v)[0] if v else ""
    return env


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class KubeEnv:
    layout: Layout
    env: dict[str, str]

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    @property
    def kubectl_path(self) -> str:
        return str(self.layout.dev / "bin" / "kubectl")


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm that hack/build-helm.sh builds (from the Go module proxy; cached after the first time)."""
    out = subprocess.run([str(REPO_ROOT / "hack" / "build-helm.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture(scope="session")
def kube_env() -> KubeEnv:
    layout = default_layout()
    # Idempotent: quick when everything runs already (make test started it).
    cli.up(layout, {})
    env = read_env_file(layout.env_file)
    os.environ.update({k: v for k, v in env.items() if k != "PATH"})
    return KubeEnv(layout, env)


@pytest.fixture(scope="session")
def api_client(kube_env):
    from kubernetes import config

    return config.new_client_from_config(config_file=kube_env.kubeconfig)


@pytest.fixture(scope="session")
def core_v1(api_client):
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def custom_objects(api_client):
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


@pytest.fixture(scope="session")
def kubectl(kube_env):
    def run(*args: str, input: str | None = None, check: bool = False, timeout: float = 120):
        return subprocess.run(
            [kube_env.kubectl_path, f"--kubeconfig={kube_env.kubeconfig}", *args],
            input=input,
            text=True,
            capture_output=True,
            check=check,
            timeout=timeout,
        )

    return run


@pytest.fixture(scope="session")
def redis_client(kube_env):
    import redis

    client = redis.Redis.from_url(kube_env.env["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def db_conn(kube_env):
    import psycopg

    with psycopg.connect(kube_env.env["DATABASE_URL"], autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def s3_client(kube_env):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=kube_env.env["S3_ENDPOINT_URL"],
        aws_access_key_id=kube_env.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=kube_env.env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


@pytest.fixture
def clean_services(kube_env, redis_client, s3_client):
    """Empty Redis, the `runs`, `jobs` and `job_tests` tables and every bucket: a test starts from nothing."""
    import psycopg

    redis_client.flushdb()
    with psycopg.connect(kube_env.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN IF to_regclass('public.runs') IS NOT NULL THEN TRUNCATE runs; END IF; "
            "IF to_regclass('public.jobs') IS NOT NULL THEN TRUNCATE jobs CASCADE; END IF; END $$"
        )
    for bucket in s3_client.list_buckets().get("Buckets", []):
        paginator = s3_client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket["Name"]):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3_client.delete_objects(Bucket=bucket["Name"], Delete={"Objects": keys})


@contextlib.contextmanager
def scratch_namespace(core_v1, name: str) -> Iterator[str]:
    """A namespace of the test's own: made, its default ServiceAccount waited for, and deleted
    afterwards, waiting until it is gone so that finalizers (the operator's) run before the next
    test cleans the services."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def default_sa():
        try:
            return core_v1.read_namespaced_service_account("default", name)
        except ApiException:
            return None

    wait_until(default_sa, 30, what=f"default ServiceAccount in {name}")
    yield name
    try:
        core_v1.delete_namespace(name)
    except ApiException:
        return

    def gone():
        try:
            core_v1.read_namespace(name)
            return False
        except ApiException as e:
            return e.status == 404

    try:
        wait_until(gone, 90, interval=0.5, what=f"namespace {name} deleted")
    except AssertionError as exc:  # pragma: no cover - reported, not fatal for the test that passed
        print(f"warning: {exc}", file=sys.stderr)


@pytest.fixture
def namespace(kube_env, core_v1, clean_services, request):
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    with scratch_namespace(core_v1, "".join(c for c in name if c.isalnum() or c == "-")) as made:
        yield made


@dataclass
class OperatorCtl:
    """Start, stop and crash the operator of the local environment."""

    layout: Layout
    config: dict[str, str] = field(default_factory=dict)
    extra_replicas: list[Proc] = field(default_factory=list)

    @property
    def proc(self) -> Proc:
        return Proc(self.layout, "operator")

    def start(self, **config_env: str) -> Proc:
        self.config = {k: str(v) for k, v in config_env.items()}
        proc = cli.start_operator(self.layout, cli.operator_config(self.config), force=not self.proc.running())
        assert proc is not None, "the operator package is missing"
        return proc

    def restart(self, **config_env: str) -> Proc:
        self.proc.stop()
        return self.start(**(config_env or self.config))

    def stop(self) -> None:
        self.proc.stop()

    def kill(self) -> None:
        self.proc.kill()

    def start_second_replica(self, **config_env: str) -> Proc:
        """Another operator process beside the first, as a second Deployment replica would be."""
        n = len(self.extra_replicas) + 2
        proc = Proc(self.layout, f"operator-replica-{n}")
        env = cli._process_env(
            self.layout,
            {
                **cli.operator_config({k: str(v) for k, v in (config_env or self.config).items()}),
                "SUPERCHECK_METRICS_PORT": str(PORTS.operator_metrics + 10 * n),
                "SUPERCHECK_HEALTH_PORT": str(PORTS.operator_health + 10 * n),
                "SUPERCHECK_API_PORT": str(PORTS.operator_api + 10 * n),
            },
        )
        proc.start([sys.executable, "-m", "supercheck.operator_main"], env=env, cwd=self.layout.root)
        self.extra_replicas.append(proc)
        return proc


@pytest.fixture
def operator_ctl(kube_env):
    ctl = OperatorCtl(kube_env.layout)
    yield ctl
    for proc in ctl.extra_replicas:
        proc.stop()
    # Leave the environment as `make dev-up` made it: default configuration.
    if ctl.config or not ctl.proc.running():
        ctl.proc.stop()
        cli.start_operator(kube_env.layout, cli.operator_config({}), force=True)


@dataclass
class ServicesCtl:
    layout: Layout

    def redis_restart_empty(self) -> None:
        Proc(self.layout, "redis").kill()
        dev_services.start_redis(self.layout)

    def postgres_stop(self) -> None:
        Proc(self.layout, "postgres").stop()

    def postgres_start(self) -> None:
        dev_services.start_postgres(self.layout)

    def s3_stop(self) -> None:
        dev_services.stop_s3(self.layout)

    def s3_start(self) -> None:
        from supercheck_contract import BUCKETS

        dev_services.start_s3(self.layout)
        dev_services.create_buckets(BUCKETS.values())


@pytest.fixture
def services(kube_env):
    ctl = ServicesCtl(kube_env.layout)
    yield ctl
    # Whatever a fault test stopped is running again for the next test.
    dev_services.start_redis(kube_env.layout)
    dev_services.start_postgres(kube_env.layout)
    ctl.s3_start()


def pod_json(kubectl, namespace: str, name: str) -> dict | None:
    res = kubectl("get", "pod", name, "-n", namespace, "-o", "json")
    return json.loads(res.stdout) if res.returncode == 0 else None
