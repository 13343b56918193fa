"""Asset checks on what each run wrote: a pandera schema per table, run on every chunk as it is
written (never a re-read of the table), plus warning checks computed from the same rows.

Blocking checks stop downstream assets in the same run only when the rows would corrupt the
tables everyone reads: non-finite values where values are required, probabilities or
volatilities out of range, duplicate keys. A position or portfolio the pipeline cannot value
(no price, too little history) is stored with a reason and named by a warning check: it never
fails the run, so one portfolio's problem never blocks another's numbers.

Every check result says which rows it saw: rows checked, rows failing, the first failing keys,
the partition range and the run's scope.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue
from psycopg import sql

from sigmasight_pipeline.analytics.exposures import BETA_COLUMNS

BETA_CAP = 5.0
SHOWN_KEYS = 10


def _finite(*columns: str, where: str | None = None) -> pa.Check:
    """Rows (optionally those where boolean column `where` is true) have finite values."""

    def check(frame: pd.DataFrame) -> pd.Series:
        values = frame[list(columns)].to_numpy(dtype=float)
        ok = np.isfinite(values).all(axis=1)
        if where is not None:
            ok |= ~frame[where].to_numpy(dtype=bool)
        return pd.Series(ok, index=frame.index)

    return pa.Check(
        check, name=f"finite({', '.join(columns)})" + (f" where {where}" if where else "")
    )


def _unique(*keys: str) -> pa.Check:
    return pa.Check(
        lambda frame: ~frame.duplicated(list(keys), keep=False), name=f"one row per {keys}"
    )


def _has_reason(value: str) -> pa.Check:
    return pa.Check(
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
    "portfolio_volatility": ("trade_date", "portfolio_id"),
    "portfolio_correlations": ("trade_date", "portfolio_id"),
    "portfolio_concentration": ("trade_date", "portfolio_id"),
    "portfolio_sector_exposures": ("trade_date", "portfolio_id", "sector"),
    "portfolio_risk_decomposition": ("trade_date", "portfolio_id", "component"),
    "portfolio_stress_results": ("trade_date", "portfolio_id", "scenario_id"),
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
            pa.Check(lambda f: ~(f["high"] < f["low"]), name="high >= low"),
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
        {"price_source": pa.Column(str, pa.Check.isin(["market", "carried_forward", "missing"]))},
        checks=[
            _unique(*KEYS["position_values"]),
            pa.Check(
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
            "source": pa.Column(str, pa.Check.isin(["model", "fallback", "expired"])),
            "volatility": pa.Column(
                float, pa.Check.in_range(0, 5, include_min=False), nullable=True
            ),
            "t_years": pa.Column(float, nullable=True),
        },
        checks=[
            _unique(*KEYS["position_greeks"]),
            _finite("delta", "gamma", "theta", "vega", "rho", "position_delta"),
            pa.Check(lambda f: f["delta"].abs() <= 1.0, name="|delta| <= 1 per unit"),
            pa.Check(
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
            pa.Check(
                lambda f: f["beta"].isna() | np.isfinite(f["beta"]), name="beta finite or null"
            ),
            _has_reason("beta"),
        ],
    ),
    "position_factor_exposures": pa.DataFrameSchema(
        {"n_obs": pa.Column(int, pa.Check.in_range(0, 60))},
        checks=[
            _unique(*KEYS["position_factor_exposures"]),
            pa.Check(
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
            pa.Check(
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
            pa.Check(
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
            pa.Check(
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
            pa.Check(
                lambda f: f["gross_exposure_usd"] >= f["net_exposure_usd"].abs() - 1e-6,
                name="gross >= |net|",
            ),
        ],
    ),
    "portfolio_risk_decomposition": pa.DataFrameSchema(
        {"variance_usd2": pa.Column(float, nullable=True)},
        checks=[
            _unique(*KEYS["portfolio_risk_decomposition"]),
            pa.Check(
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
            pa.Check(lambda f: f["n_missing"] <= f["n_positions"], name="n_missing <= positions"),
            _has_reason("pnl_usd"),
        ],
    ),
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


def _keys_text(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
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

    def __init__(self, table: str, check_name: str = "schema") -> None:
        self.table = table
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
                self.failing_keys += _keys_text(bad.head(room), self.keys)

    def result(self) -> AssetCheckResult:
        return AssetCheckResult(
            check_name=self.check_name,
            asset_key=self.table,
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


class RowWarning:
    """A warning check counted over the chunks a write stores: `flag(frame)` returns the
    boolean mask of rows to warn about and a label per flagged row (the reason)."""

    def __init__(
        self,
        table: str,
        check_name: str,
        flag: Callable[[pd.DataFrame], tuple[pd.Series, pd.Series]],
    ) -> None:
        self.table = table
        self.check_name = check_name
        self.flag = flag
        self.keys = KEYS[table]
        self.rows = 0
        self.flagged = 0
        self.reasons: Counter = Counter()
        self.flagged_keys: list[str] = []
        self.days: set[str] = set()

    def __call__(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        if not len(frame):
            return
        dates = pd.to_datetime(frame["trade_date"], cache=False)
        self.days.update({f"{dates.min():%Y-%m-%d}", f"{dates.max():%Y-%m-%d}"})
        mask, labels = self.flag(frame)
        mask = mask.to_numpy(dtype=bool)
        if not mask.any():
            return
        self.flagged += int(mask.sum())
        self.reasons.update(pd.Series(labels[mask]).astype(str).value_counts().to_dict())
        room = SHOWN_KEYS - len(self.flagged_keys)
        if room > 0:
            flagged = frame.loc[mask].head(room)
            labelled = labels[mask][:room]
            self.flagged_keys += [
                f"{k} ({why})"
                for k, why in zip(_keys_text(flagged, self.keys), labelled, strict=True)
            ]

    def summary(self) -> dict:
        """Coverage and reasons for the materialization's metadata."""
        meta: dict = {"coverage": f"{self.rows - self.flagged:,} / {self.rows:,} rows"}
        if self.reasons:
            meta["reasons"] = MetadataValue.md(
                "\n".join(f"- {k}: {v:,}" for k, v in self.reasons.most_common(20))
            )
        return meta

    def result(self) -> AssetCheckResult:
        return AssetCheckResult(
            check_name=self.check_name,
            asset_key=self.table,
            passed=self.flagged == 0,
            severity=AssetCheckSeverity.WARN,
            metadata=check_metadata(
                self.rows,
                self.flagged,
                self.flagged_keys,
                self.days,
                {"reasons": dict(self.reasons.most_common(20))} if self.reasons else {},
            ),
        )


