"""What a market data provider already answered, kept in PostgreSQL (sql/0007) so quota is
spent once: short interest per settlement date, free float, sector/industry and splits.

Each cache is keyed by provider name. The rules deciding when a cached answer is final:

* Short interest: FINRA settles mid-month (the last session on or before the 15th) and at month
  end (the month's last session), and publishes on the 7th business day after. A settlement is
  asked for from PUBLISHED_AFTER business days after it; once asked for SURELY_PUBLISHED_AFTER
  business days after it, it is final whether or not the provider had it. A symbol is asked
  again only when one of its needed settlements is due and neither stored nor final, and at
  most once per RECHECK_AFTER.
* Free float and sector/industry: a found value is fresh for FOUND_MAX_AGE, an answered "none"
  for RECHECK_AFTER, so a re-run the same day asks nothing.
* Splits: an execution-date range asked for after its end (or within RECHECK_AFTER) is final.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg

from sigmasight_pipeline.calendar import sessions
from sigmasight_pipeline.resources.market_data import (
    SECURITY_INFO_COLUMNS,
    SPLIT_COLUMNS,
    MarketDataError,
)

PUBLISHED_AFTER = 8  # business days after the settlement date (FINRA publishes on the 7th)
SURELY_PUBLISHED_AFTER = 15
SETTLEMENT_MATCH = timedelta(days=10)  # a record this close before a settlement date is it
RECHECK_AFTER = timedelta(hours=12)
FOUND_MAX_AGE = timedelta(days=30)


def expected_settlements(start: date, end: date) -> list[date]:
    """FINRA-style settlement dates in [start, end]: the last NYSE session on or before the
    15th and the last session of each month."""
    days = sessions(start - timedelta(days=40), end + timedelta(days=40))
    if not len(days):
        return []
    frame = pd.DataFrame({"day": days, "month": days.to_period("M")})
    month_end = frame.groupby("month")["day"].max()
    mid = frame[frame["day"].dt.day <= 15].groupby("month")["day"].max()
    out = sorted({d.date() for d in (*month_end, *mid)})
    return [d for d in out if start <= d <= end]


@dataclass(frozen=True)
class Check:
    checked_from: date
    checked_to: date
    checked_at: datetime


class ProviderCache:
    """The caches of one provider in one database (`database_url` None: DATABASE_URL or the
    embedded server, resolved at first use). Every method opens a short connection."""

    def __init__(self, database_url: str | None, provider: str) -> None:
        self.database_url = database_url
        self.provider = provider

    def _connect(self) -> psycopg.Connection:
        from sigmasight_pipeline.resources.database import database_url

        return psycopg.connect(self.database_url or database_url())

    def _query(self, query: str, params: Sequence | dict) -> list[tuple]:
        try:
            with self._connect() as conn:
                return conn.execute(query, params).fetchall()
        except psycopg.errors.UndefinedTable as exc:
            raise _missing_table(exc) from exc

    # -- short interest --------------------------------------------------------------------

    def short_interest_to_fetch(
        self, symbols: Sequence[str], start: date, end: date, now: datetime
    ) -> dict[str, tuple[date, date]]:
        """Symbols to ask about settlements in [start, end], with the range to ask for (the
        union with what was asked before, so one check row keeps describing one range)."""
        if not symbols:
            return {}
        due = [
            s
            for s in expected_settlements(start, end)
            if business_days_after(s, PUBLISHED_AFTER) <= now.date()
        ]
        checks = {
            symbol: Check(f, t, at)
            for symbol, f, t, at in self._query(
                "SELECT symbol, checked_from, checked_to, checked_at "
                "FROM sigmasight.provider_short_interest_checks "
                "WHERE provider = %s AND symbol = ANY(%s)",
                (self.provider, list(symbols)),
            )
        }
        stored: dict[str, list[date]] = {}
        for symbol, settled in self._query(
            "SELECT symbol, settlement_date FROM sigmasight.provider_short_interest "
            "WHERE provider = %s AND symbol = ANY(%s) AND settlement_date BETWEEN %s AND %s",
            (self.provider, list(symbols), start - SETTLEMENT_MATCH, end),
        ):
            stored.setdefault(symbol, []).append(settled)
        out = {}
        for symbol in dict.fromkeys(symbols):
            check = checks.get(symbol)
            have = stored.get(symbol, [])
            if any(_needs_asking(s, check, have, now) for s in due):
                if check is None:
                    out[symbol] = (start, end)
                else:
                    out[symbol] = (min(start, check.checked_from), max(end, check.checked_to))
        return out

    def store_short_interest(
        self, symbol: str, start: date, end: date, records: pd.DataFrame, now: datetime
    ) -> None:
        """Records (settlement_date, short_interest, days_to_cover) of one symbol for the
        asked range [start, end], and the check, in one transaction."""
        try:
            with self._connect() as conn, conn.transaction():
                conn.execute(
                    "DELETE FROM sigmasight.provider_short_interest WHERE provider = %s AND "
                    "symbol = %s AND settlement_date BETWEEN %s AND %s",
                    (self.provider, symbol, start, end),
                )
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO sigmasight.provider_short_interest VALUES "
                        "(%s, %s, %s, %s, %s) ON CONFLICT (provider, symbol, settlement_date) "
                        "DO UPDATE SET short_interest = excluded.short_interest, "
                        "days_to_cover = excluded.days_to_cover",
                        [
                            (self.provider, symbol, day, _f(shorted), _f(cover))
                            for day, shorted, cover in records[
                                ["settlement_date", "short_interest", "days_to_cover"]
                            ].itertuples(index=False)
                        ],
                    )
                conn.execute(
                    "INSERT INTO sigmasight.provider_short_interest_checks VALUES "
                    "(%s, %s, %s, %s, %s) ON CONFLICT (provider, symbol) DO UPDATE SET "
                    "checked_from = excluded.checked_from, checked_to = excluded.checked_to, "
                    "checked_at = excluded.checked_at",
                    (self.provider, symbol, start, end, now),
                )
        except psycopg.errors.UndefinedTable as exc:
            raise _missing_table(exc) from exc

    def short_interest(self, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
        """Stored records: symbol, settlement_date (datetime64), short_interest, days_to_cover."""
        rows = self._query(
            "SELECT symbol, settlement_date, short_interest, days_to_cover "
            "FROM sigmasight.provider_short_interest WHERE provider = %s AND symbol = ANY(%s) "
            "AND settlement_date BETWEEN %s AND %s",
            (self.provider, list(symbols), start, end),
        )
        frame = pd.DataFrame(
            rows, columns=["symbol", "settlement_date", "short_interest", "days_to_cover"]
        )
        frame["settlement_date"] = pd.to_datetime(frame["settlement_date"])
        for column in ("short_interest", "days_to_cover"):
            frame[column] = frame[column].astype(float)
        return frame

    # -- free float and sector/industry ----------------------------------------------------

    def free_float(self, symbols: Sequence[str], now: datetime) -> dict[str, float | None]:
        """Fresh cached free floats (None: the provider has none) of the symbols it has."""
        rows = self._query(
            "SELECT symbol, free_float, checked_at FROM sigmasight.provider_free_float "
            "WHERE provider = %s AND symbol = ANY(%s)",
            (self.provider, list(symbols)),
        )
        return {s: _opt(v) for s, v, at in rows if _fresh(v is not None, at, now)}

    def store_free_float(
        self, values: dict[str, tuple[float | None, date | None]], now: datetime
    ) -> None:
        self._upsert(
            "INSERT INTO sigmasight.provider_free_float VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (provider, symbol) DO UPDATE SET free_float = excluded.free_float, "
            "effective_date = excluded.effective_date, checked_at = excluded.checked_at",
            [(self.provider, s, v, d, now) for s, (v, d) in values.items()],
        )

    def security_info(self, symbols: Sequence[str], now: datetime) -> pd.DataFrame:
        """Fresh cached sector/industry rows (SECURITY_INFO_COLUMNS) of the symbols it has."""
        rows = self._query(
            "SELECT symbol, sector, industry, checked_at FROM sigmasight.provider_security_info "
            "WHERE provider = %s AND symbol = ANY(%s)",
            (self.provider, list(symbols)),
        )
        fresh = [(s, sec, ind) for s, sec, ind, at in rows if _fresh(sec or ind, at, now)]
        return pd.DataFrame(fresh, columns=SECURITY_INFO_COLUMNS)

    def store_security_info(self, info: pd.DataFrame, now: datetime) -> None:
        self._upsert(
            "INSERT INTO sigmasight.provider_security_info VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (provider, symbol) DO UPDATE SET sector = excluded.sector, "
            "industry = excluded.industry, checked_at = excluded.checked_at",
            [
                (self.provider, r.symbol, r.sector, r.industry, now)
                for r in info.itertuples(index=False)
            ],
        )

    # -- splits ----------------------------------------------------------------------------

    def splits_known(self, start: date, end: date, now: datetime) -> bool:
        """Whether [start, end] was asked for after its end (or within RECHECK_AFTER)."""
        rows = self._query(
            "SELECT checked_at FROM sigmasight.provider_splits_checks WHERE provider = %s "
            "AND checked_from <= %s AND checked_to >= %s",
            (self.provider, start, end),
        )
        return any(at.date() > end or now - at < RECHECK_AFTER for (at,) in rows)

    def store_splits(self, events: pd.DataFrame, start: date, end: date, now: datetime) -> None:
        try:
            with self._connect() as conn, conn.transaction():
                conn.execute(
                    "DELETE FROM sigmasight.provider_splits WHERE provider = %s AND "
                    "execution_date BETWEEN %s AND %s",
                    (self.provider, start, end),
                )
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO sigmasight.provider_splits VALUES (%s, %s, %s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        [
                            (self.provider, r.symbol, r.execution_date, r.split_from, r.split_to)
                            for r in events.itertuples(index=False)
                        ],
                    )
                conn.execute(
                    "INSERT INTO sigmasight.provider_splits_checks VALUES (%s, %s, %s, %s)",
                    (self.provider, start, end, now),
                )
        except psycopg.errors.UndefinedTable as exc:
            raise _missing_table(exc) from exc

    def splits(self, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
        rows = self._query(
            "SELECT symbol, execution_date, split_from, split_to FROM sigmasight.provider_splits "
            "WHERE provider = %s AND symbol = ANY(%s) AND execution_date BETWEEN %s AND %s "
            "ORDER BY symbol, execution_date",
            (self.provider, list(symbols), start, end),
        )
        return pd.DataFrame(rows, columns=SPLIT_COLUMNS)

    def _upsert(self, statement: str, rows: list[tuple]) -> None:
        if not rows:
            return
        try:
            with self._connect() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany(statement, rows)
        except psycopg.errors.UndefinedTable as exc:
            raise _missing_table(exc) from exc


def _needs_asking(settled: date, check: Check | None, have: list[date], now: datetime) -> bool:
    if any(settled - SETTLEMENT_MATCH <= d <= settled for d in have):
        return False  # stored
    if check is None or not check.checked_from <= settled <= check.checked_to:
        return True  # never asked
    if check.checked_at.date() >= business_days_after(settled, SURELY_PUBLISHED_AFTER):
        return False  # asked after it was surely published: the provider has none
    return now - check.checked_at >= RECHECK_AFTER


def business_days_after(day: date, count: int) -> date:
    """The weekday `count` weekdays after `day` (holidays not skipped: a day early at most)."""
    return pd.Timestamp(np.busday_offset(day, count, roll="forward")).date()


def _fresh(found: object, checked_at: datetime, now: datetime) -> bool:
    return now - checked_at < (FOUND_MAX_AGE if found else RECHECK_AFTER)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _f(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if out != out else out


def _opt(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _missing_table(exc: Exception) -> MarketDataError:
    return MarketDataError(
        f"the market data cache tables are missing ({exc}): run the migrations in sql/ "
        "(`sigmasight migrate`) on this database"
    )
