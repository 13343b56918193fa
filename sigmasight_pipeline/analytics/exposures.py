"""Position and portfolio factor exposures from symbol betas (pure functions)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.factors import RATES_FACTOR
from sigmasight_pipeline.analytics.validation import require_unique_pairs
from sigmasight_pipeline.resources.market_data import FACTOR_ETFS, SHORT_INTEREST_FACTOR

FACTORS = (*FACTOR_ETFS, RATES_FACTOR, SHORT_INTEREST_FACTOR)


def risk_exposures(values: pd.DataFrame, greeks: pd.DataFrame) -> pd.DataFrame:
    """The dollar exposure each position puts on its underlying, per day.

    values: trade_date, position_id, portfolio_id, symbol, underlying, position_type, exposure
    (position values with the position's attributes). greeks: trade_date, position_id,
    delta_adjusted_exposure of the option positions. Stocks: signed exposure (quantity x
    price). Options: delta-adjusted exposure (position delta x underlying price), so an option
    carries its underlying's betas scaled by delta; NaN when it has no Greeks that day.
    Columns: trade_date, position_id, portfolio_id, symbol, underlying, exposure.
    """
    keys = ["trade_date", "position_id"]
    merged = values[
        [*keys, "portfolio_id", "symbol", "underlying", "exposure", "position_type"]
    ].merge(greeks[[*keys, "delta_adjusted_exposure"]], on=keys, how="left")
    is_option = merged["position_type"].isin(["LC", "LP", "SC", "SP"])
    merged["exposure"] = np.where(is_option, merged["delta_adjusted_exposure"], merged["exposure"])
    return merged[["trade_date", "position_id", "portfolio_id", "symbol", "underlying", "exposure"]]


BETA_COLUMNS: dict[str, str] = {
    "Market": "beta_market",
    "Momentum": "beta_momentum",
    "Value": "beta_value",
    "Growth": "beta_growth",
    "Quality": "beta_quality",
    "Size": "beta_size",
    "Low Volatility": "beta_low_volatility",
    RATES_FACTOR: "beta_rates",
}
POSITION_FACTOR_COLUMNS = [
    "trade_date", "position_id", "portfolio_id", "exposure", *BETA_COLUMNS.values(),
    "short_interest", "n_obs", "reason",
]  # fmt: skip
NO_BETA = "no beta for the underlying on this day"


def position_factor_exposures(
    exposures: pd.DataFrame, betas: pd.DataFrame, short_interest: pd.DataFrame
) -> pd.DataFrame:
    """One row per (day, position): the underlying's beta to each factor (`beta_*` columns),
    its short interest as a fraction of float, and the exposure they apply to.

    exposures: from `risk_exposures`. betas: trade_date, symbol, factor, beta, n_obs, reason
    (long, as `factors.rolling_factor_betas` gives them; Rates when the universe holds TLT).
    short_interest: trade_date, symbol, short_interest_pct_float. A factor's dollar exposure
    is exposure x its beta; the Short Interest factor's "beta" is the short-interest fraction
    (a characteristic, as in style models). `n_obs` is the market beta's; `reason` names every
    factor without a beta and why (NULL when all are there).
    """
    return with_factor_betas(exposures, underlying_factor_betas(betas, short_interest))


def underlying_factor_betas(betas: pd.DataFrame, short_interest: pd.DataFrame) -> pd.DataFrame:
    """Per (trade_date, underlying): the `beta_*` columns, n_obs, reason and short_interest
    that `with_factor_betas` gives each position of the underlying (see
    `position_factor_exposures`). Computed once for many chunks of positions."""
    require_unique_pairs(betas, ["trade_date", "symbol", "factor"], "betas")
    require_unique_pairs(short_interest, ["trade_date", "symbol"], "short_interest")
    keys = ["trade_date", "underlying"]
    long = betas[betas["factor"].isin(list(BETA_COLUMNS))].rename(columns={"symbol": "underlying"})
    wide_beta = long.pivot(index=keys, columns="factor", values="beta")
    wide_reason = long.pivot(index=keys, columns="factor", values="reason")
    market_obs = long[long["factor"].eq("Market")].set_index(keys)["n_obs"]
    wide = wide_beta.reindex(columns=list(BETA_COLUMNS)).rename(columns=BETA_COLUMNS)
    wide["n_obs"] = market_obs.reindex(wide.index)
    wide["reason"] = _missing_betas(wide, wide_reason.reindex(columns=list(BETA_COLUMNS)))
    si = short_interest.rename(columns={"symbol": "underlying"}).set_index(keys)
    short = (si["short_interest_pct_float"] / 100.0).rename("short_interest")
    # Underlyings with a short interest and no betas keep their row (NaN betas).
    return wide.join(short, how="outer").reset_index()


def with_factor_betas(exposures: pd.DataFrame, underlying_betas: pd.DataFrame) -> pd.DataFrame:
    """`POSITION_FACTOR_COLUMNS` for the positions of `exposures` (`risk_exposures`), from
    their underlyings' rows of `underlying_factor_betas`."""
    out = exposures.merge(underlying_betas, on=["trade_date", "underlying"], how="left")
    no_betas = out["n_obs"].isna()
    out.loc[no_betas, "reason"] = "no betas for the underlying on this day"
    out["n_obs"] = out["n_obs"].fillna(0).astype(int)
    return out[POSITION_FACTOR_COLUMNS]


def _missing_betas(wide: pd.DataFrame, reasons: pd.DataFrame) -> np.ndarray:
    """Per (day, underlying): 'Momentum: only 12 observations (< 20); Rates: ...' naming the
    factors without a beta, None when every beta is there."""
    out = np.full(len(wide), None, dtype=object)
    missing = wide[list(BETA_COLUMNS.values())].isna().to_numpy()
    why = reasons.to_numpy(dtype=object)
    names = list(BETA_COLUMNS)
    for row in np.flatnonzero(missing.any(axis=1)):
        out[row] = "; ".join(
            f"{names[j]}: {why[row, j] if isinstance(why[row, j], str) else NO_BETA}"
            for j in np.flatnonzero(missing[row])
        )
    return out
