"""Stress tests: underlying moves, positions revalued, portfolio P&L (the scenario library is
`analytics.scenarios`).

Pure numpy/pandas; vectorized over positions x scenarios for a chunk of portfolios.

Conventions
-----------
* Scenarios come from a YAML file (data/stress_scenarios.yaml documents the format at its
  top); `scenarios.load_scenarios` validates it. Factor shocks: Market = SPY return, styles = the
  ETF-minus-SPY spread returns (the regressors of `analytics.factors`), Rates = a yield change
  in basis points, and an implied-vol multiplier for options.
* Underlying move under a factor scenario (`underlying_moves`):
  move_i = sum_k beta_ik shock_k over the shocked return factors
         + rate_beta_i x TLT return,  TLT return = -duration x delta_yield (16.5 by default:
  TLT's effective duration, roughly 16-17 years; +100bp -> TLT -16.5 %).
  A beta missing for a shocked factor makes the move NaN with a reason; a vol-only scenario
  moves nothing.
* Under a replay: the symbol's own compounded return over the episode (`episode_returns`:
  close of the last session on or before ``end`` / close on or before ``start`` - 1, each close
  at most ``max_gap_days`` calendar days stale), else (no history then) Market beta x SPY's
  episode return (move_source says which).
* Stocks (and any non-option): P&L = exposure x move (exposure = quantity x multiplier x
  price, position_greeks' delta_adjusted_exposure for a stock).
* Options, fully revalued: (BS(S (1 + move), K, t, r, vol x vol_multiplier) - BS(S, K, t, r,
  vol)) x quantity x multiplier with `analytics.greeks.bs_price`, time unchanged, at the
  volatility position_greeks used. Today's value is the model value at today's inputs, so a
  null scenario gives exactly 0. Beside it, the delta-gamma(-vega) approximation
  (delta dS + 0.5 gamma dS^2 + vega x 100 dvol) x quantity x multiplier. Nothing is clipped:
  a short call can lose more than the book.
* Options without a model volatility (Greeks source `fallback`) cannot be revalued: NaN with
  a reason, counted per portfolio. Expired options (t <= 0) are revalued at intrinsic value.
* Portfolio: pnl_usd = sum of the position P&Ls (missing ones left out and counted),
  pnl_pct_of_gross = pnl_usd / gross exposure (sum |quantity x multiplier x price|, the
  option's own price for options: portfolio_snapshots' gross_exposure), worst_position_id =
  the position with the lowest P&L, method = full_revaluation when an option was revalued,
  else linear.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from sigmasight_pipeline.analytics.decomposition import RATES_FACTOR, wide_betas
from sigmasight_pipeline.analytics.greeks import bs_price
from sigmasight_pipeline.analytics.instruments import OPTION_TYPES
from sigmasight_pipeline.analytics.risk import _date_index, _require_columns, _sorted_wide
from sigmasight_pipeline.analytics.scenarios import SCENARIO_FACTORS, Scenario

__all__ = [
    "MOVE_COLUMNS",
    "PORTFOLIO_STRESS_COLUMNS",
    "POSITION_STRESS_COLUMNS",
    "TLT_DURATION",
    "PositionStress",
    "UnderlyingMoves",
    "episode_returns",
    "pnl_usd_per_100bp",
    "portfolio_stress",
    "position_stress",
    "rate_shock_return",
    "underlying_moves",
]

TLT_DURATION = 16.5
MARKET_SYMBOL = "SPY"
MOVE_COLUMNS = ("trade_date", "symbol", "scenario_id", "move", "move_source", "reason")
POSITION_STRESS_COLUMNS = (
    "trade_date", "position_id", "portfolio_id", "scenario_id", "underlying", "move",
    "pnl_usd", "pnl_usd_delta_gamma", "method", "reason",
)  # fmt: skip
PORTFOLIO_STRESS_COLUMNS = (
    "trade_date", "portfolio_id", "scenario_id", "pnl_usd", "pnl_usd_delta_gamma",
    "pnl_pct_of_gross", "gross_exposure_usd", "worst_position_id", "worst_position_pnl_usd",
    "method", "n_positions", "n_missing", "reason",
)  # fmt: skip


def rate_shock_return(delta_bp: float | np.ndarray, duration: float = TLT_DURATION) -> np.ndarray:
    """TLT's return for a parallel yield change of ``delta_bp`` basis points: -duration x dy."""
    return -duration * np.asarray(delta_bp, dtype=float) / 10_000.0


