"""Factor-vs-specific decomposition: the factor model directly, Euler sums, finite differences."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from sigmasight_pipeline.analytics.decomposition import (
    CONTRIBUTION_COLUMNS,
    DECOMPOSITION_COLUMNS,
    RATES_FACTOR,
    SPECIFIC,
    factor_covariance,
    factor_regressors,
    risk_decomposition,
    specific_variances,
)
from sigmasight_pipeline.analytics.factors import FACTOR_NAMES, rolling_factor_betas
from sigmasight_pipeline.calendar import sessions
from sigmasight_pipeline.resources.market_data import FACTOR_ETFS
from sigmasight_pipeline.resources.synthetic import SyntheticMarket

FACTORS = [*FACTOR_NAMES, RATES_FACTOR]
SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]


@cache
def _world() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """100 sessions of 8 factor regressors and 5 assets with planted betas (some gaps)."""
    rng = np.random.default_rng(21)
    days = pd.bdate_range("2024-01-02", periods=100)
    f = pd.DataFrame(rng.normal(0, 0.008, (100, 8)), index=days, columns=FACTORS)
    f.iloc[:, 0] *= 1.5
    f.iloc[40, 3] = np.nan  # a missing regressor row
    b = rng.normal(0, 0.5, (5, 8))
    b[:, 0] += 1.0
    noise = rng.normal(0, 0.012, (100, 5)) * np.array([1.0, 0.5, 2.0, 1.0, 1.5])
    r = pd.DataFrame(f.fillna(0).to_numpy() @ b.T + noise, index=days, columns=SYMBOLS)
    r.iloc[70:75, 2] = np.nan
    r.iloc[:90, 4] = np.nan  # EEE: 10 returns only
    return f, r, b


def _ols_betas(f: pd.DataFrame, r: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """Joint OLS betas (statsmodels) over the 60-session window, long format."""
    window = slice(f.index.get_loc(day) - 59, f.index.get_loc(day) + 1)
    rows = []
    for symbol in SYMBOLS:
        data = pd.concat([r[symbol].iloc[window], f.iloc[window]], axis=1).dropna()
        if len(data) < 20:
            rows += [(day, symbol, k, np.nan) for k in FACTORS]
            continue
        fit = sm.OLS(data[symbol], sm.add_constant(data[FACTORS])).fit()
        rows += [(day, symbol, k, fit.params[k]) for k in FACTORS]
    return pd.DataFrame(rows, columns=["trade_date", "symbol", "factor", "beta"])


def test_specific_variance_is_the_ols_residual_variance() -> None:
    f, r, _ = _world()
    day = f.index[-1]
    betas = _ols_betas(f, r, day)
    out = specific_variances(r, f, betas).set_index("symbol")
    window = slice(40, 100)
    for symbol in SYMBOLS[:4]:
        data = pd.concat([r[symbol].iloc[window], f.iloc[window]], axis=1).dropna()
        fit = sm.OLS(data[symbol], sm.add_constant(data[FACTORS])).fit()
        assert out.loc[symbol, "specific_variance"] == pytest.approx(fit.mse_resid, rel=1e-9)
        assert out.loc[symbol, "n_obs"] == len(data)
    assert np.isnan(out.loc["EEE", "specific_variance"])
    assert out.loc["EEE", "reason"] == "no beta for " + str(FACTORS)


def test_specific_variance_uses_the_betas_given() -> None:
    f, r, b = _world()
    day = f.index[-1]
    planted = pd.DataFrame(
        [(day, s, k, b[i, j]) for i, s in enumerate(SYMBOLS) for j, k in enumerate(FACTORS)],
        columns=["trade_date", "symbol", "factor", "beta"],
    )
    out = specific_variances(r, f, planted).set_index("symbol")
    rows = f.iloc[40:].dropna().index
    resid = r.loc[rows, "BBB"] - f.loc[rows].to_numpy() @ b[1]
    assert out.loc["BBB", "specific_variance"] == pytest.approx(
        resid.var(ddof=1 + len(FACTORS)), rel=1e-12
    )
    assert np.isnan(out.loc["EEE", "specific_variance"])
    assert out.loc["EEE", "reason"] == "10 observations < 20"


def test_factor_covariance_is_the_listwise_sample_covariance() -> None:
    f, _, _ = _world()
    day = f.index[-1]
    cov = factor_covariance(f, [day, pd.Timestamp("2030-01-02")])
    today = cov[cov["trade_date"] == day].pivot(
        index="factor_a", columns="factor_b", values="covariance"
    )
    expected = f.iloc[-60:].dropna().cov()
    pd.testing.assert_frame_equal(
        today.loc[FACTORS, FACTORS], expected, check_names=False, rtol=1e-12
    )
    assert (cov.loc[cov["trade_date"] == day, "n_obs"] == 59).all()
    assert cov.loc[cov["trade_date"] != day, "reason"].eq("no regressor row for the end date").all()


def _inputs() -> tuple[pd.DataFrame, ...]:
    f, r, _ = _world()
    day = f.index[-1]
    betas = _ols_betas(f, r, day)
    cov = factor_covariance(f, [day])
    spec = specific_variances(r, f, betas)
    exposures = pd.DataFrame(
        {
            "trade_date": day,
            "position_id": [1, 2, 3, 4, 5, 6, 7],
            "portfolio_id": [10, 10, 10, 10, 20, 20, 20],
            "underlying": ["AAA", "AAA", "BBB", "CCC", "DDD", "BBB", "EEE"],
            "exposure": [120_000.0, -30_000.0, -80_000.0, 50_000.0, 70_000.0, 20_000.0, 5_000.0],
        }
    )
    return exposures, betas, cov, spec


def _direct_variance(exposures, betas, cov, spec, portfolio_id) -> float:
    """e' (B Sigma_f B' + diag(s)) e on the portfolio's covered underlyings, built densely."""
    rows = exposures[exposures["portfolio_id"] == portfolio_id]
    e = rows.groupby("underlying")["exposure"].sum()
    s = spec.set_index("symbol")["specific_variance"].reindex(e.index)
    e = e[s.notna()]
    b = betas.pivot(index="symbol", columns="factor", values="beta").loc[e.index, FACTORS]
    sigma_f = cov.pivot(index="factor_a", columns="factor_b", values="covariance")
    sigma_f = sigma_f.loc[FACTORS, FACTORS].to_numpy()
    big = b.to_numpy() @ sigma_f @ b.to_numpy().T + np.diag(s[e.index].to_numpy())
    return float(e.to_numpy() @ big @ e.to_numpy())


