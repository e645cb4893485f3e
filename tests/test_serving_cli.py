"""`kolfeed serve` refuses to start with a one-line message when there is nothing valid to serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ranking_fixtures import make_tiny_run
from tests.service_harness import run_serve


def test_no_run_is_a_clear_error(tmp_path: Path) -> None:
    code, out = run_serve("--runs", str(tmp_path / "empty"))
    assert code == 1 and "no run directories under" in out and "Traceback" not in out


@pytest.mark.parametrize(
    "url, needle", [("postgres://x", "unknown store scheme"), ("redis://:pw@host:notaport/0", "bad port")]
)
def test_bad_store_url_is_a_clear_error(tmp_path: Path, url: str, needle: str) -> None:
    make_tiny_run(tmp_path / "runs" / "r1")
    code, out = run_serve("--runs", str(tmp_path / "runs"), "--store", url)
    assert code == 1 and "bad --store URL" in out and needle in out
    assert "pw@" not in out


def test_corrupt_run_is_a_clear_error(tmp_path: Path) -> None:
    run = make_tiny_run(tmp_path / "runs" / "r1")
    (run / "user_emb.npy").write_bytes(b"garbage")
    code, out = run_serve("--run", str(run))
    assert code == 1 and "checksum mismatch for user_emb.npy" in out


def test_bad_ranking_dir_is_a_clear_error(tmp_path: Path) -> None:
    make_tiny_run(tmp_path / "runs" / "r1")
    code, out = run_serve("--runs", str(tmp_path / "runs"), "--ranking-dir", str(tmp_path / "nope"))
    assert code == 1 and "no such ranking-variant directory" in out
