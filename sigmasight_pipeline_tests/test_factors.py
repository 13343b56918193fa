"""Batched rolling factor betas: exactness vs statsmodels, recovery of planted betas, gaps."""

from __future__ import annotations

from datetime import date
from functools import cache

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from sigmasight_pipeline.analytics import factors
from sigmasight_pipeline.analytics.factors import (
    BETA_COLUMNS,
    FACTOR_NAMES,
    STYLE_FACTORS,
    design_condition_numbers,
    rolling_factor_betas,
    spread_design,
)
from sigmasight_pipeline.calendar import sessions
from sigmasight_pipeline.resources.market_data import FACTOR_ETFS
from sigmasight_pipeline.resources.synthetic import SyntheticMarket

ETFS = list(FACTOR_ETFS.values())
STOCKS = [f"R{i:02d}" for i in range(30)] + ["AAPL", "MSFT", "JPM"]


@cache
def _synthetic_returns(start: str = "2020-01-01", end: str = "2024-12-31") -> pd.DataFrame:
    """Daily close-to-close returns of the factor ETFs and STOCKS (dates x symbols)."""
    days = sessions(start, end)
    wanted = pd.DataFrame(
        [(t, d.date()) for t in ETFS + STOCKS for d in days], columns=["symbol", "trade_date"]
    )
    bars = SyntheticMarket().daily_bars(wanted)
    closes = bars.pivot(index="trade_date", columns="symbol", values="close")
    closes.index = pd.DatetimeIndex(closes.index)
    return closes.pct_change().iloc[1:]


def _with_gaps() -> tuple[pd.DataFrame, pd.DataFrame]:
    """120 days of synthetic factor returns and 8 assets, some with NaN gaps."""
    r = _synthetic_returns().iloc[-120:]
    assets = r[STOCKS[:8]].copy()
    assets.iloc[100:103, 1] = np.nan  # gap inside the late windows
    assets.iloc[100:103, 2] = np.nan  # same pattern as column 1
    assets.iloc[[90, 110, 115], 3] = np.nan  # another pattern
    assets.iloc[:75, 4] = np.nan  # starts late
    assets.iloc[:, 5] *= 0.0
    assets.iloc[:, 5] += np.random.default_rng(1).normal(0, 0.02, len(assets))  # pure noise
    return assets, r[ETFS]


def test_output_shape_and_types() -> None:
    assets, etfs = _with_gaps()
    ends = assets.index[-3:]
    out = rolling_factor_betas(assets, etfs, ends)
    assert list(out.columns) == BETA_COLUMNS
    assert len(out) == 3 * assets.shape[1] * len(FACTOR_NAMES)
    assert out["factor"].iloc[:7].tolist() == FACTOR_NAMES
    assert all(isinstance(d, date) and not isinstance(d, pd.Timestamp) for d in out["trade_date"])
    assert out["n_obs"].dtype == np.int64
    assert out["reason"].isna().all() and out["beta"].notna().all()


@pytest.mark.parametrize("end_pos", [59, 89, 104, 119])
def test_matches_statsmodels_per_symbol(end_pos: int) -> None:
    assets, etfs = _with_gaps()
    end = assets.index[end_pos]
    out = rolling_factor_betas(assets, etfs, [end], window=60).set_index(["symbol", "factor"])
    design = spread_design(etfs).iloc[end_pos - 59 : end_pos + 1]
    for symbol in assets.columns:
        y = assets[symbol].iloc[end_pos - 59 : end_pos + 1]
        ok = y.notna().to_numpy()
        rows = out.loc[symbol]
        assert (rows["n_obs"] == ok.sum()).all()
        if ok.sum() < 20:
            assert rows["beta"].isna().all()
            continue
        x = design[ok]
        multi = sm.OLS(y[ok].to_numpy(), sm.add_constant(x.to_numpy())).fit()
        uni = sm.OLS(y[ok].to_numpy(), sm.add_constant(x["Market"].to_numpy())).fit()
        got = rows.loc[FACTOR_NAMES]
        np.testing.assert_allclose(got["beta"], [uni.params[1], *multi.params[2:]], atol=1e-8)
        np.testing.assert_allclose(got["std_err"], [uni.bse[1], *multi.bse[2:]], atol=1e-8)
        np.testing.assert_allclose(
            got["r_squared"], [uni.rsquared] + [multi.rsquared] * 6, atol=1e-8
        )
        spy = x["Market"].to_numpy()
        cov_beta = np.cov(y[ok], spy)[0, 1] / np.var(spy, ddof=1)
        assert got.loc["Market", "beta"] == pytest.approx(cov_beta, abs=1e-12)


