"""`kolfeed bench ingest` reads hey's summary and the service's group-commit counters correctly."""

from __future__ import annotations

import pytest

from kolfeed.bench.harness import HarnessError
from kolfeed.bench.ingest import parse_hey

HEY_OUTPUT = """
Summary:
  Total:\t2.6162 secs
  Slowest:\t0.0543 secs
  Fastest:\t0.0031 secs
  Average:\t0.0139 secs
  Requests/sec:\t2287.5252

Latency distribution:
  10% in 0.0101 secs
  50% in 0.0132 secs
  99% in 0.0250 secs

Status code distribution:
  [202]\t5980 responses
  [503]\t4 responses
"""


def test_hey_summary_gives_rate_latency_and_statuses() -> None:
    r = parse_hey(HEY_OUTPUT)
    assert r["requests_per_s"] == 2287.5252 and r["wall_s"] == 2.6162
    assert r["latency_ms"] == {"p10": 10.1, "p50": 13.2, "p99": 25.0}
    assert r["statuses"] == {"202": 5980, "503": 4}


def test_hey_without_a_summary_is_an_error() -> None:
    with pytest.raises(HarnessError, match="no summary"):
        parse_hey("dial tcp: connection refused")
