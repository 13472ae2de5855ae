"""Helm values that install the chart (charts/supercheck) into the local environment.

`supercheck-dev chart-values > local-values.yaml` prints them; README "Deploying to a cluster" and
tests/test_helm_install.py use them. They are what a user would write for their own cluster, with
two differences the local environment needs, both because its node agent runs a pod's containers as
host processes, in the host's network:

- one replica, replaced with ``Recreate``: two operator pods would bind the same ports;
- ports of their own, so that the chart's operator never collides with the process operator of
  ``make dev-up`` (stop that one first: ``supercheck-dev stop operator``, or both would serve runs).

The CRDs are not the chart's here (``crds.install: false``): ``make dev-up`` applied them.
"""

from __future__ import annotations

from typing import Any

from supercheck_localenv import services
from supercheck_localenv.layout import PORTS


def chart_values() -> dict[str, Any]:
    return {
        "replicaCount": 1,
        "strategy": {"type": "Recreate"},
        "crds": {"install": False},
        "connections": {
            "redisUrl": services.REDIS_URL,
            "redisAuth": False,  # the local Redis has no password
            "databaseUrl": services.DATABASE_URL,
            "s3EndpointUrl": services.S3_ENDPOINT_URL,
            "awsAccessKeyId": services.S3_ACCESS_KEY,
            "awsSecretAccessKey": services.S3_SECRET_KEY,
            "awsRegion": "us-east-1",
        },
        "metrics": {"port": PORTS.chart_operator_metrics},
        "health": {"port": PORTS.chart_operator_health},
        "api": {"port": PORTS.chart_operator_api},
    }
