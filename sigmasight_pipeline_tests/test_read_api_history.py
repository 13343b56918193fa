"""Portfolio history in the read API: events and flows, realized P&L and targets on positions,
expected returns to targets, tags of closed positions, new snapshot columns.

Carol's portfolio is built the way a user builds it, on top of the dataset of test_read_api:
`load_portfolio` (a first load, then a re-upload on S2 that halves AAPL, drops XOM and adds
NVDA), `add_equity_change` (a contribution and a withdrawal), `set_target` (targets, one of
them moved later). The pipeline's per-day rows (position_values, portfolio_snapshots) are
inserted by hand with the numbers below, so every expected value is arithmetic on this page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import psycopg
import pytest

from sigmasight_pipeline.api import API_PREFIX, create_app
from sigmasight_pipeline.portfolio_csv import validate_portfolio_text
from sigmasight_pipeline.portfolio_inputs import add_equity_change, set_target
from sigmasight_pipeline.portfolios import LoadSource, create_user, load_portfolio
from sigmasight_pipeline.resources.read_api import SigmaSightReader
from sigmasight_pipeline_tests.conftest import store_rows
from sigmasight_pipeline_tests.test_api_http import SECRET, running_server
from sigmasight_pipeline_tests.test_read_api import PASSWORDS, seeded_database

ENTRY = date(2024, 3, 1)  # Friday
S1, S2, S3 = date(2024, 3, 5), date(2024, 3, 6), date(2024, 3, 7)  # Tue, Wed, Thu
TODAY = date(2024, 4, 1)
HEADER = "ticker,quantity,entry_price,entry_date,tags"
BOOK = f"""{HEADER}
AAPL,100,150.00,{ENTRY},tech
MSFT,-50,400.00,{ENTRY},tech
XOM,200,100.00,{ENTRY},energy
"""
# On S2: AAPL halved (decrease 50 at the S2 close 170: realized (170 - 150) x 50 = 1000), XOM
# gone (close 200 at 110: realized (110 - 100) x 200 = 2000), NVDA new, MSFT unchanged.
EDITED = f"""{HEADER}
AAPL,50,150.00,{ENTRY},tech
MSFT,-50,400.00,{ENTRY},tech
NVDA,10,800.00,{S2},ai
"""
CLOSES_S2 = {"AAPL": 170.0, "XOM": 110.0, "MSFT": 410.0, "NVDA": 800.0}
CONTRIBUTION, WITHDRAWAL = 10_000.0, -3_000.0  # on S1 and S3

# position_values: symbol -> (quantity, price, market value, exposure, cost basis, unrealized,
# daily P&L, realized, realized to date).
# S2: XOM closes (quantity 0; daily = 0 - 200 x 108 + 200 x 110 = 400); AAPL 100 -> 50
# (daily = 50 x 170 - 100 x 165 + 50 x 170 = 500).
VALUES_S2 = {
    "AAPL": (50.0, 170.0, 8500.0, 8500.0, 7500.0, 1000.0, 500.0, 1000.0, 1000.0),
    "MSFT": (-50.0, 410.0, 20500.0, -20500.0, -20000.0, -500.0, -250.0, 0.0, 0.0),
    "XOM": (0.0, 110.0, 0.0, 0.0, 0.0, 0.0, 400.0, 2000.0, 2000.0),
    "NVDA": (10.0, 800.0, 8000.0, 8000.0, 8000.0, 0.0, 0.0, 0.0, 0.0),
}
VALUES_S3 = {
    "AAPL": (50.0, 175.0, 8750.0, 8750.0, 7500.0, 1250.0, 250.0, 0.0, 1000.0),
    "MSFT": (-50.0, 400.0, 20000.0, -20000.0, -20000.0, 0.0, 500.0, 0.0, 0.0),
    "NVDA": (10.0, 820.0, 8200.0, 8200.0, 8000.0, 200.0, 200.0, 0.0, 0.0),
}
# portfolio_snapshots: day -> (total value, daily P&L, realized, realized to date, flows,
# equity, twr daily, twr cumulative). S1: P&L 100 on E 50000 + 10000 flows.
SNAPSHOTS = {
    S1: (45000.0, 100.0, 0.0, 0.0, CONTRIBUTION, 60100.0, 100 / 60000, 100 / 60000),
    S2: (37000.0, 650.0, 3000.0, 3000.0, 0.0, 60750.0, 650 / 60100, None),
    S3: (36950.0, 950.0, 0.0, 3000.0, WITHDRAWAL, 58700.0, 950 / 57750, None),
}
SNAPSHOTS[S2] = (*SNAPSHOTS[S2][:7], (1 + SNAPSHOTS[S1][6]) * (1 + SNAPSHOTS[S2][6]) - 1)
SNAPSHOTS[S3] = (*SNAPSHOTS[S3][:7], (1 + SNAPSHOTS[S2][7]) * (1 + SNAPSHOTS[S3][6]) - 1)


def _book(text: str):
    return validate_portfolio_text(text, path="carol.csv", today=TODAY)


def _source(name: str) -> LoadSource:
    return LoadSource(
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        file_name=f"{name}.csv",
        stored_as=name,
        loaded_by="test",
    )


@dataclass
class Carol:
    url: str
    portfolio_id: int
    ids: dict[str, int]  # symbol -> position id
    load_ids: tuple[int, int]


def _build(url: str) -> Carol:
    with psycopg.connect(url, autocommit=True) as conn:
        create_user(conn, "carol", "carol-pw")
        conn.execute(
            "INSERT INTO sigmasight.prices (symbol, trade_date, close, source) "
            "SELECT * FROM unnest(%s::text[], %s::date[], %s::float8[], %s::text[])",
            (list(CLOSES_S2), [S2] * 4, list(CLOSES_S2.values()), ["market"] * 4),
        )
        first = load_portfolio(
            conn, "carol", "Carol Book", _book(BOOK), as_of=S1, source=_source("a")
        )
        pid = first.portfolio_id
        set_target(conn, "carol", "Carol Book", "AAPL", 180.0, 150.0, set_on=S1)
        set_target(conn, "carol", "Carol Book", "MSFT", 360.0, 440.0, set_on=S1)  # a short
        set_target(conn, "carol", "Carol Book", "XOM", 130.0, set_on=S1)
        add_equity_change(conn, "carol", "Carol Book", CONTRIBUTION, S1, note="top-up", today=TODAY)
        second = load_portfolio(
            conn, "carol", "Carol Book", _book(EDITED), as_of=S2, source=_source("b")
        )
        set_target(conn, "carol", "Carol Book", "AAPL", 200.0, 160.0, set_on=S3)  # moved up
        add_equity_change(conn, "carol", "Carol Book", WITHDRAWAL, S3, note="fees", today=TODAY)
        ids = dict(
            conn.execute(
                "SELECT symbol, id FROM sigmasight.positions WHERE portfolio_id = %s", (pid,)
            ).fetchall()
        )
        value_rows = [
            (day, ids[symbol], pid, *v[:2], day, "market", *v[2:])
            for day, values in ((S2, VALUES_S2), (S3, VALUES_S3))
            for symbol, v in values.items()
        ]
        with conn.cursor() as cur:
            value_columns = (
                "trade_date", "position_id", "portfolio_id", "quantity", "price", "price_date",
                "price_source", "market_value", "exposure", "cost_basis", "unrealized_pnl",
                "daily_pnl", "realized_pnl_usd", "realized_pnl_cum_usd",
            )  # fmt: skip
            rows = [dict(zip(value_columns, r, strict=True)) for r in value_rows]
            store_rows(url, "position_values", rows)
            cur.executemany(
                "INSERT INTO sigmasight.portfolio_snapshots (trade_date, portfolio_id, "
                "total_value, long_exposure, short_exposure, gross_exposure, net_exposure, "
                "daily_pnl, window_pnl, window_start, unrealized_pnl, position_count, "
                "long_count, short_count, lc_count, lp_count, sc_count, sp_count, "
                "unpriced_count, realized_pnl_usd, realized_pnl_cum_usd, flows_usd, equity_usd, "
                "twr_daily, twr_cumulative) VALUES (%s, %s, %s, 0, 0, %s, 0, %s, 0, %s, 0, 3, "
                "2, 1, 0, 0, 0, 0, 0, %s, %s, %s, %s, %s, %s)",
                [(day, pid, s[0], s[0], s[1], S1, *s[2:]) for day, s in SNAPSHOTS.items()],
            )
    assert first.load_id is not None and second.load_id is not None
    return Carol(url, pid, ids, (first.load_id, second.load_id))


@pytest.fixture(scope="module")
def carol() -> Iterator[Carol]:
    with seeded_database("history") as url:
        yield _build(url)


@pytest.fixture(scope="module")
def reader(carol: Carol) -> Iterator[SigmaSightReader]:
    r = SigmaSightReader(database_url=carol.url, pool_size=4)
    yield r
    r.close()


@pytest.fixture(scope="module")
def client(carol: Carol) -> Iterator[httpx.Client]:
    reader = SigmaSightReader(database_url=carol.url, pool_size=4)
    with (
        running_server(create_app(reader, SECRET)) as base,
        httpx.Client(base_url=base + API_PREFIX, timeout=10) as c,
    ):
        yield c


def _token(client: httpx.Client, username: str, password: str) -> dict[str, str]:
    body = {"username": username, "password": password}
    r = client.post("/auth/login", json=body)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture(scope="module")
def headers(client: httpx.Client) -> dict[str, dict[str, str]]:
    users = {**PASSWORDS, "carol": "carol-pw"}
    return {name: _token(client, name, password) for name, password in users.items()}


def _get(client: httpx.Client, path: str, headers: dict[str, str], **params: Any) -> Any:
    r = client.get(path, params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------------------------------
# History: events, flows, totals, date filter


def test_history_lists_events_and_flows_oldest_first(
    reader: SigmaSightReader, carol: Carol
) -> None:
    h = reader.history(carol.portfolio_id)
    ids, (load_a, load_b) = carol.ids, carol.load_ids
    got = [
        (e.event_date, e.kind, e.symbol, e.position_id, e.quantity_change, e.price_usd,
         e.price_source, e.realized_pnl_usd, e.load_id)
        for e in h.events
    ]  # fmt: skip
    assert got == [
        (ENTRY, "open", "AAPL", ids["AAPL"], 100.0, 150.0, "file", None, load_a),
        (ENTRY, "open", "MSFT", ids["MSFT"], -50.0, 400.0, "file", None, load_a),
        (ENTRY, "open", "XOM", ids["XOM"], 200.0, 100.0, "file", None, load_a),
        # The load records the closes, then the decreases, then the opens.
        (S2, "close", "XOM", ids["XOM"], -200.0, 110.0, "close:market", 2000.0, load_b),
        (S2, "decrease", "AAPL", ids["AAPL"], -50.0, 170.0, "close:market", 1000.0, load_b),
        (S2, "open", "NVDA", ids["NVDA"], 10.0, 800.0, "file", None, load_b),
    ]
    assert [e.event_id for e in h.events] == sorted(e.event_id for e in h.events)
    xom_close = next(e for e in h.events if e.kind == "close")
    assert xom_close.trade_value_usd == -200 * 110.0  # cash received
    assert [(c.change_date, c.kind, c.amount_usd, c.note) for c in h.equity_changes] == [
        (S1, "contribution", CONTRIBUTION, "top-up"),
        (S3, "withdrawal", WITHDRAWAL, "fees"),
    ]
    t = h.totals
    assert (t.realized_pnl_usd, t.contributions_usd, t.withdrawals_usd) == (3000.0, 1e4, -3e3)
    assert t.net_flows_usd == 7000.0
    assert (t.opens, t.increases, t.decreases, t.closes, t.equity_change_count) == (4, 0, 1, 1, 2)


def test_history_date_filter(reader: SigmaSightReader, carol: Carol) -> None:
    on_s2 = reader.history(carol.portfolio_id, S2, S2)
    assert {e.event_date for e in on_s2.events} == {S2} and len(on_s2.events) == 3
    assert on_s2.equity_changes == [] and on_s2.totals.realized_pnl_usd == 3000.0
    assert on_s2.totals.net_flows_usd == 0.0
    from_s3 = reader.history(carol.portfolio_id, start=S3)
    assert from_s3.events == [] and from_s3.totals.net_flows_usd == WITHDRAWAL
    to_s1 = reader.history(carol.portfolio_id, end=S1)
    assert [e.kind for e in to_s1.events] == ["open"] * 3
    assert to_s1.totals.contributions_usd == CONTRIBUTION and to_s1.totals.withdrawals_usd == 0
    with pytest.raises(ValueError, match="after"):
        reader.history(carol.portfolio_id, S3, S1)


def test_history_over_http(client: httpx.Client, headers: dict, carol: Carol) -> None:
    body = _get(client, "/portfolio/history", headers["carol"], **{"from": S2, "to": S3})
    assert body["from_date"] == str(S2) and body["to_date"] == str(S3)
    assert len(body["events"]) == 3 and body["totals"]["realized_pnl_usd"] == 3000.0
    assert body["totals"]["net_flows_usd"] == WITHDRAWAL
    bad = client.get("/portfolio/history", params={"from": S3, "to": S2}, headers=headers["carol"])
    assert bad.status_code == 422 and [e["field"] for e in bad.json()["detail"]] == ["from"]
    # A portfolio without events (alice's, inserted without loads): empty, not an error.
    empty = _get(client, "/portfolio/history", headers["alice"])
    assert empty["events"] == [] and empty["totals"]["realized_pnl_usd"] == 0.0


# ---------------------------------------------------------------------------------------------
# Positions: realized P&L, closed on the day, targets with the short's sign


def test_positions_on_the_closing_day(reader: SigmaSightReader, carol: Carol) -> None:
    result = reader.positions(carol.portfolio_id, as_of=S2)
    by_symbol = {p.symbol: p for p in result.positions}
    assert set(by_symbol) == {"AAPL", "MSFT", "XOM", "NVDA"}
    xom = by_symbol["XOM"]
    assert (xom.quantity, xom.closed_on, xom.realized_pnl_usd, xom.realized_pnl_cum_usd) == (
        0.0, S2, 2000.0, 2000.0,
    )  # fmt: skip
    assert xom.target_price_usd == 130.0 and xom.expected_return_to_target_fraction is None
    assert by_symbol["AAPL"].closed_on is None and by_symbol["AAPL"].realized_pnl_usd == 1000.0
    t = result.totals
    assert (t.count, t.closed) == (3, 1)  # held at the close, as the snapshot counts
    assert (t.realized_pnl_usd, t.realized_pnl_cum_usd) == (3000.0, 3000.0)
    assert t.daily_pnl_usd == SNAPSHOTS[S2][1] == 500 - 250 + 400 + 0
    # The day after, the closed position is gone.
    later = reader.positions(carol.portfolio_id, as_of=S3)
    assert {p.symbol for p in later.positions} == {"AAPL", "MSFT", "NVDA"}
    assert (later.totals.count, later.totals.closed, later.totals.realized_pnl_usd) == (3, 0, 0)
    assert later.totals.realized_pnl_cum_usd == 1000.0  # AAPL's; XOM's is no longer listed


def test_positions_targets_are_the_latest_and_sign_aware(
    reader: SigmaSightReader, carol: Carol
) -> None:
    s2 = {p.symbol: p for p in reader.positions(carol.portfolio_id, as_of=S2).positions}
    aapl = s2["AAPL"]
    assert (aapl.target_price_usd, aapl.downside_price_usd, aapl.target_set_on) == (
        180.0,
        150.0,
        S1,
    )
    assert aapl.expected_return_to_target_fraction == pytest.approx(180 / 170 - 1)
    assert aapl.expected_return_to_downside_fraction == pytest.approx(150 / 170 - 1)
    # The short gains when the price falls to its target: (360 / 410 - 1) x -1 > 0.
    msft = s2["MSFT"]
    assert msft.expected_return_to_target_fraction == pytest.approx(1 - 360 / 410)
    assert msft.expected_return_to_target_fraction > 0
    assert msft.expected_return_to_downside_fraction == pytest.approx(1 - 440 / 410)
    assert s2["NVDA"].target_price_usd is None
    assert s2["NVDA"].expected_return_to_target_fraction is None
    s3 = {p.symbol: p for p in reader.positions(carol.portfolio_id, as_of=S3).positions}
    assert (s3["AAPL"].target_price_usd, s3["AAPL"].target_set_on) == (200.0, S3)


# ---------------------------------------------------------------------------------------------
# Targets: exposure-weighted expected return


def test_targets_exposure_weighted_by_hand(reader: SigmaSightReader, carol: Carol) -> None:
    result = reader.targets(carol.portfolio_id, as_of=S3)
    # AAPL: 50 @ 175, target 200, downside 160; MSFT: -50 @ 400, target 360, downside 440.
    aapl_t, aapl_d = 200 / 175 - 1, 160 / 175 - 1
    msft_t, msft_d = -(360 / 400 - 1), -(440 / 400 - 1)  # 0.1 and -0.1
    w_aapl, w_msft = 50 * 175.0, 50 * 400.0
    expected_t = (w_aapl * aapl_t + w_msft * msft_t) / (w_aapl + w_msft)
    expected_d = (w_aapl * aapl_d + w_msft * msft_d) / (w_aapl + w_msft)
    s = result.summary
    assert s.expected_return_to_target_fraction == pytest.approx(expected_t)
    assert s.expected_return_to_target_fraction == pytest.approx((1250 + 2000) / 28750)
    assert s.expected_return_to_downside_fraction == pytest.approx(expected_d)
    assert (s.pnl_to_target_usd, s.pnl_to_downside_usd) == (1250.0 + 2000.0, -750.0 - 2000.0)
    assert s.gross_exposure_with_target_usd == 28750.0
    assert (s.positions_held, s.positions_with_target, s.positions_without_target) == (3, 2, 1)
    assert s.position_ids_without_target == [carol.ids["NVDA"]]
    assert s.unpriced_with_target == 0
    # Highest expected return first: AAPL 14.3 %, then the short MSFT 10 %.
    assert [p.symbol for p in result.positions] == ["AAPL", "MSFT"]
    msft = result.positions[1]
    assert msft.exposure_usd == -20000.0 and msft.pnl_to_target_usd == 2000.0
    assert msft.expected_return_to_target_fraction == pytest.approx(msft_t)
    # On S2 the closed XOM (quantity 0) is not held: not listed, not counted.
    s2 = reader.targets(carol.portfolio_id, as_of=S2)
    assert [p.symbol for p in s2.positions] == ["MSFT", "AAPL"]  # 12.2 % then 5.9 %
    assert s2.summary.positions_held == 3


def test_targets_without_any_is_empty_with_counts(client: httpx.Client, headers: dict) -> None:
    body = _get(client, "/portfolio/targets", headers["alice"])  # the seeded book: no targets
    assert body["positions"] == [] and body["as_of"] == "2024-02-02"
    assert body["summary"]["positions_without_target"] == body["summary"]["positions_held"] == 6
    assert body["summary"]["expected_return_to_target_fraction"] is None
    r = client.get("/portfolio/targets", params={"as_of": "2024-02-03"}, headers=headers["alice"])
    assert r.status_code == 404 and r.json() == {
        "detail": "no snapshot for portfolio 1 on 2024-02-03"
    }


def test_targets_over_http(client: httpx.Client, headers: dict, carol: Carol) -> None:
    body = _get(client, "/portfolio/targets", headers["carol"])  # latest day: S3
    assert body["as_of"] == str(S3)
    assert body["summary"]["expected_return_to_target_fraction"] == pytest.approx(3250 / 28750)
    positions = _get(client, "/positions", headers["carol"], as_of=S3)["positions"]
    msft = next(p for p in positions if p["symbol"] == "MSFT")
    assert msft["expected_return_to_target_fraction"] == pytest.approx(0.1)


# ---------------------------------------------------------------------------------------------
# Tags count open positions only


def test_tags_count_only_open_positions(client: httpx.Client, headers: dict, carol: Carol) -> None:
    with psycopg.connect(carol.url) as conn:  # the closed XOM still carries its tag
        linked = conn.execute(
            "SELECT count(*) FROM sigmasight.position_tags WHERE position_id = %s",
            (carol.ids["XOM"],),
        ).fetchone()
    assert linked == (1,)
    mine = _get(client, "/tags", headers["carol"])
    assert {t["name"]: t["position_count"] for t in mine} == {"ai": 1, "energy": 0, "tech": 2}
    book = _get(client, "/tags", headers["carol"], portfolio_id=carol.portfolio_id)
    assert {t["name"]: t["position_count"] for t in book} == {"ai": 1, "tech": 2}


# ---------------------------------------------------------------------------------------------
# Snapshots and overview: realized P&L, flows, equity, TWR


def test_snapshots_and_overview_expose_returns(client: httpx.Client, headers: dict) -> None:
    points = _get(client, "/portfolio/snapshots", headers["carol"])["points"]
    assert [p["trade_date"] for p in points] == [str(S1), str(S2), str(S3)]
    for p, day in zip(points, (S1, S2, S3), strict=True):
        s = SNAPSHOTS[day]
        assert (p["realized_pnl_usd"], p["realized_pnl_cum_usd"], p["flows_usd"]) == s[2:5]
        assert p["equity_usd"] == s[5]
        assert p["twr_daily_fraction"] == pytest.approx(s[6])
        assert p["twr_cumulative_fraction"] == pytest.approx(s[7])
    o = _get(client, "/portfolio", headers["carol"])
    assert (o["equity_usd"], o["flows_usd"]) == (58700.0, WITHDRAWAL)
    assert (o["pnl"]["realized_usd"], o["pnl"]["realized_cumulative_usd"]) == (0.0, 3000.0)
    assert o["twr_cumulative_fraction"] == pytest.approx(SNAPSHOTS[S3][7])


# ---------------------------------------------------------------------------------------------
# Scoping


@pytest.mark.parametrize("path", ["/portfolio/history", "/portfolio/targets"])
def test_new_routes_are_scoped(
    client: httpx.Client, headers: dict, carol: Carol, path: str
) -> None:
    pid = carol.portfolio_id
    assert client.get(path, params={"portfolio_id": pid}).status_code == 401
    theirs = client.get(path, params={"portfolio_id": pid}, headers=headers["bob"])
    missing = client.get(path, params={"portfolio_id": 99999}, headers=headers["bob"])
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json() == {"detail": "portfolio not found"}
    assert (
        client.get(path, params={"portfolio_id": pid}, headers=headers["root"]).status_code == 200
    )
