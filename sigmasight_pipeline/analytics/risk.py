"""Portfolio risk metrics: returns, beta, volatility, Sharpe/Sortino, drawdown, VaR/CVaR.

Pure numpy/pandas; no Dagster, no SQL. The metrics follow empyrical's definitions and are tested
against it. Conventions:

* Every window counts TRADING days: it is the last ``window`` rows of the returns index at or
  before the end date (inclusive), never a calendar span. Callers index returns by sessions.
* Annualization factor 252 (volatility x sqrt(252), Sharpe/Sortino x sqrt(252)).
* The annual risk-free rate becomes a daily rate geometrically: ``(1 + rf) ** (1/252) - 1``.
* Missing returns (NaN) are dropped, never treated as zero, and every metric needs at least
  ``min_obs`` non-missing observations in its own window, else it is NaN and ``reason`` says why.
  (``empyrical.value_at_risk`` is ``np.percentile`` and returns NaN if any input is NaN, so its
  inputs are NaN-free by construction here.)
* Volatility: sample standard deviation, ddof=1 (``empyrical.annual_volatility``'s convention).
* Beta: Cov(r, spy) / Var(spy) on days where both are present (``empyrical.beta``; it uses
  ddof=0 for both moments, so the ratio equals the ddof=1 ratio and the OLS slope).
* Maximum drawdown: ``empyrical.max_drawdown`` sign convention, a fraction <= 0 (-0.2 = -20%),
  measured from the value before the window's first return.
* VaR/CVaR: positive numbers are losses. Historical VaR is minus the 5th percentile (linear
  interpolation) of daily returns; it is negative when even that percentile is a gain.
* Dates: outputs carry ``trade_date`` as naive midnight ``pd.Timestamp`` (like ``calendar``).
* Inputs are checked (`analytics.validation`): tz-aware or duplicate dates, +-inf values and
  returns below -100 % raise a ValueError naming where they are; rows are sorted by date.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import ndtr

from sigmasight_pipeline.analytics.validation import (
    naive_dates,
    require_finite,
    require_returns,
    sorted_unique_rows,
)

__all__ = [
    "ANNUALIZATION",
    "RISK_METRIC_COLUMNS",
    "Z_95",
    "daily_risk_free",
    "parametric_cvar",
    "parametric_var",
    "rolling_parametric_var",
    "rolling_risk_metrics",
]

ANNUALIZATION = 252
Z_95 = 1.6448536269514722  # norm.ppf(0.95)
_INV_SQRT_2PI = 0.3989422804014327


def normal_tail_ratio(z: float) -> float:
    """phi(z) / (1 - Phi(z)): a normal's expected loss beyond its z-quantile, in sigmas."""
    return float(_INV_SQRT_2PI * np.exp(-0.5 * z * z) / ndtr(-z))


VAR_CUTOFF = 0.05

RISK_METRIC_COLUMNS = (
    "trade_date",
    "portfolio_id",
    "beta",
    "volatility_ann",
    "sharpe",
    "sortino",
    "max_drawdown",
    "var_95_1d_hist",
    "cvar_95_1d_hist",
    "var_95_1d_hist_usd",
    "cvar_95_1d_hist_usd",
    "n_obs",
    "reason",
)
PARAMETRIC_VAR_COLUMNS = (
    "trade_date",
    "portfolio_id",
    "var_95_1d",
    "cvar_95_1d",
    "n_obs",
    "reason",
)


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing columns {missing}; has {list(frame.columns)}")


def _date_index(values: Iterable, name: str) -> pd.DatetimeIndex:
    """Normalize dates (date, str, Timestamp) to naive midnight timestamps (tz-aware raises)."""
    return naive_dates(values, name)


def joined_columns(parts: Sequence[dict[str, np.ndarray]], names: Sequence[str]) -> pd.DataFrame:
    """One frame of the columns `names` from parts of columns (one per day, say): one
    concatenation per column, where building a frame per part and `pd.concat` cost more than
    the math of a part. `parts` must not be empty."""
    return pd.DataFrame({name: np.concatenate([part[name] for part in parts]) for name in names})


