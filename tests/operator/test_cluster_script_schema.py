"""The API server's own judgement of spec.script: the CRD's CEL rules and patterns refuse what
the models refuse, in the same words (the table: tests/operator/script_cases.py)."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.rest import ApiException
from operator_kit import GROUP, PLURAL, VERSION
from script_cases import ACCEPTED, REFUSED, manifest

pytestmark = pytest.mark.cluster


def dry_run_create(custom_objects, namespace: str, body: dict) -> str | None:
    """None when the API server would create the TestRun; its message when it refuses it."""
    try:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, dry_run="All")
    except ApiException as exc:
        if exc.status != 422:
            raise
        return str(json.loads(exc.body).get("message"))
    return None


def test_the_api_server_refuses_contradictory_scripts_saying_what_to_fix(custom_objects, namespace):
    for i, (case, test_type, script) in enumerate(ACCEPTED):
        assert dry_run_create(custom_objects, namespace, manifest(f"ok-{i}", test_type, script)) is None, case
    for i, (case, test_type, script, words) in enumerate(REFUSED):
        message = dry_run_create(custom_objects, namespace, manifest(f"bad-{i}", test_type, script))
        assert message is not None and words in message, (case, message)
