"""Volatility of symbols and portfolios: realized, EWMA, HAR-RV forecast, percentile, ex-ante.

Pure numpy/pandas; no Dagster, no SQL. One function serves symbols and portfolios alike: it
takes a sessions x series frame of simple daily returns (a symbol's close-to-close returns, or
a portfolio's ``daily_pnl / previous total_value``) and returns one row per (end date, series).

Conventions
-----------
* Windows count trading days: a window of ``w`` sessions is the last ``w`` rows of the returns
  frame at or before the end date, inclusive. Missing returns (NaN) are skipped, never zero.
* Annualization x sqrt(252) (variances x 252).
* Realized vol (``vol_21d``, ``vol_63d``, ``vol_252d``): sample standard deviation (ddof=1) of
  the non-missing returns in the window x sqrt(252); it needs at least
  ``ceil(min_coverage x w)`` observations (14, 42 and 168 with the default 2/3), else NaN.
* EWMA (``vol_ewma``, RiskMetrics 1996, lambda = 0.94, zero mean): the one-step-ahead forecast
  after the end date's return, sigma2_{T+1} = lam sigma2_T + (1 - lam) r_T^2, run over the last
  252 sessions and started, as the ``arch`` package does, from the backcast
  sum_i w_i r_i^2 over the first min(75, n) returns with w_i proportional to lam^i. A missing
  return leaves the variance unchanged (no update that day). Needs 21 observations.
* HAR-RV (``vol_har_21d``, Corsi 2009, "A simple approximate long-memory model of realized
  volatility", J. Financial Econometrics 7(2)): the daily realized variance is proxied by the
  squared daily return RV_t = r_t^2 (no intraday data here). Per series, OLS with intercept of
  RV_{t+1} on RV_t, mean(RV_{t-4..t}) and mean(RV_{t-21..t}) over the last 252 sessions (so
  230 regression rows on complete data; the lags stay inside the window). The fitted model is
  iterated 21 steps ahead (forecasts feed back into the lags, as ``arch``'s HARX analytic
  forecast does), and vol_har_21d = sqrt(252 x mean of the 21 daily variance forecasts). A
  missing return inside a lag average is skipped (mean of the present ones); a regression row
  needs its target and its day-t return. Needs 120 regression rows and a return on the end
  date; a non-positive forecast variance is NaN with a reason. Batched over series: one
  stacked QR.
* ``vol_percentile_252d``: the percentage (0-100) of the trailing-21-session vols over the
  last 252 sessions (each computed like ``vol_21d``) that are <= today's (scipy's
  ``percentileofscore(kind="weak")``); needs today's value and 168 defined values.
* ``n_obs``: non-missing returns in the 252-session window. ``reason`` joins, per measure that
  is NaN, why (too few observations, no return on the end date, ...).

Ex-ante volatility (`ex_ante_volatility`): sqrt(e' S e) x sqrt(252) on a portfolio's dollar
exposures e per underlying (options delta-adjusted) and the 60-session sample covariance S of
the underlyings' returns, the same estimator as the parametric VaR of `analytics.risk`
(listwise-complete rows of the exposed symbols, ddof=1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.risk import (
    ANNUALIZATION,
    _date_index,
    _require_columns,
    _sorted_wide,
    joined_columns,
    stack_by_day,
    stacked_exposure_sigmas,
)

__all__ = [
    "EWMA_LAMBDA",
    "EX_ANTE_COLUMNS",
    "HAR_HORIZON",
    "HAR_LAGS",
    "HISTORY_SESSIONS",
    "VOLATILITY_COLUMNS",
    "VOL_WINDOWS",
    "ewma_variance_forecast",
    "ex_ante_volatility",
    "har_rv_forecast",
    "volatility_measures",
]

VOL_WINDOWS = (21, 63, 252)
EWMA_LAMBDA = 0.94
EWMA_BACKCAST_OBS = 75  # arch's EWMAVariance.backcast
EWMA_MIN_OBS = 21
HAR_LAGS = (1, 5, 22)
HAR_HORIZON = 21
HAR_MIN_ROWS = 120
PERCENTILE_WINDOW = 252
# Rows of returns a caller must load before the first end date (percentile: 252 values of a
# 21-session vol, so 252 + 20 rows).
HISTORY_SESSIONS = PERCENTILE_WINDOW + VOL_WINDOWS[0] - 1
VOLATILITY_COLUMNS = (
    "vol_21d", "vol_63d", "vol_252d", "vol_ewma", "vol_har_21d", "vol_percentile_252d",
    "n_obs", "reason",
)  # fmt: skip
EX_ANTE_COLUMNS = (
    "trade_date", "portfolio_id", "vol_ex_ante_usd", "vol_ex_ante", "n_obs", "reason",
)  # fmt: skip


def _min_obs(window: int, min_coverage: float) -> int:
    return max(2, math.ceil(min_coverage * window - 1e-9))


def _sample_std(block: np.ndarray) -> np.ndarray:
    """Column-wise sample std (ddof=1) of the non-NaN values; NaN below two values."""
    valid = np.isfinite(block)
    n = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, block, 0.0).sum(axis=0) / n
        dev = np.where(valid, block - mean, 0.0)
        var = np.einsum("ij,ij->j", dev, dev) / (n - 1)
    return np.where(n >= 2, np.sqrt(var), np.nan)


def ewma_variance_forecast(block: np.ndarray, lam: float = EWMA_LAMBDA) -> np.ndarray:
    """RiskMetrics one-step variance forecast after the last row, per column (daily units).

    ``block`` is rows x series of returns (NaN = missing, skipped without an update). The
    recursion starts from arch's backcast (see the module docstring); in closed form
    sigma2_{n+1} = lam^n sigma2_0 + (1 - lam) sum_j lam^(n-j) r_j^2 over the n present returns.
    NaN for a column with no returns.
    """
    x = np.asarray(block, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    valid = np.isfinite(x)
    sq = np.where(valid, x * x, 0.0)
    n = valid.sum(axis=0)
    rank = np.cumsum(valid, axis=0) - 1  # position of each present return among the present
    after = n - 1 - rank  # present returns after this one
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        tau = np.minimum(EWMA_BACKCAST_OBS, n)
        in_backcast = valid & (rank < tau)
        w0 = np.where(in_backcast, EWMA_LAMBDA ** np.where(in_backcast, rank, 0), 0.0)
        backcast = (w0 * sq).sum(axis=0) / w0.sum(axis=0)
        weights = np.where(valid, (1.0 - lam) * lam ** np.where(valid, after, 0), 0.0)
        forecast = lam**n * backcast + (weights * sq).sum(axis=0)
    return np.where(n > 0, forecast, np.nan)


def _row_nanmean(a: np.ndarray) -> np.ndarray:
    """`np.nanmean(a, axis=1)`, computed the same way, without its warning for an all-NaN row
    (NaN under the caller's `np.errstate`; `warnings.catch_warnings` is not thread-safe)."""
    present = ~np.isnan(a)
    return np.where(present, a, 0.0).sum(axis=1) / present.sum(axis=1)


def _har_design(rv: np.ndarray) -> tuple[np.ndarray, ...]:
    """Daily, weekly and monthly RV components at every row (NaN-skipping means), L x m each."""
    valid = np.isfinite(rv)
    filled = np.where(valid, rv, 0.0)
    csum = np.vstack([np.zeros((1, rv.shape[1])), np.cumsum(filled, axis=0)])
    ccount = np.vstack([np.zeros((1, rv.shape[1])), np.cumsum(valid, axis=0)])
    comps = [rv]
    for lag in HAR_LAGS[1:]:
        total = csum[lag:] - csum[:-lag]
        count = ccount[lag:] - ccount[:-lag]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / count, np.nan)
        comps.append(np.vstack([np.full((lag - 1, rv.shape[1]), np.nan), mean]))
    return tuple(comps)


