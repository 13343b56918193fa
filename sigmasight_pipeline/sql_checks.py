"""Blocking checks for the tables written set-based (INSERT ... SELECT): SQL predicates
counted by one aggregate over the rows the run wrote."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec
from psycopg import sql

from sigmasight_pipeline.checks import KEYS, SHOWN_KEYS, check_metadata, keys_text


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
    (after they committed), and one row per key (`checks.KEYS`: these tables have no unique
    index, sql/0019); the first failing keys are listed. A row both breaking a rule and
    sharing its key counts under each."""

    table: str
    rules: dict[str, str]
    check_name: str = "schema"

    def spec(self) -> AssetCheckSpec:
        return AssetCheckSpec(
            self.check_name,
            asset=self.table,
            blocking=True,
            description=f"{self.table} rows the run wrote: "
            + "; ".join([*self.rules, f"one row per {KEYS[self.table]}"]),
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
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in KEYS[self.table])
        duplicates = query_frame(
            url,
            sql.SQL(
                "SELECT {}, count(*) AS n FROM {} WHERE {} GROUP BY {} HAVING count(*) > 1"
            ).format(keys, table, written, keys),
        )
        by_rule = {name: int(counts[name]) for name in self.rules if counts[name]}
        duplicated = int(duplicates["n"].sum())
        if duplicated:
            by_rule[f"one row per {KEYS[self.table]}"] = duplicated
        shown = keys_text(bad, KEYS[self.table])
        shown += keys_text(duplicates.head(SHOWN_KEYS - len(shown)), KEYS[self.table])
        return AssetCheckResult(
            check_name=self.check_name,
            asset_key=self.table,
            passed=int(failing) == 0 and not duplicated,
            metadata=check_metadata(
                int(counts["rows"]),
                int(failing) + duplicated,
                shown,
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
