"""The ranker still serves the golden pages (tests/rank_golden_cases.py): same items, posts, KOLs,
order, reasons and sources; scores equal up to float32 rounding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from recsys.ranking.feed import FeedRanker
from tests.rank_golden_cases import GOLDEN, SCORE_DECIMALS, build_models, make_cases, run_case
from tests.ranking_fixtures import ALL_SOURCES

SCORE_TOL = 2 * 10.0**-SCORE_DECIMALS
"""Both sides are rounded to SCORE_DECIMALS: a last-bit float32 difference may move one by a unit."""


@pytest.fixture(scope="module")
def golden() -> list[dict[str, Any]]:
    with GOLDEN.open() as fh:
        data: list[dict[str, Any]] = json.load(fh)
    return data


def test_golden_pages_are_unchanged(golden: list[dict[str, Any]]) -> None:
    models = build_models()
    rankers = {name: FeedRanker(m) for name, m in models.items()}
    cases = make_cases(models)
    assert len(cases) == len(golden)
    mismatches = []
    for n, (case, want) in enumerate(zip(cases, golden, strict=True)):
        assert (case.model, case.variant) == (want["model"], want["variant"]), f"case {n}: cases drifted"
        got = run_case(models, rankers, case)
        exact_got = [[e[0], e[1], e[2], e[4], e[5]] for e in got]
        exact_want = [[e[0], e[1], e[2], e[4], e[5]] for e in want["page"]]
        scores_ok = len(got) == len(want["page"]) and all(
            abs(g[3] - w[3]) <= SCORE_TOL for g, w in zip(got, want["page"], strict=True)
        )
        if exact_got != exact_want or not scores_ok:
            mismatches.append(f"case {n} ({case.model}/{case.variant}): got {got}\nwant {want['page']}")
    assert not mismatches, f"{len(mismatches)} of {len(cases)} pages changed; first:\n{mismatches[0]}"


def test_golden_fixture_is_varied(golden: list[dict[str, Any]]) -> None:
    """The fixture exercises every source, the backfill and every reason kind (else it proves little)."""
    entries = [e for case in golden for e in case["page"]]
    sources = {e[5] for e in entries}
    assert sources == ALL_SOURCES
    reasons = " | ".join(r for e in entries for r in e[4])
    for text in (
        "new creator for you",
        "because you follow",
        "you often engage with",
        "1 friend bought this",
        "friends bought this",
        "similar to items you liked",
        "trending in",
        "trending now",
        "popular right now",
        "picked for you",
    ):
        assert text in reasons, text
    assert any(e[1] is None for e in entries)  # the embeddings-only model: no posts
    assert {1, 5, 20} <= {len(case["page"]) for case in golden}
