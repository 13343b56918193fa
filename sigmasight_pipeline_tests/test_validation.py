"""The shared input checks of `analytics`: what they accept, what they reject, what they say."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline.analytics import validation


def test_naive_dates_and_session_index() -> None:
    got = validation.session_index(
        ["2026-11-04", date(2026, 11, 2), pd.Timestamp("2026-11-03 15:00")]
    )
    assert list(got.strftime("%Y-%m-%d")) == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert got.name == "trade_date" and got.tz is None
    aware = pd.date_range("2026-11-02", periods=3, tz="America/New_York")
    for values in (aware, pd.Series(aware), list(aware)):
        with pytest.raises(ValueError, match="days: expected tz-naive dates, got timezone"):
            validation.naive_dates(values, "days")
    with pytest.raises(ValueError, match="days: not dates"):
        validation.naive_dates(["not a date"], "days")
    with pytest.raises(ValueError, match="duplicate dates: 2026-11-02"):
        validation.session_index([pd.Timestamp("2026-11-02"), pd.Timestamp("2026-11-02 09:30")])


def test_duplicate_pairs_name_the_first_five() -> None:
    frame = pd.DataFrame({"symbol": list("ABCDEFG") * 2, "trade_date": pd.Timestamp("2026-11-02")})
    with pytest.raises(ValueError) as err:
        validation.require_unique_pairs(frame, ["symbol", "trade_date"], "prices")
    message = str(err.value)
    assert message.startswith("prices has duplicate (symbol, trade_date) rows: (A, 2026-11-02), ")
    assert "(E, 2026-11-02) (and 2 more)" in message and "(F," not in message
    validation.require_unique_pairs(frame.iloc[:7], ["symbol", "trade_date"], "prices")
    with pytest.raises(ValueError, match="duplicate"):
        validation.unique_pivot(frame, "trade_date", "symbol", "symbol", "prices")


def test_finite_and_return_checks() -> None:
    frame = pd.DataFrame(
        {"A": [0.01, np.nan, -1.0], "B": [np.inf, 0.0, -1.2]},
        index=pd.to_datetime(["2026-11-02", "2026-11-03", "2026-11-04"]),
    )
    with pytest.raises(ValueError, match=r"r has 1 infinite value\(s\) at \(2026-11-02, B\)"):
        validation.require_returns(frame, "r")
    frame.iloc[0, 1] = 0.0
    with pytest.raises(ValueError, match=r"r has 1 return\(s\) below -100 % at \(2026-11-04, B\)"):
        validation.require_returns(frame, "r")
    validation.require_returns(frame[["A"]], "r")  # NaN (missing) and exactly -100 % pass
    with pytest.raises(ValueError, match="non-finite value"):
        validation.require_finite(frame[["A"]], "r", allow_nan=False)
    with pytest.raises(ValueError, match="row 1"):
        validation.require_finite(np.array([1.0, -np.inf]), "x")
    assert validation.is_price(np.array([1.0, 0.0, -1.0, np.inf, np.nan, 1e-9])).tolist() == [
        True, False, False, False, False, True
    ]  # fmt: skip
