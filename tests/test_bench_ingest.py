"""`kolfeed bench ingest` reads hey's summary correctly, summarises rounds by their medians and plots
every measured commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from kolfeed.bench.harness import HarnessError
from kolfeed.bench.ingest import _plot, parse_hey, summary

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


def _round(acked_per_s: float, cpu: float, in_log: int = 5984) -> dict[str, object]:
    return {
        "acked_per_s": acked_per_s,
        "server_cpu_ms_per_ack": cpu,
        "latency_ms": {"p99": 50.0},
        "acked": 5984,
        "in_log": in_log,
    }


def test_rounds_are_summarised_by_their_medians_and_a_missing_ack_is_flagged() -> None:
    s = summary([_round(900.0, 0.5), _round(1500.0, 0.3), _round(1600.0, 0.4)])
    assert (s["rounds"], s["acked_per_s_median"], s["server_cpu_ms_per_ack_median"]) == (3, 1500.0, 0.4)
    assert s["all_acked_in_log"] is True
    assert summary([_round(900.0, 0.5), _round(900.0, 0.5, in_log=5983)])["all_acked_in_log"] is False


def test_the_plot_names_every_label_and_the_restart_counts(tmp_path: Path) -> None:
    result = {
        "labels": ["be7112b", "current"],
        "summary": {"be7112b": summary([_round(400.0, 1.1)]), "current": summary([_round(1900.0, 0.4)])},
        "params": {"concurrency": 32, "workers": 1},
        "load_average_at_start": [3.0, 2.0, 1.0],
        "load_average_at_end": [3.5, 2.0, 1.0],
        "sigkill": {"acknowledged": 1500, "lost": 0},
        "restart_exactly_once": {"redis": {"double_counted": 0}, "cluster": {"double_counted": 0}},
    }
    _plot(result, tmp_path / "ingest.png")
    assert (tmp_path / "ingest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
