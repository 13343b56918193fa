"""Stress tests: a scenario library, underlying moves, positions revalued, portfolio P&L.

Pure numpy/pandas; vectorized over positions x scenarios for a chunk of portfolios.

Conventions
-----------
* Scenarios come from a YAML file (data/stress_scenarios.yaml documents the format at its
  top); `load_scenarios` validates it. Factor shocks: Market = SPY return, styles = the
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

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sigmasight_pipeline.analytics.decomposition import MODEL_FACTORS, RATES_FACTOR
from sigmasight_pipeline.analytics.greeks import bs_price
from sigmasight_pipeline.analytics.instruments import OPTION_TYPES
from sigmasight_pipeline.analytics.risk import _date_index, _require_columns, _sorted_wide
from sigmasight_pipeline.analytics.sectors import DATA_DIR

__all__ = [
    "DEFAULT_SCENARIO_FILE",
    "MOVE_COLUMNS",
    "PORTFOLIO_STRESS_COLUMNS",
    "POSITION_STRESS_COLUMNS",
    "SCENARIO_COLUMNS",
    "SCENARIO_FACTORS",
    "TLT_DURATION",
    "Scenario",
    "ScenarioFileError",
    "episode_returns",
    "load_scenarios",
    "pnl_usd_per_100bp",
    "portfolio_stress",
    "position_stress",
    "rate_shock_return",
    "scenario_table",
    "scenarios_from_table",
    "underlying_moves",
]

DEFAULT_SCENARIO_FILE = DATA_DIR / "stress_scenarios.yaml"
TLT_DURATION = 16.5
SCENARIO_FACTORS = MODEL_FACTORS  # Market, the six styles, Rates
RETURN_FACTORS = tuple(f for f in SCENARIO_FACTORS if f != RATES_FACTOR)
MARKET_FACTOR = SCENARIO_FACTORS[0]
MARKET_SYMBOL = "SPY"
KINDS = ("factor", "replay")
ID_PATTERN = re.compile(r"^[a-z0-9_]+$")
COMMON_FIELDS = {"id", "name", "kind", "description", "vol_multiplier"}
KIND_FIELDS = {"factor": {"shocks"}, "replay": {"start", "end"}}

SCENARIO_COLUMNS = (
    "scenario_id", "name", "kind", "description", "vol_multiplier", "start_date", "end_date",
    *(f"shock_{f.lower().replace(' ', '_')}" for f in RETURN_FACTORS), "shock_rates_bp",
)  # fmt: skip
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


class ScenarioFileError(ValueError):
    """The scenario file is malformed; the message names the file and the scenario."""


@dataclass(frozen=True)
class Scenario:
    """One validated scenario. ``shocks``: factor -> shock (Rates in bp), factor kind only."""

    id: str
    name: str
    kind: str
    description: str | None = None
    shocks: dict[str, float] = field(default_factory=dict)
    vol_multiplier: float = 1.0
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None


def _as_date(value: object, where: str, name: str) -> pd.Timestamp:
    if isinstance(value, date | str):
        try:
            return pd.Timestamp(value).normalize()
        except ValueError:
            pass
    raise ScenarioFileError(f"{where}: {name} {value!r} is not a date (YYYY-MM-DD)")


def _as_number(value: object, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ScenarioFileError(f"{where}: {name} {value!r} is not a finite number")
    return float(value)


def _parse_scenario(raw: object, where: str) -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioFileError(f"{where}: expected a mapping of fields, got {raw!r}")
    sid = raw.get("id")
    if not isinstance(sid, str) or not ID_PATTERN.match(sid):
        raise ScenarioFileError(f"{where}: id {sid!r} must be lower_snake_case (a-z, 0-9, _)")
    where = f"{where} ({sid})"
    for required in ("name", "kind"):
        if required not in raw:
            raise ScenarioFileError(f"{where}: missing field {required!r}")
    kind = raw["kind"]
    if kind not in KINDS:
        raise ScenarioFileError(f"{where}: kind {kind!r} must be one of {list(KINDS)}")
    allowed = COMMON_FIELDS | KIND_FIELDS[kind]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ScenarioFileError(
            f"{where}: unknown field(s) {unknown} for kind {kind}; allowed {sorted(allowed)}"
        )
    name = raw["name"]
    if not isinstance(name, str) or not name.strip():
        raise ScenarioFileError(f"{where}: name must be a non-empty string")
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise ScenarioFileError(f"{where}: description must be text")
    vol_multiplier = _as_number(raw.get("vol_multiplier", 1.0), where, "vol_multiplier")
    if vol_multiplier <= 0:
        raise ScenarioFileError(f"{where}: vol_multiplier {vol_multiplier} must be > 0")
    if kind == "replay":
        for required in ("start", "end"):
            if required not in raw:
                raise ScenarioFileError(f"{where}: missing field {required!r}")
        start = _as_date(raw["start"], where, "start")
        end = _as_date(raw["end"], where, "end")
        if not start < end:
            raise ScenarioFileError(
                f"{where}: start {start.date()} must be before end {end.date()}"
            )
        return Scenario(sid, name, kind, description, {}, vol_multiplier, start, end)
    if "shocks" not in raw:
        raise ScenarioFileError(f"{where}: missing field 'shocks' (use {{}} for vol-only)")
    shocks_raw = raw["shocks"] if raw["shocks"] is not None else {}
    if not isinstance(shocks_raw, dict):
        raise ScenarioFileError(f"{where}: shocks must be a mapping factor -> shock")
    shocks = {}
    for factor, value in shocks_raw.items():
        if factor not in SCENARIO_FACTORS:
            raise ScenarioFileError(
                f"{where}: unknown factor {factor!r}; known factors {list(SCENARIO_FACTORS)}"
            )
        shocks[factor] = _as_number(value, where, f"shock {factor}")
    if shocks.get(MARKET_FACTOR, 0.0) <= -1.0:
        raise ScenarioFileError(f"{where}: a Market return of {shocks[MARKET_FACTOR]} is <= -100%")
    if not any(shocks.values()) and vol_multiplier == 1.0:
        raise ScenarioFileError(f"{where}: shocks nothing (no factor shock, vol_multiplier 1)")
    return Scenario(sid, name, kind, description, shocks, vol_multiplier)


def load_scenarios(
    paths: str | Path | Sequence[str | Path] = DEFAULT_SCENARIO_FILE,
) -> list[Scenario]:
    """Read and validate one or more scenario files (the format is documented in
    data/stress_scenarios.yaml). Scenario ids must be unique across all files. Raises
    `ScenarioFileError` naming the file and scenario for anything malformed."""
    files = [paths] if isinstance(paths, str | Path) else list(paths)
    scenarios: list[Scenario] = []
    seen: dict[str, str] = {}
    for path in map(Path, files):
        if not path.is_file():
            raise ScenarioFileError(f"{path}: scenario file not found")
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ScenarioFileError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(document, dict) or set(document) != {"scenarios"}:
            raise ScenarioFileError(f"{path}: expected one top-level key 'scenarios' (a list)")
        entries = document["scenarios"]
        if not isinstance(entries, list) or not entries:
            raise ScenarioFileError(f"{path}: 'scenarios' must be a non-empty list")
        for number, raw in enumerate(entries, start=1):
            scenario = _parse_scenario(raw, f"{path}: scenario #{number}")
            if scenario.id in seen:
                raise ScenarioFileError(
                    f"{path}: scenario #{number}: duplicate id {scenario.id!r} "
                    f"(first defined in {seen[scenario.id]})"
                )
            seen[scenario.id] = f"{path} scenario #{number}"
            scenarios.append(scenario)
    return scenarios


def scenario_table(scenarios: Iterable[Scenario]) -> pd.DataFrame:
    """One row per scenario, `SCENARIO_COLUMNS` (shock columns 0 where not shocked)."""
    rows = []
    for s in scenarios:
        row = {
            "scenario_id": s.id, "name": s.name, "kind": s.kind, "description": s.description,
            "vol_multiplier": s.vol_multiplier, "start_date": s.start, "end_date": s.end,
        }  # fmt: skip
        for factor in RETURN_FACTORS:
            row[f"shock_{factor.lower().replace(' ', '_')}"] = s.shocks.get(factor, 0.0)
        row["shock_rates_bp"] = s.shocks.get(RATES_FACTOR, 0.0)
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(SCENARIO_COLUMNS))
    table["start_date"] = pd.to_datetime(table["start_date"])
    table["end_date"] = pd.to_datetime(table["end_date"])
    return table


def scenarios_from_table(table: pd.DataFrame) -> list[Scenario]:
    """The scenarios of a `scenario_table` (as stored in sigmasight.stress_scenarios), in its
    row order; shocks of 0 are left out."""
    scenarios = []
    for row in table.to_dict("records"):
        shocks = {}
        if row["kind"] == "factor":
            for factor in RETURN_FACTORS:
                value = row.get(f"shock_{factor.lower().replace(' ', '_')}")
                if pd.notna(value) and value != 0:
                    shocks[factor] = float(value)
            rates = row.get("shock_rates_bp")
            if pd.notna(rates) and rates != 0:
                shocks[RATES_FACTOR] = float(rates)
        description = row.get("description")
        scenarios.append(
            Scenario(
                id=row["scenario_id"],
                name=row["name"],
                kind=row["kind"],
                description=description if isinstance(description, str) else None,
                shocks=shocks,
                vol_multiplier=float(row["vol_multiplier"]),
                start=pd.Timestamp(row["start_date"]) if pd.notna(row["start_date"]) else None,
                end=pd.Timestamp(row["end_date"]) if pd.notna(row["end_date"]) else None,
            )
        )
    return scenarios


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


def underlying_moves(
    betas: pd.DataFrame,
    scenarios: Sequence[Scenario],
    episodes: pd.DataFrame | None = None,
    duration: float = TLT_DURATION,
    symbols: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The move (a fraction) of each underlying under each scenario, per trade date.

    ``betas``: long trade_date, symbol, factor, beta (Market, styles and Rates; others are
    ignored). ``episodes``: `episode_returns` output (needed for replays; must include SPY for
    the fallback). ``symbols``: the underlyings to cover (default: the betas' symbols per
    date). Returns `MOVE_COLUMNS`, move_source one of factor, vol_only, replay_own_history,
    replay_beta_x_spy; NaN with a reason where a needed beta or history is missing.
    """
    _require_columns(betas, ("trade_date", "symbol", "factor", "beta"), "betas")
    frame = betas[betas["factor"].isin(SCENARIO_FACTORS)].copy()
    frame["trade_date"] = _date_index(frame["trade_date"], "betas.trade_date")
    wide = frame.pivot_table(
        index=["trade_date", "symbol"], columns="factor", values="beta", aggfunc="last",
        dropna=False,
    ).reindex(columns=list(SCENARIO_FACTORS))  # fmt: skip
    if symbols is not None:
        dates = frame["trade_date"].unique()
        grid = pd.MultiIndex.from_product([dates, sorted(set(symbols))], names=wide.index.names)
        wide = wide.reindex(grid)
    beta = wide.to_numpy(dtype=float)  # rows x factors
    trade_dates = wide.index.get_level_values(0)
    names = wide.index.get_level_values(1).astype(object)
    n = len(wide)
    replay_returns = {}
    if episodes is not None and not episodes.empty:
        replay_returns = {
            sid: g.set_index("symbol")["episode_return"].astype(float)
            for sid, g in episodes.groupby("scenario_id")
        }
    parts = []
    for s in scenarios:
        move = np.zeros(n)
        reason = np.full(n, None, dtype=object)
        if s.kind == "factor":
            source = np.full(n, "factor" if any(s.shocks.values()) else "vol_only", dtype=object)
            for factor, shock in s.shocks.items():
                if shock == 0:
                    continue
                k = SCENARIO_FACTORS.index(factor)
                scale = rate_shock_return(shock, duration) if factor == RATES_FACTOR else shock
                move = move + beta[:, k] * scale
                missing = ~np.isfinite(beta[:, k])
                reason[missing & pd.isna(reason)] = f"no {factor} beta"
        else:
            # No episode returns at all (none fetched yet): every move falls back, and is NaN
            # with a reason when SPY's return is missing too.
            own = replay_returns.get(s.id, pd.Series(dtype=float))
            move = own.reindex(names).to_numpy(dtype=float)
            source = np.where(np.isfinite(move), "replay_own_history", "replay_beta_x_spy")
            spy = float(own.get(MARKET_SYMBOL, np.nan))
            fallback = beta[:, 0] * spy
            move = np.where(np.isfinite(move), move, fallback)
            gap = ~np.isfinite(move)
            if not np.isfinite(spy):
                reason[gap] = f"no history over {s.id} and no SPY episode return"
            else:
                reason[gap] = f"no history over {s.id} and no Market beta"
            source = source.astype(object)
        parts.append(
            pd.DataFrame(
                {"trade_date": trade_dates, "symbol": names, "scenario_id": s.id, "move": move,
                 "move_source": source, "reason": reason}
            )
        )  # fmt: skip
    if not parts:
        return pd.DataFrame(columns=list(MOVE_COLUMNS))
    out = pd.concat(parts, ignore_index=True)
    out.loc[out["move"].isna() & out["reason"].isna(), "reason"] = "missing beta"
    out["reason"] = out["reason"].astype(object)
    return out[list(MOVE_COLUMNS)]


