"""The head every benchmark report starts with: when, on how many cores, at what load.

Why one place: machines here are shared and noisy, so a figure is only readable beside the load it
was measured at; every report records it the same way.
"""

from __future__ import annotations

import os
import time
from typing import Any


def report_header(**extra: Any) -> dict[str, Any]:
    """created_at, machine_cores and loadavg_start, then ``extra`` in the order given."""
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine_cores": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
        **extra,
    }
