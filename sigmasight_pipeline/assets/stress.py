"""Stress tests: the scenario library (loaded from its file), the historical episodes' returns,
each underlying's move under every scenario (once per day for the whole book) and each
portfolio's P&L under every scenario, options fully revalued (chunks of portfolios, blocks of
days)."""

import numpy as np
import pandas as pd
import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    MetadataValue,
    Output,
    asset,
)

from sigmasight_pipeline import calendar
from sigmasight_pipeline.analytics import scenarios as scenario_library
from sigmasight_pipeline.analytics import stress
from sigmasight_pipeline.assets.common import (
    MARKET_DATA_API_POOL,
    PARTITIONED,
    SINGLE_RUN,
    START_EARLY,
    SYMBOL_TABLES_POOL,
    TRADING_DAYS,
    TRANSIENT_RETRY,
    portfolio_chunks,
    read_risk_rows,
    run_scope,
    scope_symbols,
    scope_underlyings,
    stock_symbols,
    symbols_in,
    underlyings_of,
)
from sigmasight_pipeline.checks import (
    TableValidator,
    companion_check_spec,
    companion_validator,
    schema_check_spec,
)
from sigmasight_pipeline.resources.database import PostgresResource, transaction
from sigmasight_pipeline.resources.io_manager import CompanionRows, TableReader, TableWrite
from sigmasight_pipeline.resources.market_data import MarketDataResource
from sigmasight_pipeline.resources.tables import list_column, query_frame
from sigmasight_pipeline.settings import stress_scenario_files, tlt_duration
from sigmasight_pipeline.warning_checks import RowWarning, warning_check_spec

STRESS_GROUP = "stress"
EPISODE_COLUMNS = [
    "symbol", "scenario_id", "start_date", "end_date", "episode_return", "reason",
]  # fmt: skip
SESSIONS_PER_BOUNDARY = 3  # closes fetched up to each episode date (a halted symbol still has one)
PROVIDER_FAILED = "provider failed"
GRID_ROWS_PER_BLOCK = 400_000  # positions x scenarios revalued at once


@asset(group_name=STRESS_GROUP, kinds={"postgres", "yaml"})
def stress_scenarios(context: AssetExecutionContext) -> pd.DataFrame:
    """The scenario library: data/stress_scenarios.yaml (its top documents the format) and the
    files SIGMASIGHT_STRESS_SCENARIOS lists. Edit a file and materialize this asset (then the
    stress results) to update them; a malformed file fails here, naming the file and scenario."""
    files = stress_scenario_files()
    table = scenario_library.scenario_table(scenario_library.load_scenarios(files))
    table.insert(1, "ordinal", np.arange(1, len(table) + 1))
    context.add_output_metadata(
        {
            "files": MetadataValue.md("\n".join(f"- {f}" for f in files)),
            "scenarios": len(table),
            "factor": int(table["kind"].eq("factor").sum()),
            "replay": int(table["kind"].eq("replay").sum()),
        }
    )
    return table


def _boundary_sessions(day: pd.Timestamp) -> list[pd.Timestamp]:
    """The last sessions on or before `day` whose closes an episode boundary may use."""
    return list(calendar.sessions(day - pd.Timedelta(days=10), day)[-SESSIONS_PER_BOUNDARY:])


def _episode_wanted(symbols: list[str], replays: list[scenario_library.Scenario]) -> pd.DataFrame:
    days = sorted({d for s in replays for b in (s.start, s.end) for d in _boundary_sessions(b)})
    grid = pd.MultiIndex.from_product([symbols, [d.date() for d in days]])
    return grid.to_frame(index=False, name=["symbol", "trade_date"])


EPISODES_COMPLETE = "episodes_complete"


