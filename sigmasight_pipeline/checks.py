"""Asset checks on what each run wrote: a pandera schema per table, run on every chunk as it is
written (never a re-read of the table), plus warning checks computed from the same rows.

Blocking checks stop downstream assets in the same run only when the rows would corrupt the
tables everyone reads: non-finite values where values are required, probabilities or
volatilities out of range, duplicate keys. A position or portfolio the pipeline cannot value
(no price, too little history) is stored with a reason and named by a warning check: it never
fails the run, so one portfolio's problem never blocks another's numbers.

Every check result says which rows it saw: rows checked, rows failing, the first failing keys,
the partition range and the run's scope. The warning checks are in `warning_checks.py`, the
SQL checks of tables written set-based in `sql_checks.py`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute
from dagster import AssetCheckResult, AssetCheckSpec, MetadataValue

from sigmasight_pipeline.analytics.exposures import BETA_COLUMNS

BETA_CAP = 5.0
SHOWN_KEYS = 10


def _rows_check(check, name: str) -> pa.Check:
    """A check of whole rows. `ignore_na=False`: pandera's default lets an all-NULL row pass,
    and to find one computes isna() over every column of the chunk, text and arrays included,
    for every check; a row of ours always has its keys."""
    return pa.Check(check, name=name, ignore_na=False)


def _finite(*columns: str, where: str | None = None) -> pa.Check:
    """Rows (optionally those where boolean column `where` is true) have finite values."""

    def check(frame: pd.DataFrame) -> pd.Series:
        values = frame[list(columns)].to_numpy(dtype=float)
        ok = np.isfinite(values).all(axis=1)
        if where is not None:
            ok |= ~frame[where].to_numpy(dtype=bool)
        return pd.Series(ok, index=frame.index)

    return _rows_check(
        check, name=f"finite({', '.join(columns)})" + (f" where {where}" if where else "")
    )


def _lists_finite(values: pd.Series) -> np.ndarray:
    """Per row of an array column (Arrow lists, or sequences as read back): every item is a
    finite number. A NULL or empty array has none that is not. Works on Arrow's buffers: a
    byte per item, not a float64 copy of them."""
    lists = pyarrow.array(values)
    if isinstance(lists, pyarrow.ChunkedArray):
        lists = lists.combine_chunks()
    if pyarrow.types.is_null(lists.type):  # every array NULL (a column of None read back)
        return np.ones(len(lists), dtype=bool)
    items = lists.flatten()  # the items of the arrays present, in row order
    if not pyarrow.types.is_floating(items.type):
        items = items.cast(pyarrow.float64())
    finite = pyarrow.compute.is_finite(items).fill_null(False)
    bad = np.asarray(pyarrow.compute.invert(finite), dtype=np.uint8)
    lengths = np.asarray(lists.value_lengths().fill_null(0))
    ends = np.cumsum(lengths)
    bad_so_far = np.concatenate([[0], np.cumsum(bad, dtype=np.int64)])
    return bad_so_far[ends] - bad_so_far[ends - lengths] == 0


def _unique(*keys: str) -> pa.Check:
    return _rows_check(
        lambda frame: ~frame.duplicated(list(keys), keep=False), name=f"one row per {keys}"
    )


def _one_of(*labels: str) -> pa.Column:
    """A text column whose values are among `labels`. No dtype: pandera's str dtype check
    calls isinstance on every value, and a value in `labels` is a str."""
    return pa.Column(checks=pa.Check.isin(list(labels)))


def _has_reason(value: str) -> pa.Check:
    return _rows_check(
        lambda f: f[value].notna() | f["reason"].notna(), name=f"null {value} has a reason"
    )


KEYS: dict[str, tuple[str, ...]] = {
    "prices": ("symbol", "trade_date"),
    "returns": ("symbol", "trade_date"),
    "position_values": ("trade_date", "position_id"),
    "position_greeks": ("trade_date", "position_id"),
    "factor_betas": ("trade_date", "symbol", "factor"),
    "position_factor_exposures": ("trade_date", "position_id"),
    "portfolio_factor_exposures": ("trade_date", "portfolio_id", "factor"),
    "portfolio_greeks": ("trade_date", "portfolio_id", "view"),
    "portfolio_risk_metrics": ("trade_date", "portfolio_id"),
    "portfolio_snapshots": ("trade_date", "portfolio_id"),
    "portfolio_returns": ("trade_date", "portfolio_id"),
    "symbol_volatility": ("trade_date", "symbol"),
    "specific_risk": ("trade_date", "symbol"),
    "stress_moves": ("trade_date", "symbol"),
    "portfolio_volatility": ("trade_date", "portfolio_id"),
    "portfolio_correlations": ("trade_date", "portfolio_id"),
    "portfolio_concentration": ("trade_date", "portfolio_id"),
    "portfolio_sector_exposures": ("trade_date", "portfolio_id", "sector"),
    "portfolio_risk_decomposition": ("trade_date", "portfolio_id", "component"),
    "portfolio_stress_results": ("trade_date", "portfolio_id", "scenario_id"),
    # companions: written by portfolio_risk_decomposition and portfolio_stress_results
    "position_risk_contributions": ("trade_date", "position_id"),
    "position_stress_pnl": ("trade_date", "position_id"),
}

SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "prices": pa.DataFrameSchema(
        {
            "close": pa.Column(float, pa.Check.gt(0)),
            "high": pa.Column(float, nullable=True),
            "low": pa.Column(float, pa.Check.ge(0), nullable=True),
        },
        checks=[
            _unique(*KEYS["prices"]),
            _rows_check(lambda f: ~(f["high"] < f["low"]), name="high >= low"),
        ],
    ),
    "returns": pa.DataFrameSchema(
        {
            "close": pa.Column(float, pa.Check.gt(0)),
            "prev_close": pa.Column(float, pa.Check.gt(0)),
            "daily_return": pa.Column(float, pa.Check.gt(-1)),
        },
        checks=[_unique(*KEYS["returns"]), _finite("daily_return")],
    ),
    "position_values": pa.DataFrameSchema(
        {"price_source": _one_of("market", "carried_forward", "missing")},
        checks=[
            _unique(*KEYS["position_values"]),
            _rows_check(
                lambda f: (
                    f["price_source"].eq("missing")
                    | np.isfinite(
                        f[["price", "market_value", "exposure", "daily_pnl"]].to_numpy(float)
                    ).all(axis=1)
                ),
                name="finite values where priced",
            ),
        ],
    ),
    "position_greeks": pa.DataFrameSchema(
        {
            "source": _one_of("model", "fallback", "expired"),
            "volatility": pa.Column(
                float, pa.Check.in_range(0, 5, include_min=False), nullable=True
            ),
            "t_years": pa.Column(float, nullable=True),
        },
        checks=[
            _unique(*KEYS["position_greeks"]),
            _finite("delta", "gamma", "theta", "vega", "rho", "position_delta"),
            _rows_check(lambda f: f["delta"].abs() <= 1.0, name="|delta| <= 1 per unit"),
            _rows_check(
                lambda f: (
                    f["source"].ne("model")
                    | (f["volatility"].notna() & f["underlying_price"].gt(0))
                ),
                name="model rows have their inputs",
            ),
        ],
    ),
    "factor_betas": pa.DataFrameSchema(
        {
            "n_obs": pa.Column(int, pa.Check.in_range(0, 60)),
            "r_squared": pa.Column(float, pa.Check.in_range(0, 1 + 1e-9), nullable=True),
        },
        checks=[
            _unique(*KEYS["factor_betas"]),
            _rows_check(
                lambda f: f["beta"].isna() | np.isfinite(f["beta"]), name="beta finite or null"
            ),
            _has_reason("beta"),
        ],
    ),
    "position_factor_exposures": pa.DataFrameSchema(
        {"n_obs": pa.Column(int, pa.Check.in_range(0, 60))},
        checks=[
            _unique(*KEYS["position_factor_exposures"]),
            _rows_check(
                lambda f: f["reason"].notna() | f[list(BETA_COLUMNS.values())].notna().all(axis=1),
                name="a row missing a beta says why",
            ),
        ],
    ),
    "portfolio_risk_metrics": pa.DataFrameSchema(
        {
            "volatility_ann": pa.Column(float, pa.Check.ge(0), nullable=True),
            "max_drawdown": pa.Column(float, pa.Check.in_range(-1, 0), nullable=True),
            "var_95_1d": pa.Column(float, pa.Check.ge(0), nullable=True),
        },
        checks=[
            _unique(*KEYS["portfolio_risk_metrics"]),
            _rows_check(
                lambda f: f["cvar_95_1d"].isna() | (f["cvar_95_1d"] >= f["var_95_1d"] - 1e-9),
                name="CVaR >= VaR",
            ),
        ],
    ),
    "portfolio_returns": pa.DataFrameSchema(
        {"flows_usd": pa.Column(float), "gross_value_usd": pa.Column(float, pa.Check.ge(0))},
        checks=[
            _unique(*KEYS["portfolio_returns"]),
            _finite("realized_pnl_usd", "realized_pnl_cum_usd", "flows_usd"),
            _has_reason("twr_daily"),
            _rows_check(
                lambda f: f["twr_daily"].isna() | (f["twr_daily"] > -1 - 1e-9),
                name="a day loses at most the capital at work",
            ),
        ],
    ),
    "symbol_volatility": pa.DataFrameSchema(
        {
            **{
                c: pa.Column(float, pa.Check.ge(0), nullable=True)
                for c in ("vol_21d", "vol_63d", "vol_252d", "vol_ewma", "vol_har_21d")
            },
            "vol_percentile_252d": pa.Column(float, pa.Check.in_range(0, 100), nullable=True),
        },
        checks=[_unique(*KEYS["symbol_volatility"]), _has_reason("vol_21d")],
    ),
    "specific_risk": pa.DataFrameSchema(
        {"specific_variance": pa.Column(float, pa.Check.ge(0), nullable=True)},
        checks=[_unique(*KEYS["specific_risk"]), _has_reason("specific_variance")],
    ),
    "portfolio_volatility": pa.DataFrameSchema(
        {
            c: pa.Column(float, pa.Check.ge(0), nullable=True)
            for c in ("vol_21d", "vol_63d", "vol_252d", "vol_ewma", "vol_ex_ante_usd")
        },
        checks=[_unique(*KEYS["portfolio_volatility"]), _has_reason("vol_ex_ante_usd")],
    ),
    "portfolio_correlations": pa.DataFrameSchema(
        {
            "avg_pairwise_correlation": pa.Column(
                float, pa.Check.in_range(-1 - 1e-9, 1 + 1e-9), nullable=True
            ),
            "effective_number_of_bets": pa.Column(float, pa.Check.ge(0), nullable=True),
        },
        checks=[
            _unique(*KEYS["portfolio_correlations"]),
            _rows_check(
                lambda f: pd.Series(
                    [
                        not bool((np.abs(np.asarray(c, dtype=float)) > 1 + 1e-9).any())
                        for c in f["correlations"]
                    ],
                    index=f.index,
                ),
                name="|correlation| <= 1",
            ),
        ],
    ),
    "portfolio_concentration": pa.DataFrameSchema(
        {
            "hhi": pa.Column(float, pa.Check.in_range(0, 1 + 1e-9), nullable=True),
            "effective_n": pa.Column(float, pa.Check.ge(1 - 1e-9), nullable=True),
            "top5_weight": pa.Column(float, pa.Check.in_range(0, 1 + 1e-9), nullable=True),
        },
        checks=[_unique(*KEYS["portfolio_concentration"]), _has_reason("hhi")],
    ),
    "portfolio_sector_exposures": pa.DataFrameSchema(
        {"gross_weight": pa.Column(float, pa.Check.in_range(0, 1 + 1e-9), nullable=True)},
        checks=[
            _unique(*KEYS["portfolio_sector_exposures"]),
            _rows_check(
                lambda f: f["gross_exposure_usd"] >= f["net_exposure_usd"].abs() - 1e-6,
                name="gross >= |net|",
            ),
        ],
    ),
    "portfolio_risk_decomposition": pa.DataFrameSchema(
        {"variance_usd2": pa.Column(float, nullable=True)},
        checks=[
            _unique(*KEYS["portfolio_risk_decomposition"]),
            _rows_check(
                lambda f: f["total_vol_usd"].isna() | (f["total_vol_usd"] >= 0),
                name="model volatility >= 0",
            ),
            _has_reason("total_vol_usd"),
        ],
    ),
    "portfolio_stress_results": pa.DataFrameSchema(
        {"n_missing": pa.Column(int, pa.Check.ge(0))},
        checks=[
            _unique(*KEYS["portfolio_stress_results"]),
            _rows_check(
                lambda f: f["n_missing"] <= f["n_positions"], name="n_missing <= positions"
            ),
            _has_reason("pnl_usd"),
        ],
    ),
    "position_risk_contributions": pa.DataFrameSchema(
        checks=[
            _unique(*KEYS["position_risk_contributions"]),
            _has_reason("component_vol_usd"),
        ],
    ),
    "position_stress_pnl": pa.DataFrameSchema(
        checks=[
            _unique(*KEYS["position_stress_pnl"]),
            _rows_check(
                lambda f: pd.Series(
                    f["reasons"].notna().to_numpy()
                    | (_lists_finite(f["pnl_usd"]) & _lists_finite(f["pnl_usd_delta_gamma"])),
                    index=f.index,
                ),
                name="a NaN P&L has its reasons",
            ),
        ],
    ),
    "stress_moves": pa.DataFrameSchema(
        checks=[
            _unique(*KEYS["stress_moves"]),
            _rows_check(
                lambda f: pd.Series(
                    f["reasons"].notna().to_numpy() | _lists_finite(f["moves"]), index=f.index
                ),
                name="a NaN move has its reasons",
            ),
        ],
    ),
}

# The tables written beside an asset's own (`io_manager.CompanionRows`), checked by a blocking
# check of that asset (`companion_check_spec`): the database keeps them one row per key no more
# than the asset's table (sql/0019).
COMPANION_CHECKS = {
    "position_risk_contributions": "position_risk_contributions_schema",
    "position_stress_pnl": "position_stress_pnl_schema",
}


def schema_check_spec(table: str) -> AssetCheckSpec:
    """The blocking pandera check of `table`'s asset (results come from `TableValidator`)."""
    return AssetCheckSpec(
        "schema",
        asset=table,
        blocking=True,
        description=(
            f"pandera schema of {table} on every row the run wrote: required values finite, "
            "ranges, one row per key (blocking: downstream assets do not run on corrupt rows)"
        ),
    )


