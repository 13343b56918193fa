"""Factor-vs-specific risk decomposition with Euler contributions per factor and position.

Pure numpy/pandas; vectorized over a chunk of portfolios (and their positions) per day. Only
per-portfolio vectors and the small factor covariance (K x K, K = 8) are formed: the symbol
covariance B Sigma_f B' + D is never built.

The model
---------
Daily returns r = B f + eps with the factor regressors f of `analytics.factors` (Market = SPY,
the six styles = ETF-minus-SPY spreads, `factor_regressors`) plus Rates = TLT's return when
the betas carry a Rates factor. On dollar exposures e per underlying (positions summed per
underlying; options at delta-adjusted exposure):

    portfolio variance V = x' Sigma_f x + sum_i e_i^2 s_i,   x = B' e (dollar factor exposures)

* Sigma_f (`factor_covariance`): sample covariance (ddof=1) of the regressors over the last
  60 sessions (rows with a missing regressor dropped), the window the betas use.
* s_i (`specific_variances`): the variance of the residual r_i - B_i f over the same window,
  with the betas actually used in B (so the specific risk is what B leaves unexplained),
  de-meaned (the regression intercept) and divided by n - 1 - K: the OLS unbiased residual
  variance when the betas are the joint OLS estimates.
* Variance split per component (Euler): factor k gets x_k (Sigma_f x)_k (these sum to the
  factor variance; a hedged factor can be negative), `specific` gets sum_i e_i^2 s_i.
  share_of_variance = component / V; vol_contribution_usd = component / sigma, so the
  contributions sum to sigma = sqrt(V).
* Per position p on underlying u: marginal_vol_usd = d sigma / d e_p = (B_u Sigma_f x +
  s_u e_u) / sigma, component_vol_usd = e_p x marginal (Euler: they sum exactly to sigma, as
  sigma is homogeneous of degree 1 in e), share_of_risk = component / sigma.
* Units: everything is annualized with ``annualization`` (252: variances x 252, vols x
  sqrt(252)); pass 1 for daily.
* Positions whose underlying has no beta for a model factor or no specific variance that day
  (or no exposure) are left out of the model: their rows have NaN and a reason, and the
  portfolio's ``coverage`` (covered gross exposure / gross exposure) and reason say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.factors import FACTOR_NAMES, spread_design
from sigmasight_pipeline.analytics.risk import (
    ANNUALIZATION,
    _date_index,
    _require_columns,
    _sorted_wide,
    joined_columns,
)

__all__ = [
    "CONTRIBUTION_COLUMNS",
    "DECOMPOSITION_COLUMNS",
    "FACTOR_COVARIANCE_COLUMNS",
    "MODEL_FACTORS",
    "RATES_ETF",
    "RATES_FACTOR",
    "SPECIFIC",
    "SPECIFIC_VARIANCE_COLUMNS",
    "RiskDecomposition",
    "RiskModel",
    "decompose",
    "factor_covariance",
    "factor_regressors",
    "risk_decomposition",
    "risk_model",
    "specific_variances",
]

RATES_FACTOR = "Rates"
RATES_ETF = "TLT"
MODEL_FACTORS = (*FACTOR_NAMES, RATES_FACTOR)
SPECIFIC = "specific"
FACTOR_COVARIANCE_COLUMNS = (
    "trade_date", "factor_a", "factor_b", "covariance", "n_obs", "reason",
)  # fmt: skip
SPECIFIC_VARIANCE_COLUMNS = ("trade_date", "symbol", "specific_variance", "n_obs", "reason")
DECOMPOSITION_COLUMNS = (
    "trade_date", "portfolio_id", "component", "exposure_usd", "variance_usd2",
    "share_of_variance", "vol_contribution_usd", "total_vol_usd", "coverage", "reason",
)  # fmt: skip
CONTRIBUTION_COLUMNS = (
    "trade_date", "position_id", "portfolio_id", "underlying", "exposure_usd",
    "marginal_vol_usd", "component_vol_usd", "factor_vol_usd", "specific_vol_usd",
    "share_of_risk", "reason",
)  # fmt: skip


class RiskDecomposition(NamedTuple):
    """`DECOMPOSITION_COLUMNS` per (day, portfolio, component) and `CONTRIBUTION_COLUMNS` per
    (day, position)."""

    portfolios: pd.DataFrame
    positions: pd.DataFrame


def factor_regressors(etf_returns: pd.DataFrame) -> pd.DataFrame:
    """Sessions x factor regressors: Market = SPY, styles = ETF - SPY, Rates = TLT if present.

    ``etf_returns``: sessions x ETF tickers (SPY, MTUM, VTV, VUG, QUAL, IWM, SPLV and
    optionally TLT). The same regressors `analytics.factors` regresses on.
    """
    regressors = spread_design(etf_returns)
    if RATES_ETF in etf_returns.columns:
        regressors[RATES_FACTOR] = etf_returns[RATES_ETF].astype(float)
    return regressors


def _window_rows(index: pd.DatetimeIndex, day: pd.Timestamp, window: int) -> slice | None:
    pos = index.get_indexer([day])[0]
    return None if pos < 0 else slice(max(0, pos - window + 1), pos + 1)


def factor_covariance(
    regressors: pd.DataFrame, end_dates: Iterable, window: int = 60, min_obs: int = 20
) -> pd.DataFrame:
    """Sample covariance (ddof=1) of the regressors over the last ``window`` sessions.

    ``regressors``: sessions x factors (`factor_regressors`). Rows with any missing regressor
    are dropped (listwise, so the matrix is PSD). Long `FACTOR_COVARIANCE_COLUMNS`, every
    ordered (factor_a, factor_b) pair; NaN with a reason below ``min_obs`` rows or when the
    end date is not a row.
    """
    frame = _sorted_wide(regressors, "regressors")
    factors = list(frame.columns)
    k = len(factors)
    a = np.repeat(np.asarray(factors, dtype=object), k)
    b = np.tile(np.asarray(factors, dtype=object), k)
    parts = []
    for day in _date_index(end_dates, "end_dates").unique().sort_values():
        rows = _window_rows(frame.index, day, window)
        cov = np.full((k, k), np.nan)
        n, reason = 0, None
        if rows is None:
            reason = "no regressor row for the end date"
        else:
            block = frame.to_numpy(dtype=float)[rows]
            block = block[np.isfinite(block).all(axis=1)]
            n = len(block)
            if n < min_obs:
                reason = f"{n} complete factor rows < {min_obs}"
            else:
                cov = np.atleast_2d(np.cov(block, rowvar=False, ddof=1))
        parts.append(
            pd.DataFrame(
                {"trade_date": day, "factor_a": a, "factor_b": b, "covariance": cov.ravel(),
                 "n_obs": n, "reason": reason}
            )
        )  # fmt: skip
    if not parts:
        return pd.DataFrame(columns=list(FACTOR_COVARIANCE_COLUMNS))
    out = pd.concat(parts, ignore_index=True)
    out["reason"] = out["reason"].astype(object)
    return out[list(FACTOR_COVARIANCE_COLUMNS)]


def _model_factors(regressor_columns: Iterable[str], beta_factors: Iterable[str]) -> list[str]:
    """Factors both regressed on and carrying betas, in regressor order."""
    have = set(beta_factors)
    return [f for f in regressor_columns if f in have]


def _beta_matrix(betas: pd.DataFrame, day: pd.Timestamp, factors: list[str]) -> pd.DataFrame:
    today = betas[betas["trade_date"] == day]
    return today.pivot_table(
        index="symbol", columns="factor", values="beta", aggfunc="last", dropna=False
    ).reindex(columns=factors)


def _rows_at(wide: pd.DataFrame, keys: pd.MultiIndex, width: int) -> np.ndarray:
    """The rows of `wide` at `keys` (len(keys) x width), NaN where a key is absent."""
    if wide.empty:
        return np.full((len(keys), width), np.nan)
    at = wide.index.get_indexer(keys)
    return np.where((at >= 0)[:, None], wide.to_numpy(dtype=float)[np.maximum(at, 0)], np.nan)


def wide_betas(
    betas: pd.DataFrame, factors: list[str], index: pd.MultiIndex | None = None
) -> pd.DataFrame:
    """Long betas (trade_date, symbol, factor, beta) as (trade_date, symbol) rows x `factors`
    (the last of duplicate keys), reindexed to `index` when given (NaN where absent)."""
    wide = (
        betas.drop_duplicates(["trade_date", "symbol", "factor"], keep="last")
        .set_index(["trade_date", "symbol", "factor"])["beta"]
        .unstack("factor")
    )
    return wide.reindex(index=index, columns=factors)


def _normalized_betas(betas: pd.DataFrame) -> pd.DataFrame:
    _require_columns(betas, ("trade_date", "symbol", "factor", "beta"), "betas")
    out = betas[["trade_date", "symbol", "factor", "beta"]].copy()
    out["trade_date"] = _date_index(out["trade_date"], "betas.trade_date")
    out["beta"] = out["beta"].astype(float)
    return out


def specific_variances(
    asset_returns: pd.DataFrame,
    regressors: pd.DataFrame,
    betas: pd.DataFrame,
    end_dates: Iterable | None = None,
    window: int = 60,
    min_obs: int = 20,
) -> pd.DataFrame:
    """Residual (specific) daily variance per (end date, symbol), batched over symbols.

    ``asset_returns``: sessions x symbols; ``regressors``: sessions x factors
    (`factor_regressors`), whose rows define the window (the last ``window`` rows at or before
    the end date; rows with a missing regressor dropped, like the betas); ``betas``: long
    trade_date, symbol, factor, beta (e.g. `rolling_factor_betas`; factors not among the
    regressors, such as Short Interest, are ignored). ``end_dates`` defaults to the betas'
    dates. Residual e_t = r_t - B f_t on the symbol's observed rows; variance = sum of squared
    de-meaned residuals / (n - 1 - K). Returns `SPECIFIC_VARIANCE_COLUMNS` for every symbol
    with betas on the day; NaN with a reason for a missing beta or fewer than ``min_obs`` rows.
    """
    betas = _normalized_betas(betas)
    frame = _sorted_wide(regressors, "regressors")
    factors = _model_factors(frame.columns, betas["factor"].unique())
    if not factors:
        raise ValueError(
            f"betas name none of the regressor factors {list(frame.columns)}; "
            f"got {sorted(betas['factor'].unique())}"
        )
    k = len(factors)
    f_all = frame[factors].to_numpy(dtype=float)
    assets = _sorted_wide(asset_returns, "asset_returns").reindex(frame.index)
    ends = (
        betas["trade_date"].unique() if end_dates is None else _date_index(end_dates, "end_dates")
    )
    parts = []
    for day in pd.DatetimeIndex(ends).unique().sort_values():
        b = _beta_matrix(betas, day, factors)
        symbols = list(b.index)
        m = len(symbols)
        var = np.full(m, np.nan)
        n_obs = np.zeros(m, dtype=np.int64)
        reasons = np.full(m, None, dtype=object)
        rows = _window_rows(frame.index, day, window)
        if rows is None:
            reasons[:] = "no regressor row for the end date"
        else:
            f = f_all[rows]
            ok_rows = np.isfinite(f).all(axis=1)
            f = f[ok_rows]
            y = assets.reindex(columns=symbols).to_numpy(dtype=float)[rows][ok_rows]
            beta = b.to_numpy(dtype=float)  # m x K
            valid = np.isfinite(y)
            n_obs = valid.sum(axis=0)
            resid = np.where(valid, y - f @ beta.T, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = resid.sum(axis=0) / n_obs
                dev = np.where(valid, resid - mean, 0.0)
                var = np.einsum("ij,ij->j", dev, dev) / (n_obs - 1 - k)
            no_beta = ~np.isfinite(beta).all(axis=1)
            few = n_obs < max(min_obs, k + 2)
            var = np.where(no_beta | few, np.nan, var)
            for j in np.flatnonzero(few):
                reasons[j] = f"{n_obs[j]} observations < {max(min_obs, k + 2)}"
            for j in np.flatnonzero(no_beta):
                absent = [factors[i] for i in np.flatnonzero(~np.isfinite(beta[j]))]
                reasons[j] = f"no beta for {absent}"
        parts.append(
            {"trade_date": np.full(len(symbols), np.datetime64(day, "ns")),
             "symbol": np.asarray(symbols, dtype=object), "specific_variance": var,
             "n_obs": n_obs, "reason": reasons}
        )  # fmt: skip
    if not parts:
        return pd.DataFrame(columns=list(SPECIFIC_VARIANCE_COLUMNS))
    return joined_columns(parts, SPECIFIC_VARIANCE_COLUMNS)


class RiskModel(NamedTuple):
    """The risk model's inputs arranged for lookups (`risk_model`): built once, applied to
    any number of chunks of positions (`decompose`)."""

    factors: list[str]
    betas: pd.DataFrame  # (trade_date, symbol) rows x factors
    specific: pd.DataFrame  # (trade_date, symbol) rows, column specific_variance
    cov_days: pd.DatetimeIndex
    sigma: np.ndarray  # len(cov_days) x K x K


def risk_model(betas: pd.DataFrame, factor_cov: pd.DataFrame, specific: pd.DataFrame) -> RiskModel:
    """``betas``: long trade_date, symbol, factor, beta. ``factor_cov``: `factor_covariance`
    output; its factors that also carry betas form the model. ``specific``:
    `specific_variances` output (trade_date, symbol, specific_variance)."""
    _require_columns(factor_cov, ("trade_date", "factor_a", "factor_b", "covariance"), "factor_cov")
    _require_columns(specific, ("trade_date", "symbol", "specific_variance"), "specific")
    betas = _normalized_betas(betas)
    cov = factor_cov.assign(trade_date=_date_index(factor_cov["trade_date"], "factor_cov"))
    spec = specific.assign(trade_date=_date_index(specific["trade_date"], "specific"))
    cov_factors = list(dict.fromkeys(cov["factor_a"]))
    factors = _model_factors(cov_factors, betas["factor"].unique())
    if not factors:
        raise ValueError(f"no factor has both a covariance {cov_factors} and betas")
    spec_rows = spec.drop_duplicates(["trade_date", "symbol"]).set_index(["trade_date", "symbol"])
    # The factor covariance of every day as one days x K x K array.
    index = {f: i for i, f in enumerate(factors)}
    cov = cov[cov["factor_a"].isin(index) & cov["factor_b"].isin(index)]
    cov_days = pd.DatetimeIndex(cov["trade_date"].unique())
    sigma_all = np.full((len(cov_days), len(factors), len(factors)), np.nan)
    sigma_all[
        cov_days.get_indexer(cov["trade_date"]),
        cov["factor_a"].map(index).to_numpy(),
        cov["factor_b"].map(index).to_numpy(),
    ] = cov["covariance"].to_numpy(dtype=float)
    return RiskModel(
        factors,
        wide_betas(betas, factors),
        spec_rows[["specific_variance"]].astype(float),
        cov_days,
        sigma_all,
    )


def risk_decomposition(
    exposures: pd.DataFrame,
    betas: pd.DataFrame,
    factor_cov: pd.DataFrame,
    specific: pd.DataFrame,
    annualization: float = ANNUALIZATION,
) -> RiskDecomposition:
    """Euler risk decomposition per (day, portfolio) and per position (module docstring):
    `decompose` with the `risk_model` of ``betas``, ``factor_cov`` and ``specific``."""
    return decompose(exposures, risk_model(betas, factor_cov, specific), annualization)


def decompose(
    exposures: pd.DataFrame, model: RiskModel, annualization: float = ANNUALIZATION
) -> RiskDecomposition:
    """Euler risk decomposition per (day, portfolio) and per position (module docstring).

    ``exposures``: trade_date, position_id, portfolio_id, underlying, exposure (signed dollars
    on the underlying, options delta-adjusted: `analytics.exposures.risk_exposures`).

    Returns `RiskDecomposition`: portfolios (one row per model factor plus ``specific``;
    exposure_usd = x_k for a factor, NaN for specific; total_vol_usd = sigma repeated) and
    positions (`CONTRIBUTION_COLUMNS`; factor_vol_usd + specific_vol_usd = component_vol_usd).
    """
    _require_columns(
        exposures,
        ("trade_date", "position_id", "portfolio_id", "underlying", "exposure"),
        "exposures",
    )
    pos = exposures[["trade_date", "position_id", "portfolio_id", "underlying", "exposure"]].copy()
    pos["trade_date"] = _date_index(pos["trade_date"], "exposures.trade_date")
    pos["exposure"] = pos["exposure"].astype(float)
    factors = model.factors
    pos = pos.sort_values("trade_date", kind="stable").reset_index(drop=True)
    dates = pos["trade_date"].to_numpy()
    # Each position's betas and specific variance on its day, looked up once for the chunk.
    keyed = pd.MultiIndex.from_arrays([pos["trade_date"], pos["underlying"]])
    beta_all = _rows_at(model.betas, keyed, len(factors))
    spec_all = _rows_at(model.specific, keyed, 1)[:, 0]
    no_cov = np.full((len(factors), len(factors)), np.nan)

    port_parts, pos_parts = [], []
    days, firsts = np.unique(dates, return_index=True)
    cov_at = model.cov_days.get_indexer(pd.DatetimeIndex(days))
    for day, at, lo, hi in zip(days, cov_at, firsts, np.r_[firsts[1:], len(pos)], strict=True):
        ports, positions = _decompose_day(
            pd.Timestamp(day), pos.iloc[lo:hi].reset_index(drop=True), factors,
            model.sigma[at] if at >= 0 else no_cov, beta_all[lo:hi], spec_all[lo:hi],
            annualization,
        )  # fmt: skip
        port_parts.append(ports)
        pos_parts.append(positions)
    if not port_parts:
        return RiskDecomposition(
            pd.DataFrame(columns=list(DECOMPOSITION_COLUMNS)),
            pd.DataFrame(columns=list(CONTRIBUTION_COLUMNS)),
        )
    return RiskDecomposition(
        joined_columns(port_parts, DECOMPOSITION_COLUMNS),
        joined_columns(pos_parts, CONTRIBUTION_COLUMNS),
    )


def _decompose_day(
    day: pd.Timestamp,
    pos: pd.DataFrame,
    factors: list[str],
    sigma_f: np.ndarray,
    beta: np.ndarray,
    spec: np.ndarray,
    annualization: float,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One day's decomposition for every portfolio in ``pos``, vectorized: the columns of its
    portfolio rows and of its position rows. ``beta`` (n x K) and ``spec`` (n) are each
    position's underlying's betas and specific variance."""
    k = len(factors)
    n = len(pos)
    e = pos["exposure"].to_numpy(dtype=float)
    reasons = np.full(n, None, dtype=object)
    no_beta = ~np.isfinite(beta).all(axis=1)
    no_spec = ~np.isfinite(spec)
    reasons[no_spec] = "no specific variance for the underlying"
    for j in np.flatnonzero(no_beta):
        absent = [factors[i] for i in np.flatnonzero(~np.isfinite(beta[j]))]
        reasons[j] = f"no beta for {absent}"
    reasons[~np.isfinite(e)] = "no exposure"
    covered = np.isfinite(e) & ~no_beta & ~no_spec
    cov_ok = bool(np.isfinite(sigma_f).all())
    if not cov_ok:
        covered[:] = False
        reasons[:] = "no factor covariance for the day"
    ec = np.where(covered, e, 0.0)
    bc = np.where(covered[:, None], beta, 0.0)
    sc = np.where(covered, spec, 0.0)

    port_ids, port_codes = np.unique(pos["portfolio_id"].to_numpy(), return_inverse=True)
    n_port = len(port_ids)
    # Names: exposure summed per (portfolio, underlying) over covered positions.
    names, _ = pd.factorize(pos["underlying"], use_na_sentinel=False)
    _, name_codes = np.unique(port_codes * (names.max(initial=0) + 1) + names, return_inverse=True)
    name_e = np.bincount(name_codes, weights=ec)
    e_name = name_e[name_codes]  # each position's underlying total in its portfolio

    x = np.zeros((n_port, k))
    np.add.at(x, port_codes, bc * ec[:, None])  # B'e per portfolio
    sx = x @ sigma_f.T if cov_ok else np.full((n_port, k), np.nan)  # Sigma_f x
    factor_var = x * sx  # P x K, Euler split of x' Sigma_f x
    # Specific variance: sum over names of e_u^2 s_u (each name once).
    name_s = np.zeros(len(name_e))
    np.maximum.at(name_s, name_codes, sc)
    name_port = np.zeros(len(name_e), dtype=np.int64)
    name_port[name_codes] = port_codes
    spec_var = np.bincount(name_port, weights=name_e**2 * name_s, minlength=n_port)
    total_var = (factor_var.sum(axis=1) + spec_var) * annualization
    sigma = np.sqrt(np.clip(total_var, 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        inv_sigma = np.where(sigma > 0, 1.0 / sigma, np.nan)
        factor_marginal = (bc * sx[port_codes]).sum(axis=1) * annualization * inv_sigma[port_codes]
        spec_marginal = sc * e_name * annualization * inv_sigma[port_codes]
    marginal = np.where(covered, factor_marginal + spec_marginal, np.nan)

    gross = np.bincount(port_codes, weights=np.abs(np.nan_to_num(e)), minlength=n_port)
    covered_gross = np.bincount(port_codes, weights=np.abs(ec), minlength=n_port)
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(gross > 0, covered_gross / gross, np.nan)
    port_reason = np.full(n_port, None, dtype=object)
    left_out = np.bincount(port_codes, weights=~covered & (np.nan_to_num(e) != 0), minlength=n_port)
    left_out = left_out.astype(np.int64)
    for p in range(n_port):
        notes = []
        if not cov_ok:
            notes.append("no factor covariance for the day")
        elif left_out[p]:
            notes.append(f"{left_out[p]} position(s) without betas/specific variance left out")
        if not sigma[p] > 0:
            notes.append("zero model volatility")
        port_reason[p] = "; ".join(notes) or None

    when = np.datetime64(day, "ns")
    positions = {
        "trade_date": np.full(n, when),
        "position_id": pos["position_id"].to_numpy(),
        "portfolio_id": pos["portfolio_id"].to_numpy(),
        "underlying": pos["underlying"].to_numpy(),
        "exposure_usd": e,
        "marginal_vol_usd": marginal,
        "component_vol_usd": e * marginal,
        "factor_vol_usd": np.where(covered, e * factor_marginal, np.nan),
        "specific_vol_usd": np.where(covered, e * spec_marginal, np.nan),
        "share_of_risk": e * marginal * inv_sigma[port_codes],
        "reason": reasons,
    }
    components = [*factors, SPECIFIC]
    variance = np.column_stack([factor_var, spec_var]) * annualization  # P x (K + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = variance / np.where(total_var > 0, total_var, np.nan)[:, None]
        vol = variance * inv_sigma[:, None]
    c = len(components)
    portfolios = {
        "trade_date": np.full(n_port * c, when),
        "portfolio_id": np.repeat(np.asarray(port_ids, dtype=object), c),
        "component": np.tile(np.asarray(components, dtype=object), n_port),
        "exposure_usd": np.column_stack([x, np.full(n_port, np.nan)]).ravel(),
        "variance_usd2": variance.ravel(),
        "share_of_variance": share.ravel(),
        "vol_contribution_usd": vol.ravel(),
        "total_vol_usd": np.repeat(np.where(cov_ok, sigma, np.nan), c),
        "coverage": np.repeat(coverage, c),
        "reason": np.repeat(port_reason, c),
    }
    return portfolios, positions
