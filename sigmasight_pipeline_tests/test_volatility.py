"""Volatility measures against numpy, scipy and the `arch` package."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from arch.univariate import HARX, EWMAVariance, ZeroMean
from scipy.stats import percentileofscore

from sigmasight_pipeline.analytics.risk import Z_95, rolling_parametric_var
from sigmasight_pipeline.analytics.volatility import (
    HISTORY_SESSIONS,
    VOLATILITY_COLUMNS,
    ewma_variance_forecast,
    ex_ante_volatility,
    volatility_measures,
)

ROOT = np.sqrt(252)


def _returns(n: int = 320, m: int = 4, seed: int = 0) -> pd.DataFrame:
    """Fat-tailed returns with different scales and a GARCH-ish vol regime change."""
    rng = np.random.default_rng(seed)
    scale = np.array([0.01, 0.02, 0.005, 0.015])[:m]
    regime = np.where(np.arange(n) > n // 2, 1.8, 1.0)[:, None]
    r = rng.standard_t(5, size=(n, m)) * scale * regime / np.sqrt(5 / 3)
    days = pd.bdate_range("2023-01-02", periods=n)
    return pd.DataFrame(r, index=days, columns=[f"S{i}" for i in range(m)])


def _with_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    rng = np.random.default_rng(7)
    out.iloc[:, 1] = out.iloc[:, 1].mask(rng.random(len(out)) < 0.15)
    out.iloc[:-30, 2] = np.nan  # only 30 recent returns
    return out


def test_columns_and_history_constant() -> None:
    r = _returns()
    out = volatility_measures(r, r.index[-2:])
    assert list(out.columns) == ["trade_date", "symbol", *VOLATILITY_COLUMNS]
    assert len(out) == 2 * r.shape[1]
    assert HISTORY_SESSIONS == 272
    portfolio = volatility_measures(r.iloc[:, :2], r.index[-1:], id_column="portfolio_id")
    assert list(portfolio.columns[:2]) == ["trade_date", "portfolio_id"]


def test_realized_vol_matches_numpy_with_gaps() -> None:
    r = _with_gaps(_returns())
    ends = r.index[[-1, -40, 100]]
    out = volatility_measures(r, ends).set_index(["trade_date", "symbol"])
    for end in ends:
        pos = r.index.get_loc(end)
        for w, need in ((21, 14), (63, 42), (252, 168)):
            block = r.iloc[max(0, pos - w + 1) : pos + 1]
            for symbol in r.columns:
                values = block[symbol].dropna().to_numpy()
                got = out.loc[(end, symbol), f"vol_{w}d"]
                if len(values) >= need:
                    assert got == pytest.approx(np.std(values, ddof=1) * ROOT, rel=1e-12)
                else:
                    assert np.isnan(got)
                    assert (
                        f"vol_{w}d: {len(values)} obs < {need}" in out.loc[(end, symbol), "reason"]
                    )
        n252 = r.iloc[max(0, pos - 251) : pos + 1].notna().sum()
        assert (out.loc[end, "n_obs"] == n252).all()


def test_ewma_matches_arch_riskmetrics() -> None:
    r = _returns()
    out = volatility_measures(r, r.index[-1:]).set_index("symbol")
    for symbol in r.columns:
        block = r[symbol].to_numpy()[-252:]
        model = ZeroMean(block, volatility=EWMAVariance(0.94), rescale=False)
        fitted = model.fit(disp="off")
        expected = fitted.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0]
        assert out.loc[symbol, "vol_ewma"] == pytest.approx(np.sqrt(expected * 252), rel=1e-10)


def test_ewma_skips_missing_days_like_a_plain_recursion() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.01, 120)
    x[[5, 6, 50, 119]] = np.nan
    present = x[np.isfinite(x)]
    tau = min(75, len(present))
    weights = 0.94 ** np.arange(tau)
    var = float(np.sum(present[:tau] ** 2 * weights) / weights.sum())
    for value in x:  # a missing day leaves the variance as it was
        if np.isfinite(value):
            var = 0.94 * var + 0.06 * value * value
    assert ewma_variance_forecast(x[:, None])[0] == pytest.approx(var, rel=1e-12)


def test_har_matches_arch_harx_iterated_forecast() -> None:
    r = _returns()
    out = volatility_measures(r, r.index[-1:]).set_index("symbol")
    for symbol in r.columns:
        rv = r[symbol].to_numpy()[-252:] ** 2
        fitted = HARX(rv, lags=[1, 5, 22], rescale=False).fit(disp="off")
        assert fitted.nobs == 230
        path = fitted.forecast(horizon=21, reindex=False).mean.to_numpy()[-1]
        expected = np.sqrt(path.mean() * 252)
        assert out.loc[symbol, "vol_har_21d"] == pytest.approx(expected, rel=1e-9)


def test_har_needs_rows_and_todays_return() -> None:
    r = _with_gaps(_returns())
    r.iloc[-1, 0] = np.nan
    out = volatility_measures(r, r.index[-1:]).set_index("symbol")
    assert np.isnan(out.loc["S0", "vol_har_21d"])
    assert "vol_har_21d: no return on the end date" in out.loc["S0", "reason"]
    assert np.isnan(out.loc["S2", "vol_har_21d"])  # 30 returns: too few regression rows
    assert "regression rows < 120" in out.loc["S2", "reason"]
    assert np.isfinite(out.loc["S1", "vol_har_21d"])  # 15 % scattered gaps are fine
    assert out.loc["S3", "reason"] is None


def test_percentile_matches_scipy() -> None:
    r = _with_gaps(_returns())
    end = r.index[-1]
    out = volatility_measures(r, [end]).set_index("symbol")
    for symbol in ("S0", "S1", "S3"):
        rolling = r[symbol].rolling(21, min_periods=14).std() * ROOT
        history = rolling.iloc[-252:].dropna()
        expected = percentileofscore(history, rolling.iloc[-1], kind="weak")
        assert out.loc[symbol, "vol_percentile_252d"] == pytest.approx(expected, abs=1e-9)
    assert np.isnan(out.loc["S2", "vol_percentile_252d"])
    assert "vol_percentile_252d: 17 values < 168" in out.loc["S2", "reason"]


def test_percentile_is_100_after_a_vol_spike() -> None:
    r = _returns()
    r.iloc[-10:] *= 5.0
    out = volatility_measures(r, r.index[-1:])
    assert (out["vol_percentile_252d"] == 100.0).all()


def test_end_date_outside_returns_gets_a_reason() -> None:
    r = _returns()
    out = volatility_measures(r, [pd.Timestamp("2030-01-02")])
    assert out["vol_21d"].isna().all()
    assert (out["reason"] == "no return row for the end date").all()
    assert (out["n_obs"] == 0).all()


def test_constant_series_gives_har_reason_not_crash() -> None:
    r = _returns()
    r["FLAT"] = 0.0
    out = volatility_measures(r, r.index[-1:]).set_index("symbol")
    assert out.loc["FLAT", "vol_21d"] == 0.0
    assert np.isnan(out.loc["FLAT", "vol_har_21d"])
    assert "collinear" in out.loc["FLAT", "reason"]


def _exposures(day: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trade_date": day,
            "portfolio_id": [1, 1, 1, 2, 2],
            "underlying": ["S0", "S1", "S0", "S2", "S3"],
            "exposure": [50_000.0, -20_000.0, 10_000.0, 30_000.0, 40_000.0],
        }
    )


def test_ex_ante_volatility_matches_direct_quadratic_form() -> None:
    r = _returns()
    day = r.index[-1]
    values = pd.DataFrame({"trade_date": [day, day], "portfolio_id": [1, 2],
                           "total_value": [80_000.0, 0.0]})  # fmt: skip
    out = ex_ante_volatility(_exposures(day), r, values).set_index("portfolio_id")
    block = r.iloc[-60:]
    e = np.array([60_000.0, -20_000.0])
    expected = np.sqrt(e @ np.cov(block[["S0", "S1"]].to_numpy(), rowvar=False) @ e * 252)
    assert out.loc[1, "vol_ex_ante_usd"] == pytest.approx(expected, rel=1e-12)
    assert out.loc[1, "vol_ex_ante"] == pytest.approx(expected / 80_000.0, rel=1e-12)
    assert out.loc[1, "n_obs"] == 60
    assert np.isnan(out.loc[2, "vol_ex_ante"])
    assert out.loc[2, "reason"] == "no positive total_value for the fraction"


def test_ex_ante_volatility_is_the_parametric_var_sigma_annualized() -> None:
    r = _with_gaps(_returns())
    day = r.index[-1]
    exposures = _exposures(day).query("portfolio_id == 1")
    ours = ex_ante_volatility(exposures, r)
    var = rolling_parametric_var(exposures.rename(columns={"underlying": "symbol"}), r, [day])
    assert ours["vol_ex_ante_usd"].iloc[0] == pytest.approx(
        var["var_95_1d"].iloc[0] / Z_95 * ROOT, rel=1e-12
    )
    assert ours["n_obs"].iloc[0] == var["n_obs"].iloc[0]


def test_ex_ante_unknown_symbol_and_short_history() -> None:
    r = _with_gaps(_returns())
    r.iloc[-30:-15, 2] = np.nan  # S2: 15 returns left
    day = r.index[-1]
    exposures = pd.DataFrame(
        {"trade_date": day, "portfolio_id": [1, 2, 2], "underlying": ["NOPE", "S0", "S2"],
         "exposure": [1.0, 1.0, 1.0]}
    )  # fmt: skip
    out = ex_ante_volatility(exposures, r).set_index("portfolio_id")
    assert out.loc[1, "reason"] == "no returns for exposed underlyings ['NOPE']"
    assert out.loc[2, "reason"] == "15 complete obs < min_obs 20"
    assert out.loc[2, "n_obs"] == 15
    assert out["vol_ex_ante_usd"].isna().all()


def test_ex_ante_leaves_out_unpriced_positions_with_a_reason() -> None:
    r = _returns()
    day = r.index[-1]
    exposures = pd.DataFrame(
        {"trade_date": day, "portfolio_id": [1, 1, 2], "underlying": ["S0", "S1", "S3"],
         "exposure": [10_000.0, np.nan, np.nan]}
    )  # fmt: skip
    out = ex_ante_volatility(exposures, r).set_index("portfolio_id")
    alone = ex_ante_volatility(exposures.iloc[:1], r)["vol_ex_ante_usd"].iloc[0]
    assert out.loc[1, "vol_ex_ante_usd"] == pytest.approx(alone)
    assert out.loc[1, "reason"] == "1 position(s) without an exposure left out"
    assert np.isnan(out.loc[2, "vol_ex_ante_usd"])  # nothing priced: unknown, not zero
    assert out.loc[2, "reason"] == "1 position(s) without an exposure left out"


def test_row_nanmean_is_numpys_without_its_warning() -> None:
    """The HAR forecast's row means: bit for bit `np.nanmean(a, axis=1)`, and an all-NaN row is
    NaN without the RuntimeWarning (whose filter `catch_warnings` would set process-wide, which
    two step threads must not race on)."""
    import warnings

    from sigmasight_pipeline.analytics.volatility import _row_nanmean

    rng = np.random.default_rng(7)
    a = rng.normal(size=(200, 22)) * 1e-4
    a[rng.random(a.shape) < 0.3] = np.nan
    a[5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmean(a, axis=1)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("error")
        got = _row_nanmean(a)
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[5])