def test_decomposition_equals_the_factor_model_quadratic_form() -> None:
    exposures, betas, cov, spec = _inputs()
    result = risk_decomposition(exposures, betas, cov, spec)
    assert list(result.portfolios.columns) == list(DECOMPOSITION_COLUMNS)
    assert list(result.positions.columns) == list(CONTRIBUTION_COLUMNS)
    for portfolio_id in (10, 20):
        rows = result.portfolios[result.portfolios["portfolio_id"] == portfolio_id]
        assert rows["component"].tolist() == [*FACTORS, SPECIFIC]
        direct = _direct_variance(exposures, betas, cov, spec, portfolio_id) * 252
        assert rows["variance_usd2"].sum() == pytest.approx(direct, rel=1e-12)
        sigma = rows["total_vol_usd"].iloc[0]
        assert sigma == pytest.approx(np.sqrt(direct), rel=1e-12)
        assert rows["vol_contribution_usd"].sum() == pytest.approx(sigma, rel=1e-12)
        assert rows["share_of_variance"].sum() == pytest.approx(1.0, rel=1e-12)
        positions = result.positions[result.positions["portfolio_id"] == portfolio_id]
        assert positions["component_vol_usd"].sum() == pytest.approx(sigma, rel=1e-12)
        assert positions["share_of_risk"].sum() == pytest.approx(1.0, rel=1e-12)
        np.testing.assert_allclose(
            positions["factor_vol_usd"] + positions["specific_vol_usd"],
            positions["component_vol_usd"],
            rtol=1e-12,
        )
        # The specific row is sum e^2 s: check it on its own.
        e = exposures[exposures["portfolio_id"] == portfolio_id]
        e = e.groupby("underlying")["exposure"].sum()
        s = spec.set_index("symbol")["specific_variance"].reindex(e.index).dropna()
        specific_row = rows.set_index("component").loc[SPECIFIC, "variance_usd2"]
        assert specific_row == pytest.approx((e[s.index] ** 2 * s).sum() * 252, rel=1e-12)


def test_factor_exposures_are_b_transpose_e() -> None:
    exposures, betas, cov, spec = _inputs()
    rows = risk_decomposition(exposures, betas, cov, spec).portfolios
    ten = rows[(rows["portfolio_id"] == 10) & (rows["component"] != SPECIFIC)]
    b = betas.pivot(index="symbol", columns="factor", values="beta")
    e = pd.Series({"AAA": 90_000.0, "BBB": -80_000.0, "CCC": 50_000.0})
    expected = (b.loc[e.index, FACTORS].T @ e).to_numpy()
    np.testing.assert_allclose(ten["exposure_usd"].to_numpy(), expected, rtol=1e-12)


def test_marginal_matches_finite_differences() -> None:
    exposures, betas, cov, spec = _inputs()
    base = risk_decomposition(exposures, betas, cov, spec)
    sigma = base.portfolios.groupby("portfolio_id")["total_vol_usd"].first()
    for i in range(len(exposures)):
        row = base.positions.iloc[i]
        if np.isnan(row["marginal_vol_usd"]):
            continue
        h = 1.0
        up, down = exposures.copy(), exposures.copy()
        up.loc[i, "exposure"] += h
        down.loc[i, "exposure"] -= h
        s_up = risk_decomposition(up, betas, cov, spec).portfolios
        s_down = risk_decomposition(down, betas, cov, spec).portfolios
        pid = row["portfolio_id"]
        numeric = (
            s_up.loc[s_up["portfolio_id"] == pid, "total_vol_usd"].iloc[0]
            - s_down.loc[s_down["portfolio_id"] == pid, "total_vol_usd"].iloc[0]
        ) / (2 * h)
        assert row["marginal_vol_usd"] == pytest.approx(numeric, rel=1e-6)
        assert sigma[pid] > 0