def _har_ols(
    regressors: list[np.ndarray], target: np.ndarray, use: np.ndarray, fit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """OLS with intercept of target on the regressors, per column in ``fit``, batched.

    Solves the centred 3 x 3 normal equations per series (the regressors are first scaled by
    the series' mean target, so the system is well conditioned; OLS is equivariant). Returns
    coefficients (m' x 4: intercept, daily, weekly, monthly; NaN where collinear) and the
    collinear mask (m').
    """
    n = use[:, fit].sum(axis=0)
    y = np.where(use[:, fit], target[:, fit], 0.0)
    scale = y.sum(axis=0) / n
    scale = np.where(scale > 0, scale, 1.0)
    y = y / scale
    z = [np.where(use[:, fit], c[:, fit], 0.0) / scale for c in regressors]
    y_mean = y.sum(axis=0) / n
    z_mean = np.stack([c.sum(axis=0) / n for c in z], axis=-1)  # m' x 3
    yc = np.where(use[:, fit], y - y_mean, 0.0)
    zc = np.stack([np.where(use[:, fit], c - z_mean[:, i], 0.0) for i, c in enumerate(z)], -1)
    zt = np.ascontiguousarray(np.moveaxis(zc, 0, 1))  # m' x L' x 3
    gram = np.swapaxes(zt, 1, 2) @ zt  # m' x 3 x 3
    rhs = (np.swapaxes(zt, 1, 2) @ yc.T[:, :, None])[..., 0]
    diag = np.einsum("mii->mi", gram)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.sqrt(diag[:, :, None] * diag[:, None, :])
        cond = np.linalg.cond(np.where(norm > 0, gram / norm, 0.0))
    collinear = ~(diag > 1e-12 * (y * y).sum(axis=0)[:, None]).all(axis=1) | ~(cond < 1e10)
    slopes = np.full(z_mean.shape, np.nan)
    ok = ~collinear
    if ok.any():
        slopes[ok] = np.linalg.solve(gram[ok], rhs[ok][..., None])[..., 0]
    intercept = (y_mean - (slopes * z_mean).sum(axis=1)) * scale  # back to variance units
    return np.column_stack([intercept, slopes]), collinear


def har_rv_forecast(
    block: np.ndarray, horizon: int = HAR_HORIZON, min_rows: int = HAR_MIN_ROWS
) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """HAR-RV forecast of the mean daily variance over the next ``horizon`` sessions.

    ``block`` is rows x series of daily returns (the fit window; NaN = missing). Returns the
    mean forecast daily variance per column (not annualized), the number of regression rows
    used, and a reason per column where the forecast is NaN. See the module docstring.
    """
    x = np.asarray(block, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    n_rows, m = x.shape
    reasons: list[str | None] = [None] * m
    out = np.full(m, np.nan)
    max_lag = HAR_LAGS[-1]
    if n_rows < max_lag + 2:
        return out, np.zeros(m, dtype=int), [f"HAR: {n_rows} sessions < {max_lag + 2}"] * m
    rv = x * x
    rows = slice(max_lag - 1, n_rows - 1)  # regressors at t, target at t + 1
    regressors = [c[rows] for c in _har_design(rv)]  # daily, weekly, monthly: L' x m each
    target = rv[max_lag:]
    use = np.isfinite(target)
    for c in regressors:
        use &= np.isfinite(c)
    used = use.sum(axis=0)
    fit = used >= min_rows
    for j in np.flatnonzero(~fit):
        reasons[j] = f"HAR: {used[j]} regression rows < {min_rows}"
    if fit.any():
        coef, collinear = _har_ols(regressors, target, use, fit)
        cols = np.flatnonzero(fit)
        for j in cols[collinear]:
            reasons[j] = "HAR: regressors are collinear (constant squared returns)"

        # Iterate the fitted model forward, forecasts feeding the lags.
        hist = rv[-max_lag:, fit].T.copy()  # m' x 22, oldest first
        today_missing = ~np.isfinite(hist[:, -1])
        total = np.zeros(hist.shape[0])
        with np.errstate(invalid="ignore"):  # all-NaN lags mean stay NaN
            for _ in range(horizon):
                comps = [hist[:, -lag:] for lag in HAR_LAGS]
                d = comps[0][:, 0]
                w = _row_nanmean(comps[1])
                mo = _row_nanmean(comps[2])
                step = coef[:, 0] + coef[:, 1] * d + coef[:, 2] * w + coef[:, 3] * mo
                total += step
                hist = np.column_stack([hist[:, 1:], step])
        mean_var = total / horizon
        for k, j in enumerate(cols):
            if reasons[j] is not None:
                continue
            if today_missing[k]:
                reasons[j] = "HAR: no return on the end date"
            elif not mean_var[k] > 0:
                reasons[j] = f"HAR: forecast variance {mean_var[k]:.3g} is not positive"
            else:
                out[j] = mean_var[k]
    return out, used, reasons


def volatility_measures(
    returns: pd.DataFrame,
    end_dates: Iterable,
    id_column: str = "symbol",
    lam: float = EWMA_LAMBDA,
    min_coverage: float = 2.0 / 3.0,
) -> pd.DataFrame:
    """Volatility measures per (end date, series) in long format.

    ``returns``: sessions x series simple daily returns (columns: symbols, or portfolio ids),
    NaN where missing; its rows are the trading days windows count, and it must reach
    `HISTORY_SESSIONS` (272) rows before the first end date for complete measures (fewer rows
    just mean fewer observations). ``end_dates``: dates (naive) to report.

    Returns columns ``trade_date``, ``id_column``, then `VOLATILITY_COLUMNS`: vol_21d,
    vol_63d, vol_252d, vol_ewma, vol_har_21d (annualized fractions), vol_percentile_252d
    (0-100), n_obs (returns in the 252-session window) and reason (None when every measure is
    defined). An end date that is not a row of ``returns`` gives NaN with a reason.
    """
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    frame = _sorted_wide(returns, "returns")
    values = frame.to_numpy(dtype=float)
    ids = np.asarray(frame.columns, dtype=object)
    m = len(ids)
    ends = _date_index(end_dates, "end_dates").unique().sort_values()
    short = VOL_WINDOWS[0]
    min_short = _min_obs(short, min_coverage)
    min_pct = _min_obs(PERCENTILE_WINDOW, min_coverage)
    rolling_short = frame.rolling(short, min_periods=min_short).std(ddof=1).to_numpy() * np.sqrt(
        ANNUALIZATION
    )

    parts = []
    for end, pos in zip(ends, frame.index.get_indexer(ends), strict=True):
        cols: dict[str, np.ndarray] = {}
        notes: list[list[str]] = [[] for _ in range(m)]
        if pos < 0:
            for name in VOLATILITY_COLUMNS[:-2]:
                cols[name] = np.full(m, np.nan)
            cols["n_obs"] = np.zeros(m, dtype=int)
            notes = [["no return row for the end date"] for _ in range(m)]
        else:
            _fill_volatility(cols, notes, values, rolling_short, pos, lam, min_coverage, min_pct)
        cols["trade_date"] = np.full(m, np.datetime64(end, "ns"))
        cols[id_column] = ids
        cols["reason"] = np.array([("; ".join(n) if n else None) for n in notes], dtype=object)
        parts.append(cols)
    if not parts:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in VOLATILITY_COLUMNS})
        empty.insert(0, id_column, pd.Series(dtype=object))
        empty.insert(0, "trade_date", pd.Series(dtype="datetime64[ns]"))
        empty["n_obs"] = empty["n_obs"].astype(int)
        empty["reason"] = empty["reason"].astype(object)
        return empty
    return joined_columns(parts, ["trade_date", id_column, *VOLATILITY_COLUMNS])


