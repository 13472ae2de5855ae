"""Kubernetes resource quantities ("100Mi", "500m", "1.5G") as plain numbers.

The node agent needs quantities in two places: the node's capacity flags, validated
before anything is registered, and container memory limits, compared against a
process tree's resident memory in bytes.
"""

from __future__ import annotations

import math

from supercheck.quantity import parse_quantity

__all__ = ["parse_quantity", "quantity_to_bytes", "scaled_ceiling"]


def quantity_to_bytes(value: str | int | float) -> int:
    """A memory quantity in whole bytes, rounded up as Kubernetes does ("1.5Ki" -> 1536)."""
    return int(math.ceil(parse_quantity(value)))


def scaled_ceiling(value: str | int | float, divisor: str | int | float = "1") -> int:
    """``ceil(value / divisor)``: how downward API exposes resources (limits.cpu in "1m" -> millicores)."""
    d = parse_quantity(divisor)
    if d <= 0:
        raise ValueError(f"divisor must be positive, got {divisor!r}")
    return int(math.ceil(parse_quantity(value) / d))
