"""Kubernetes resource quantities ("500m", "3Gi", "1e3") as exact Decimals.

The parsing itself is the Kubernetes client's (`kubernetes.utils.quantity`); this module
only gives it one error type and message for the operator and the node agent alike.
"""

from __future__ import annotations

from decimal import Decimal

from kubernetes.utils.quantity import parse_quantity as _parse


def parse_quantity(value: str | int | float) -> Decimal:
    """The value of a quantity in base units (cores, bytes). Raises ValueError naming the text."""
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    text = str(value).strip()
    if not text:
        raise ValueError("empty quantity")
    try:
        return Decimal(_parse(text))
    except (ValueError, ArithmeticError) as exc:
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from exc
