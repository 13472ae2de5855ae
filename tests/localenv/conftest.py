"""Fixtures shared by the node agent's tests that make real cgroups."""

from __future__ import annotations

import os
import uuid

import pytest

from supercheck_localenv.nodeagent.cgroups import CgroupManager, CgroupUnavailable


@pytest.fixture
def cgroup_parent():
    """A parent folder of this test's own, removed (with anything left in it) afterwards."""
    if os.geteuid() != 0:
        pytest.skip("switching users and making cgroups need root")
    name = f"supercheck-test-{uuid.uuid4().hex[:8]}"
    try:
        manager = CgroupManager(name)
    except CgroupUnavailable as exc:
        pytest.skip(f"no writable cgroup v1 cpu+memory here: {exc}")
    yield name
    manager.remove_stale()
    for parent in manager.parents.values():
        os.rmdir(parent)