def companion_check_spec(asset: str, table: str) -> AssetCheckSpec:
    """The blocking pandera check, on `asset`, of the companion `table` it writes."""
    return AssetCheckSpec(
        COMPANION_CHECKS[table],
        asset=asset,
        blocking=True,
        description=(
            f"pandera schema of {table}, written with {asset}, on every row the run wrote: one "
            "row per key, a value that could not be computed has its reason"
        ),
    )


def companion_validator(asset: str, table: str) -> TableValidator:
    """The validator whose result is `companion_check_spec(asset, table)`'s."""
    return TableValidator(table, COMPANION_CHECKS[table], asset=asset)


def keys_text(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    parts = []
    for row in frame[list(keys)].itertuples(index=False):
        parts.append(
            ", ".join(
                f"{k}={v:%Y-%m-%d}" if isinstance(v, pd.Timestamp) else f"{k}={v}"
                for k, v in zip(keys, row, strict=True)
            )
        )
    return parts


class TableValidator:
    """Validates each chunk a write stores with the table's pandera schema and keeps the
    totals: rows checked, rows failing, failures by check and the first failing keys."""

    def __init__(self, table: str, check_name: str = "schema", asset: str | None = None) -> None:
        self.table = table
        self.asset = asset or table  # the asset whose check this is (a companion's writer)
        self.check_name = check_name
        self.schema = SCHEMAS[table]
        self.keys = KEYS[table]
        self.rows = 0
        self.failing_rows = 0
        self.by_check: Counter = Counter()
        self.failing_keys: list[str] = []
        self.days: set[str] = set()

    def __call__(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        if "trade_date" in frame and len(frame):
            dates = pd.to_datetime(frame["trade_date"], cache=False)
            self.days.update({f"{dates.min():%Y-%m-%d}", f"{dates.max():%Y-%m-%d}"})
        try:
            self.schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            self.by_check.update(cases["check"].astype(str).value_counts().to_dict())
            index = pd.Index(cases["index"].dropna().unique())
            bad = frame.loc[frame.index.intersection(index)]
            self.failing_rows += len(bad) if len(bad) else len(frame)
            room = SHOWN_KEYS - len(self.failing_keys)
            if room > 0 and len(bad):
                self.failing_keys += keys_text(bad.head(room), self.keys)

    def result(self) -> AssetCheckResult:
        return AssetCheckResult(
            check_name=self.check_name,
            asset_key=self.asset,
            passed=self.failing_rows == 0,
            metadata=check_metadata(
                self.rows,
                self.failing_rows,
                self.failing_keys,
                self.days,
                {"by_check": dict(self.by_check)} if self.by_check else {},
            ),
        )


def check_metadata(
    rows: int, failing: int, keys: Sequence[str], days: set[str], extra: dict | None = None
) -> dict:
    """The metadata every check result carries."""
    meta = {
        "rows_checked": rows,
        "rows_failing": failing,
        "failing_keys": MetadataValue.md("\n".join(f"- {k}" for k in keys) or "none"),
    }
    if days:
        meta["partitions"] = f"{min(days)}..{max(days)}"
    for name, value in (extra or {}).items():
        meta[name] = (
            MetadataValue.md("\n".join(f"- {k}: {v}" for k, v in value.items()))
            if isinstance(value, dict)
            else value
        )
    return meta
