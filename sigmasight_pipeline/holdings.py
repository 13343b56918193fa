"""A re-upload as a new version of the holdings: the diff against the holdings open on the
load's effective session, the closes it prices changes at, and the rows it appends.

`portfolios.load_portfolio` calls these inside its one transaction. The rules (issue 12):

* The effective session S is the latest closed session when the file is loaded, or
  `--as-of` (a closed session, not before the portfolio's first session).
* A new portfolio (no positions at all): every row opens on its entry date at its entry price.
* Otherwise the file is diffed against the positions held at the end of S (from the events):
  - same symbol, same entry date, same sign, same quantity: unchanged, same id, no event;
  - quantity reduced: a `decrease` at S's close, realizing (close - average cost) x sold;
  - quantity increased: an `increase`, priced at the row's entry price if it differs from the
    one last loaded for that row (positions.entry_price), else at S's close;
  - held but not in the file: a `close` at S's close (realized P&L), closed_on = S;
  - a row no position matches: a new position with an `open` at max(entry date, S) at the
    row's entry price (a re-upload never changes a day before S);
  - same symbol but another entry date or sign: the held position closes and a new one opens
    (at the row's price if it changed, else at S's close).
* Refused (nothing written), each reason naming the symbol and file line: a change to a symbol
  that has an event dated after S (events are never rewritten, so a back-dated change must
  come after the symbol's last recorded change), S before the portfolio's first session, a
  file that would close every held position (unless allow_close_all), a needed close that is
  neither stored nor available from the market data provider.

Closes: `sigmasight.prices` on S (a market close preferred to a `model` one), else fetched
through the configured provider (`MarketDataResource().get_provider().fetch_bars`); the price
used and where it came from are recorded on the event (price, price_source). Fetched bars are
not written to `sigmasight.prices`, which the prices asset owns.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from sigmasight_pipeline import calendar
from sigmasight_pipeline.analytics.holdings import holdings_on, realized_pnl
from sigmasight_pipeline.csv_table import RowError
from sigmasight_pipeline.resources.market_data import FAILED, MarketDataProvider

__all__ = [
    "HoldingsChanges",
    "HoldingsError",
    "LoadPlan",
    "SessionCloses",
    "SessionError",
    "apply_plan",
    "copy_rows",
    "effective_session",
    "first_session",
    "nearest_sessions",
    "plan_load",
    "portfolio_history",
    "read_frame",
    "require_session",
    "session_closes",
]

POSITION_DB_COLUMNS = (
    "portfolio_id", "symbol", "quantity", "entry_price", "entry_date", "position_type",
    "underlying", "option_right", "strike", "expiry", "multiplier",
)  # fmt: skip
EVENT_DB_COLUMNS = (
    "position_id", "portfolio_id", "event_date", "kind", "quantity_change", "price",
    "price_source", "realized_pnl_usd", "load_id",
)  # fmt: skip
FILE_PRICE = "file"  # price_source of an event priced at the file's entry price
CLOSE_PRICE = "close:"  # + the close's source (prices.source, or the provider's bar source)
SHOWN = 10  # symbols named in one reason


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
# Reading the history


def read_frame(
    conn: psycopg.Connection,
    query: sql.Composable,
    types: dict[str, str],
    dates: tuple[str, ...] = (),
) -> pd.DataFrame:
    """A query's rows through COPY TO (CSV), on `conn` (so inside its transaction): far faster
    than fetching tuples for 100,000 rows. `types`: column -> dtype (text columns "object", so
    a symbol such as NA stays a string); `dates` become datetime64 (NULL: NaT)."""
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)").format(query)
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        data = b"".join(bytes(block) for block in copy)
    frame = pd.read_csv(
        io.BytesIO(data),
        keep_default_na=False,
        na_values=[""],
        dtype={c: t for c, t in types.items() if t == "object"},
    )
    for column in dates:
        frame[column] = pd.to_datetime(frame[column])
    numeric = {c: t for c, t in types.items() if t != "object" and c not in dates}
    return frame.astype(numeric)


def portfolio_history(conn: psycopg.Connection, portfolio_id: int) -> tuple[pd.DataFrame, ...]:
    """(positions, events) of a portfolio, open and closed: what `analytics.holdings` reads.
    positions: id, portfolio_id, symbol, quantity, entry_price, entry_date, multiplier,
    closed_on; events: id, position_id, event_date, kind, quantity_change, price,
    realized_pnl_usd and the position's symbol."""
    portfolio = sql.Literal(portfolio_id)
    positions = read_frame(
        conn,
        sql.SQL(
            "SELECT id, portfolio_id, symbol, quantity, entry_price, entry_date, multiplier, "
            "closed_on FROM sigmasight.positions WHERE portfolio_id = {} ORDER BY id"
        ).format(portfolio),
        {
            "id": "int64", "portfolio_id": "int64", "symbol": "object", "quantity": "float64",
            "entry_price": "float64", "multiplier": "int64",
        },
        dates=("entry_date", "closed_on"),
    )  # fmt: skip
    events = read_frame(
        conn,
        sql.SQL(
            "SELECT e.id, e.position_id, e.event_date, e.kind, e.quantity_change, e.price, "
            "e.realized_pnl_usd, p.symbol FROM sigmasight.position_events e "
            "JOIN sigmasight.positions p ON p.id = e.position_id "
            "WHERE e.portfolio_id = {} ORDER BY e.id"
        ).format(portfolio),
        {
            "id": "int64", "position_id": "int64", "kind": "object", "quantity_change": "float64",
            "price": "float64", "realized_pnl_usd": "float64", "symbol": "object",
        },
        dates=("event_date",),
    )  # fmt: skip
    return positions, events


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass
class LoadPlan:
    """The rows a load appends and updates, before the closes are priced.

    changes: one row per held position touched (position_id, symbol, line, kind in increase /
    decrease / close, quantity_change, price (NaN: S's close), price_source, average_cost
    (before the change) and multiplier). opening: the file
    rows that become new positions, with open_date, price (NaN: S's close) and price_source.
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
    def needs_close(self) -> list[str]:
        """Symbols priced at the session's close."""
        wanted = pd.concat(
            [
                self.changes.loc[self.changes["price"].isna(), "symbol"],
                self.opening.loc[self.opening["price"].isna(), "symbol"],
            ]
        )
        return sorted(set(wanted))