def position_stress(
    positions: pd.DataFrame, moves: pd.DataFrame, scenarios: Sequence[Scenario]
) -> pd.DataFrame:
    """P&L of every position under every scenario, `POSITION_STRESS_COLUMNS`.

    ``positions``: the position_greeks rows of a chunk (trade_date, position_id, portfolio_id,
    position_type, quantity, multiplier, underlying, underlying_price, strike, t_years, rate,
    volatility, delta, gamma, vega (per contract), delta_adjusted_exposure, source).
    ``moves``: `underlying_moves` output. Stocks: linear; options: full revaluation, with the
    delta-gamma(-vega) estimate beside it (module docstring).
    """
    needed = (
        "trade_date", "position_id", "portfolio_id", "position_type", "quantity", "multiplier",
        "underlying", "underlying_price", "strike", "t_years", "rate", "volatility", "delta",
        "gamma", "vega", "delta_adjusted_exposure", "source",
    )  # fmt: skip
    _require_columns(positions, needed, "positions")
    _require_columns(moves, MOVE_COLUMNS, "moves")
    pos = positions[list(needed)].copy()
    pos["trade_date"] = _date_index(pos["trade_date"], "positions.trade_date")
    mv = moves[["trade_date", "symbol", "scenario_id", "move", "reason"]].rename(
        columns={"symbol": "underlying", "reason": "move_reason"}
    )
    mv = mv.assign(trade_date=_date_index(mv["trade_date"], "moves.trade_date"))
    ids = [s.id for s in scenarios]
    grid = pos.merge(pd.DataFrame({"scenario_id": ids}), how="cross")
    grid = grid.merge(mv, on=["trade_date", "underlying", "scenario_id"], how="left")
    vol_mult = grid["scenario_id"].map({s.id: s.vol_multiplier for s in scenarios}).to_numpy()

    move = grid["move"].to_numpy(dtype=float)
    qty = grid["quantity"].to_numpy(dtype=float)
    mult = grid["multiplier"].to_numpy(dtype=float)
    spot = grid["underlying_price"].to_numpy(dtype=float)
    is_option = grid["position_type"].isin(OPTION_TYPES).to_numpy()
    source = grid["source"].to_numpy(dtype=object)
    revalue = is_option & np.isin(source, ["model", "expired"])

    # Stocks: exposure x move (delta-gamma identical).
    linear = grid["delta_adjusted_exposure"].to_numpy(dtype=float) * move
    # Options: full Black-Scholes revaluation at the shocked spot and vol, time unchanged.
    strike = grid["strike"].to_numpy(dtype=float)
    t = grid["t_years"].to_numpy(dtype=float)
    rate = grid["rate"].to_numpy(dtype=float)
    vol = grid["volatility"].to_numpy(dtype=float)
    is_call = grid["position_type"].isin(["LC", "SC"]).to_numpy()
    size = qty * mult
    shocked_spot = spot * (1.0 + move)
    with np.errstate(invalid="ignore"):
        today = bs_price(spot, strike, t, rate, vol, is_call)
        shocked = bs_price(shocked_spot, strike, t, rate, vol * vol_mult, is_call)
        full = (shocked - today) * size
        ds = shocked_spot - spot
        dvol_points = np.where(t > 0, vol * (vol_mult - 1.0) * 100.0, 0.0)
        dg = (
            grid["delta"].to_numpy(dtype=float) * ds
            + 0.5 * grid["gamma"].to_numpy(dtype=float) * ds * ds
            + grid["vega"].to_numpy(dtype=float) * dvol_points
        ) * size

    pnl = np.where(is_option, np.where(revalue, full, np.nan), linear)
    pnl_dg = np.where(is_option, np.where(revalue, dg, np.nan), linear)
    reason = grid["move_reason"].to_numpy(dtype=object).copy()
    no_move = grid["move"].isna().to_numpy()
    reason[no_move & pd.isna(reason)] = "no move for the underlying"
    unvalued = is_option & ~revalue
    reason[unvalued] = "option without a model volatility (fallback Greeks): not revalued"
    bad_value = revalue & ~no_move & ~np.isfinite(full)
    reason[bad_value] = "option could not be revalued (invalid Black-Scholes inputs)"
    no_exposure = ~is_option & ~no_move & ~np.isfinite(linear)
    reason[~no_move & ~unvalued & ~bad_value] = None
    reason[no_exposure] = "no exposure for the position (unpriced)"
    out = pd.DataFrame(
        {
            "trade_date": grid["trade_date"],
            "position_id": grid["position_id"],
            "portfolio_id": grid["portfolio_id"],
            "scenario_id": grid["scenario_id"],
            "underlying": grid["underlying"],
            "move": move,
            "pnl_usd": pnl,
            "pnl_usd_delta_gamma": pnl_dg,
            "method": np.where(is_option, "full_revaluation", "linear"),
            "reason": reason,
        }
    )
    out["reason"] = out["reason"].astype(object)
    return out[list(POSITION_STRESS_COLUMNS)]


