"""A re-upload as a new version of the holdings: the diff against the holdings open on the
load's effective session, the prices it makes changes at, and the rows it appends.

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
  - an option that expired before S and is reduced or removed: settled at its intrinsic
    value at expiry (from the underlying's close on the expiry session), not S's close.
* Refused (nothing written), each reason naming the symbol and file line: a change to a symbol
  that has an event dated after S (events are never rewritten, so a back-dated change must
  come after the symbol's last recorded change), S before the portfolio's first session, a
  file that would close every held position (unless allow_close_all), opening or increasing
  an option expired before S, a needed close that is neither stored nor available from the
  market data provider.

Closes (`prices`): `sigmasight.prices` (a market close preferred to a `model` one), else
fetched through the configured provider (`MarketDataResource().get_provider().fetch_bars`);
the price used and where it came from are recorded on the event (price, price_source).
Fetched bars are not written to `sigmasight.prices`, which the prices asset owns.

Modules: `diff` (sessions, the plan, refusals), `prices` (closes, expiry settlement), `store`
(reading the history, writing a plan).
"""

from sigmasight_pipeline.holdings.diff import (
    FILE_PRICE,
    HoldingsChanges,
    HoldingsError,
    LoadPlan,
    SessionError,
    effective_session,
    first_session,
    nearest_sessions,
    plan_load,
    require_session,
)
from sigmasight_pipeline.holdings.prices import (
    CLOSE_PRICE,
    EXPIRY_PRICE,
    Closes,
    missing_prices,
    price_events,
    session_closes,
)
from sigmasight_pipeline.holdings.store import (
    apply_plan,
    copy_rows,
    portfolio_history,
    read_frame,
)

__all__ = [
    "CLOSE_PRICE",
    "EXPIRY_PRICE",
    "FILE_PRICE",
    "Closes",
    "HoldingsChanges",
    "HoldingsError",
    "LoadPlan",
    "SessionError",
    "apply_plan",
    "copy_rows",
    "effective_session",
    "first_session",
    "missing_prices",
    "nearest_sessions",
    "plan_load",
    "portfolio_history",
    "price_events",
    "read_frame",
    "require_session",
    "session_closes",
]
