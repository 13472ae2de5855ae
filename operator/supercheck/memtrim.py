"""Give the C heap's free memory back to the system after a burst.

CPython keeps small objects in arenas of its own, returned when empty; everything larger (the JSON of
watch events and responses, the runs' bodies) comes from the C library's malloc, which keeps freed
memory for reuse and returns only the top of its heap. After a burst of 1,000 runs the operator held
about 60 MB that way (measured: ``malloc_trim(0)`` took it from 299 to 235 MB RSS with the 1,000 runs
still queued). Every ``SUPERCHECK_MALLOC_TRIM_SECONDS`` (10) the operator asks glibc to give it back (a
trim takes ~30 ms after a burst, ~2 ms when there is nothing to return); with another C library (musl,
as in Alpine images) there is no such call and nothing is done.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def trimmer() -> Callable[[], bool] | None:
    """glibc's ``malloc_trim(0)`` (True when memory was given back), or None without glibc."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: bool(fn(0))
