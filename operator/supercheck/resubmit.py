"""What a Rejected run's message tells its user to do.

A Rejected run is terminal: the same object stays Rejected, and ``kubectl apply`` of the same
manifest changes nothing (the object exists and its spec did not change). The action that works is
a new object: delete the run and create it again, or let ``supercheck run --wait`` do it, which
waits ``retryAfterSeconds`` and resubmits by itself.
"""

from __future__ import annotations


def advice(kind: str, name: str | None, retry_after: int) -> str:
    """The sentence that ends a rejection's message: when to try again and how."""
    delete = f"kubectl delete {kind.lower()} {name or '<name>'}"
    return (f"create it again in about {retry_after}s: applying the same manifest changes nothing, so "
            f"{delete} and then kubectl create -f your manifest, or submit with "
            f"'supercheck run --wait', which resubmits by itself")
