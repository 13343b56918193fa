"""Concentration per (day, portfolio) against a plain-Python reference."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline.analytics.concentration import (
    CONCENTRATION_COLUMNS,
    portfolio_concentration,
)


def _reference(rows: list[tuple]) -> dict:
    """HHI etc. computed one portfolio at a time with dicts and sorted lists."""
    names: dict = defaultdict(lambda: defaultdict(float))
    for day, portfolio, underlying, exposure in rows:
        names[(day, portfolio)][underlying] += exposure
    out = {}
    for key, by_name in names.items():
        gross = sum(abs(x) for x in by_name.values())
        ranked = sorted(by_name.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
        weights = [abs(x) / gross for _, x in ranked]
        out[key] = {
            "hhi": sum(w * w for w in weights),
            "top5": sum(weights[:5]),
            "top10": sum(weights[:10]),
            "largest": ranked[0][0],
            "largest_weight": weights[0],
            "largest_exposure": ranked[0][1],
            "n_names": sum(1 for x in by_name.values() if x != 0),
            "gross": gross,
        }
    return out


def test_matches_reference_on_random_books() -> None:
    rng = np.random.default_rng(11)
    rows = []
    for day in pd.bdate_range("2025-03-03", periods=3):
        for portfolio in range(1, 6):
            n = int(rng.integers(1, 25))
            symbols = rng.choice([f"N{i:02d}" for i in range(30)], size=n)  # repeats = options
            exposure = rng.normal(0, 1, n) * 10 ** rng.uniform(3, 6, n)
            rows += [(day, portfolio, s, float(x)) for s, x in zip(symbols, exposure, strict=True)]
    frame = pd.DataFrame(rows, columns=["trade_date", "portfolio_id", "underlying", "exposure"])
    out = portfolio_concentration(frame)
    assert list(out.columns) == list(CONCENTRATION_COLUMNS)
    reference = _reference(rows)
    assert len(out) == len(reference)
    for row in out.itertuples():
        want = reference[(row.trade_date, row.portfolio_id)]
        assert row.hhi == pytest.approx(want["hhi"], rel=1e-12)
        assert row.effective_n == pytest.approx(1.0 / want["hhi"], rel=1e-12)
        assert row.top5_weight == pytest.approx(want["top5"], rel=1e-12)
        assert row.top10_weight == pytest.approx(want["top10"], rel=1e-12)
        assert row.largest_symbol == want["largest"]
        assert row.largest_weight == pytest.approx(want["largest_weight"], rel=1e-12)
        assert row.largest_exposure_usd == pytest.approx(want["largest_exposure"], rel=1e-12)
        assert row.gross_exposure_usd == pytest.approx(want["gross"], rel=1e-12)
        assert row.n_names == want["n_names"]
        assert row.reason is None


def test_options_net_on_their_underlying() -> None:
    # Long 100k AAPL, a put hedge at -40k delta-adjusted, 60k MSFT: names 60k and 60k.
    frame = pd.DataFrame(
        {"trade_date": "2025-03-03", "portfolio_id": 7, "underlying": ["AAPL", "AAPL", "MSFT"],
         "exposure": [100_000.0, -40_000.0, 60_000.0]}
    )  # fmt: skip
    row = portfolio_concentration(frame).iloc[0]
    assert row["hhi"] == pytest.approx(0.5)
    assert row["effective_n"] == pytest.approx(2.0)
    assert row["largest_symbol"] == "AAPL"  # tie broken alphabetically
    assert row["top5_weight"] == pytest.approx(1.0)
    assert row["n_names"] == 2


def test_equal_names_give_effective_n_equal_to_count() -> None:
    frame = pd.DataFrame(
        {"trade_date": "2025-03-03", "portfolio_id": 1,
         "underlying": [f"S{i}" for i in range(20)], "exposure": [1.0, -1.0] * 10}
    )  # fmt: skip
    row = portfolio_concentration(frame).iloc[0]
    assert row["effective_n"] == pytest.approx(20.0)
    assert row["top5_weight"] == pytest.approx(0.25)
    assert row["top10_weight"] == pytest.approx(0.5)


def test_zero_gross_and_unpriced_positions_have_reasons() -> None:
    frame = pd.DataFrame(
        {"trade_date": "2025-03-03", "portfolio_id": [1, 1, 2, 2, 3],
         "underlying": ["A", "A", "B", "C", "D"], "exposure": [5.0, -5.0, np.nan, 10.0, np.nan]}
    )  # fmt: skip
    out = portfolio_concentration(frame).set_index("portfolio_id")
    assert np.isnan(out.loc[1, "hhi"]) and out.loc[1, "largest_symbol"] is None
    assert out.loc[1, "reason"] == "no exposure: every name nets to zero"
    assert out.loc[2, "hhi"] == pytest.approx(1.0)
    assert out.loc[2, "n_missing_exposure"] == 1
    assert out.loc[2, "reason"] == "1 position(s) without an exposure left out"
    assert np.isnan(out.loc[3, "hhi"]) and out.loc[3, "n_names"] == 0
    assert out.loc[3, "reason"].endswith("1 position(s) without an exposure left out")
