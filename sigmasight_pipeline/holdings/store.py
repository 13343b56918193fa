"""A portfolio's history in the database: reading positions and events, writing a load's plan
(closes, current state, new positions, appended events), all on the caller's connection and
so inside its transaction."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from sigmasight_pipeline.analytics.holdings import realized_pnl
from sigmasight_pipeline.holdings.diff import FILE_PRICE, HoldingsChanges, LoadPlan
from sigmasight_pipeline.holdings.prices import Closes, price_events

__all__ = ["apply_plan", "copy_rows", "portfolio_history", "read_frame"]

POSITION_DB_COLUMNS = (
    "portfolio_id", "symbol", "quantity", "entry_price", "entry_date", "position_type",
    "underlying", "option_right", "strike", "expiry", "multiplier",
)  # fmt: skip
EVENT_DB_COLUMNS = (
    "position_id", "portfolio_id", "event_date", "kind", "quantity_change", "price",
    "price_source", "realized_pnl_usd", "load_id",
)  # fmt: skip


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
    closed_on, underlying, option_right, strike, expiry; events: id, position_id, event_date,
    kind, quantity_change, price, realized_pnl_usd and the position's symbol."""
    portfolio = sql.Literal(portfolio_id)
    positions = read_frame(
        conn,
        sql.SQL(
            "SELECT id, portfolio_id, symbol, quantity, entry_price, entry_date, multiplier, "
            "closed_on, underlying, option_right, strike, expiry FROM sigmasight.positions "
            "WHERE portfolio_id = {} ORDER BY id"
        ).format(portfolio),
        {
            "id": "int64", "portfolio_id": "int64", "symbol": "object", "quantity": "float64",
            "entry_price": "float64", "multiplier": "int64", "underlying": "object",
            "option_right": "object", "strike": "float64",
        },
        dates=("entry_date", "closed_on", "expiry"),
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
# Writing


def copy_rows(conn: psycopg.Connection, statement: str, frame: pd.DataFrame) -> None:
    """COPY a DataFrame (columns in the statement's order) as CSV; NaN/None become NULL."""
    if frame.empty:
        return
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="")
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(buffer.getvalue())


def apply_plan(
    conn: psycopg.Connection,
    portfolio_id: int,
    plan: LoadPlan,
    closes: Closes,
    load_id: int | None,
) -> tuple[pd.Series, HoldingsChanges]:
    """Write the plan: close, update, open positions and append their events. Returns each file
    row's position id (indexed like the file's rows) and the summary."""
    changes = price_events(plan.changes, closes)
    opening = price_events(plan.opening, closes)
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
