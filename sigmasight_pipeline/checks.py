"""Asset checks: a pandera schema per table, run on what each materialization wrote.

Blocking checks stop downstream assets in the same run when the data is wrong (non-finite
values where values are required, probabilities or volatilities out of range, duplicate keys);
the beta cap is a warning: an extreme beta is possible, but someone should look at it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, MetadataValue, asset_check

BETA_CAP = 5.0


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


SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "prices": pa.DataFrameSchema(
        {
            "close": pa.Column(float, pa.Check.ge(0)),
            "high": pa.Column(float, nullable=True),
            "low": pa.Column(float, pa.Check.ge(0), nullable=True),
        },
        checks=[
            _unique("symbol", "trade_date"),
            pa.Check(lambda f: f["high"] >= f["low"], name="high >= low"),
        ],
    ),
    "position_values": pa.DataFrameSchema(
        {"price_source": pa.Column(str, pa.Check.isin(["market", "carried_forward", "missing"]))},
        checks=[
            _unique("trade_date", "position_id"),
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
            "source": pa.Column(str, pa.Check.isin(["model", "fallback", "expired", "stock"])),
            "volatility": pa.Column(
                float, pa.Check.in_range(0, 5, include_min=False), nullable=True
            ),
            "t_years": pa.Column(float, nullable=True),
        },
        checks=[
            _unique("trade_date", "position_id"),
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
            _unique("trade_date", "symbol", "factor"),
            pa.Check(
                lambda f: f["beta"].isna() | np.isfinite(f["beta"]), name="beta finite or null"
            ),
            pa.Check(
                lambda f: f["beta"].notna() | f["reason"].notna(), name="null beta has a reason"
            ),
        ],
    ),
    "position_factor_exposures": pa.DataFrameSchema(
        checks=[
            _unique("trade_date", "position_id", "factor"),
            pa.Check(
                lambda f: f["beta"].notna() | f["reason"].notna(), name="null beta has a reason"
            ),
        ],
    ),
    "portfolio_factor_exposures": pa.DataFrameSchema(
        {"coverage": pa.Column(float, pa.Check.in_range(0, 1 + 1e-9), nullable=True)},
        checks=[_unique("trade_date", "portfolio_id", "factor")],
    ),
    "portfolio_risk_metrics": pa.DataFrameSchema(
        {
            "volatility_ann": pa.Column(float, pa.Check.in_range(0, 5), nullable=True),
            "max_drawdown": pa.Column(float, pa.Check.in_range(-1, 0), nullable=True),
            "var_95_1d": pa.Column(float, pa.Check.ge(0), nullable=True),
        },
        checks=[
            _unique("trade_date", "portfolio_id"),
            pa.Check(
                lambda f: f["cvar_95_1d"].isna() | (f["cvar_95_1d"] >= f["var_95_1d"] - 1e-9),
                name="CVaR >= VaR",
            ),
        ],
    ),
    "portfolio_snapshots": pa.DataFrameSchema(
        checks=[
            _unique("trade_date", "portfolio_id"),
            _finite(
                "total_value", "long_exposure", "short_exposure", "gross_exposure", "net_exposure"
            ),
        ],
    ),
}


def validate(table: str, frame: pd.DataFrame) -> AssetCheckResult:
    """Validate `frame` with the table's schema, every failure collected."""
    try:
        SCHEMAS[table].validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        summary = cases.groupby("check", dropna=False).size().sort_values(ascending=False)
        return AssetCheckResult(
            passed=False,
            metadata={
                "failures": len(cases),
                "by_check": MetadataValue.md(
                    "\n".join(f"- {check}: {n}" for check, n in summary.items())
                ),
                "sample": MetadataValue.md(cases.head(10).to_markdown(index=False)),
            },
        )
    return AssetCheckResult(passed=True, metadata={"rows": len(frame)})


def _schema_check(table: str):
    @asset_check(
        asset=AssetKey(table),
        name="schema",
        blocking=True,
        description=f"pandera schema of {table}: required values finite, ranges, one row per key",
    )
    def _check(asset_value: pd.DataFrame) -> AssetCheckResult:
        return validate(table, asset_value)

    return _check


@asset_check(
    asset=AssetKey("factor_betas"),
    description=f"Betas beyond +/-{BETA_CAP} are flagged for review (not blocking)",
)
def factor_betas_within_cap(asset_value: pd.DataFrame) -> AssetCheckResult:
    extreme = asset_value[asset_value["beta"].abs() > BETA_CAP]
    return AssetCheckResult(
        passed=extreme.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "beyond_cap": len(extreme),
            "sample": MetadataValue.md(
                extreme.head(10)[["trade_date", "symbol", "factor", "beta"]].to_markdown(
                    index=False
                )
            )
            if len(extreme)
            else "none",
        },
    )


@asset_check(asset=AssetKey("prices"), description="Every held stock has a bar each day")
def prices_complete(asset_value: pd.DataFrame) -> AssetCheckResult:
    if asset_value.empty:
        return AssetCheckResult(
            passed=False, severity=AssetCheckSeverity.WARN, metadata={"reason": "no prices"}
        )
    days = asset_value["trade_date"].nunique()
    counts = (
        asset_value[~asset_value["source"].eq("model")].groupby("symbol")["trade_date"].nunique()
    )
    short = counts[counts < days]
    return AssetCheckResult(
        passed=short.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "days": days,
            "symbols_with_gaps": len(short),
            "gaps": MetadataValue.md(
                "\n".join(f"- {s}: {n}/{days} days" for s, n in short.items()) or "none"
            ),
        },
    )


ASSET_CHECKS = [_schema_check(table) for table in SCHEMAS] + [
    factor_betas_within_cap,
    prices_complete,
]
