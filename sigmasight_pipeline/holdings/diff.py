"""The diff of a file against the holdings open on the load's effective session: what a load
appends and updates, or why it is refused (see the package docstring for the rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from sigmasight_pipeline import calendar
from sigmasight_pipeline.analytics.holdings import holdings_on
from sigmasight_pipeline.csv_table import RowError

__all__ = [
    "FILE_PRICE",
    "HoldingsChanges",
    "HoldingsError",
    "LoadPlan",
    "SessionError",
    "effective_session",
    "first_session",
    "nearest_sessions",
    "plan_load",
    "require_session",
]

FILE_PRICE = "file"  # price_source of an event priced at the file's entry price
PRICE_COLUMNS = ["price_symbol", "price_date", "settle_right", "settle_strike"]


class SessionError(ValueError):
    """A date that cannot be an effective session (not a session, not closed yet)."""


class HoldingsError(ValueError):
    """A load refused for what it would do to the holdings; `errors` name rows and fields."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors[:3]))


@dataclass(frozen=True)
class HoldingsChanges:
    """What a load did to the holdings, dated `effective_session`."""

    effective_session: date
    first_load: bool
    unchanged: int = 0
    opened: int = 0
    increased: int = 0
    decreased: int = 0
    closed: int = 0
    realized_pnl_usd: float = 0.0

    def describe(self) -> str:
        if self.first_load:
            return f"{self.opened:,} opened on their entry dates"
        parts = [
            f"{count:,} {name}"
            for name, count in (
                ("unchanged", self.unchanged),
                ("opened", self.opened),
                ("increased", self.increased),
                ("decreased", self.decreased),
                ("closed", self.closed),
            )
            if count
        ]
        realized = ""
        if self.decreased or self.closed:
            sign = "-" if self.realized_pnl_usd < 0 else ""
            realized = f", realized {sign}${abs(self.realized_pnl_usd):,.2f}"
        return f"{', '.join(parts) or 'nothing held'} on {self.effective_session}{realized}"


# ---------------------------------------------------------------------------------------------
# Sessions


def nearest_sessions(day: date | str) -> tuple[date, date]:
    """The sessions just before and just after `day` (a non-session)."""
    stamp = pd.Timestamp(day)
    before = calendar.previous_sessions(stamp, 1)[0]
    after = calendar.sessions(stamp + pd.Timedelta(days=1), stamp + pd.Timedelta(days=15))[0]
    return before.date(), after.date()


def require_session(day: date | str, what: str) -> date:
    """`day` as a date if it is an NYSE session; SessionError naming the nearest ones if not."""
    try:
        stamp = pd.Timestamp(day)
    except ValueError as exc:
        raise SessionError(f"{what} {day!r} is not a date (YYYY-MM-DD)") from exc
    if not calendar.is_session(stamp):
        before, after = nearest_sessions(stamp)
        raise SessionError(
            f"{what} {stamp:%Y-%m-%d} is not an NYSE session; the nearest sessions are "
            f"{before} (before) and {after} (after)"
        )
    return stamp.date()


def effective_session(as_of: date | str | None = None) -> date:
    """The session a load's changes are dated: `as_of` (a closed session) or, by default, the
    latest closed session."""
    latest = calendar.latest_closed_session().date()
    if as_of is None:
        return latest
    day = require_session(as_of, "--as-of")
    if day > latest:
        raise SessionError(
            f"--as-of {day} has not closed yet; the latest closed session is {latest}"
        )
    return day


def first_session(day: date) -> date:
    """The first session on or after `day`."""
    stamp = pd.Timestamp(day)
    return calendar.sessions(stamp, stamp + pd.Timedelta(days=15))[0].date()


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass
class LoadPlan:
    """The rows a load appends and updates, before the closes are priced.

    changes: one row per held position touched (position_id, symbol, line, kind in increase /
    decrease / close, quantity_change, price, price_source, average_cost (before the change)
    and multiplier). opening: the file rows that become new positions, with open_date, price
    and price_source. A NaN price is priced later (`prices.price_events`): the close of
    price_symbol on price_date (the position's own on S, or for an expired option the
    underlying's on its expiry session, settled at intrinsic value by settle_right and
    settle_strike).
    kept: position_id of every held position that stays open, indexed by its file row.
    updates: the kept positions whose quantity or entry price the file changes (position_id,
    quantity, entry_price: their new current state).
    """

    session: date
    first_load: bool
    held: int
    changes: pd.DataFrame
    opening: pd.DataFrame
    kept: pd.Series
    updates: pd.DataFrame
    unchanged: int

    @property
    def wanted_closes(self) -> pd.DataFrame:
        """The (symbol, trade_date) closes the NaN prices need."""
        frames = [f.loc[f["price"].isna(), PRICE_COLUMNS[:2]] for f in (self.changes, self.opening)]
        wanted = pd.concat([f for f in frames if len(f)] or [frames[0]], ignore_index=True)
        wanted.columns = ["symbol", "trade_date"]
        return wanted.drop_duplicates().reset_index(drop=True)