def pnl_usd_per_100bp(
    exposure: float | np.ndarray, rate_beta: float | np.ndarray, duration: float = TLT_DURATION
) -> np.ndarray:
    """Dollar P&L of a +100bp parallel yield move: exposure x rate_beta x TLT's return."""
    return (
        np.asarray(exposure, dtype=float)
        * np.asarray(rate_beta, dtype=float)
        * (rate_shock_return(100.0, duration))
    )


def _last_close_on_or_before(
    closes: pd.DataFrame, day: pd.Timestamp, max_gap_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the last non-NaN close on or before ``day`` and its date (NaN/NaT if none
    within ``max_gap_days`` calendar days)."""
    upto = closes.loc[:day]
    if upto.empty:
        n = closes.shape[1]
        return np.full(n, np.nan), np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    last_dates = upto.apply(pd.Series.last_valid_index)
    values = np.array(
        [upto.at[d, c] if pd.notna(d) else np.nan for c, d in last_dates.items()], dtype=float
    )
    dates = pd.to_datetime(last_dates.to_numpy()).to_numpy()
    stale = ~((day - pd.DatetimeIndex(dates)).days <= max_gap_days)
    values[stale] = np.nan
    return values, dates


def episode_returns(
    closes: pd.DataFrame, scenarios: Iterable[Scenario], max_gap_days: int = 7
) -> pd.DataFrame:
    """Each symbol's compounded return over each replay episode.

    ``closes``: sessions x symbols close prices (include SPY for the beta fallback). Returns
    symbol, scenario_id, episode_return, reason (NaN with a reason where the symbol has no close
    within ``max_gap_days`` calendar days on or before the start or the end).
    """
    frame = _sorted_wide(closes, "closes")
    frame = frame.where(frame > 0)
    parts = []
    for s in scenarios:
        if s.kind != "replay":
            continue
        assert s.start is not None and s.end is not None
        start, _ = _last_close_on_or_before(frame, s.start, max_gap_days)
        end, _ = _last_close_on_or_before(frame, s.end, max_gap_days)
        ret = end / start - 1.0
        reason = np.full(len(ret), None, dtype=object)
        reason[np.isnan(start)] = f"no close on or shortly before {s.start.date()}"
        reason[np.isnan(end) & ~np.isnan(start)] = f"no close on or shortly before {s.end.date()}"
        parts.append(
            pd.DataFrame(
                {"symbol": frame.columns.astype(object), "scenario_id": s.id,
                 "episode_return": ret, "reason": reason}
            )
        )  # fmt: skip
    if not parts:
        return pd.DataFrame(columns=["symbol", "scenario_id", "episode_return", "reason"])
    out = pd.concat(parts, ignore_index=True)
    out["reason"] = out["reason"].astype(object)
    return out


class UnderlyingMoves(NamedTuple):
    """The move of each underlying under each scenario, per trade date: row k of the (rows x
    scenarios) matrices is `keys` row k (trade_date, symbol); column j is `scenario_ids[j]`.
    ``source``: factor, vol_only, replay_own_history or replay_beta_x_spy; ``reason``: why a
    move is NaN (None when it is not). `frame` gives the long `MOVE_COLUMNS` rows."""

    keys: pd.DataFrame
    scenario_ids: tuple[str, ...]
    move: np.ndarray
    source: np.ndarray
    reason: np.ndarray

    def on(self, trade_dates: Iterable) -> UnderlyingMoves:
        """The moves of these trade dates only."""
        days = _date_index(trade_dates, "trade_dates")
        mask = _date_index(self.keys["trade_date"], "moves.trade_date").isin(days)
        return self._replace(
            keys=self.keys[mask].reset_index(drop=True),
            move=self.move[mask],
            source=self.source[mask],
            reason=self.reason[mask],
        )

    def frame(self) -> pd.DataFrame:
        k, width = self.move.shape
        return pd.DataFrame(
            {
                "trade_date": np.repeat(self.keys["trade_date"].to_numpy(), width),
                "symbol": np.repeat(self.keys["symbol"].to_numpy(dtype=object), width),
                "scenario_id": np.tile(np.asarray(self.scenario_ids, dtype=object), k),
                "move": self.move.ravel(),
                "move_source": self.source.ravel(),
                "reason": self.reason.ravel(),
            }
        )


def underlying_moves(
    betas: pd.DataFrame,
    scenarios: Sequence[Scenario],
    episodes: pd.DataFrame | None = None,
    duration: float = TLT_DURATION,
    symbols: Iterable[str] | None = None,
) -> UnderlyingMoves:
    """The move (a fraction) of each underlying under each scenario, per trade date.

    ``betas``: long trade_date, symbol, factor, beta (Market, styles and Rates; others are
    ignored). ``episodes``: `episode_returns` output (needed for replays; must include SPY for
    the fallback). ``symbols``: the underlyings to cover (default: the betas' symbols per
    date). NaN with a reason where a needed beta or history is missing.
    """
    _require_columns(betas, ("trade_date", "symbol", "factor", "beta"), "betas")
    frame = betas[betas["factor"].isin(SCENARIO_FACTORS)].copy()
    frame["trade_date"] = _date_index(frame["trade_date"], "betas.trade_date")
    # Every (date, symbol): the dates and the symbols (given, or those with betas) crossed.
    if symbols is None:
        dates, symbols = np.sort(frame["trade_date"].unique()), frame["symbol"].unique()
    else:
        dates = frame["trade_date"].unique()
    grid = pd.MultiIndex.from_product([dates, sorted(set(symbols))], names=["trade_date", "symbol"])
    wide = wide_betas(frame, list(SCENARIO_FACTORS), grid)
    beta = wide.to_numpy(dtype=float)  # rows x factors
    names = wide.index.get_level_values(1).astype(object)
    n, width = len(wide), len(scenarios)
    replay_returns = {}
    if episodes is not None and not episodes.empty:
        replay_returns = {
            sid: g.set_index("symbol")["episode_return"].astype(float)
            for sid, g in episodes.groupby("scenario_id")
        }
    move = np.zeros((n, width))
    source = np.empty((n, width), dtype=object)
    reason = np.full((n, width), None, dtype=object)
    for j, s in enumerate(scenarios):
        if s.kind == "factor":
            source[:, j] = "factor" if any(s.shocks.values()) else "vol_only"
            for factor, shock in s.shocks.items():
                if shock == 0:
                    continue
                k = SCENARIO_FACTORS.index(factor)
                scale = rate_shock_return(shock, duration) if factor == RATES_FACTOR else shock
                move[:, j] += beta[:, k] * scale
                missing = ~np.isfinite(beta[:, k]) & pd.isna(reason[:, j])
                reason[missing, j] = f"no {factor} beta"
        else:
            # No episode returns at all (none fetched yet): every move falls back, and is NaN
            # with a reason when SPY's return is missing too.
            own = replay_returns.get(s.id, pd.Series(dtype=float))
            mine = own.reindex(names).to_numpy(dtype=float)
            source[:, j] = np.where(np.isfinite(mine), "replay_own_history", "replay_beta_x_spy")
            spy = float(own.get(MARKET_SYMBOL, np.nan))
            move[:, j] = np.where(np.isfinite(mine), mine, beta[:, 0] * spy)
            gap = ~np.isfinite(move[:, j])
            if not np.isfinite(spy):
                reason[gap, j] = f"no history over {s.id} and no SPY episode return"
            else:
                reason[gap, j] = f"no history over {s.id} and no Market beta"
    reason[np.isnan(move) & pd.isna(reason)] = "missing beta"
    keys = pd.DataFrame(
        {"trade_date": wide.index.get_level_values(0), "symbol": np.asarray(names, dtype=object)}
    )
    return UnderlyingMoves(keys, tuple(s.id for s in scenarios), move, source, reason)


class PositionStress(NamedTuple):
    """Every position's P&L under every scenario: row k of the (positions x scenarios)
    matrices is `keys` row k (trade_date, position_id, portfolio_id, underlying); column j is
    `scenario_ids[j]`. ``is_option``: revalued in full (else linear). ``reason``: why a P&L is
    NaN, set exactly where pnl_usd is not finite (None elsewhere). `frame` gives the long
    `POSITION_STRESS_COLUMNS` rows."""

    keys: pd.DataFrame
    scenario_ids: tuple[str, ...]
    move: np.ndarray
    pnl_usd: np.ndarray
    pnl_usd_delta_gamma: np.ndarray
    reason: np.ndarray
    is_option: np.ndarray

    def frame(self) -> pd.DataFrame:
        n, width = self.pnl_usd.shape
        keys = {name: np.repeat(self.keys[name].to_numpy(), width) for name in self.keys}
        return pd.DataFrame(
            {
                "trade_date": keys["trade_date"],
                "position_id": keys["position_id"],
                "portfolio_id": keys["portfolio_id"],
                "scenario_id": np.tile(np.asarray(self.scenario_ids, dtype=object), n),
                "underlying": keys["underlying"],
                "move": self.move.ravel(),
                "pnl_usd": self.pnl_usd.ravel(),
                "pnl_usd_delta_gamma": self.pnl_usd_delta_gamma.ravel(),
                "method": np.repeat(
                    np.where(self.is_option, "full_revaluation", "linear").astype(object), width
                ),
                "reason": self.reason.ravel(),
            }
        )[list(POSITION_STRESS_COLUMNS)]


def position_stress(
    positions: pd.DataFrame, moves: UnderlyingMoves, scenarios: Sequence[Scenario]
) -> PositionStress:
    """P&L of every position under every scenario.

    ``positions``: the position_greeks rows of a chunk (trade_date, position_id, portfolio_id,
    position_type, quantity, multiplier, underlying, underlying_price, strike, t_years, rate,
    volatility, delta, gamma, vega (per contract), delta_adjusted_exposure, source).
    ``moves``: `underlying_moves` for the same scenarios. Stocks: linear; options: full
    revaluation, with the delta-gamma(-vega) estimate beside it (module docstring).
    """
    needed = (
        "trade_date", "position_id", "portfolio_id", "position_type", "quantity", "multiplier",
        "underlying", "underlying_price", "strike", "t_years", "rate", "volatility", "delta",
        "gamma", "vega", "delta_adjusted_exposure", "source",
    )  # fmt: skip
    _require_columns(positions, needed, "positions")
    ids = tuple(s.id for s in scenarios)
    if tuple(moves.scenario_ids) != ids:
        raise ValueError(f"moves are for scenarios {moves.scenario_ids}, not {ids}")
    dates = _date_index(positions["trade_date"], "positions.trade_date")
    keys = pd.MultiIndex.from_arrays(
        [_date_index(moves.keys["trade_date"], "moves.trade_date"), moves.keys["symbol"]]
    )
    at = keys.get_indexer(pd.MultiIndex.from_arrays([dates, positions["underlying"]]))
    found = (at >= 0)[:, None]
    move = np.where(found, moves.move[np.maximum(at, 0)], np.nan)
    vol_mult = np.array([s.vol_multiplier for s in scenarios], dtype=float)

    def column(name: str) -> np.ndarray:
        return positions[name].to_numpy(dtype=float)

    is_option = positions["position_type"].isin(OPTION_TYPES).to_numpy()
    revalue = is_option & positions["source"].isin(["model", "expired"]).to_numpy()
    # Stocks: exposure x move (delta-gamma identical).
    pnl = column("delta_adjusted_exposure")[:, None] * move
    pnl_dg = pnl.copy()
    # Options: full Black-Scholes revaluation at the shocked spot and vol, time unchanged.
    pnl[is_option] = np.nan
    pnl_dg[is_option] = np.nan
    if revalue.any():
        r = np.flatnonzero(revalue)
        spot, strike = column("underlying_price")[r, None], column("strike")[r, None]
        t, rate, vol = (
            column("t_years")[r, None],
            column("rate")[r, None],
            column("volatility")[r, None],
        )
        is_call = positions["position_type"].isin(["LC", "SC"]).to_numpy()[r, None]
        size = (column("quantity") * column("multiplier"))[r, None]
        shocked_spot = spot * (1.0 + move[r])
        with np.errstate(invalid="ignore"):
            today = bs_price(spot, strike, t, rate, vol, is_call)
            shocked = bs_price(shocked_spot, strike, t, rate, vol * vol_mult, is_call)
            ds = shocked_spot - spot
            dvol_points = np.where(t > 0, vol * (vol_mult - 1.0) * 100.0, 0.0)
            pnl[r] = (shocked - today) * size
            pnl_dg[r] = (
                column("delta")[r, None] * ds
                + 0.5 * column("gamma")[r, None] * ds * ds
                + column("vega")[r, None] * dvol_points
            ) * size

    # Reasons are written only where a P&L is missing (few cells): the object array is mostly
    # None, and no per-cell Python work touches the rest.
    reason = np.full(move.shape, None, dtype=object)
    no_move = np.isnan(move)
    rows, cols = np.nonzero(no_move)
    given = np.where(found[rows, 0], moves.reason[np.maximum(at, 0)[rows], cols], None)
    reason[rows, cols] = np.where(pd.isna(given), "no move for the underlying", given)
    unvalued = np.broadcast_to((is_option & ~revalue)[:, None], no_move.shape)
    bad_value = revalue[:, None] & ~no_move & ~np.isfinite(pnl)
    no_exposure = ~is_option[:, None] & ~no_move & ~np.isfinite(pnl)
    reason[unvalued] = "option without a model volatility (fallback Greeks): not revalued"
    reason[bad_value] = "option could not be revalued (invalid Black-Scholes inputs)"
    reason[no_exposure] = "no exposure for the position (unpriced)"
    frame_keys = pd.DataFrame(
        {
            "trade_date": dates,
            "position_id": positions["position_id"].to_numpy(),
            "portfolio_id": positions["portfolio_id"].to_numpy(),
            "underlying": positions["underlying"].to_numpy(dtype=object),
        }
    )
    return PositionStress(frame_keys, ids, move, pnl, pnl_dg, reason, is_option)


def portfolio_stress(
    stress: PositionStress,
    positions: pd.DataFrame | None = None,
    gross_exposure: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per (trade_date, portfolio_id, scenario_id): `PORTFOLIO_STRESS_COLUMNS`.

    ``stress``: `position_stress` output. The gross exposure comes from ``gross_exposure``
    (trade_date, portfolio_id, gross_exposure: portfolio_snapshots) or else from
    ``positions`` (position_greeks rows: sum |quantity x multiplier x price|, the option price
    for options); with neither, pnl_pct_of_gross is NaN.
    """
    keys = stress.keys
    n, width = stress.pnl_usd.shape
    grouped = keys.groupby(["trade_date", "portfolio_id"], sort=True)
    codes = grouped.ngroup().to_numpy()
    groups = grouped.size().index  # (trade_date, portfolio_id) of each code
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) if n else []
    pnl = stress.pnl_usd[order]
    missing = np.isnan(pnl)

    def sums(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts, axis=0) if n else np.zeros((0, width))

    pnl_sum = sums(np.where(missing, 0.0, pnl))
    dg = stress.pnl_usd_delta_gamma[order]
    dg_sum = sums(np.where(np.isnan(dg), 0.0, dg))
    n_missing = sums(missing.astype(np.int64))
    sizes = np.diff(np.r_[starts, n]).astype(np.int64)
    revalued = sums((stress.is_option[order][:, None] & ~missing).astype(np.int64)) > 0
    # The worst position: the lowest P&L (ties: the lowest position_id), NaN left out; every
    # scenario at once.
    position_ids = keys["position_id"].to_numpy().astype(np.int64)[order]
    worst_id = np.full((len(starts), width), -1, dtype=np.int64)
    worst_pnl = np.full((len(starts), width), np.nan)
    if n:
        known = np.where(missing, np.inf, pnl)
        lowest = np.minimum.reduceat(known, starts, axis=0)
        group_of_row = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
        at_lowest = known == lowest[group_of_row]
        never = np.iinfo(np.int64).max
        candidates = np.where(at_lowest, position_ids[:, None], never)
        ok = np.isfinite(lowest)  # a scenario with a P&L for some position of the group
        worst_id[ok] = np.minimum.reduceat(candidates, starts, axis=0)[ok]
        worst_pnl[ok] = lowest[ok]
    group_count = len(starts)
    agg = pd.DataFrame(
        {
            "trade_date": np.repeat(groups.get_level_values(0), width),
            "portfolio_id": np.repeat(groups.get_level_values(1).to_numpy(), width),
            "scenario_id": np.tile(np.asarray(stress.scenario_ids, dtype=object), group_count),
            "pnl_usd": pnl_sum.ravel(),
            "pnl_usd_delta_gamma": dg_sum.ravel(),
            "n_positions": np.repeat(sizes, width),
            "n_missing": n_missing.ravel(),
            "worst_position_id": pd.arrays.IntegerArray(worst_id.ravel(), worst_id.ravel() < 0),
            "worst_position_pnl_usd": worst_pnl.ravel(),
            "method": np.where(revalued.ravel(), "full_revaluation", "linear").astype(object),
        }
    )

    gross = None
    if gross_exposure is not None:
        _require_columns(gross_exposure, ("trade_date", "portfolio_id", "gross_exposure"), "gross")
        gross = gross_exposure[["trade_date", "portfolio_id", "gross_exposure"]].copy()
    elif positions is not None:
        p = positions
        price = np.where(
            p["position_type"].isin(OPTION_TYPES), p["option_price"], p["underlying_price"]
        )
        gross = p[["trade_date", "portfolio_id"]].assign(
            gross_exposure=np.abs(p["quantity"] * p["multiplier"] * price)
        )
        gross = gross.groupby(["trade_date", "portfolio_id"], as_index=False)[
            "gross_exposure"
        ].sum()
    if gross is not None:
        gross["trade_date"] = _date_index(gross["trade_date"], "gross.trade_date")
        agg = agg.merge(gross, on=["trade_date", "portfolio_id"], how="left")
    else:
        agg["gross_exposure"] = np.nan
    agg = agg.rename(columns={"gross_exposure": "gross_exposure_usd"})
    all_missing = agg["n_missing"] == agg["n_positions"]
    agg.loc[all_missing, ["pnl_usd", "pnl_usd_delta_gamma"]] = np.nan
    positive = agg["gross_exposure_usd"] > 0
    agg["pnl_pct_of_gross"] = np.where(
        positive, agg["pnl_usd"] / agg["gross_exposure_usd"].where(positive), np.nan
    )
    reason = np.full(len(agg), None, dtype=object)
    some = agg["n_missing"].to_numpy() > 0
    reason[some] = [
        f"{k} position(s) without a stress P&L left out of the sum"
        for k in agg["n_missing"].to_numpy()[some]
    ]
    agg["reason"] = pd.Series(reason, dtype=object)
    agg["n_missing"] = agg["n_missing"].astype(int)
    return agg[list(PORTFOLIO_STRESS_COLUMNS)]