def test_uncovered_positions_are_left_out_and_reported() -> None:
    exposures, betas, cov, spec = _inputs()
    positions = risk_decomposition(exposures, betas, cov, spec).positions.set_index("position_id")
    assert np.isnan(positions.loc[7, "marginal_vol_usd"])
    assert positions.loc[7, "reason"] == f"no beta for {FACTORS}"
    portfolio = risk_decomposition(exposures, betas, cov, spec).portfolios
    twenty = portfolio[portfolio["portfolio_id"] == 20].iloc[0]
    assert twenty["coverage"] == pytest.approx(90_000 / 95_000)
    assert twenty["reason"] == "1 position(s) without betas/specific variance left out"


def test_annualization_one_gives_daily_units() -> None:
    exposures, betas, cov, spec = _inputs()
    annual = risk_decomposition(exposures, betas, cov, spec).portfolios
    daily = risk_decomposition(exposures, betas, cov, spec, annualization=1).portfolios
    np.testing.assert_allclose(annual["variance_usd2"], daily["variance_usd2"] * 252, rtol=1e-12)
    np.testing.assert_allclose(
        annual["total_vol_usd"], daily["total_vol_usd"] * np.sqrt(252), rtol=1e-12
    )


def test_wired_to_rolling_factor_betas_on_the_synthetic_market() -> None:
    """Betas from analytics.factors (no Rates: the model takes the factors that carry betas)."""
    days = sessions("2024-01-01", "2024-07-31")
    etfs = list(FACTOR_ETFS.values())
    stocks = ["AAPL", "JPM", "XOM", "R01"]
    wanted = pd.DataFrame(
        [(t, d.date()) for t in etfs + stocks for d in days], columns=["symbol", "trade_date"]
    )
    bars = SyntheticMarket().daily_bars(wanted)
    closes = bars.pivot(index="trade_date", columns="symbol", values="close")
    closes.index = pd.DatetimeIndex(closes.index)
    returns = closes.pct_change().iloc[1:]
    day = returns.index[-1]
    regressors = factor_regressors(returns[etfs])
    assert list(regressors.columns) == FACTOR_NAMES  # no TLT column: no Rates regressor
    betas = rolling_factor_betas(returns[stocks], returns[etfs], [day])
    cov = factor_covariance(regressors, [day])
    spec = specific_variances(returns[stocks], regressors, betas)
    assert spec["specific_variance"].notna().all()
    exposures = pd.DataFrame(
        {"trade_date": day, "position_id": range(4), "portfolio_id": 1, "underlying": stocks,
         "exposure": [50_000.0, -20_000.0, 30_000.0, 10_000.0]}
    )  # fmt: skip
    result = risk_decomposition(exposures, betas, cov, spec)
    rows = result.portfolios
    assert rows["component"].tolist() == [*FACTOR_NAMES, SPECIFIC]
    sigma = rows["total_vol_usd"].iloc[0]
    assert rows["vol_contribution_usd"].sum() == pytest.approx(sigma, rel=1e-12)
    assert result.positions["component_vol_usd"].sum() == pytest.approx(sigma, rel=1e-12)
    # The model volatility is close to the realized dollar volatility of the same book.
    realized = (returns[stocks].iloc[-60:] @ exposures["exposure"].to_numpy()).std() * np.sqrt(252)
    assert sigma == pytest.approx(realized, rel=0.2)


def test_euler_check_counts_every_failing_portfolio_day_and_names_the_first() -> None:
    """The blocking Euler check over chunks: every failing portfolio-day is counted, only the
    first few are named (the list does not grow with the book), and a sound chunk passes."""
    from types import SimpleNamespace

    from sigmasight_pipeline.assets.decomposition import EulerSums
    from sigmasight_pipeline.checks import SHOWN_KEYS

    def chunk(first_id: int, n: int, broken: bool) -> SimpleNamespace:
        ids = np.arange(first_id, first_id + n)
        day = pd.Timestamp("2026-11-20")
        ports = pd.DataFrame({"trade_date": day, "portfolio_id": ids, "total_vol_usd": 100.0,
                              "vol_contribution_usd": 100.0})  # fmt: skip
        positions = pd.DataFrame({"trade_date": day, "portfolio_id": ids,
                                  "component_vol_usd": 90.0 if broken else 100.0})  # fmt: skip
        return SimpleNamespace(portfolios=ports, positions=positions)

    sound = EulerSums()
    sound(chunk(1, 5, broken=False))
    assert sound.result().passed

    sums = EulerSums()
    for k in range(3):
        sums(chunk(1 + 8 * k, 8, broken=True))
    sums(chunk(100, 5, broken=False))
    result = sums.result()
    meta = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    assert not result.passed
    assert (meta["rows_checked"], meta["rows_failing"]) == (29, 24)
    assert len(sums.failing) == SHOWN_KEYS