def _same_price(a: pd.Series, b: pd.Series) -> np.ndarray:
    return np.isclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-9, atol=0.0)


def _expiry_sessions(expiry: pd.Series) -> pd.Series:
    """The last session on or before each expiry date (NaT stays NaT)."""
    days = {d: calendar.last_sessions(d, 1)[0] for d in expiry.dropna().unique()}
    return expiry.map(days)


def plan_load(
    positions: pd.DataFrame,
    events: pd.DataFrame,
    rows: pd.DataFrame,
    session: date,
    *,
    allow_close_all: bool = False,
) -> LoadPlan:
    """Diff the file's rows (`ParsedPortfolio.positions`) against the positions held at the end
    of `session` (positions and events as `store.portfolio_history` reads them), per the
    package's rules; HoldingsError lists every reason to refuse."""
    rows = rows.reset_index(drop=True)
    day = pd.Timestamp(session)
    if positions.empty:
        opening = rows.assign(
            open_date=pd.to_datetime(rows["entry_date"]),
            price=rows["entry_price"].astype(float),
            price_source=FILE_PRICE,
            price_symbol=rows["symbol"],
            price_date=pd.NaT,
            settle_right=None,
            settle_strike=np.nan,
        )
        empty = pd.Series(dtype="int64", name="position_id")
        updates = pd.DataFrame(columns=["position_id", "quantity", "entry_price"])
        return LoadPlan(session, True, 0, _no_changes(), opening, empty, updates, 0)

    first_day = events["event_date"].min()
    if day < first_day:
        reason = (
            f"the effective session {session} is before the portfolio's first session "
            f"{first_session(first_day.date())}; nothing was held then"
        )
        raise HoldingsError([RowError(None, "as_of", f"{session}", reason)])

    held = holdings_on(positions, events, day)
    held = held[held["quantity"] != 0][["position_id", "quantity", "average_cost"]]
    stored = positions[
        ["id", "symbol", "entry_date", "entry_price", "multiplier", "quantity", "underlying",
         "option_right", "strike", "expiry"]
    ]  # fmt: skip
    held = held.merge(
        stored.rename(columns={"id": "position_id", "quantity": "stored_quantity"}),
        on="position_id",
    )
    file = rows.assign(row=rows.index, entry_date=pd.to_datetime(rows["entry_date"]))
    file = file[["symbol", "quantity", "entry_price", "entry_date", "expiry", "line", "row"]]
    both = held.merge(file, on="symbol", how="outer", suffixes=("_held", ""), indicator=True)
    in_both = both["_merge"].eq("both")
    q_held, q_file = both["quantity_held"].to_numpy(float), both["quantity"].to_numpy(float)
    same_lot = (
        in_both
        & both["entry_date_held"].eq(both["entry_date"])
        & (np.sign(q_held) == np.sign(q_file))
    )
    same_size = np.isclose(np.abs(q_file), np.abs(q_held), rtol=1e-9, atol=0.0)
    price_kept = _same_price(both["entry_price"], both["entry_price_held"])
    close_or_file = np.where(price_kept, np.nan, both["entry_price"].to_numpy(float))
    closing = both["_merge"].eq("left_only") | (in_both & ~same_lot)
    shrink = same_lot & ~same_size & (np.abs(q_file) < np.abs(q_held))
    grow = same_lot & ~same_size & (np.abs(q_file) > np.abs(q_held))
    line = both["line"].astype("Int64")
    # An option that expired before S is settled at its intrinsic value at expiry, from the
    # underlying's close on its expiry session (there is no close of it on S).
    expiry = pd.to_datetime(both["expiry_held"]).fillna(pd.to_datetime(both["expiry"]))
    expired = (expiry < day).to_numpy()
    settle_day = _expiry_sessions(expiry)

    def changes_of(
        mask: pd.Series, kind: str, delta: np.ndarray, price: np.ndarray
    ) -> pd.DataFrame:
        pick = mask.to_numpy()
        settle = pick & expired & (kind != "increase")
        return pd.DataFrame(
            {
                "position_id": both.loc[pick, "position_id"].astype("int64"),
                "symbol": both.loc[pick, "symbol"],
                "line": line[pick],
                "kind": kind,
                "quantity_change": delta[pick],
                "price": price[pick],
                "average_cost": both.loc[pick, "average_cost"].astype(float),
                "multiplier": both.loc[pick, "multiplier"].astype(float),
                "price_symbol": np.where(settle, both["underlying"], both["symbol"])[pick],
                "price_date": np.where(settle, settle_day, day)[pick],
                "settle_right": np.where(settle, both["option_right"], None)[pick],
                "settle_strike": np.where(settle, both["strike"], np.nan)[pick],
            }
        )

    no_price = np.full(len(both), np.nan)
    parts = [
        changes_of(closing, "close", -q_held, no_price),
        changes_of(shrink, "decrease", q_file - q_held, no_price),
        changes_of(grow, "increase", q_file - q_held, close_or_file),
    ]
    changes = pd.concat([p for p in parts if len(p)] or [_no_changes()], ignore_index=True)
    changes["price_date"] = pd.to_datetime(changes["price_date"])
    changes["price_source"] = np.where(changes["price"].isna(), None, FILE_PRICE)

    new = both["_merge"].eq("right_only") | (in_both & ~same_lot)
    opened = both[new]
    reopen_price = np.where(
        in_both[new], close_or_file[new.to_numpy()], opened["entry_price"].to_numpy(float)
    )
    opening = rows.loc[opened["row"].astype(int)].assign(
        open_date=np.maximum(opened["entry_date"].to_numpy(), day.to_datetime64()),
        price=reopen_price,
        price_symbol=opened["symbol"].to_numpy(),
        price_date=day,
        settle_right=None,
        settle_strike=np.nan,
    )
    opening["price_source"] = np.where(opening["price"].isna(), None, FILE_PRICE)
    kept_rows = both[same_lot]
    kept = pd.Series(
        kept_rows["position_id"].astype("int64").to_numpy(),
        index=kept_rows["row"].astype(int).to_numpy(),
        name="position_id",
    )
    # Kept positions take the file's quantity and entry price (the current state), unless a
    # later change (after a back-dated session) owns it.
    differs = kept_rows["stored_quantity"].ne(kept_rows["quantity"]) | kept_rows[
        "entry_price_held"
    ].ne(kept_rows["entry_price"])
    changed_later = kept_rows["position_id"].isin(
        events.loc[events["event_date"] > day, "position_id"]
    )
    updates = kept_rows.loc[differs & ~changed_later, ["position_id", "quantity", "entry_price"]]

    errors = _refusals(both.assign(expiry=expiry), line, events, changes, opening, day, session)
    if len(held) and int(closing.sum()) == len(held) and not allow_close_all:
        errors.append(
            RowError(
                None,
                "file",
                None,
                f"the file would close every one of the {len(held):,} positions held on "
                f"{session} (no row matches a held symbol and entry date): more often a "
                "truncated export than a liquidation, so it is loaded only with "
                "`sigmasight ingest --allow-close-all`",
            )
        )
    if errors:
        raise HoldingsError(sorted(errors, key=lambda e: (e.row or 0, e.field)))
    unchanged = int((same_lot & same_size).sum())
    return LoadPlan(session, False, len(held), changes, opening, kept, updates, unchanged)