def _same_price(a: pd.Series, b: pd.Series) -> np.ndarray:
    return np.isclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-9, atol=0.0)


def plan_load(
    positions: pd.DataFrame,
    events: pd.DataFrame,
    rows: pd.DataFrame,
    session: date,
    *,
    allow_close_all: bool = False,
) -> LoadPlan:
    """Diff the file's rows (`ParsedPortfolio.positions`) against the positions held at the end
    of `session`, per the module's rules; HoldingsError lists every reason to refuse."""
    rows = rows.reset_index(drop=True)
    day = pd.Timestamp(session)
    if positions.empty:
        opening = rows.assign(
            open_date=pd.to_datetime(rows["entry_date"]),
            price=rows["entry_price"].astype(float),
            price_source=FILE_PRICE,
        )
        empty = pd.Series(dtype="int64", name="position_id")
        updates = pd.DataFrame(columns=["position_id", "quantity", "entry_price"])
        return LoadPlan(session, True, 0, _no_changes(), opening, empty, updates, 0)

    errors: list[RowError] = []
    first_day = events["event_date"].min()
    if day < first_day:
        errors.append(
            RowError(
                None,
                "as_of",
                f"{session}",
                f"the effective session {session} is before the portfolio's first session "
                f"{first_session(first_day.date())}; nothing was held then",
            )
        )
        raise HoldingsError(errors)

    held = holdings_on(positions, events, day)
    held = held[held["quantity"] != 0][["position_id", "quantity", "average_cost"]]
    stored = positions[["id", "symbol", "entry_date", "entry_price", "multiplier", "quantity"]]
    held = held.merge(
        stored.rename(columns={"id": "position_id", "quantity": "stored_quantity"}),
        on="position_id",
    )
    file = rows.assign(row=rows.index, entry_date=pd.to_datetime(rows["entry_date"]))
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

    def changes_of(
        mask: pd.Series, kind: str, delta: np.ndarray, price: np.ndarray
    ) -> pd.DataFrame:
        pick = mask.to_numpy()
        return pd.DataFrame(
            {
                "position_id": both.loc[pick, "position_id"].astype("int64"),
                "symbol": both.loc[pick, "symbol"],
                "line": line[pick],
                "kind": kind,
                "quantity_change": delta[pick],
                "price": price[pick],
                "average_cost": both.loc[pick, "average_cost"].astype(float),
                "multiplier": both.loc[pick, "multiplier_held"].astype(float),
            }
        )

    no_price = np.full(len(both), np.nan)
    changes = pd.concat(
        [
            changes_of(closing, "close", -q_held, no_price),
            changes_of(shrink, "decrease", q_file - q_held, no_price),
            changes_of(grow, "increase", q_file - q_held, close_or_file),
        ],
        ignore_index=True,
    )
    changes["price_source"] = np.where(changes["price"].isna(), None, FILE_PRICE)

    new = both["_merge"].eq("right_only") | (in_both & ~same_lot)
    opened = both[new]
    reopen_price = np.where(
        in_both[new], close_or_file[new.to_numpy()], opened["entry_price"].to_numpy(float)
    )
    opening = rows.loc[opened["row"].astype(int)].assign(
        open_date=np.maximum(opened["entry_date"].to_numpy(), day.to_datetime64()),
        price=reopen_price,
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

    # Refusals: later events on a changed symbol, a file closing everything.
    touched = set(changes["symbol"]) | set(opening["symbol"])
    later = events[(events["event_date"] > day) & events["symbol"].isin(touched)]
    if not later.empty:
        lines = dict(zip(both["symbol"], line, strict=True))
        for symbol, dates in later.groupby("symbol")["event_date"]:
            row = lines.get(symbol)
            errors.append(
                RowError(
                    None if pd.isna(row) else int(row),
                    "ticker",
                    str(symbol),
                    f"{symbol} has a change recorded on {dates.max():%Y-%m-%d}, after the "
                    f"effective session {session}; events are never rewritten, so a change to "
                    f"{symbol} can only be dated on or after {dates.max():%Y-%m-%d}",
                )
            )
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


def _no_changes() -> pd.DataFrame:
    columns = [
        "position_id", "symbol", "line", "kind", "quantity_change", "price", "average_cost",
        "multiplier", "price_source",
    ]  # fmt: skip
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


# ---------------------------------------------------------------------------------------------
# Closes


@dataclass(frozen=True)
class SessionCloses:
    """Closes of symbols on one session: symbol -> close, symbol -> 'close:<source>', and
    symbol -> why there is none."""

    closes: dict[str, float]
    sources: dict[str, str]
    missing: dict[str, str]


def session_closes(
    conn: psycopg.Connection,
    symbols: list[str],
    session: date,
    provider: MarketDataProvider | None = None,
) -> SessionCloses:
    """Each symbol's close on `session`: stored in sigmasight.prices (a market close before a
    `model` one), else fetched through `provider` (default: the configured one), else missing
    with the reason. Nothing is guessed and nothing is written."""
    closes: dict[str, float] = {}
    sources: dict[str, str] = {}
    if not symbols:
        return SessionCloses(closes, sources, {})
    stored = conn.execute(
        "SELECT DISTINCT ON (symbol) symbol, close, source FROM sigmasight.prices "
        "WHERE trade_date = %s AND symbol = ANY(%s) AND close > 0 AND close < 'Infinity' "
        "ORDER BY symbol, (source = 'model')",
        (session, symbols),
    ).fetchall()
    for symbol, close, source in stored:
        closes[symbol], sources[symbol] = float(close), f"{CLOSE_PRICE}{source}"
    wanted = [s for s in symbols if s not in closes]
    if not wanted:
        return SessionCloses(closes, sources, {})
    if provider is None:
        from sigmasight_pipeline.resources.market_data import MarketDataResource

        provider = MarketDataResource().get_provider()
    result = provider.fetch_bars(
        pd.DataFrame({"symbol": wanted, "trade_date": [session] * len(wanted)})
    )
    bars = result.bars
    valid = bars[pd.to_numeric(bars["close"], errors="coerce").gt(0)]
    for symbol, close, source in zip(valid["symbol"], valid["close"], valid["source"], strict=True):
        if symbol in wanted and np.isfinite(float(close)):
            closes[symbol], sources[symbol] = float(close), f"{CLOSE_PRICE}{source}"
    details = {
        str(symbol): f"{kind}: {detail}" if kind == FAILED else f"rejected: {detail}"
        for symbol, kind, detail in zip(
            result.issues["symbol"], result.issues["kind"], result.issues["detail"], strict=True
        )
    }
    missing = {}
    for symbol in wanted:
        if symbol in closes:
            continue
        why = details.get(symbol) or result.fatal or "it has no bar for that session"
        missing[symbol] = (
            f"no close for {symbol} on {session}: none in sigmasight.prices, and the "
            f"{provider.name} market data provider gave none ({why}); nothing was loaded "
            "(store that session's prices, e.g. `sigmasight backfill`, and load the file again)"
        )
    return SessionCloses(closes, sources, missing)


# ---------------------------------------------------------------------------------------------
# Writing


def copy_rows(conn: psycopg.Connection, statement: str, frame: pd.DataFrame) -> None:
    """COPY a DataFrame (columns in the statement's order) as CSV; NaN/None become NULL."""
    if frame.empty:
        return
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="")
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(buffer.getvalue())


