"""Data quality of market data: what is missing or wrong, with a reason, and one line per cause
for people (pure functions; the prices asset stores the issues and its checks name them).

Issue kinds, per (symbol, trade_date):
- `failed`: the provider's call for it failed (its message); it is fetched again next run.
- `rejected`: the provider sent a bad bar (close <= 0, not finite, conflicting duplicates).
- `no_data`: the provider answered and has no bar for a stock or ETF (not traded, delisted);
  an option with no bar is model-priced instead, and only an option the model cannot price
  either (no underlying close, too little history) is `no_data`.
- `not_published`: no stock or ETF has a bar on that session at all: the provider has not
  published the day yet. The session is incomplete; the next run fetches it again.
"""

from __future__ import annotations

import pandas as pd

ISSUE_KINDS = ("failed", "rejected", "no_data", "not_published")
PRICE_ISSUE_COLUMNS = ["trade_date", "symbol", "kind", "detail"]
NOT_PUBLISHED_DETAIL = "no bar for any stock or ETF on this session: not yet published"


def price_issues(
    wanted: pd.DataFrame, priced: pd.DataFrame, provider_issues: pd.DataFrame
) -> pd.DataFrame:
    """Every wanted (symbol, trade_date) without a price, with its kind and detail.

    wanted: symbol, security_type, trade_date (datetime64). priced: symbol, trade_date of every
    price stored or written this run (market or model). provider_issues: symbol, trade_date,
    kind ('failed' | 'rejected'), detail from the provider. A pair the provider reported on
    keeps its report; the rest are `no_data`, or `not_published` on a session where no stock or
    ETF is priced at all.
    """
    if wanted.empty:
        return pd.DataFrame(columns=PRICE_ISSUE_COLUMNS)
    keys = ["symbol", "trade_date"]
    merged = wanted.merge(priced[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    missing = merged.loc[merged["_merge"] == "left_only", [*keys, "security_type"]]
    if missing.empty:
        return pd.DataFrame(columns=PRICE_ISSUE_COLUMNS)
    reported = provider_issues.assign(trade_date=pd.to_datetime(provider_issues["trade_date"]))
    out = missing.merge(reported[[*keys, "kind", "detail"]], on=keys, how="left")
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


def outcome_lines(issues: pd.DataFrame, fatal: str | None = None, limit: int = 8) -> list[str]:
    """One readable line per cause: the fatal provider error first, then every kind of issue
    with the symbols (or sessions) it hit and the provider's message."""
    lines = [f"STOPPED: {fatal}"] if fatal else []
    if issues.empty:
        return lines
    days = pd.to_datetime(issues["trade_date"])
    frame = issues.assign(day=days.dt.strftime("%Y-%m-%d"))
    unpublished = frame[frame["kind"].eq("not_published")]
    if len(unpublished):
        sessions = sorted(unpublished["day"].unique())
        lines.append(
            f"not yet published: no bars at all on {len(sessions)} session(s) "
            f"({', '.join(sessions[:limit])}{', ...' if len(sessions) > limit else ''}); "
            "fetched again on the next run"
        )
    rest = frame[~frame["kind"].eq("not_published")].copy()
    # Rejected bars each carry their own value: one line for all, quoting the first ones.
    rejected = rest["kind"].eq("rejected")
    examples = "; ".join(rest.loc[rejected, "detail"].astype(str).head(3))
    rest.loc[rejected, "detail"] = f"e.g. {examples}"
    for (kind, detail), group in rest.groupby(["kind", "detail"], sort=True):
        symbols = sorted(group["symbol"].unique())
        more = f" and {len(symbols) - limit} more" if len(symbols) > limit else ""
        span = f"{group['day'].min()}..{group['day'].max()}"
        verb = {"failed": "failed", "rejected": "rejected", "no_data": "no data"}[kind]
        retry = "; fetched again on the next run" if kind == "failed" else ""
        lines.append(
            f"{verb}: {', '.join(symbols[:limit])}{more} ({len(group)} symbol-days, {span}): "
            f"{detail}{retry}"
        )
    return lines