def test_one_batched_solve_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    complete, masked = factors._multivariate, factors._multivariate_masked

    def count_complete(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        calls.append(("complete", y.shape[1]))
        return complete(x, y)

    def count_masked(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        calls.append(("masked", y.shape[1]))
        return masked(x, y, mask)

    monkeypatch.setattr(factors, "_multivariate", count_complete)
    monkeypatch.setattr(factors, "_multivariate_masked", count_masked)
    r = _synthetic_returns()
    rolling_factor_betas(r[STOCKS], r[ETFS], r.index[-5:])
    assert calls == [("complete", len(STOCKS))] * 5
    calls.clear()
    assets, etfs = _with_gaps()
    rolling_factor_betas(assets, etfs, assets.index[-1:])
    # the 4 complete symbols in one solve, the 4 with gaps (3 patterns) in one batched solve
    assert calls == [("complete", 4), ("masked", 4)]


def test_too_few_observations_and_gaps_give_reasons() -> None:
    assets, etfs = _with_gaps()
    assets = assets.copy()
    assets.iloc[:-12, 0] = np.nan  # 12 observations left
    assets["EMPTY"] = np.nan
    etfs = etfs.copy()
    etfs.iloc[-2, 3] = np.nan  # one missing VUG return: left out of the style regression only
    out = rolling_factor_betas(assets, etfs, [assets.index[-1]]).set_index(["symbol", "factor"])
    short = out.loc[assets.columns[0]]
    assert short["beta"].isna().all()
    assert short.loc["Market", "n_obs"] == 12 and (short.loc[STYLE_FACTORS, "n_obs"] == 11).all()
    assert short.loc["Market", "reason"] == "only 12 observations (< 20)"
    assert (short.loc[STYLE_FACTORS, "reason"] == "only 11 observations (< 20)").all()
    assert (out.loc["EMPTY", "reason"] == "only 0 observations (< 20)").all()
    full = out.loc[assets.columns[6]]
    assert full.loc["Market", "n_obs"] == 60 and (full.loc[STYLE_FACTORS, "n_obs"] == 59).all()
    assert full["reason"].isna().all()
    gappy = out.loc[assets.columns[1], "n_obs"]
    assert gappy["Market"] == 57 and gappy["Momentum"] == 56
    early = rolling_factor_betas(assets, etfs, [assets.index[9], assets.index[30]])
    assert early.loc[early["trade_date"] == assets.index[9].date(), "reason"].notna().all()
    started = early[(early["trade_date"] == assets.index[30].date()) & (early["symbol"] == "R06")]
    assert (started["n_obs"] == 31).all() and started["beta"].notna().all()


def test_end_date_without_factor_returns_and_argument_checks() -> None:
    assets, etfs = _with_gaps()
    saturday = date(2024, 12, 28)
    out = rolling_factor_betas(assets, etfs, [saturday])
    assert out["beta"].isna().all()
    assert (out["reason"] == "no factor returns on 2024-12-28").all()
    with pytest.raises(ValueError, match="min_obs"):
        rolling_factor_betas(assets, etfs, [saturday], min_obs=5)
    with pytest.raises(ValueError, match="window"):
        rolling_factor_betas(assets, etfs, [saturday], window=30, min_obs=40)
    with pytest.raises(KeyError, match="QUAL"):
        rolling_factor_betas(assets, etfs.drop(columns="QUAL"), [saturday])


def test_collinear_spreads_null_styles_but_keep_market() -> None:
    assets, etfs = _with_gaps()
    etfs = etfs.copy()
    etfs["VUG"] = etfs["SPY"]  # Growth spread identically zero
    out = rolling_factor_betas(assets, etfs, [assets.index[-1]])
    market = out[out["factor"] == "Market"]
    styles = out[out["factor"] != "Market"]
    assert market["beta"].notna().sum() > 0
    assert styles["beta"].isna().all()
    assert styles["reason"].str.contains("collinear").all()


def test_spread_design_is_well_conditioned() -> None:
    r = _synthetic_returns().loc["2024"]
    cond = design_condition_numbers(r[ETFS])
    assert cond["raw"] > 10 and cond["spread"] < 3


# Recovery of planted betas. Noise levels of the synthetic market: idiosyncratic 1-2 %/day,
# SPY 1 %/day, style spreads 0.3-0.5 %/day. Standard error of a beta ~ resid sd / (regressor
# sd * sqrt(n)): Market ~0.016/(0.010 sqrt n), styles ~0.015/(0.004 sqrt n). Expected SEs:
#   n = 60: Market 0.21, styles 0.55;  n = 250: 0.10, 0.26;  n = 1000: 0.05, 0.13
# (the measured mean reported std_err). The absolute tolerances below are about 4 expected SEs
# and apply to the 33 tickers at the last end date; over all 250 (overlapping) windows only the
# calibration of the z-scores is checked, since the maximum of ~50,000 draws is not bounded by 4.
RECOVERY_TOLERANCE = {60: (0.85, 2.2), 250: (0.4, 1.05), 1000: (0.2, 0.5)}


@pytest.mark.parametrize("window", [60, 250, 1000])
def test_recovers_planted_betas(window: int) -> None:
    r = _synthetic_returns()
    ends = r.index[-250:]
    out = rolling_factor_betas(r[STOCKS], r[ETFS], ends, window=window)
    planted = SyntheticMarket().planted_betas(STOCKS).stack().rename("planted")
    out = out.join(planted, on=["symbol", "factor"])
    assert out["beta"].notna().all() and (out["n_obs"] == window).all()
    err = out["beta"] - out["planted"]
    z = err / out["std_err"]
    # The reported standard errors are calibrated: z-scores behave like t(n - 8) draws.
    assert 0.85 < np.sqrt((z**2).mean()) < 1.15
    assert z.abs().quantile(0.99) < 3.3
    assert z.abs().max() < 6
    market_tol, style_tol = RECOVERY_TOLERANCE[window]
    last = out[out["trade_date"] == ends[-1].date()]
    last_err = (last["beta"] - last["planted"]).abs()
    is_market = last["factor"] == "Market"
    assert last_err[is_market].max() < market_tol
    assert last_err[~is_market].max() < style_tol
    if window >= 250:  # the cross-section of recovered style betas tracks the planted one
        styles = last[~is_market]
        assert np.corrcoef(styles["beta"], styles["planted"])[0, 1] > 0.75


def test_factor_etfs_recover_their_own_definition() -> None:
    r = _synthetic_returns()
    out = rolling_factor_betas(r[ETFS], r[ETFS], r.index[-1:], window=250)
    got = out.pivot(index="symbol", columns="factor", values="beta")[FACTOR_NAMES]
    planted = SyntheticMarket().planted_betas(ETFS)
    np.testing.assert_allclose(got.loc[ETFS, STYLE_FACTORS], planted[STYLE_FACTORS], atol=1e-9)
    # Univariate market beta = 1 + sample Cov(style, SPY) / Var(SPY): sd ~0.4 / sqrt(250) = 0.025
    np.testing.assert_allclose(got.loc[ETFS, "Market"], 1.0, atol=0.1)
    assert got.loc["SPY", "Market"] == pytest.approx(1.0, abs=1e-9)


def test_flat_spy_window_gives_reasons() -> None:
    assets, etfs = _with_gaps()
    etfs = etfs.copy()
    etfs.iloc[-60:] = 0.001  # every ETF flat: SPY has no variance, spreads are all zero
    out = rolling_factor_betas(assets, etfs, [assets.index[-1]])
    assert out["beta"].isna().all()
    eligible = out[out["n_obs"] >= 20]
    assert (eligible["reason"] == "SPY returns do not vary in the window").all()


# --- each factor needs only its own ETFs (issue 9, defect 7) ----------------------------------


def test_one_missing_style_bar_does_not_move_market_betas() -> None:
    r = _synthetic_returns().iloc[-120:]
    ends = r.index[-40:]
    base = rolling_factor_betas(r[STOCKS], r[ETFS], ends)
    etfs = r[ETFS].copy()
    etfs.iloc[-30, ETFS.index("MTUM")] = np.nan
    gap = rolling_factor_betas(r[STOCKS], etfs, ends)
    is_market = base["factor"] == "Market"
    pd.testing.assert_frame_equal(base[is_market], gap[is_market])
    # The styles lose that row (and only in the windows that contain it).
    assert (gap.loc[~is_market, "n_obs"] <= base.loc[~is_market, "n_obs"]).all()
    assert gap.loc[~is_market, "beta"].notna().all()


def test_style_etf_without_history_nulls_only_its_style() -> None:
    assets, etfs = _with_gaps()
    etfs = etfs.copy()
    etfs["QUAL"] = np.nan
    end_pos = len(assets) - 1
    out = rolling_factor_betas(assets, etfs, [assets.index[end_pos]]).set_index(
        ["symbol", "factor"]
    )
    full = rolling_factor_betas(assets, _with_gaps()[1], [assets.index[end_pos]])
    full = full.set_index(["symbol", "factor"])
    quality = out.xs("Quality", level="factor")
    assert quality["beta"].isna().all()
    assert (quality["reason"] == "no returns for QUAL in the window").all()
    market = out.xs("Market", level="factor")
    pd.testing.assert_frame_equal(market, full.xs("Market", level="factor"))
    # The other styles: the spread regression without the QUAL spread, as statsmodels has it.
    others = [s for s in STYLE_FACTORS if s != "Quality"]
    design = spread_design(_with_gaps()[1]).iloc[end_pos - 59 : end_pos + 1][["Market", *others]]
    for symbol in assets.columns:
        y = assets[symbol].iloc[end_pos - 59 : end_pos + 1]
        ok = y.notna().to_numpy()
        rows = out.loc[symbol].loc[others]
        if ok.sum() < 20:
            assert rows["beta"].isna().all()
            continue
        fit = sm.OLS(y[ok].to_numpy(), sm.add_constant(design[ok].to_numpy())).fit()
        np.testing.assert_allclose(rows["beta"], fit.params[2:], atol=1e-8)
        np.testing.assert_allclose(rows["std_err"], fit.bse[2:], atol=1e-8)
        assert (rows["n_obs"] == ok.sum()).all() and rows["reason"].isna().all()


def test_spy_without_history_explains_itself() -> None:
    assets, etfs = _with_gaps()
    etfs = etfs.copy()
    etfs["SPY"] = np.nan
    out = rolling_factor_betas(assets, etfs, [assets.index[-1]])
    assert out["beta"].isna().all()
    assert (out["reason"] == "no returns for SPY in the window").all()


def _with_tlt() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Assets with a planted rate beta: asset + b x TLT, and TLT with a few missing days."""
    assets, etfs = _with_gaps()
    rng = np.random.default_rng(11)
    tlt = pd.Series(rng.normal(0.0, 0.009, len(etfs)), index=etfs.index)
    planted = pd.Series(np.linspace(-0.8, 0.8, assets.shape[1]), index=assets.columns)
    assets = assets + np.outer(tlt, planted)
    tlt.iloc[[100, 105, 118]] = np.nan
    return assets, etfs.assign(TLT=tlt), planted


def test_rates_beta_is_the_univariate_beta_to_tlt() -> None:
    assets, etfs, planted = _with_tlt()
    end = assets.index[-1]
    out = rolling_factor_betas(assets, etfs, [end]).set_index(["symbol", "factor"])
    assert out.index.get_level_values("factor").unique().tolist() == [*FACTOR_NAMES, "Rates"]
    tlt = etfs["TLT"].iloc[-60:]
    for symbol in assets.columns:
        y = assets[symbol].iloc[-60:]
        ok = (y.notna() & tlt.notna()).to_numpy()
        got = out.loc[(symbol, "Rates")]
        assert got["n_obs"] == ok.sum()
        if ok.sum() < 20:
            assert np.isnan(got["beta"]) and got["reason"].startswith("only")
            continue
        fit = sm.OLS(y[ok].to_numpy(), sm.add_constant(tlt[ok].to_numpy())).fit()
        cov_beta = np.cov(y[ok], tlt[ok])[0, 1] / np.var(tlt[ok], ddof=1)
        assert got["beta"] == pytest.approx(cov_beta, abs=1e-12)
        assert got["std_err"] == pytest.approx(fit.bse[1], abs=1e-10)
        assert got["r_squared"] == pytest.approx(fit.rsquared, abs=1e-10)
    rates = out.xs("Rates", level="factor")
    recovered = rates.dropna(subset=["beta"])
    z = (recovered["beta"] - planted[recovered.index]) / recovered["std_err"]
    assert len(recovered) >= 7 and (z.abs() < 4).all()  # the planted rate betas, within 4 SE
    # TLT does not touch the other factors, and without a TLT column there is no Rates row.
    without = rolling_factor_betas(assets, etfs.drop(columns="TLT"), [end])
    assert "Rates" not in set(without["factor"])
    pd.testing.assert_frame_equal(
        out.drop(index="Rates", level="factor"), without.set_index(["symbol", "factor"])
    )
    etfs_empty = etfs.assign(TLT=np.nan)
    empty = rolling_factor_betas(assets, etfs_empty, [end])
    assert (
        empty.loc[empty["factor"] == "Rates", "reason"] == "no returns for TLT in the window"
    ).all()


# --- input validation (issue 9, defect 14) -----------------------------------------------------


def test_tz_aware_dates_raise_everywhere() -> None:
    """tz-aware dates once gave all-null betas with the reason "only 0 observations"."""
    from sigmasight_pipeline.analytics.risk import rolling_risk_metrics

    assets, etfs = _with_gaps()
    end = assets.index[-1]
    aware = {"asset_returns": assets.tz_localize("UTC"), "factor_returns": etfs.tz_localize("UTC")}
    with pytest.raises(ValueError, match="asset_returns index: expected tz-naive dates"):
        rolling_factor_betas(aware["asset_returns"], etfs, [end])
    with pytest.raises(ValueError, match="factor_returns index: expected tz-naive dates"):
        rolling_factor_betas(assets, aware["factor_returns"], [end])
    with pytest.raises(ValueError, match="end_dates: expected tz-naive dates"):
        rolling_factor_betas(assets, etfs, [pd.Timestamp(end).tz_localize("UTC")])
    with pytest.raises(ValueError, match="expected tz-naive dates"):
        rolling_risk_metrics(aware["asset_returns"], etfs["SPY"], [end], 0.0)


def test_infinite_and_impossible_returns_raise_naming_where() -> None:
    assets, etfs = _with_gaps()
    end = assets.index[-1]
    bad = assets.copy()
    bad.iloc[-3, 2] = np.inf
    day = assets.index[-3].strftime("%Y-%m-%d")
    with pytest.raises(
        ValueError, match=rf"asset_returns has 1 infinite value\(s\) at \({day}, R02\)"
    ):
        rolling_factor_betas(bad, etfs, [end])
    bad_etfs = etfs.copy()
    bad_etfs.iloc[-3, 1] = -np.inf
    with pytest.raises(ValueError, match=rf"factor_returns .* \({day}, MTUM\)"):
        rolling_factor_betas(assets, bad_etfs, [end])
    bad.iloc[-3, 2] = -1.5
    with pytest.raises(ValueError, match=rf"below -100 % at \({day}, R02\)"):
        rolling_factor_betas(bad, etfs, [end])
    with pytest.raises(ValueError, match="duplicate dates"):
        rolling_factor_betas(pd.concat([assets, assets.iloc[-1:]]), etfs, [end])