def _priced(frame: pd.DataFrame, closes: SessionCloses) -> pd.DataFrame:
    """Prices left at NaN (the session's close) filled from `closes`."""
    at_close = frame["price"].isna()
    symbols = frame.loc[at_close, "symbol"]
    return frame.assign(
        price=frame["price"].where(~at_close, symbols.map(closes.closes)),
        price_source=frame["price_source"].where(~at_close, symbols.map(closes.sources)),
    )


def apply_plan(
    conn: psycopg.Connection,
    portfolio_id: int,
    plan: LoadPlan,
    closes: SessionCloses,
    load_id: int | None,
) -> tuple[pd.Series, HoldingsChanges]:
    """Write the plan: close, update, open positions and append their events. Returns each file
    row's position id (indexed like the file's rows) and the summary."""
    changes = _priced(plan.changes, closes)
    opening = _priced(plan.opening, closes)
    reducing = changes["kind"].isin(["decrease", "close"])
    changes["realized_pnl_usd"] = np.where(
        reducing,
        realized_pnl(
            changes["average_cost"], changes["price"], changes["quantity_change"],
            changes["multiplier"],
        ),
        np.nan,
    )  # fmt: skip

    closed = changes.loc[changes["kind"].eq("close"), "position_id"].astype(int).tolist()
    if closed:
        conn.execute(
            "UPDATE sigmasight.positions SET closed_on = %s WHERE id = ANY(%s)",
            (plan.session, closed),
        )
    _update_current(conn, plan.updates)

    frame = opening.assign(portfolio_id=portfolio_id)[list(POSITION_DB_COLUMNS)]
    columns = ", ".join(POSITION_DB_COLUMNS)
    copy_rows(
        conn,
        f"COPY sigmasight.positions ({columns}) FROM STDIN WITH (FORMAT csv)",
        frame.astype({"multiplier": int}),
    )
    opening["position_id"] = pd.Series(dtype="int64")
    if len(opening):
        open_ids = read_frame(
            conn,
            sql.SQL(
                "SELECT symbol, id FROM sigmasight.positions "
                "WHERE portfolio_id = {} AND closed_on IS NULL"
            ).format(sql.Literal(portfolio_id)),
            {"symbol": "object", "id": "int64"},
        )
        ids = pd.Series(open_ids["id"].to_numpy(), index=open_ids["symbol"].to_numpy())
        opening["position_id"] = opening["symbol"].map(ids).astype("int64")

    if plan.first_load:  # every position is new and opens on its entry date at its price
        conn.execute(
            "INSERT INTO sigmasight.position_events (position_id, portfolio_id, event_date, "
            "kind, quantity_change, price, price_source, load_id) "
            "SELECT id, portfolio_id, entry_date, 'open', quantity, entry_price, %s, %s "
            "FROM sigmasight.positions WHERE portfolio_id = %s",
            (FILE_PRICE, load_id, portfolio_id),
        )
    else:
        _append_events(conn, portfolio_id, plan.session, changes, opening, load_id)
    opened_ids = pd.Series(opening["position_id"].to_numpy(), index=opening.index)
    row_ids = pd.concat([plan.kept, opened_ids])
    counts = changes["kind"].value_counts()
    summary = HoldingsChanges(
        effective_session=plan.session,
        first_load=plan.first_load,
        unchanged=plan.unchanged,
        opened=len(opening),
        increased=int(counts.get("increase", 0)),
        decreased=int(counts.get("decrease", 0)),
        closed=int(counts.get("close", 0)),
        realized_pnl_usd=float(changes["realized_pnl_usd"].sum()),
    )
    return row_ids.sort_index().rename("position_id"), summary