@asset(
    group_name=STRESS_GROUP,
    kinds={"postgres", "pandas"},
    pool=MARKET_DATA_API_POOL,
    retry_policy=TRANSIENT_RETRY,
    check_specs=[
        AssetCheckSpec(
            EPISODES_COMPLETE,
            asset="stress_episodes",
            blocking=False,
            description=(
                "Every stock and ETF has its own return over every replay episode (warning: "
                "those without one replay Market beta x SPY's return)"
            ),
        )
    ],
)
def stress_episodes(
    context: AssetExecutionContext,
    stress_scenarios: pd.DataFrame,
    securities: pd.DataFrame,
    market_data: MarketDataResource,
    database: PostgresResource,
):
    """Each stock's and ETF's compounded return over each replay episode, from the close of its
    start to the close of its end (the last close on or before each date), from the market data
    provider. Returns already stored for the same dates are kept; only new symbols, new or
    edited episodes and earlier provider failures are fetched."""
    library = scenario_library.scenarios_from_table(stress_scenarios)
    replays = [s for s in library if s.kind == "replay"]
    symbols = sorted(securities.loc[securities["security_type"].ne("OPTION"), "symbol"])
    stored = query_frame(
        database.url(), f"SELECT {', '.join(EPISODE_COLUMNS)} FROM sigmasight.stress_episodes"
    )
    stored["start_date"] = pd.to_datetime(stored["start_date"])
    stored["end_date"] = pd.to_datetime(stored["end_date"])
    current = pd.DataFrame(
        [(s.id, s.start, s.end) for s in replays], columns=["scenario_id", "start_date", "end_date"]
    )
    kept = stored.merge(current, on=["scenario_id", "start_date", "end_date"])
    kept = kept[kept["symbol"].isin(symbols)]
    kept = kept[~kept["reason"].fillna("").str.startswith(PROVIDER_FAILED)]
    parts, fetched, fatal = [kept], 0, None
    for scenario in replays:
        have = set(kept.loc[kept["scenario_id"].eq(scenario.id), "symbol"])
        missing = [s for s in symbols if s not in have]
        if not missing:
            continue
        result = market_data.get_provider().fetch_bars(_episode_wanted(missing, [scenario]))
        fatal = fatal or result.fatal
        fetched += len(result.bars)
        closes = result.bars.pivot_table(
            index="trade_date", columns="symbol", values="close", aggfunc="last"
        ).reindex(columns=missing)
        closes.index = pd.to_datetime(closes.index)
        returns = stress.episode_returns(closes, [scenario])
        failed = result.issues.loc[result.issues["kind"].eq("failed"), ["symbol", "detail"]]
        failed = failed.drop_duplicates("symbol").set_index("symbol")["detail"]
        no_return = returns["episode_return"].isna()
        why = returns["symbol"].map(failed)
        if result.fatal:
            why = why.fillna(result.fatal)
        provider = no_return & why.notna()
        returns.loc[provider, "reason"] = PROVIDER_FAILED + ": " + why[provider].astype(str)
        parts.append(returns.assign(start_date=scenario.start, end_date=scenario.end))
    table = pd.concat(parts, ignore_index=True)[EPISODE_COLUMNS]
    without = table[table["episode_return"].isna()]
    metadata = {
        "episodes": len(replays), "symbols": len(symbols), "bars_fetched": fetched,
        "without_own_return": len(without), "provider_stopped": fatal or "no",
    }  # fmt: skip
    yield Output(table, metadata=metadata)
    examples = [
        f"{r.symbol} over {r.scenario_id}: {r.reason}" for r in without.head(10).itertuples()
    ]
    yield AssetCheckResult(
        check_name=EPISODES_COMPLETE,
        asset_key="stress_episodes",
        passed=without.empty,
        metadata={
            "rows_checked": len(table),
            "rows_failing": len(without),
            "failing_keys": MetadataValue.md("\n".join(f"- {e}" for e in examples) or "none"),
        },
    )


def scenario_set_id(url: str, scenario_ids: list[str]) -> int:
    """The id of the set of scenarios (in this order) whose P&L arrays a position row holds."""
    with transaction(url) as conn:
        conn.execute(
            "INSERT INTO sigmasight.stress_scenario_sets (scenario_ids) VALUES (%s) "
            "ON CONFLICT (scenario_ids) DO NOTHING",
            (scenario_ids,),
        )
        row = conn.execute(
            "SELECT set_id FROM sigmasight.stress_scenario_sets WHERE scenario_ids = %s",
            (scenario_ids,),
        ).fetchone()
    return int(row[0])


def _reason_lists(values: np.ndarray, reason: np.ndarray) -> np.ndarray:
    """Per row of a (rows x scenarios) matrix: its reasons as a list where a value is not
    finite (the reasons are set exactly there), else None (a row with none stores NULL)."""
    reasons = np.full(len(values), None, dtype=object)
    for k in np.flatnonzero(~np.isfinite(values).all(axis=1)):
        reasons[k] = reason[k].tolist()
    return reasons


