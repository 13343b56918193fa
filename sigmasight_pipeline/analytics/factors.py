"""Rolling factor betas of many assets against the seven factor ETFs (and TLT), batched.

The factor model
----------------
Factors are ETF returns (FACTOR_ETFS): Market = SPY; Momentum, Value, Growth, Quality, Size and
Low Volatility = MTUM, VTV, VUG, QUAL, IWM, SPLV. Every style ETF is mostly the market: its daily
return is SPY's plus a much smaller style component. A plain OLS of an asset on the seven raw
ETF returns therefore regresses on seven nearly identical columns; the coefficients trade off
against each other (collinearity) and swing from window to window. So:

* **Market beta** = Cov(asset, SPY) / Var(SPY) over the window: the univariate regression of
  the asset on SPY with an intercept (the seed's definition; what a risk report calls "beta").
* **Style betas** come from ONE multivariate OLS (intercept included) of the asset return on
  ``[SPY, MTUM-SPY, VTV-SPY, VUG-SPY, QUAL-SPY, IWM-SPY, SPLV-SPY]``. The style-minus-market
  spreads remove the common market component, so the regressors are close to orthogonal; the
  coefficients on the spreads are reported as the style betas (the SPY coefficient is not
  reported; it equals the market beta up to the small SPY/spread covariance).
  This is the exact parametrization of the synthetic market (`resources.synthetic`), so its
  planted betas are what this module estimates.
* **Rates beta** (issue 11, only when a TLT column is given) = Cov(asset, TLT) / Var(TLT) over
  the window, univariate like the market beta: the asset's sensitivity to long Treasuries.
  TLT rises when long rates fall, so a positive rates beta gains when rates fall; dollar P&L
  per +100 bp = -beta x exposure x TLT duration / 100 (the caller owns the duration).

Each factor uses only the returns it needs, so one missing bar of one ETF never moves another
factor's beta: the market beta uses the rows where SPY and the asset have returns, the rates
beta the rows where TLT and the asset have returns, and the style regression the rows where
SPY and every style ETF in it have returns. A style ETF with fewer than `min_obs` returns in a
window is left out of that window's regression: its own style is NaN with the reason ("no
returns for VTV in the window") and the other styles are estimated on the remaining spreads.

Conditioning, measured with `design_condition_numbers` (2-norm condition number of the
column-standardized regressors, i.e. with the intercept partialled out) on the synthetic market:
over the 252 sessions of 2024 the raw seven-ETF design has condition number 17.5 and the spread
design 1.8; over 2024's 60-session windows the median is 18.2 vs 2.2 (worst 20.4 vs 2.6). The
synthetic ETFs correlate 0.86-0.95 with SPY, the spreads at most about 0.5 with each other.
On real data the raw design is far worse (the style ETFs correlate 0.9+ with SPY) and the spread
design keeps one known weak spot: VTV-SPY and VUG-SPY are strongly negatively correlated
(SPY is roughly half value, half growth), which the synthetic market mimics only partly (latent
correlation -0.5). That inflates the Value/Growth standard errors (reported in `std_err`) but
is not a numerical problem at these condition numbers, so the estimator stays plain OLS; a ridge
would trade that variance for bias and is deliberately not applied.

Batching
--------
Within a window the design matrix of a regression is the same for every asset, so assets with
complete data share ONE QR factorization (X = QR, coefficients R^-1 Q'Y) applied to the whole
return block; R-squared and standard errors come out of the same block operations. Assets with
gaps in the window are solved together too: their unobserved rows are zeroed in a per-asset
copy of the design and one stacked (batched) QR solves every such asset on exactly its
observed rows.
Results agree with statsmodels OLS to machine precision (see the tests).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.validation import (
    naive_dates,
    require_returns,
    sorted_unique_rows,
)
from sigmasight_pipeline.resources.market_data import FACTOR_ETFS, RATES_ETF

__all__ = [
    "BETA_COLUMNS",
    "FACTOR_NAMES",
    "RATES_ETF",
    "RATES_FACTOR",
    "STYLE_FACTORS",
    "design_condition_numbers",
    "rolling_factor_betas",
    "spread_design",
]

FACTOR_NAMES: list[str] = list(FACTOR_ETFS)  # "Market" first
STYLE_FACTORS: list[str] = FACTOR_NAMES[1:]
ETF_ORDER: list[str] = [FACTOR_ETFS[f] for f in FACTOR_NAMES]  # SPY first
N_PARAMS = 1 + len(FACTOR_NAMES)  # intercept, SPY, six spreads
RATES_FACTOR = "Rates"  # issue 11: the 60-session beta to TLT
BETA_COLUMNS = ["trade_date", "symbol", "factor", "beta", "n_obs", "r_squared", "std_err", "reason"]


def spread_design(factor_returns: pd.DataFrame) -> pd.DataFrame:
    """The regressors ``[SPY, MTUM-SPY, ...]`` (columns named by factor) from ETF returns."""
    f = _factor_block(factor_returns)
    spreads = f[:, 1:] - f[:, :1]
    return pd.DataFrame(
        np.column_stack([f[:, 0], spreads]), index=factor_returns.index, columns=FACTOR_NAMES
    )


def design_condition_numbers(factor_returns: pd.DataFrame) -> dict[str, float]:
    """Condition numbers of the standardized raw-ETF and spread designs (rows with NaN dropped)."""
    f = _factor_block(factor_returns)
    f = f[np.isfinite(f).all(axis=1)]
    raw = f
    spread = np.column_stack([f[:, 0], f[:, 1:] - f[:, :1]])
    return {"raw": _standardized_cond(raw), "spread": _standardized_cond(spread)}


def _standardized_cond(x: np.ndarray) -> float:
    xc = x - x.mean(axis=0)
    xc = xc / np.linalg.norm(xc, axis=0)
    return float(np.linalg.cond(xc))


def _factor_block(factor_returns: pd.DataFrame) -> np.ndarray:
    absent = [t for t in ETF_ORDER if t not in factor_returns.columns]
    if absent:
        raise KeyError(f"factor_returns lacks the factor ETF column(s) {absent} (need {ETF_ORDER})")
    return factor_returns[ETF_ORDER].to_numpy(dtype=float)


def _multivariate(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """OLS of every column of y on x (n x k, full rank): coef, std errors (k x m), R^2 (m)."""
    n, k = x.shape
    q, r = np.linalg.qr(x)
    r_inv = np.linalg.inv(r)  # k x k upper triangular; k = 8
    coef = r_inv @ (q.T @ y)
    resid = y - x @ coef
    rss = np.einsum("ij,ij->j", resid, resid)
    yc = y - y.mean(axis=0)
    tss = np.einsum("ij,ij->j", yc, yc)
    diag = np.einsum("ij,ij->i", r_inv, r_inv)  # diag((X'X)^-1)
    se = np.sqrt(np.outer(diag, rss / (n - k)))
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(tss > 0, 1.0 - rss / tss, np.nan)
    return coef, se, r2


def _univariate(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """OLS slope of every column of y on x with intercept: beta, std error, R^2 (each m)."""
    n = x.shape[0]
    xc = x - x.mean()
    sxx = xc @ xc
    yc = y - y.mean(axis=0)
    beta = (xc @ yc) / sxx
    resid = yc - np.outer(xc, beta)
    rss = np.einsum("ij,ij->j", resid, resid)
    tss = np.einsum("ij,ij->j", yc, yc)
    se = np.sqrt(rss / (n - 2) / sxx)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(tss > 0, 1.0 - rss / tss, np.nan)
    return beta, se, r2


def _multivariate_masked(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-column OLS of y on x using only the rows where `mask` (n x m) is True, batched.

    Unobserved rows are zeroed in both the design and the response, which leaves each column's
    least-squares problem exactly the one on its observed rows; one stacked QR serves them all.
    Returns coef, std errors (k x m), R^2 and rank (m).
    """
    k = x.shape[1]
    n = mask.sum(axis=0)
    xs = x[None, :, :] * mask.T[:, :, None]  # m x n x k
    ys = np.where(mask, y, 0.0).T[:, :, None]  # m x n x 1
    q, r = np.linalg.qr(xs)
    rank = np.linalg.matrix_rank(xs)
    full = rank == k
    r_inv = np.full_like(r, np.nan)
    r_inv[full] = np.linalg.inv(r[full])
    coef = r_inv @ (np.swapaxes(q, 1, 2) @ ys)  # m x k x 1
    resid = (ys - xs @ coef)[:, :, 0]
    rss = np.einsum("ij,ij->i", resid, resid)  # resid is m x n
    ybar = ys[:, :, 0].sum(axis=1) / n
    yc = np.where(mask, y - ybar, 0.0)
    tss = np.einsum("ij,ij->j", yc, yc)
    diag = np.einsum("mij,mij->mi", r_inv, r_inv)  # m x k
    se = np.sqrt(diag.T * (rss / (n - k)))
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(tss > 0, 1.0 - rss / tss, np.nan)
    return coef[:, :, 0].T, se, r2, rank