def warning_check_spec(table: str, name: str, description: str) -> AssetCheckSpec:
    return AssetCheckSpec(name, asset=table, blocking=False, description=description)


def beta_cap_warning() -> RowWarning:
    def flag(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        mask = frame["beta"].abs() > BETA_CAP
        return mask, frame["factor"] + " beta " + frame["beta"].round(2).astype(str)

    return RowWarning("factor_betas", "factor_betas_within_cap", flag)


BETA_CAP_SPEC = warning_check_spec(
    "factor_betas",
    "factor_betas_within_cap",
    f"Betas beyond +/-{BETA_CAP} are flagged for review (warning)",
)


def unvalued_positions_warning() -> RowWarning:
    """Position rows without a price, or whose daily P&L could not be measured."""

    def flag(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        reason = frame["pnl_reason"] if "pnl_reason" in frame else pd.Series(None, frame.index)
        missing = frame["price_source"].eq("missing")
        labels = np.where(
            missing, "no price: " + frame["symbol"].astype(str), reason.fillna("").astype(str)
        )
        return missing | reason.notna(), pd.Series(labels, index=frame.index)

    return RowWarning("position_values", "positions_valued", flag)


VOLATILITY_CAP = 5.0  # 500 % a year: possible (a tiny portfolio, a huge new position), rare


def extreme_volatility_warning() -> RowWarning:
    def flag(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        vol = frame["volatility_ann"]
        return vol > VOLATILITY_CAP, "volatility " + (100 * vol).round(0).astype(str) + "%"

    return RowWarning("portfolio_risk_metrics", "volatility_plausible", flag)


VOLATILITY_PLAUSIBLE_SPEC = warning_check_spec(
    "portfolio_risk_metrics",
    "volatility_plausible",
    f"Annualized volatility above {VOLATILITY_CAP:.0%} is flagged for review (warning)",
)


POSITIONS_VALUED_SPEC = warning_check_spec(
    "position_values",
    "positions_valued",
    "Every held position has a price and a measured daily P&L; rows without one are named "
    "with their reason (warning: the run goes on, the rows carry the reason)",
)


def sql_finite(*columns: str) -> str:
    """SQL true when every column is a finite number (not NULL, NaN or +-Infinity)."""
    return " AND ".join(
        f"({c} IS NOT NULL AND {c} NOT IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8))"
        for c in columns
    )


@dataclass(frozen=True)
class SqlRules:
    """A blocking schema check for tables written set-based (INSERT ... SELECT): each rule is
    an SQL predicate true for a good row, counted by one aggregate over the rows the run wrote
    (after they committed); the first failing keys are listed."""

    table: str
    rules: dict[str, str]
    check_name: str = "schema"

    def spec(self) -> AssetCheckSpec:
        return AssetCheckSpec(
            self.check_name,
            asset=self.table,
            blocking=True,
            description=f"{self.table} rows the run wrote: " + "; ".join(self.rules),
        )

    def run(self, url: str, days: pd.DatetimeIndex, where: sql.Composable) -> AssetCheckResult:
        from sigmasight_pipeline.resources.tables import query_frame

        written = sql.SQL("trade_date BETWEEN {} AND {} AND ({})").format(
            sql.Literal(days[0].date()), sql.Literal(days[-1].date()), where
        )
        table = sql.SQL("sigmasight.{}").format(sql.Identifier(self.table))
        counts = query_frame(
            url,
            sql.SQL("SELECT count(*) AS rows, {} FROM {} WHERE {}").format(
                sql.SQL(", ").join(
                    sql.SQL("count(*) FILTER (WHERE NOT coalesce({}, false)) AS {}").format(
                        sql.SQL(rule), sql.Identifier(name)
                    )
                    for name, rule in self.rules.items()
                ),
                table,
                written,
            ),
        ).iloc[0]
        all_good = sql.SQL(" AND ").join(
            sql.SQL("coalesce({}, false)").format(sql.SQL(r)) for r in self.rules.values()
        )
        bad = query_frame(
            url,
            sql.SQL("SELECT {} FROM {} WHERE {} AND NOT ({}) LIMIT {}").format(
                sql.SQL(", ").join(sql.Identifier(k) for k in KEYS[self.table]),
                table,
                written,
                all_good,
                sql.Literal(SHOWN_KEYS),
            ),
        )
        failing = query_frame(
            url,
            sql.SQL("SELECT count(*) AS n FROM {} WHERE {} AND NOT ({})").format(
                table, written, all_good
            ),
        )["n"].iloc[0]
        by_rule = {name: int(counts[name]) for name in self.rules if counts[name]}
        return AssetCheckResult(
            check_name=self.check_name,
            asset_key=self.table,
            passed=int(failing) == 0,
            metadata=check_metadata(
                int(counts["rows"]),
                int(failing),
                _keys_text(bad, KEYS[self.table]),
                {f"{days[0]:%Y-%m-%d}", f"{days[-1]:%Y-%m-%d}"},
                {"by_check": by_rule} if by_rule else {},
            ),
        )


SNAPSHOT_RULES = SqlRules(
    "portfolio_snapshots",
    {
        "finite exposures": sql_finite(
            "total_value", "long_exposure", "short_exposure", "gross_exposure", "net_exposure"
        ),
        "finite P&L": sql_finite("daily_pnl", "window_pnl"),
        "gross >= |net|": "gross_exposure >= abs(net_exposure) - 1e-6",
    },
)
PORTFOLIO_GREEKS_RULES = SqlRules(
    "portfolio_greeks",
    {"finite Greeks": sql_finite("delta", "gamma", "theta", "vega", "rho")},
)
PORTFOLIO_FACTOR_RULES = SqlRules(
    "portfolio_factor_exposures",
    {"coverage in [0, 1]": "coverage IS NULL OR (coverage >= 0 AND coverage <= 1 + 1e-9)"},
)


PRICES_COMPLETE_SPEC = warning_check_spec(
    "prices",
    "prices_complete",
    "Every held symbol, option underlying and factor ETF has a price on every session of the "
    "run (an option from its first entry date to its expiry); what has none is named with its "
    "reason (failed, rejected, no_data, not_published)",
)


class PricesComplete:
    """The `prices_complete` warning, counted over the chunks of a prices run: pairs wanted,
    pairs without a market price, and the first symbols named with their reason."""

    def __init__(self, days: pd.DatetimeIndex) -> None:
        self.days = {f"{days[0]:%Y-%m-%d}", f"{days[-1]:%Y-%m-%d}"}
        self.wanted = 0
        self.failing = 0
        self.reasons: Counter = Counter()
        self.named: list[str] = []

    def __call__(self, issues: pd.DataFrame, wanted: int) -> None:
        self.wanted += wanted
        self.failing += len(issues)
        if issues.empty:
            return
        frame = issues.assign(
            day=pd.to_datetime(issues["trade_date"], cache=False).dt.strftime("%Y-%m-%d")
        )
        self.reasons.update(frame["kind"].value_counts().to_dict())
        for (symbol, kind), group in frame.groupby(["symbol", "kind"], sort=True):
            if len(self.named) >= SHOWN_KEYS:
                break
            self.named.append(
                f"{symbol}: {len(group)} session(s) {group['day'].min()}..{group['day'].max()}"
                f" ({kind})"
            )

    def result(self) -> AssetCheckResult:
        return AssetCheckResult(
            check_name="prices_complete",
            asset_key="prices",
            passed=self.failing == 0,
            severity=AssetCheckSeverity.WARN,
            metadata=check_metadata(
                self.wanted,
                self.failing,
                self.named,
                self.days,
                {"reasons": dict(self.reasons)} if self.reasons else {},
            ),
        )


RETURNS_PLAUSIBLE_SPEC = warning_check_spec(
    "returns",
    "returns_plausible",
    "Daily moves beyond 40 % are named: explained by a split on record (closes not "
    "split-adjusted) or not explained at all (warning)",
)


def flagged_returns_warning() -> RowWarning:
    def flag(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        return frame["flag"].notna(), frame["flag"].fillna("").astype(str)

    return RowWarning("returns", "returns_plausible", flag)