def _fill_volatility(
    cols: dict[str, np.ndarray],
    notes: list[list[str]],
    values: np.ndarray,
    rolling_short: np.ndarray,
    pos: int,
    lam: float,
    min_coverage: float,
    min_pct: int,
) -> None:
    """Every measure for one end date, vectorized across series (fills ``cols`` and ``notes``)."""
    root = np.sqrt(ANNUALIZATION)
    long_block = values[max(0, pos - VOL_WINDOWS[-1] + 1) : pos + 1]
    for w in VOL_WINDOWS:
        block = values[max(0, pos - w + 1) : pos + 1]
        count = np.isfinite(block).sum(axis=0)
        need = _min_obs(w, min_coverage)
        few = count < need
        cols[f"vol_{w}d"] = np.where(few, np.nan, _sample_std(block) * root)
        for j in np.flatnonzero(few):
            notes[j].append(f"vol_{w}d: {count[j]} obs < {need}")
    count = np.isfinite(long_block).sum(axis=0)
    cols["n_obs"] = count

    few = count < EWMA_MIN_OBS
    cols["vol_ewma"] = np.where(
        few, np.nan, np.sqrt(ewma_variance_forecast(long_block, lam) * ANNUALIZATION)
    )
    for j in np.flatnonzero(few):
        notes[j].append(f"vol_ewma: {count[j]} obs < {EWMA_MIN_OBS}")

    mean_var, _, har_reasons = har_rv_forecast(long_block)
    cols["vol_har_21d"] = np.sqrt(mean_var * ANNUALIZATION)
    for j, reason in enumerate(har_reasons):
        if reason is not None:
            notes[j].append(f"vol_har_21d: {reason.removeprefix('HAR: ')}")

    history = rolling_short[max(0, pos - PERCENTILE_WINDOW + 1) : pos + 1]
    today = rolling_short[pos]
    defined = np.isfinite(history).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = 100.0 * (history <= today).sum(axis=0) / defined
    ok = np.isfinite(today) & (defined >= min_pct)
    cols["vol_percentile_252d"] = np.where(ok, pct, np.nan)
    for j in np.flatnonzero(~ok):
        why = (
            "no vol_21d today" if not np.isfinite(today[j]) else f"{defined[j]} values < {min_pct}"
        )
        notes[j].append(f"vol_percentile_252d: {why}")