def _update_current(conn: psycopg.Connection, updates: pd.DataFrame) -> None:
    """Kept positions take the file's quantity and entry price (their current state)."""
    if updates.empty:
        return
    conn.execute(
        "UPDATE sigmasight.positions p SET quantity = s.quantity, entry_price = s.entry_price "
        "FROM unnest(%s::int[], %s::float8[], %s::float8[]) AS s(id, quantity, entry_price) "
        "WHERE p.id = s.id",
        (
            updates["position_id"].astype(int).tolist(),
            updates["quantity"].astype(float).tolist(),
            updates["entry_price"].astype(float).tolist(),
        ),
    )


def _append_events(
    conn: psycopg.Connection,
    portfolio_id: int,
    session: date,
    changes: pd.DataFrame,
    opening: pd.DataFrame,
    load_id: int | None,
) -> None:
    """COPY the load's events: the held positions' changes on the session, then the opens."""
    parts = [
        changes.assign(event_date=session),
        opening.assign(
            event_date=opening["open_date"].dt.date,
            kind="open",
            quantity_change=opening["quantity"],
            realized_pnl_usd=np.nan,
        ),
    ]
    columns = [c for c in EVENT_DB_COLUMNS if c not in ("portfolio_id", "load_id")]
    events = pd.concat([part[columns] for part in parts if len(part)] or [parts[0][columns]])
    events = events.assign(portfolio_id=portfolio_id, load_id=load_id)
    events = events[list(EVENT_DB_COLUMNS)].astype({"position_id": "int64"})
    events["load_id"] = events["load_id"].astype("Int64")
    columns = ", ".join(EVENT_DB_COLUMNS)
    copy_rows(
        conn, f"COPY sigmasight.position_events ({columns}) FROM STDIN WITH (FORMAT csv)", events
    )
