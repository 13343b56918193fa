"""Concentration of each portfolio per day: HHI, effective N, top-5/top-10, largest name.

Pure pandas/numpy, vectorized with group-bys over a chunk of portfolios and days.

Conventions
-----------
* A *name* is an underlying. A position's dollar exposure counts on its underlying: stocks at
  signed exposure (quantity x price), options at delta-adjusted exposure; the exposures on one
  underlying are netted first (a stock hedged by its own puts is a smaller name).
* Weights are of gross: w_i = |x_i| / sum_j |x_j| over the names, x_i the net exposure on name i.
* HHI = sum w_i^2 (in (0, 1]; the Herfindahl-Hirschman index on fractions, not the 10,000
  scale); effective N = 1 / HHI (N equal names give N).
* top5_weight / top10_weight: the sum of the 5 / 10 largest weights (all of them when there
  are fewer names). largest_symbol / largest_weight: the biggest name (ties: alphabetical);
  largest_exposure_usd is its signed net exposure.
* A portfolio whose names net to zero gross gets NaN with a reason. Positions with a missing
  exposure (unpriced) are left out, counted in ``n_missing_exposure`` and named in ``reason``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.risk import _date_index, _require_columns

__all__ = ["CONCENTRATION_COLUMNS", "name_exposures", "portfolio_concentration"]

CONCENTRATION_COLUMNS = (
    "trade_date", "portfolio_id", "gross_exposure_usd", "n_names", "hhi", "effective_n",
    "top5_weight", "top10_weight", "largest_symbol", "largest_weight", "largest_exposure_usd",
    "n_missing_exposure", "reason",
)  # fmt: skip
KEYS = ["trade_date", "portfolio_id"]


def name_exposures(exposures: pd.DataFrame) -> pd.DataFrame:
    """Net exposure per (trade_date, portfolio_id, underlying) with its weight of gross.

    ``exposures``: trade_date, portfolio_id, underlying, exposure (e.g. the frame of
    `analytics.exposures.risk_exposures`). Returns trade_date, portfolio_id, underlying,
    exposure, weight (|exposure| / the portfolio's gross; NaN when the gross is 0), sorted by
    portfolio, day and weight descending (ties: underlying). Rows with a missing exposure (an
    unpriced position) are left out.
    """
    _require_columns(exposures, (*KEYS, "underlying", "exposure"), "exposures")
    frame = exposures[[*KEYS, "underlying", "exposure"]].copy()
    frame["trade_date"] = _date_index(frame["trade_date"], "exposures.trade_date")
    frame["exposure"] = frame["exposure"].astype(float)
    names = (
        frame.dropna(subset=["exposure"])
        .groupby([*KEYS, "underlying"], as_index=False, sort=False)["exposure"]
        .sum()
    )
    gross = names["exposure"].abs().groupby([names[k] for k in KEYS]).transform("sum")
    names["weight"] = np.where(gross > 0, names["exposure"].abs() / gross.where(gross > 0), np.nan)
    names["abs_exposure"] = names["exposure"].abs()
    names = names.sort_values(
        ["portfolio_id", "trade_date", "abs_exposure", "underlying"],
        ascending=[True, True, False, True],
        kind="stable",
    )
    return names.drop(columns="abs_exposure").reset_index(drop=True)


def portfolio_concentration(exposures: pd.DataFrame) -> pd.DataFrame:
    """One row per (trade_date, portfolio_id): `CONCENTRATION_COLUMNS` (module docstring).

    ``exposures``: trade_date, portfolio_id, underlying, exposure (signed dollars; options at
    delta-adjusted exposure), e.g. `analytics.exposures.risk_exposures` for a chunk.
    """
    names = name_exposures(exposures)
    if exposures.empty:
        return pd.DataFrame(columns=list(CONCENTRATION_COLUMNS))
    missing = (
        exposures.assign(
            trade_date=_date_index(exposures["trade_date"], "exposures.trade_date"),
            missing=exposures["exposure"].isna(),
        )
        .groupby(KEYS)["missing"]
        .sum()
    )
    groups = [names[k] for k in KEYS]
    names["rank"] = names.groupby(KEYS, sort=False).cumcount()
    names["w2"] = names["weight"] ** 2
    names["top5"] = names["weight"].where(names["rank"] < 5, 0.0)
    names["top10"] = names["weight"].where(names["rank"] < 10, 0.0)
    names["gross"] = names["exposure"].abs()
    names["held"] = names["exposure"].ne(0)
    agg = (
        names.groupby(groups, sort=True)
        .agg(
            gross_exposure_usd=("gross", "sum"),
            n_names=("held", "sum"),
            hhi=("w2", "sum"),
            top5_weight=("top5", "sum"),
            top10_weight=("top10", "sum"),
        )
        .reindex(missing.index)
    )  # a portfolio with only unpriced positions keeps its row
    agg["gross_exposure_usd"] = agg["gross_exposure_usd"].fillna(0.0)
    agg["n_names"] = agg["n_names"].fillna(0)
    largest = names[names["rank"] == 0].set_index(KEYS)
    agg["largest_symbol"] = largest["underlying"]
    agg["largest_weight"] = largest["weight"]
    agg["largest_exposure_usd"] = largest["exposure"]
    empty = ~(agg["gross_exposure_usd"] > 0)
    for column in ("hhi", "top5_weight", "top10_weight", "largest_weight", "largest_exposure_usd"):
        agg.loc[empty, column] = np.nan
    agg["largest_symbol"] = agg["largest_symbol"].where(~empty, None)
    agg["effective_n"] = 1.0 / agg["hhi"]
    agg["n_missing_exposure"] = missing.astype(int)
    agg["reason"] = np.where(empty, "no exposure: every name nets to zero", None)
    unpriced = agg["n_missing_exposure"] > 0
    note = agg["n_missing_exposure"].astype(str) + " position(s) without an exposure left out"
    agg["reason"] = np.where(
        unpriced, np.where(empty, agg["reason"] + "; " + note, note), agg["reason"]
    )
    out = agg.reset_index()
    out["n_names"] = out["n_names"].astype(int)
    out["reason"] = out["reason"].astype(object)
    return out[list(CONCENTRATION_COLUMNS)]
