"""Data quality of market data: what is missing or wrong, with a reason, and one line per cause
for people (pure functions; the prices asset stores the issues and its checks name them).

Issue kinds, per (symbol, trade_date):
- `failed`: the provider's call for it failed (its message); it is fetched again next run. An
  option that failed is priced by the model meanwhile, and the issue says so.
- `rejected`: the provider sent a bad bar (close <= 0, not finite, conflicting duplicates).
  Final: not asked again (delete the issue row to have it fetched again).
- `no_data`: the provider answered and has no bar for a stock or ETF (not traded, delisted).
  Final, as `rejected`. An option with no bar is model-priced instead, and only an option the
  model cannot price either (no underlying close, too little history) is `no_data`.
- `not_published`: no stock or ETF has a bar on that session at all: the provider has not
  published the day yet. The session is incomplete; the next run fetches it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

ISSUE_KINDS = ("failed", "rejected", "no_data", "not_published")
FINAL_KINDS = ("rejected", "no_data")  # the provider answered: not asked again
PRICE_ISSUE_COLUMNS = ["trade_date", "symbol", "kind", "detail"]
NOT_PUBLISHED_DETAIL = "no bar for any stock or ETF on this session: not yet published"


def price_issues(
    wanted: pd.DataFrame,
    market_priced: pd.DataFrame,
    model_priced: pd.DataFrame,
    provider_issues: pd.DataFrame,
) -> pd.DataFrame:
    """Every wanted (symbol, trade_date) without a market price, with its kind and detail.

    wanted: symbol, security_type, trade_date (datetime64). market_priced / model_priced:
    symbol, trade_date of the market bars (stored or fetched) and of the options priced by the
    model this run. provider_issues: symbol, trade_date, kind ('failed' | 'rejected'), detail.
    A pair the provider reported on keeps its report (an option priced by the model meanwhile
    says so); an unreported pair is `no_data`, or `not_published` on a session where no stock
    or ETF has a market bar at all; a model-priced option nobody reported on is no issue.
    """
    if wanted.empty:
        return pd.DataFrame(columns=PRICE_ISSUE_COLUMNS)
    keys = ["symbol", "trade_date"]
    merged = wanted.merge(
        market_priced[keys].drop_duplicates(), on=keys, how="left", indicator=True
    )
    missing = merged.loc[merged["_merge"] == "left_only", [*keys, "security_type"]]
    if missing.empty:
        return pd.DataFrame(columns=PRICE_ISSUE_COLUMNS)
    reported = provider_issues.assign(
        trade_date=pd.to_datetime(provider_issues["trade_date"], cache=False)
    )
    out = missing.merge(reported[[*keys, "kind", "detail"]], on=keys, how="left")
    modelled = out.merge(model_priced[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    by_model = (modelled["_merge"] == "both").to_numpy()
    out.loc[by_model & out["kind"].notna().to_numpy(), "detail"] += (
        "; priced by the model meanwhile"
    )
    out = out[~(by_model & out["kind"].isna().to_numpy())]
    nonempty = [f[keys] for f in (market_priced, model_priced) if not f.empty]
    priced = pd.concat(nonempty) if nonempty else market_priced[keys]
    stocks = wanted[wanted["security_type"].ne("OPTION")]
    priced_stocks = priced.merge(stocks[keys].drop_duplicates(), on=keys)
    stock_days = set(stocks["trade_date"].unique())
    empty_days = stock_days - set(priced_stocks["trade_date"].unique())
    unreported = out["kind"].isna()
    on_empty_day = out["trade_date"].isin(list(empty_days))
    out.loc[unreported & on_empty_day, ["kind", "detail"]] = ["not_published", NOT_PUBLISHED_DETAIL]
    unreported = out["kind"].isna()
    is_option = out["security_type"].eq("OPTION")
    out.loc[unreported & ~is_option, ["kind", "detail"]] = ["no_data", "the provider has no bar"]
    out.loc[unreported & is_option, ["kind", "detail"]] = [
        "no_data",
        "no market bar, and no model price (no underlying close or too little history)",
    ]
    return out[PRICE_ISSUE_COLUMNS].sort_values(["trade_date", "symbol"]).reset_index(drop=True)


@dataclass
class IssueSummary:
    """Issues counted chunk by chunk into one readable line per cause (bounded memory:
    counts, date spans and the first few symbols per cause)."""

    limit: int = 8
    causes: dict[tuple[str, str], dict] = field(default_factory=dict)
    unpublished: set[str] = field(default_factory=set)
    rejected_examples: list[str] = field(default_factory=list)

    def add(self, issues: pd.DataFrame) -> None:
        if issues.empty:
            return
        frame = issues.assign(
            day=pd.to_datetime(issues["trade_date"], cache=False).dt.strftime("%Y-%m-%d")
        )
        unpublished = frame["kind"].eq("not_published")
        self.unpublished.update(frame.loc[unpublished, "day"])
        rest = frame[~unpublished].copy()
        rejected = rest["kind"].eq("rejected")
        self.rejected_examples += list(rest.loc[rejected, "detail"].astype(str).head(3))
        rest.loc[rejected, "detail"] = ""  # each bad bar has its own detail: one cause for all
        for (kind, detail), group in rest.groupby(["kind", "detail"], sort=True):
            cause = self.causes.setdefault(
                (kind, detail), {"symbols": [], "more": 0, "rows": 0, "first": None, "last": None}
            )
            cause["rows"] += len(group)
            first, last = group["day"].min(), group["day"].max()
            cause["first"] = min(filter(None, [cause["first"], first]))
            cause["last"] = max(filter(None, [cause["last"], last]))
            for symbol in sorted(group["symbol"].unique()):
                if symbol in cause["symbols"]:
                    continue
                if len(cause["symbols"]) < self.limit:
                    cause["symbols"].append(symbol)
                else:
                    cause["more"] += 1

    def lines(self, fatal: str | None = None) -> list[str]:
        """The fatal provider error first, then one line per kind and provider message."""
        lines = [f"STOPPED: {fatal}"] if fatal else []
        if self.unpublished:
            sessions = sorted(self.unpublished)
            shown = ", ".join(sessions[: self.limit]) + (
                ", ..." if len(sessions) > self.limit else ""
            )
            lines.append(
                f"not yet published: no bars at all on {len(sessions)} session(s) ({shown}); "
                "fetched again on the next run"
            )
        for (kind, detail), cause in sorted(self.causes.items()):
            names = ", ".join(cause["symbols"]) + (
                f" and {cause['more']} more" if cause["more"] else ""
            )
            if kind == "rejected":
                detail = "e.g. " + "; ".join(self.rejected_examples[:3])
            verb = {"failed": "failed", "rejected": "rejected", "no_data": "no data"}[kind]
            retry = "; fetched again on the next run" if kind == "failed" else ""
            lines.append(
                f"{verb}: {names} ({cause['rows']:,} symbol-days, {cause['first']}.."
                f"{cause['last']}): {detail}{retry}"
            )
        return lines