def ex_ante_volatility(
    exposures: pd.DataFrame,
    returns: pd.DataFrame,
    portfolio_values: pd.DataFrame | None = None,
    window: int = 60,
    min_obs: int = 20,
) -> pd.DataFrame:
    """Annualized ex-ante volatility of each portfolio's dollar P&L from today's exposures.

    ``exposures``: trade_date, portfolio_id, underlying, exposure (signed dollars; options at
    delta-adjusted exposure on their underlying, e.g. `analytics.exposures.risk_exposures`);
    rows are summed per (trade_date, portfolio_id, underlying). ``returns``: sessions x symbols
    daily returns of the underlyings; the covariance window is its last ``window`` rows at or
    before each trade date. ``portfolio_values``: optional trade_date, portfolio_id,
    total_value (the base of the portfolio's daily return) for the fractional column.

    Returns `EX_ANTE_COLUMNS`: vol_ex_ante_usd = sqrt(252 e'Se) in dollars, vol_ex_ante =
    vol_ex_ante_usd / total_value (comparable with `volatility_measures` on portfolio
    returns; NaN without a value), n_obs = complete rows used, reason. Below ``min_obs``
    complete rows, or with an exposed underlying absent from ``returns``, the vol is NaN.
    Positions with a missing exposure (unpriced) are left out and counted in ``reason``.
    """
    if min_obs < 2 or window < min_obs:
        raise ValueError(f"need 2 <= min_obs <= window, got min_obs={min_obs}, window={window}")
    _require_columns(
        exposures, ("trade_date", "portfolio_id", "underlying", "exposure"), "exposures"
    )
    frame = exposures[["trade_date", "portfolio_id", "underlying", "exposure"]].copy()
    frame["trade_date"] = _date_index(frame["trade_date"], "exposures.trade_date")
    frame["exposure"] = frame["exposure"].astype(float)
    keys = ["trade_date", "portfolio_id"]
    missing = frame["exposure"].isna().groupby([frame[k] for k in keys]).sum()
    frame = frame.dropna(subset=["exposure"])
    frame = frame.groupby([*keys, "underlying"], as_index=False)["exposure"].sum()
    frame = frame.rename(columns={"underlying": "symbol"})
    wide = _sorted_wide(returns, "returns")
    values: dict[tuple, float] = {}
    if portfolio_values is not None:
        _require_columns(
            portfolio_values, ("trade_date", "portfolio_id", "total_value"), "portfolio_values"
        )
        pv = portfolio_values.assign(
            trade_date=_date_index(portfolio_values["trade_date"], "portfolio_values.trade_date")
        )
        values = dict(
            zip(
                zip(pv["trade_date"], pv["portfolio_id"], strict=True),
                pv["total_value"],
                strict=True,
            )
        )

    # Per (day, portfolio) with priced positions: (sigma, complete rows, unknown symbols).
    sigmas: dict[tuple, tuple[float, int, list[str] | None]] = {}
    symbols = frame["symbol"].to_numpy(dtype=object)
    ports = frame["portfolio_id"].to_numpy()
    for stack in stack_by_day(frame, wide, window):
        sigma, n_obs = stacked_exposure_sigmas(stack)
        unknown = stack.exposed_unknown(symbols)
        for k, start in enumerate(stack.starts):
            sigmas[(stack.day, ports[start])] = (float(sigma[k]), int(n_obs[k]), unknown[k])

    rows = []
    missing = missing.sort_index()
    days = missing.index.get_level_values("trade_date")
    positions = dict(zip(days.unique(), wide.index.get_indexer(days.unique()), strict=True))
    for (day, portfolio_id), n_missing in missing.items():
        pos = positions[day]
        notes = [f"{n_missing} position(s) without an exposure left out"] if n_missing else []
        sigma, n = np.nan, 0
        if pos < 0:
            notes.insert(0, "no return row for the trade date")
        elif (day, portfolio_id) not in sigmas:
            # Every position unpriced: the risk is unknown, not zero.
            n = min(pos + 1, window)  # the window's rows, as with no exposed symbol
        else:
            sigma, n, unknown = sigmas[(day, portfolio_id)]
            if unknown:
                sigma = np.nan
                notes.insert(0, f"no returns for exposed underlyings {unknown}")
            elif n < min_obs:
                sigma = np.nan
                notes.insert(0, f"{n} complete obs < min_obs {min_obs}")
        vol_usd = sigma * np.sqrt(ANNUALIZATION)
        base = values.get((day, portfolio_id), np.nan)
        frac = vol_usd / base if base and np.isfinite(base) and base > 0 else np.nan
        if np.isfinite(vol_usd) and not np.isfinite(frac) and portfolio_values is not None:
            notes.append("no positive total_value for the fraction")
        rows.append((day, portfolio_id, vol_usd, frac, n, "; ".join(notes) or None))
    out = pd.DataFrame(rows, columns=list(EX_ANTE_COLUMNS))
    out["trade_date"] = pd.to_datetime(out["trade_date"], cache=False)
    out["n_obs"] = out["n_obs"].astype(int)
    out["reason"] = out["reason"].astype(object)
    return out