def position_pnl_arrays(result: stress.PositionStress, set_id: int) -> pd.DataFrame:
    """Rows of position_stress_pnl: one per option position-day with its P&L under every
    scenario of the set (`result.scenario_ids` order), the delta-gamma estimates and the
    reasons (None for a row with none). A stock's P&L is its exposure x its underlying's move:
    the view position_stress_results computes it from stress_moves (sql/0022)."""
    options = np.flatnonzero(result.is_option)
    reasons = _reason_lists(result.pnl_usd[options], result.reason[options])
    keys = result.keys.iloc[options]
    return pd.DataFrame(
        {
            "trade_date": keys["trade_date"].to_numpy(),
            "position_id": keys["position_id"].to_numpy(),
            "portfolio_id": keys["portfolio_id"].to_numpy(),
            "set_id": set_id,
            "pnl_usd": list_column(result.pnl_usd[options], pa.float32()),
            "pnl_usd_delta_gamma": list_column(result.pnl_usd_delta_gamma[options], pa.float32()),
            "reasons": reasons,
        }
    )


MOVE_ROW_COLUMNS = ["trade_date", "symbol", "set_id", "moves", "reasons"]


def move_rows(moves: stress.UnderlyingMoves, set_id: int) -> pd.DataFrame:
    """Rows of stress_moves: one per (trade_date, underlying) with its move under every
    scenario of the set (NaN where there is none) and the reasons (None for a row with none)."""
    reasons = _reason_lists(moves.move, moves.reason)
    return pd.DataFrame(
        {
            "trade_date": pd.to_datetime(moves.keys["trade_date"], cache=False).to_numpy(),
            "symbol": moves.keys["symbol"].to_numpy(dtype=object),
            "set_id": set_id,
            "moves": list_column(moves.move, pa.float64()),
            "reasons": reasons,
        }
    )[MOVE_ROW_COLUMNS]


def stored_moves(
    rows: pd.DataFrame, scenario_ids: list[str], set_id: int
) -> stress.UnderlyingMoves:
    """The `move_rows` read back as `stress.UnderlyingMoves` for `scenario_ids` (the set
    `set_id`). Moves stored for another set are refused, naming the days: stress_moves was
    materialized before the scenario library changed."""
    other = rows[rows["set_id"] != set_id]
    if not other.empty:
        days = sorted({f"{d:%Y-%m-%d}" for d in pd.to_datetime(other["trade_date"])})
        raise ValueError(
            f"stress_moves on {days[:5]}{' ...' if len(days) > 5 else ''} are for scenario set "
            f"{sorted(set(other['set_id']))}, not the library's set {set_id} "
            f"({len(scenario_ids)} scenarios): materialize stress_moves for these days first"
        )
    width = len(scenario_ids)
    move = np.array(rows["moves"].tolist(), dtype=float).reshape(len(rows), width)
    reason = np.full((len(rows), width), None, dtype=object)
    listed = rows["reasons"].to_numpy(dtype=object)
    for k in np.flatnonzero(rows["reasons"].notna().to_numpy()):  # the rows with a NaN move
        reason[k] = list(listed[k])
    keys = pd.DataFrame(
        {
            "trade_date": pd.to_datetime(rows["trade_date"], cache=False).to_numpy(),
            "symbol": rows["symbol"].to_numpy(dtype=object),
        }
    )
    source = np.full((len(rows), width), None, dtype=object)  # not stored: not used for P&L
    return stress.UnderlyingMoves(keys, tuple(scenario_ids), move, source, reason)


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=STRESS_GROUP,
    kinds={"postgres", "pandas"},
    pool=SYMBOL_TABLES_POOL,
    retry_policy=TRANSIENT_RETRY,
    op_tags=START_EARLY,  # the first of the stress chain, the longest with the correlations
    check_specs=[schema_check_spec("stress_moves")],
)
def stress_moves(
    context: AssetExecutionContext,
    factor_betas: TableReader,
    stress_scenarios: pd.DataFrame,
    stress_episodes: pd.DataFrame,
    database: PostgresResource,
):
    """Each underlying's move (a fraction) under every scenario, per day: its betas x the
    factor shocks (Rates through its rate beta and TLT's duration), or its own return over a
    replayed episode (else Market beta x SPY's). One row per day and underlying, the moves in
    the scenario set's order; NaN with the reason where a beta or a history is missing. A
    stock's stress P&L is its exposure x this move (the view position_stress_results)."""
    url = database.url()
    scope = run_scope(context)
    scenarios = scenario_library.scenarios_from_table(stress_scenarios.sort_values("ordinal"))
    set_id = scenario_set_id(url, [s.id for s in scenarios])
    symbols = sorted(set(stock_symbols(url, scope)) | set(scope_underlyings(url, scope)))
    duration = tlt_duration()
    moves = stress.underlying_moves(
        factor_betas.frame(["trade_date", "symbol", "factor", "beta"], symbols_in(symbols)),
        scenarios,
        stress_episodes[["symbol", "scenario_id", "episode_return"]],
        duration,
        symbols=symbols,
    )
    validator = TableValidator("stress_moves")
    rows = move_rows(moves, set_id)
    metadata = {
        "underlyings": len(symbols),
        "scenarios": len(scenarios),
        "tlt_duration": duration,
        "without_a_move": int((~np.isfinite(moves.move)).any(axis=1).sum()),
    }
    yield Output(
        TableWrite(rows, replace=symbols_in(scope_symbols(url, scope)), observers=[validator]),
        metadata=metadata,
    )
    yield validator.result()


