"""Warning checks on what a run wrote: rows flagged as they are written (a position without a
price, a beta beyond its cap, an implausible move) and the prices run's coverage. They never
fail a run: the rows carry their reason and the check names the first of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from sigmasight_pipeline.checks import BETA_CAP, KEYS, SHOWN_KEYS, check_metadata, keys_text


class RowWarning:
    """A warning check counted over the chunks a write stores: `flag(frame)` returns the
    boolean mask of rows to warn about, `label(rows)` a label (the reason) per flagged row:
    labels are only built for the few rows flagged."""

    def __init__(
        self,
        table: str,
        check_name: str,
        flag: Callable[[pd.DataFrame], pd.Series],
        label: Callable[[pd.DataFrame], pd.Series | np.ndarray],
    ) -> None:
        self.table = table
        self.check_name = check_name
        self.flag = flag
        self.label = label
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
        mask = np.asarray(self.flag(frame), dtype=bool)
        if not mask.any():
            return
        self.flagged += int(mask.sum())
        rows = frame.loc[mask]
        labels = pd.Series(np.asarray(self.label(rows), dtype=object)).astype(str)
        self.reasons.update(labels.value_counts().to_dict())
        room = SHOWN_KEYS - len(self.flagged_keys)
        if room > 0:
            flagged = rows.head(room)
            labelled = labels.iloc[:room]
            self.flagged_keys += [
                f"{k} ({why})"
                for k, why in zip(keys_text(flagged, self.keys), labelled, strict=True)
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
    return RowWarning(
        "factor_betas",
        "factor_betas_within_cap",
        lambda frame: frame["beta"].abs() > BETA_CAP,
        lambda rows: rows["factor"] + " beta " + rows["beta"].round(2).astype(str),
    )


BETA_CAP_SPEC = warning_check_spec(
    "factor_betas",
    "factor_betas_within_cap",
    f"Betas beyond +/-{BETA_CAP} are flagged for review (warning)",
)


def unvalued_positions_warning() -> RowWarning:
    """Position rows without a price, or whose daily P&L could not be measured."""

    def reason(frame: pd.DataFrame) -> pd.Series:
        return frame["pnl_reason"] if "pnl_reason" in frame else pd.Series(None, frame.index)

    def label(rows: pd.DataFrame) -> np.ndarray:
        return np.where(
            rows["price_source"].eq("missing"),
            "no price: " + rows["symbol"].astype(str),
            reason(rows).fillna("").astype(str),
        )

    return RowWarning(
        "position_values",
        "positions_valued",
        lambda frame: frame["price_source"].eq("missing") | reason(frame).notna(),
        label,
    )


VOLATILITY_CAP = 5.0  # 500 % a year: possible (a tiny portfolio, a huge new position), rare


def extreme_volatility_warning() -> RowWarning:
    return RowWarning(
        "portfolio_risk_metrics",
        "volatility_plausible",
        lambda frame: frame["volatility_ann"] > VOLATILITY_CAP,
        lambda rows: "volatility " + (100 * rows["volatility_ann"]).round(0).astype(str) + "%",
    )


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
    return RowWarning(
        "returns",
        "returns_plausible",
        lambda frame: frame["flag"].notna(),
        lambda rows: rows["flag"].astype(str),
    )