def portfolio_stress(
    position_results: pd.DataFrame,
    positions: pd.DataFrame | None = None,
    gross_exposure: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per (trade_date, portfolio_id, scenario_id): `PORTFOLIO_STRESS_COLUMNS`.

    ``position_results``: `position_stress` output. The gross exposure comes from
    ``gross_exposure`` (trade_date, portfolio_id, gross_exposure: portfolio_snapshots) or else
    from ``positions`` (position_greeks rows: sum |quantity x multiplier x price|, the option
    price for options); with neither, pnl_pct_of_gross is NaN.
    """
    res = position_results.copy()
    res["trade_date"] = _date_index(res["trade_date"], "position_results.trade_date")
    keys = ["trade_date", "portfolio_id", "scenario_id"]
    res["missing"] = res["pnl_usd"].isna()
    res["revalued"] = res["method"].eq("full_revaluation") & ~res["missing"]
    agg = res.groupby(keys, sort=True).agg(
        pnl_usd=("pnl_usd", "sum"),
        pnl_usd_delta_gamma=("pnl_usd_delta_gamma", "sum"),
        n_positions=("position_id", "count"),
        n_missing=("missing", "sum"),
        any_option=("revalued", "any"),
    )
    valued = res[~res["missing"]].sort_values(["pnl_usd", "position_id"], kind="stable")
    worst = valued.drop_duplicates(keys).set_index(keys)
    agg["worst_position_id"] = worst["position_id"]
    agg["worst_position_pnl_usd"] = worst["pnl_usd"]
    agg["method"] = np.where(agg["any_option"], "full_revaluation", "linear")
    agg = agg.reset_index()

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
    reason = np.where(
        agg["n_missing"] > 0,
        agg["n_missing"].astype(str) + " position(s) without a stress P&L left out of the sum",
        None,
    )
    agg["reason"] = pd.Series(reason, dtype=object)
    agg["n_missing"] = agg["n_missing"].astype(int)
    agg["worst_position_id"] = agg["worst_position_id"].astype("Int64")
    return agg[list(PORTFOLIO_STRESS_COLUMNS)]