def _sorted_wide(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """A float copy of a dates x columns frame with a sorted, unique, naive DatetimeIndex."""
    return sorted_unique_rows(frame, name).astype(float)


def daily_risk_free(annual_risk_free: float) -> float:
    """Geometric daily rate over 252 sessions: ``(1 + rf) ** (1/252) - 1``."""
    return float((1.0 + annual_risk_free) ** (1.0 / ANNUALIZATION) - 1.0)


def _window(values: np.ndarray, end: int, length: int) -> np.ndarray:
    """Rows ``end - length + 1 .. end`` (inclusive), clipped at the start."""
    return values[max(0, end - length + 1) : end + 1]


# --- the metrics of one window, one column per portfolio ---------------------------------
# Each follows empyrical's definition (`empyrical.stats`, named per function) and is tested
# against it; empyrical itself is a test reference only: importing it pulls in yfinance and
# scipy.stats, about 2 s of every process that computes risk metrics (a tenth of a daily run).
# Columns hold at least two observations (`_fill_metrics` passes only those), NaN = missing.


def annual_volatility(block: np.ndarray) -> np.ndarray:
    """`empyrical.annual_volatility`: sample standard deviation (ddof=1) x sqrt(252)."""
    return np.nanstd(block, ddof=1, axis=0) * np.sqrt(ANNUALIZATION)


def sharpe_ratio(block: np.ndarray, risk_free: float) -> np.ndarray:
    """`empyrical.sharpe_ratio`: mean / std (ddof=1) of the excess returns x sqrt(252); a
    column whose present values are all equal has std exactly 0 (inf or NaN ratio)."""
    excess = block - risk_free
    std = np.nanstd(excess, ddof=1, axis=0)
    constant = np.nanmax(excess, axis=0) == np.nanmin(excess, axis=0)
    std = np.where(constant & np.isfinite(std), 0.0, std)
    return np.nanmean(excess, axis=0) / std * np.sqrt(ANNUALIZATION)


def sortino_ratio(block: np.ndarray, required_return: float) -> np.ndarray:
    """`empyrical.sortino_ratio`: annualized mean excess return over the annualized downside
    deviation, sqrt(mean(min(excess, 0)^2)) x sqrt(252)."""
    excess = block - required_return
    downside = np.sqrt(np.nanmean(np.minimum(excess, 0.0) ** 2, axis=0) * ANNUALIZATION)
    return np.nanmean(excess, axis=0) * ANNUALIZATION / downside


def beta_against(block: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """`empyrical.beta`: Cov(r, f) / Var(f) (both ddof=0) on each column's days where r is
    present (f is masked the same way); a variance below 1e-30 gives NaN."""
    independent = np.where(np.isnan(block), np.nan, factor[:, None])
    residual = independent - np.nanmean(independent, axis=0)
    covariance = np.nanmean(residual * block, axis=0)
    variance = np.nanmean(residual**2, axis=0)
    return covariance / np.where(variance < 1e-30, np.nan, variance)


def max_drawdown(block: np.ndarray) -> np.ndarray:
    """`empyrical.max_drawdown`: the lowest (value - running peak) / running peak, <= 0, of the
    compounded returns (a missing return compounds as 0) from the value before the first."""
    growth = np.cumprod(1.0 + np.nan_to_num(block, nan=0.0), axis=0)
    value = np.vstack([np.ones((1, block.shape[1])), growth])
    peak = np.fmax.accumulate(value, axis=0)
    return ((value - peak) / peak).min(axis=0)


def historical_var_cvar(
    block: np.ndarray, cutoff: float = VAR_CUTOFF
) -> tuple[np.ndarray, np.ndarray]:
    """Per column, NaN dropped (positive = loss): VaR, minus `empyrical.value_at_risk` (the
    `cutoff` percentile, numpy's linear interpolation), and CVaR, minus
    `empyrical.conditional_value_at_risk` (the mean of the int((n - 1) x cutoff) + 1 lowest)."""
    ordered = np.sort(block, axis=0)  # NaN last
    n = np.isfinite(block).sum(axis=0)
    columns = np.arange(block.shape[1])
    position = (n - 1) * cutoff
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    low, high = ordered[below, columns], ordered[above, columns]
    var = -(low + (high - low) * (position - below))
    count = below + 1
    tail_sum = np.nancumsum(ordered, axis=0)[count - 1, columns]
    return var, -(tail_sum / count)


def rolling_risk_metrics(
    portfolio_returns: pd.DataFrame,
    spy_returns: pd.Series,
    end_dates: Iterable,
    annual_risk_free: float,
    beta_window: int = 60,
    vol_window: int = 60,
    drawdown_window: int = 90,
    var_window: int = 60,
    min_obs: int = 20,
    total_values: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Trailing risk metrics per (end date, portfolio), long format.

    ``portfolio_returns``: dates x portfolio_id daily returns (e.g. the pivot of the
    time-weighted returns of `analytics.holdings.portfolio_returns`); its rows define the
    trading days windows count. ``spy_returns``: SPY daily returns by date (aligned to those
    rows; missing days are NaN). ``total_values``: optional dates x portfolio_id total value,
    for the dollar VaR/CVaR (fraction x the value on the end date, the base of the next day's
    return); without it the ``_usd`` columns are NaN.

    Windows end at the end date inclusive: beta over ``beta_window`` rows (days where both the
    portfolio and SPY returns are present); volatility, Sharpe and Sortino over ``vol_window``;
    max drawdown over ``drawdown_window``; historical 1-day 95% VaR/CVaR over ``var_window``.
    Sharpe uses ``risk_free`` and Sortino ``required_return`` = the daily risk-free rate; an
    infinite ratio (zero volatility / no downside) becomes NaN with a note in ``reason``.
    ``n_obs`` counts non-missing returns in the ``vol_window``. An end date that is not a row of
    ``portfolio_returns`` gives NaN metrics with a reason.

    Columns: `RISK_METRIC_COLUMNS`, sorted by trade_date, portfolio_id.
    """
    if min_obs < 2:
        raise ValueError("min_obs must be >= 2 (volatility needs two observations)")
    for name, value in (
        ("beta_window", beta_window),
        ("vol_window", vol_window),
        ("drawdown_window", drawdown_window),
        ("var_window", var_window),
    ):
        if value < min_obs:
            raise ValueError(f"{name}={value} is shorter than min_obs={min_obs}")

    returns = _sorted_wide(portfolio_returns, "portfolio_returns")
    require_returns(returns, "portfolio_returns")
    spy = _sorted_wide(spy_returns.to_frame("SPY"), "spy_returns")["SPY"]
    require_returns(spy, "spy_returns")
    spy_values = spy.reindex(returns.index).to_numpy(dtype=float)
    values = returns.to_numpy(dtype=float)
    portfolios = list(returns.columns)
    n_portfolios = len(portfolios)

    dollar_base = None
    if total_values is not None:
        dollar_base = _sorted_wide(total_values, "total_values").reindex(columns=portfolios)
        require_finite(dollar_base, "total_values")

    rf_daily = daily_risk_free(annual_risk_free)
    ends = _date_index(end_dates, "end_dates").unique().sort_values()
    positions = returns.index.get_indexer(ends)

    records: list[dict[str, np.ndarray]] = []
    for end_date, pos in zip(ends, positions, strict=True):
        out = {name: np.full(n_portfolios, np.nan) for name in RISK_METRIC_COLUMNS[2:-2]}
        n_obs = np.zeros(n_portfolios, dtype=int)
        notes: list[list[str]] = [[] for _ in range(n_portfolios)]
        if pos < 0:
            for note in notes:
                note.append("no return row for the end date")
        else:
            _fill_metrics(
                out,
                n_obs,
                notes,
                values,
                spy_values,
                pos,
                rf_daily,
                min_obs,
                beta_window,
                vol_window,
                drawdown_window,
                var_window,
            )
            if dollar_base is not None:
                if end_date in dollar_base.index:
                    base = dollar_base.loc[end_date].to_numpy(dtype=float)
                else:
                    base = np.full(n_portfolios, np.nan)
                out["var_95_1d_hist_usd"] = out["var_95_1d_hist"] * base
                out["cvar_95_1d_hist_usd"] = out["cvar_95_1d_hist"] * base
                for j in np.flatnonzero(np.isfinite(out["var_95_1d_hist"]) & np.isnan(base)):
                    notes[j].append("no total value for the end date")
        out["trade_date"] = np.full(n_portfolios, np.datetime64(end_date, "ns"))
        out["portfolio_id"] = np.asarray(portfolios)
        out["n_obs"] = n_obs
        out["reason"] = np.array([("; ".join(n) if n else None) for n in notes], dtype=object)
        records.append(out)

    if not records:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in RISK_METRIC_COLUMNS})
        empty["trade_date"] = pd.Series(dtype="datetime64[ns]")
        empty["portfolio_id"] = pd.Series(dtype=object)
        empty["n_obs"] = pd.Series(dtype=int)
        empty["reason"] = pd.Series(dtype=object)
        return empty[list(RISK_METRIC_COLUMNS)]
    return joined_columns(records, RISK_METRIC_COLUMNS)


def _fill_metrics(
    out: dict[str, np.ndarray],
    n_obs: np.ndarray,
    notes: list[list[str]],
    values: np.ndarray,
    spy_values: np.ndarray,
    pos: int,
    rf_daily: float,
    min_obs: int,
    beta_window: int,
    vol_window: int,
    drawdown_window: int,
    var_window: int,
) -> None:
    """Compute every metric for one end-date row, vectorized across portfolios (in place)."""

    def short(counts: np.ndarray, label: str) -> np.ndarray:
        mask = counts < min_obs
        for j in np.flatnonzero(mask):
            notes[j].append(f"{label}: {counts[j]} obs < min_obs {min_obs}")
        return mask

    def on_enough(metric, too_few: np.ndarray, *blocks: np.ndarray, **kwargs) -> np.ndarray:
        """`metric` of the columns with enough observations; NaN for the others. Only those
        columns reach the nan-reductions, so they never see an all-NaN column and never warn
        (`warnings.catch_warnings` is not thread-safe, and steps run in threads)."""
        result = np.full(too_few.shape, np.nan)
        keep = ~too_few
        if keep.any():
            chosen = [b[:, keep] if b.ndim == 2 else b for b in blocks]
            result[keep] = np.asarray(metric(*chosen, **kwargs), dtype=float).reshape(-1)
        return result

    with np.errstate(all="ignore"):
        # Volatility, Sharpe, Sortino: nan-reductions, the same as dropping the NaNs.
        vol_block = _window(values, pos, vol_window)
        counts = np.isfinite(vol_block).sum(axis=0)
        n_obs[:] = counts
        too_few = short(counts, "volatility/sharpe/sortino")
        vol = on_enough(annual_volatility, too_few, vol_block)
        sharpe = on_enough(sharpe_ratio, too_few, vol_block, risk_free=rf_daily)
        sortino = on_enough(sortino_ratio, too_few, vol_block, required_return=rf_daily)
        for label, ratio in (
            ("sharpe undefined (zero volatility)", sharpe),
            ("sortino undefined (no downside deviation)", sortino),
        ):
            for j in np.flatnonzero(~too_few & ~np.isfinite(ratio)):
                notes[j].append(label)
        out["volatility_ann"] = vol
        out["sharpe"] = np.where(np.isfinite(sharpe), sharpe, np.nan)
        out["sortino"] = np.where(np.isfinite(sortino), sortino, np.nan)

        # Beta: pairwise-complete days only (mask portfolio returns where SPY is missing).
        beta_block = _window(values, pos, beta_window)
        spy_block = _window(spy_values, pos, beta_window)
        paired = np.where(np.isnan(spy_block)[:, None], np.nan, beta_block)
        counts = np.isfinite(paired).sum(axis=0)
        too_few = short(counts, "beta")
        beta = on_enough(beta_against, too_few, paired, spy_block)
        for j in np.flatnonzero(~too_few & ~np.isfinite(beta)):
            notes[j].append("beta undefined (zero SPY variance)")
        out["beta"] = np.where(np.isfinite(beta), beta, np.nan)

        # Max drawdown: empyrical compounds NaN as 0, the same as dropping the missing day.
        dd_block = _window(values, pos, drawdown_window)
        counts = np.isfinite(dd_block).sum(axis=0)
        too_few = short(counts, "max_drawdown")
        out["max_drawdown"] = on_enough(max_drawdown, too_few, dd_block)

        # Historical VaR/CVaR: NaN dropped per portfolio (empyrical's VaR is NaN with any NaN).
        var_block = _window(values, pos, var_window)
        counts = np.isfinite(var_block).sum(axis=0)
        too_few = short(counts, "var/cvar")
        if (~too_few).any():
            var, cvar = historical_var_cvar(var_block[:, ~too_few])
            out["var_95_1d_hist"][~too_few] = var
            out["cvar_95_1d_hist"][~too_few] = cvar

    # Collapse the per-metric notes into one line when nothing at all could be computed.
    for j, note in enumerate(notes):
        if len(note) == 4 and all("obs < min_obs" in n for n in note):
            notes[j] = [f"insufficient history: {n_obs[j]} obs < min_obs {min_obs}"]


# --- parametric (variance-covariance) VaR -------------------------------------------------


def _exposure_sigma(exposures: ArrayLike, position_returns: ArrayLike) -> tuple[float, int]:
    """Std dev of dollar P&L, sqrt(e' S e), and the number of complete rows used.

    S is the sample covariance (ddof=1) over the rows where every symbol with non-zero exposure
    has a return (listwise deletion: S stays positive semi-definite). Zero-exposure symbols are
    ignored, so their missing history does not cost rows. NaN with fewer than 2 complete rows.
    """
    e = np.asarray(exposures, dtype=float).reshape(-1)
    r = np.asarray(position_returns, dtype=float)
    if r.ndim == 1:
        r = r.reshape(-1, 1)
    if r.ndim != 2 or r.shape[1] != e.size:
        raise ValueError(f"position_returns shape {r.shape} does not match {e.size} exposures")
    if not np.all(np.isfinite(e)):
        raise ValueError("exposures must be finite")
    require_returns(r, "position_returns")
    sigma, n = _pnl_sigmas(r[None], e[None])
    return float(sigma[0]), int(n[0])


def _pnl_sigmas(returns: np.ndarray, exposure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per portfolio of a stack (returns P x W x M, exposure P x M): the standard deviation
    (ddof=1) of the dollar P&L series R e over the rows where every exposed symbol has a return
    (equal to sqrt(e'Se), S the sample covariance of those rows), and their count. 0 with no
    exposure; NaN with fewer than 2 complete rows."""
    exposed = exposure != 0
    missing = np.isnan(returns)
    complete = ~(missing & exposed[:, None, :]).any(axis=2)  # (P, W)
    pnl = np.einsum("pwm,pm->pw", np.where(missing, 0.0, returns), exposure)
    n = complete.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(complete, pnl, 0.0).sum(axis=1) / n
        deviation = np.where(complete, pnl - mean[:, None], 0.0)
        variance = (deviation * deviation).sum(axis=1) / (n - 1)
    sigma = np.where(n >= 2, np.sqrt(np.maximum(variance, 0.0)), np.nan)
    return np.where(exposed.any(axis=1), sigma, 0.0), n


class DayStack(NamedTuple):
    """The portfolios of one trade date side by side, each padded to the widest (zero
    exposure, NaN returns): P portfolios, M symbols at most, the W return rows of the window."""

    day: pd.Timestamp
    row: int  # the day's row in the returns; -1 when it is not one
    starts: np.ndarray  # (P,) each portfolio's first row in the stacked frame
    sizes: np.ndarray  # (P,) its number of symbols
    inside: np.ndarray  # (P, M) a symbol of the portfolio, not padding
    exposure: np.ndarray  # (P, M)
    returns: np.ndarray  # (P, W, M)
    columns: np.ndarray  # (P, M) each symbol's column in the returns; -1 for none and padding
    window: np.ndarray  # (W, C) the window's rows of every column of the returns

    @property
    def known(self) -> np.ndarray:
        """(P, M): the symbol has a column in the returns."""
        return self.columns >= 0

    def exposed_unknown(self, symbols: np.ndarray) -> list[list[str] | None]:
        """Per portfolio, its exposed symbols without a returns column, sorted (None when
        there is none); ``symbols``: the stacked frame's symbol column."""
        flagged = ~self.known & (self.exposure != 0)
        return [
            sorted(symbols[start : start + size][flagged[k, :size]]) if flagged[k].any() else None
            for k, (start, size) in enumerate(zip(self.starts, self.sizes, strict=True))
        ]


def stack_by_day(frame: pd.DataFrame, returns: pd.DataFrame, window: int) -> Iterator[DayStack]:
    """The portfolios of each day of ``frame`` stacked (`DayStack`), so that per-portfolio
    matrix algebra runs once per day instead of once per portfolio-day.

    ``frame``: trade_date (naive timestamps), portfolio_id, symbol, exposure, one row per
    key, sorted by them (e.g. a ``groupby(...).sum()``); ``returns``: a sorted sessions x
    symbols frame. The window is the last ``window`` return rows at or before the day.
    """
    values = returns.to_numpy(dtype=float)
    column = returns.columns.get_indexer(frame["symbol"])
    exposure = frame["exposure"].to_numpy(dtype=float)
    dates = frame["trade_date"].to_numpy()
    ports = frame["portfolio_id"].to_numpy()
    if not len(frame):
        return
    starts = np.flatnonzero(np.r_[True, (dates[1:] != dates[:-1]) | (ports[1:] != ports[:-1])])
    bounds = np.r_[starts, len(frame)]
    group_day = dates[starts]
    for day in np.unique(group_day):
        groups = np.flatnonzero(group_day == day)
        row = int(returns.index.get_indexer([day])[0])
        window_rows = values[max(0, row - window + 1) : row + 1] if row >= 0 else values[:0]
        sizes = bounds[groups + 1] - bounds[groups]
        slot = np.arange(int(sizes.max()))
        inside = slot[None, :] < sizes[:, None]
        at = np.where(inside, bounds[groups][:, None] + slot[None, :], 0)
        cols = np.where(inside, column[at], -1)
        block = np.where(cols >= 0, window_rows[:, np.maximum(cols, 0)], np.nan)
        yield DayStack(
            pd.Timestamp(day), row, bounds[groups], sizes, inside,
            np.where(inside, exposure[at], 0.0), np.moveaxis(block, 0, 1), cols, window_rows,
        )  # fmt: skip


def stacked_exposure_sigmas(stack: DayStack) -> tuple[np.ndarray, np.ndarray]:
    """`_exposure_sigma` for every portfolio of a `DayStack`: (sigma (P,), complete rows (P,))."""
    return _pnl_sigmas(stack.returns, stack.exposure)


def parametric_var(exposures: np.ndarray, position_returns: np.ndarray, z: float = Z_95) -> float:
    """1-day parametric VaR in dollars (positive = loss): ``z * sqrt(e' S e)``.

    ``exposures`` (N,) are signed dollar exposures, ``position_returns`` (T, N) daily returns.
    Zero-mean P&L is assumed (the expected 1-day P&L is taken as 0; S itself is the ordinary
    de-meaned sample covariance, ddof=1). Rows with a NaN for any exposed symbol are dropped
    (listwise); NaN if fewer than 2 complete rows remain.
    """
    sigma, _ = _exposure_sigma(exposures, position_returns)
    return z * sigma


def parametric_cvar(exposures: np.ndarray, position_returns: np.ndarray, z: float = Z_95) -> float:
    """1-day parametric (normal) CVaR in dollars: ``sqrt(e' S e) * phi(z) / (1 - Phi(z))``.

    With the default z, ``1 - Phi(z) = 0.05``: the expected loss beyond the 95% VaR. Same
    covariance and NaN conventions as `parametric_var`.
    """
    sigma, _ = _exposure_sigma(exposures, position_returns)
    return sigma * normal_tail_ratio(z)


def rolling_parametric_var(
    position_exposures: pd.DataFrame,
    symbol_returns: pd.DataFrame,
    end_dates: Iterable | None = None,
    window: int = 60,
    min_obs: int = 20,
    z: float = Z_95,
) -> pd.DataFrame:
    """Parametric 1-day 95% VaR/CVaR in dollars per (end date, portfolio).

    ``position_exposures``: trade_date, portfolio_id, symbol, exposure (signed dollars; for
    options the caller passes delta-adjusted exposure on the underlying). Rows are summed per
    (trade_date, portfolio_id, symbol). ``symbol_returns``: dates x symbols daily returns; the
    window is its last ``window`` rows at or before the end date (trading days). The exposures of
    the end date are used; portfolios without exposure rows that day get no output row.
    ``end_dates`` defaults to every date in ``position_exposures``.

    ``n_obs`` is the number of complete rows (every exposed symbol has a return); below
    ``min_obs`` the VaR is NaN and ``reason`` says why (also for exposed symbols absent from
    ``symbol_returns`` and end dates that are not a row of it).
    Columns: trade_date, portfolio_id, var_95_1d, cvar_95_1d, n_obs, reason.
    """
    if min_obs < 2 or window < min_obs:
        raise ValueError(f"need 2 <= min_obs <= window, got min_obs={min_obs}, window={window}")
    _require_columns(
        position_exposures,
        ("trade_date", "portfolio_id", "symbol", "exposure"),
        "position_exposures",
    )
    exposures = position_exposures[["trade_date", "portfolio_id", "symbol", "exposure"]].copy()
    exposures["trade_date"] = _date_index(exposures["trade_date"], "position_exposures.trade_date")
    exposures["exposure"] = exposures["exposure"].astype(float)
    require_finite(exposures["exposure"], "position_exposures.exposure")
    # A NaN exposure (an unpriced position) is unknown, not zero: its portfolio gets no VaR.
    exposures = (
        exposures.assign(unknown=exposures["exposure"].isna())
        .groupby(["trade_date", "portfolio_id", "symbol"], as_index=False, sort=True)[
            ["exposure", "unknown"]
        ]
        .agg({"exposure": "sum", "unknown": "any"})
    )
    returns = _sorted_wide(symbol_returns, "symbol_returns")
    require_returns(returns, "symbol_returns")
    ends = exposures["trade_date"].unique() if end_dates is None else end_dates
    ends = _date_index(ends, "end_dates").unique().sort_values()
    tail = normal_tail_ratio(z)

    exposures = exposures[exposures["trade_date"].isin(ends)]
    symbols = exposures["symbol"].to_numpy(dtype=object)
    unpriced_rows = exposures["unknown"].to_numpy(dtype=bool)
    ports = exposures["portfolio_id"].to_numpy()
    rows: list[tuple] = []
    for stack in stack_by_day(exposures, returns, window):
        sigma, n_obs = stacked_exposure_sigmas(stack)
        unknown = stack.exposed_unknown(symbols)
        for k, (start, size) in enumerate(zip(stack.starts, stack.sizes, strict=True)):
            portfolio_id = ports[start]
            if stack.row < 0:
                rows.append((stack.day, portfolio_id, np.nan, np.nan, 0,
                             "no return row for the end date"))  # fmt: skip
                continue
            group = slice(start, start + size)
            unpriced = symbols[group][unpriced_rows[group]].tolist()
            s_k, n, reason = sigma[k], int(n_obs[k]), None
            if unpriced:
                reason = f"no exposure (unpriced position) for symbols {sorted(unpriced)}"
                s_k = np.nan
            elif unknown[k]:
                reason = f"no returns for exposed symbols {unknown[k]}"
                s_k = np.nan
            elif n < min_obs:
                reason = f"{n} complete obs < min_obs {min_obs}"
                s_k = np.nan
            rows.append((stack.day, portfolio_id, z * s_k, s_k * tail, n, reason))

    result = pd.DataFrame(rows, columns=list(PARAMETRIC_VAR_COLUMNS))
    result["trade_date"] = pd.to_datetime(result["trade_date"], cache=False)
    result["n_obs"] = result["n_obs"].astype(int)
    result["reason"] = result["reason"].astype(object)
    return result