def _univariate_masked(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """`_univariate` per column on the rows where `mask` is True: beta, std error, R^2."""
    n = mask.sum(axis=0)
    xm = np.where(mask, x[:, None], 0.0)
    ym = np.where(mask, y, 0.0)
    xc = np.where(mask, x[:, None] - xm.sum(axis=0) / n, 0.0)
    yc = np.where(mask, y - ym.sum(axis=0) / n, 0.0)
    sxx = np.einsum("ij,ij->j", xc, xc)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.einsum("ij,ij->j", xc, yc) / sxx
        resid = yc - xc * beta
        rss = np.einsum("ij,ij->j", resid, resid)
        tss = np.einsum("ij,ij->j", yc, yc)
        se = np.sqrt(rss / (n - 2) / sxx)
        r2 = np.where(tss > 0, 1.0 - rss / tss, np.nan)
    return beta, se, r2


def _no_variation(etf: str) -> str:
    return f"{etf} returns do not vary in the window"


NO_SPY_VARIATION = _no_variation("SPY")


def _collinear(rank: int | np.ndarray, n_params: int) -> str:
    return f"factor spreads are collinear in the window (rank {rank} < {n_params})"


def _too_few(n: int, min_obs: int) -> str:
    return f"only {n} observations (< {min_obs})"


def _etf_short(etf: str, n: int, min_obs: int) -> str | None:
    """Why a factor ETF cannot be used in a window with `n` returns, or None if it can."""
    if n == 0:
        return f"no returns for {etf} in the window"
    if n < min_obs:
        return f"only {n} returns for {etf} in the window (< {min_obs})"
    return None


class _Out:
    """Preallocated (end date, symbol, factor) result arrays."""

    def __init__(self, n_end: int, n_sym: int, n_fac: int) -> None:
        shape = (n_end, n_sym, n_fac)
        self.beta = np.full(shape, np.nan)
        self.se = np.full(shape, np.nan)
        self.r2 = np.full(shape, np.nan)
        self.n_obs = np.zeros(shape, dtype=np.int64)
        self.reason = np.full(shape, None, dtype=object)

    def univariate(
        self, e: int, fac: int, etf: str, x: np.ndarray, y: np.ndarray, valid: np.ndarray,
        n_valid: np.ndarray, min_obs: int,
    ) -> None:  # fmt: skip
        """Cov(y, x) / Var(x) of every symbol on the rows where x and the symbol both exist.

        `valid` marks the finite entries of y and `n_valid` counts them per column."""
        x_ok = np.isfinite(x)
        n_x = int(x_ok.sum())
        short = _etf_short(etf, n_x, min_obs)
        all_rows = n_x == len(x)
        mask = valid if all_rows else x_ok[:, None] & valid
        n = n_valid if all_rows else mask.sum(axis=0)
        self.n_obs[e, :, fac] = n
        if short:
            self.reason[e, :, fac] = short
            return
        few = n < min_obs
        for j in np.flatnonzero(few):
            self.reason[e, j, fac] = _too_few(int(n[j]), min_obs)
        complete = (n == n_x) & ~few
        if complete.any():  # one plain solve on the rows where x exists
            cols = _columns(complete)
            xs = x if all_rows else x[x_ok]
            if np.ptp(xs) == 0:
                self.reason[e, cols, fac] = _no_variation(etf)
            else:
                ys = y if all_rows else y[x_ok]
                beta, se, r2 = _univariate(xs, ys if isinstance(cols, slice) else ys[:, cols])
                self.beta[e, cols, fac], self.se[e, cols, fac], self.r2[e, cols, fac] = beta, se, r2
        cols = np.flatnonzero(~complete & ~few)
        if cols.size == 0:
            return
        m = mask[:, cols]
        xv = x[:, None]
        flat = np.where(m, xv, -np.inf).max(axis=0) == np.where(m, xv, np.inf).min(axis=0)
        beta, se, r2 = _univariate_masked(np.where(x_ok, x, 0.0), y[:, cols], m)
        self.beta[e, cols, fac] = np.where(flat, np.nan, beta)
        self.se[e, cols, fac] = np.where(flat, np.nan, se)
        self.r2[e, cols, fac] = np.where(flat, np.nan, r2)
        self.reason[e, cols[flat], fac] = _no_variation(etf)

    def styles(
        self, e: int, f: np.ndarray, y: np.ndarray, valid: np.ndarray, n_valid: np.ndarray,
        min_obs: int,
    ) -> None:  # fmt: skip
        """Style betas: one OLS on [1, SPY, spreads of the usable style ETFs] per window.

        A style ETF is usable with at least `min_obs` returns on rows where SPY has one; the
        regression runs on the rows where SPY and every usable style ETF have returns.
        """
        n_styles = len(STYLE_FACTORS)
        spy_ok = np.isfinite(f[:, 0])
        short = _etf_short(ETF_ORDER[0], int(spy_ok.sum()), min_obs)
        if short:
            self.reason[e, :, 1 : 1 + n_styles] = short
            return
        used: list[int] = []
        for j in range(1, 1 + n_styles):
            etf_ok = np.isfinite(f[:, j])
            both = etf_ok & spy_ok
            usable = _etf_short(ETF_ORDER[j], int(both.sum()), min_obs)
            if usable and etf_ok.any() and not both.any():
                usable = f"no returns for {ETF_ORDER[j]} on days with SPY returns in the window"
            if usable:
                self.reason[e, :, j] = usable
                self.n_obs[e, :, j] = (both[:, None] & valid).sum(axis=0)
            else:
                used.append(j)
        if not used:
            return
        facs = np.asarray(used)
        fidx = slice(facs[0], facs[-1] + 1) if len(facs) == facs[-1] - facs[0] + 1 else facs
        rows = spy_ok & np.isfinite(f[:, facs]).all(axis=1)
        all_rows = bool(rows.all())
        fr = f if all_rows else f[rows]
        x = np.column_stack([np.ones(len(fr)), fr[:, 0], fr[:, facs] - fr[:, :1]])
        k = x.shape[1]
        yr, vr = (y, valid) if all_rows else (y[rows], valid[rows])
        n = n_valid if all_rows else vr.sum(axis=0)
        self.n_obs[e][:, fidx] = n[:, None]
        few = n < min_obs
        for j in np.flatnonzero(few):
            self.reason[e, j, fidx] = _too_few(int(n[j]), min_obs)
        complete = (n == x.shape[0]) & ~few
        if complete.any():
            cols = _columns(complete)
            if np.ptp(x[:, 1]) == 0:
                self._set_reason(e, cols, fidx, NO_SPY_VARIATION)
            elif (rank := np.linalg.matrix_rank(x)) < k:
                self._set_reason(e, cols, fidx, _collinear(rank, k))
            else:
                coef, se, r2 = _multivariate(x, yr if isinstance(cols, slice) else yr[:, cols])
                self._set(e, cols, fidx, coef[2:], se[2:], r2)
        partial = np.flatnonzero(~complete & ~few)
        if partial.size:
            mask = vr[:, partial]
            spy = x[:, 1:2]
            flat = np.where(mask, spy, -np.inf).max(axis=0) == np.where(mask, spy, np.inf).min(
                axis=0
            )
            coef, se, r2, rank = _multivariate_masked(x, yr[:, partial], mask)
            for j in np.flatnonzero(flat):
                self.reason[e, partial[j], fidx] = NO_SPY_VARIATION
            for j in np.flatnonzero((rank < k) & ~flat):
                self.reason[e, partial[j], fidx] = _collinear(int(rank[j]), k)
            ok = (rank == k) & ~flat
            self._set(e, partial[ok], fidx, coef[2:, ok], se[2:, ok], r2[ok])

    def _set_reason(
        self, e: int, cols: slice | np.ndarray, facs: slice | np.ndarray, reason: str
    ) -> None:
        self.reason[e][_cells(cols, facs)] = reason

    def _set(
        self, e: int, cols: slice | np.ndarray, facs: slice | np.ndarray, coef: np.ndarray,
        se: np.ndarray, r2: np.ndarray,
    ) -> None:  # fmt: skip
        """Store style coefficients (len(facs) x len(cols)) and the multivariate R^2."""
        where = _cells(cols, facs)
        self.beta[e][where] = coef.T
        self.se[e][where] = se.T
        self.r2[e][where] = r2[:, None]


def _columns(selected: np.ndarray) -> slice | np.ndarray:
    """The selected columns as an index: a plain slice when all are selected (no copies)."""
    return slice(None) if selected.all() else np.flatnonzero(selected)


def _cells(cols: slice | np.ndarray, facs: slice | np.ndarray) -> tuple:
    """An index into a (symbol, factor) block for the given columns and factors."""
    if isinstance(cols, slice) or isinstance(facs, slice):
        return cols, facs
    return np.ix_(cols, facs)


def rolling_factor_betas(
    asset_returns: pd.DataFrame,
    factor_returns: pd.DataFrame,
    end_dates: Iterable[object],
    window: int = 60,
    min_obs: int = 20,
) -> pd.DataFrame:
    """Factor betas of every asset over the trailing `window` trading days of each end date.

    `asset_returns` is dates x symbols (NaN where missing); `factor_returns` is dates x ETF
    tickers (SPY, MTUM, VTV, VUG, QUAL, IWM, SPLV, and optionally TLT) and defines the
    trading-day axis: a window is the `window` rows of `factor_returns` ending at the end date,
    inclusive (asset dates outside it are ignored).

    Each factor uses only the returns it needs:
    - Market: univariate beta on SPY, Cov(r, SPY) / Var(SPY), on the rows where SPY and the
      asset have returns (a missing style-ETF bar does not change it);
    - Rates (only when `factor_returns` has a TLT column): univariate beta on TLT,
      Cov(r, TLT) / Var(TLT), on the rows where TLT and the asset have returns (the 60-session
      rate beta; TLT falls when rates rise, so a positive beta gains when rates fall);
    - styles: coefficients on the ETF-minus-SPY spreads of one multivariate OLS (see the
      module docstring) over the style ETFs usable in the window (at least `min_obs` returns),
      on the rows where SPY and each of those ETFs have returns. A style ETF with too few
      returns gets NaN for its own style only ("no returns for VTV in the window"); the other
      styles are then estimated without that spread.

    Returns BETA_COLUMNS in long format, one row per (end date, symbol, factor), factors in
    FACTOR_NAMES order then "Rates", with `trade_date` a `datetime.date`. `n_obs` counts the
    rows each factor's regression used; where `beta` is null, `reason` says why.
    Input validation: tz-aware or duplicate dates, +-inf returns and returns below -100 % raise
    a ValueError naming them; a missing factor ETF column raises a KeyError.
    """
    if min_obs < N_PARAMS + 1:
        raise ValueError(f"min_obs must be >= {N_PARAMS + 1} ({N_PARAMS} parameters + 1)")
    if window < min_obs:
        raise ValueError(f"window ({window}) must be >= min_obs ({min_obs})")
    factor_returns = sorted_unique_rows(factor_returns, "factor_returns")
    idx = factor_returns.index
    f = _factor_block(factor_returns)
    require_returns(factor_returns[ETF_ORDER], "factor_returns")
    has_rates = RATES_ETF in factor_returns.columns
    if has_rates:
        tlt = factor_returns[RATES_ETF].to_numpy(dtype=float)
        require_returns(factor_returns[RATES_ETF], "factor_returns")
    assets = sorted_unique_rows(asset_returns, "asset_returns")
    require_returns(assets, "asset_returns")
    y_all = assets.reindex(idx).to_numpy(dtype=float)
    symbols = np.asarray(asset_returns.columns, dtype=object)
    ends = naive_dates(end_dates, "end_dates")
    factor_names = FACTOR_NAMES + ([RATES_FACTOR] if has_rates else [])

    out = _Out(len(ends), len(symbols), len(factor_names))
    positions = idx.get_indexer(ends)
    for e, p in enumerate(positions):
        if p < 0:
            out.reason[e] = f"no factor returns on {ends[e].date()}"
            continue
        rows = slice(max(0, p - window + 1), p + 1)
        y = y_all[rows]
        valid = np.isfinite(y)
        n_valid = valid.sum(axis=0)
        out.univariate(e, 0, ETF_ORDER[0], f[rows, 0], y, valid, n_valid, min_obs)
        out.styles(e, f[rows], y, valid, n_valid, min_obs)
        if has_rates:
            out.univariate(e, len(FACTOR_NAMES), RATES_ETF, tlt[rows], y, valid, n_valid, min_obs)

    n_end, n_sym, n_fac = out.beta.shape
    days = np.array([d.date() for d in ends], dtype=object)
    return pd.DataFrame(
        {
            "trade_date": np.repeat(days, n_sym * n_fac),
            "symbol": np.tile(np.repeat(symbols, n_fac), n_end),
            "factor": np.tile(np.asarray(factor_names, dtype=object), n_end * n_sym),
            "beta": out.beta.ravel(),
            "n_obs": out.n_obs.ravel(),
            "r_squared": out.r2.ravel(),
            "std_err": out.se.ravel(),
            "reason": out.reason.ravel(),
        },
        columns=BETA_COLUMNS,
    )