def _refusals(
    both: pd.DataFrame,
    line: pd.Series,
    events: pd.DataFrame,
    changes: pd.DataFrame,
    opening: pd.DataFrame,
    day: pd.Timestamp,
    session: date,
) -> list[RowError]:
    """Changes a load may not make: to a symbol with a later recorded change, and increasing
    or opening an option that expired before the session (`both.expiry`, a datetime)."""
    errors: list[RowError] = []
    lines = dict(zip(both["symbol"], line, strict=True))

    def row_of(symbol: str) -> int | None:
        row = lines.get(symbol)
        return None if row is None or pd.isna(row) else int(row)

    touched = set(changes["symbol"]) | set(opening["symbol"])
    later = events[(events["event_date"] > day) & events["symbol"].isin(touched)]
    for symbol, dates in later.groupby("symbol")["event_date"]:
        last = f"{dates.max():%Y-%m-%d}"
        errors.append(
            RowError(
                row_of(str(symbol)),
                "ticker",
                str(symbol),
                f"{symbol} has a change recorded on {last}, after the effective session "
                f"{session}; events are never rewritten, so a change to {symbol} can only be "
                f"dated on or after {last}",
            )
        )
    expiries = dict(zip(both["symbol"], both["expiry"], strict=True))
    dead = set(both.loc[both["expiry"] < day, "symbol"])
    growing = set(changes.loc[changes["kind"].eq("increase"), "symbol"]) | set(opening["symbol"])
    for symbol in sorted(dead & growing):
        errors.append(
            RowError(
                row_of(symbol),
                "ticker",
                symbol,
                f"{symbol} expired on {pd.Timestamp(expiries[symbol]):%Y-%m-%d}, before the "
                f"effective session {session}: it can be kept as it is or removed (settled at "
                "its intrinsic value at expiry), not opened or increased",
            )
        )
    return errors


def _no_changes() -> pd.DataFrame:
    columns = [
        "position_id", "symbol", "line", "kind", "quantity_change", "price", "average_cost",
        "multiplier", "price_source", *PRICE_COLUMNS,
    ]  # fmt: skip
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
