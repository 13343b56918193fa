"""Position and portfolio factor exposures from symbol betas (pure functions)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.factors import RATES_FACTOR
from sigmasight_pipeline.analytics.validation import require_unique_pairs
from sigmasight_pipeline.resources.market_data import FACTOR_ETFS, SHORT_INTEREST_FACTOR

FACTORS = (*FACTOR_ETFS, SHORT_INTEREST_FACTOR)


def risk_exposures(values: pd.DataFrame, greeks: pd.DataFrame) -> pd.DataFrame:
    """The dollar exposure each position puts on its underlying, per day.

    Stocks: signed exposure (quantity x price). Options: delta-adjusted exposure (position
    delta x underlying price), so an option carries its underlying's betas scaled by delta.
    Columns: trade_date, position_id, portfolio_id, symbol, underlying, exposure.
    """
    keys = ["trade_date", "position_id"]
    merged = values[[*keys, "portfolio_id", "symbol", "exposure", "position_type"]].merge(
        greeks[[*keys, "underlying", "delta_adjusted_exposure"]], on=keys, how="left"
    )
    is_option = merged["position_type"].isin(["LC", "LP", "SC", "SP"])
    merged["underlying"] = merged["underlying"].fillna(merged["symbol"])
    merged["exposure"] = np.where(is_option, merged["delta_adjusted_exposure"], merged["exposure"])
    return merged[["trade_date", "position_id", "portfolio_id", "symbol", "underlying", "exposure"]]


def position_factor_exposures(
    exposures: pd.DataFrame, betas: pd.DataFrame, short_interest: pd.DataFrame
) -> pd.DataFrame:
    """One row per (day, position, factor): the underlying's beta and the dollar exposure.

    exposures: from `risk_exposures`. betas: trade_date, symbol, factor, beta, n_obs, reason.
    short_interest: trade_date, symbol, short_interest_pct_float. The Short Interest factor's
    "beta" is the underlying's short interest as a fraction of float (a characteristic, as in
    style models), so its dollar exposure is exposure x short-interest fraction. The Rates
    factor (beta to TLT) is included when `betas` has it (the universe holds TLT).
    """
    si = short_interest.rename(columns={"symbol": "underlying"}).assign(
        factor=SHORT_INTEREST_FACTOR,
        beta=short_interest["short_interest_pct_float"] / 100.0,
        n_obs=1,
        reason=np.where(
            short_interest["short_interest_pct_float"].isna(), "no short interest data", None
        ),
    )[["trade_date", "underlying", "factor", "beta", "n_obs", "reason"]]
    all_betas = pd.concat(
        [betas.rename(columns={"symbol": "underlying"})[si.columns], si], ignore_index=True
    )
    require_unique_pairs(betas, ["trade_date", "symbol", "factor"], "betas")
    require_unique_pairs(short_interest, ["trade_date", "symbol"], "short_interest")
    factors = list(FACTORS)
    if betas["factor"].eq(RATES_FACTOR).any():
        factors.insert(factors.index(SHORT_INTEREST_FACTOR), RATES_FACTOR)
    grid = exposures.merge(pd.DataFrame({"factor": factors}), how="cross")
    out = grid.merge(all_betas, on=["trade_date", "underlying", "factor"], how="left")
    missing = out["n_obs"].isna()
    out["n_obs"] = out["n_obs"].fillna(0).astype(int)
    out.loc[missing, "reason"] = "no beta for the underlying on this day"
    is_si = out["factor"].eq(SHORT_INTEREST_FACTOR)
    out.loc[missing & is_si, "reason"] = "no short interest for the underlying (ETF or no data)"
    out["dollar_exposure"] = out["exposure"] * out["beta"]
    return out[
        ["trade_date", "position_id", "portfolio_id", "symbol", "underlying", "factor", "beta",
         "n_obs", "exposure", "dollar_exposure", "reason"]
    ]  # fmt: skip


def portfolio_factor_exposures(
    position_exposures: pd.DataFrame, equity: pd.DataFrame
) -> pd.DataFrame:
    """Portfolio beta per factor = sum over positions of (exposure / equity) x beta, and the
    dollar exposure = sum of exposure x beta; coverage = the share of gross exposure with a beta.

    equity: trade_date, portfolio_id, total_value (the gross market value of the positions).
    Positions without a beta add nothing (coverage says how much is missing).
    """
    require_unique_pairs(equity, ["trade_date", "portfolio_id"], "equity")
    frame = position_exposures.assign(
        has_beta=position_exposures["beta"].notna(),
        abs_exposure=position_exposures["exposure"].abs(),
    )
    frame["covered"] = frame["abs_exposure"].where(frame["has_beta"], 0.0)
    agg = (
        frame.groupby(["trade_date", "portfolio_id", "factor"])
        .agg(
            dollar_exposure=("dollar_exposure", "sum"),
            gross=("abs_exposure", "sum"),
            covered=("covered", "sum"),
            with_beta=("has_beta", "sum"),
        )
        .reset_index()
        .merge(equity[["trade_date", "portfolio_id", "total_value"]], how="left")
    )
    agg["beta"] = np.where(
        (agg["with_beta"] > 0) & (agg["total_value"] > 0),
        agg["dollar_exposure"] / agg["total_value"],
        np.nan,
    )
    agg.loc[agg["with_beta"] == 0, "dollar_exposure"] = np.nan
    agg["coverage"] = np.where(agg["gross"] > 0, agg["covered"] / agg["gross"], np.nan)
    return agg[["trade_date", "portfolio_id", "factor", "beta", "dollar_exposure", "coverage"]]