def _day_blocks(rows: pd.DataFrame, scenarios: int):
    """The chunk's rows in blocks of whole days, each about GRID_ROWS_PER_BLOCK revaluations."""
    per_day = max(1, int(rows.groupby("trade_date").size().max()) * scenarios)
    days = sorted(rows["trade_date"].unique())
    step = max(1, GRID_ROWS_PER_BLOCK // per_day)
    for i in range(0, len(days), step):
        yield rows[rows["trade_date"].isin(days[i : i + step])]


def stress_complete_warning() -> RowWarning:
    return RowWarning(
        "portfolio_stress_results",
        "stress_complete",
        lambda frame: frame["n_missing"].gt(0),
        lambda rows: rows["scenario_id"] + ": " + rows["reason"].fillna(""),
    )


STRESS_COMPLETE_SPEC = warning_check_spec(
    "portfolio_stress_results",
    "stress_complete",
    "Every position has a stress P&L under every scenario (warning: those without one are "
    "left out of the portfolio's sum, counted in n_missing)",
)


@asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=SINGLE_RUN,
    metadata=PARTITIONED,
    group_name=STRESS_GROUP,
    kinds={"postgres", "pandas"},
    retry_policy=TRANSIENT_RETRY,
    op_tags=START_EARLY,
    check_specs=[
        schema_check_spec("portfolio_stress_results"),
        companion_check_spec("portfolio_stress_results", "position_stress_pnl"),
        STRESS_COMPLETE_SPEC,
    ],
)
def portfolio_stress_results(
    context: AssetExecutionContext,
    position_values: TableReader,
    position_greeks: TableReader,
    stress_moves: TableReader,
    stress_scenarios: pd.DataFrame,
    database: PostgresResource,
):
    """Per portfolio, day and scenario: the P&L (sum of its positions'), as a fraction of gross
    exposure, the worst position and the method. Each underlying moves by its betas x the
    factor shocks (Rates through its rate beta and TLT's duration), or by its own return over
    a replayed episode (else Market beta x SPY's): stress_moves. Stocks: exposure x move;
    options fully revalued with Black-Scholes at the shocked spot and implied vol, time
    unchanged, with the delta-gamma estimate beside it. Nothing is clipped. Also writes
    position_stress_pnl (same transaction): every option's P&L per scenario; the view
    position_stress_results adds the stocks' (exposure x move)."""
    url = database.url()
    scope = run_scope(context)
    scenarios = scenario_library.scenarios_from_table(stress_scenarios.sort_values("ordinal"))
    ids = [s.id for s in scenarios]
    set_id = scenario_set_id(url, ids)

    def chunks():
        # Every underlying's moves on every day, read once: they do not depend on the portfolio.
        moves = stored_moves(
            stress_moves.frame(MOVE_ROW_COLUMNS, underlyings_of(scope.portfolio_filter())),
            ids,
            set_id,
        )
        for portfolio_ids in portfolio_chunks(url, scope, len(context.partition_keys)):
            rows = read_risk_rows(
                url, portfolio_ids, position_values, position_greeks, run_id=context.run.run_id
            )
            for block in _day_blocks(rows, len(ids)):
                result = stress.position_stress(
                    block, moves.on(block["trade_date"].unique()), scenarios
                )
                gross = (
                    block.assign(gross_exposure=block["market_value"].abs())
                    .groupby(["trade_date", "portfolio_id"], as_index=False)["gross_exposure"]
                    .sum()
                )
                yield CompanionRows("position_stress_pnl", position_pnl_arrays(result, set_id))
                yield stress.portfolio_stress(result, gross_exposure=gross)

    validator, complete = TableValidator("portfolio_stress_results"), stress_complete_warning()
    position_pnl = companion_validator("portfolio_stress_results", "position_stress_pnl")
    replace = scope.portfolio_filter()
    yield Output(
        TableWrite(
            chunks(),
            replace=replace,
            observers=[validator, complete],
            companions={"position_stress_pnl": replace},
            companion_observers={"position_stress_pnl": [position_pnl]},
        ),
        metadata={"scenarios": len(ids)},
    )
    yield validator.result()
    yield position_pnl.result()
    yield complete.result()
