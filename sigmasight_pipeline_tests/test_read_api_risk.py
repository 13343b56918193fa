"""The risk-depth routes over HTTP (the real app under uvicorn) on the demo backfill.

/risk/volatility, /risk/correlations, /risk/concentration, /risk/sectors, /risk/decomposition
and /risk/stress (and the rate sensitivity in /risk/factors): every number equals what the
pipeline stored, read here independently with SQL; each route is scoped to the caller; a day
without a snapshot is the no-data 404. (A day with a snapshot but no rows in a risk-depth
table: test_api_http, on its hand-made dataset.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg.rows import dict_row

from sigmasight_pipeline.analytics.concentration import name_exposures
from sigmasight_pipeline.analytics.decomposition import MODEL_FACTORS
from sigmasight_pipeline.api import API_PREFIX, create_app
from sigmasight_pipeline.resources.read_api import SigmaSightReader
from sigmasight_pipeline_tests.conftest import DEMO_END
from sigmasight_pipeline_tests.test_api_http import SECRET, running_server

PASSWORDS = {"demo_user_1": "demo123", "demo_user_2": "demo123", "demo_admin": "admin123"}
ROUTES = [
    "/risk/volatility", "/risk/correlations", "/risk/concentration", "/risk/sectors",
    "/risk/decomposition", "/risk/stress",
]  # fmt: skip
PORTFOLIOS = {1: "demo_user_1", 2: "demo_user_2", 3: "demo_user_2"}


@pytest.fixture(scope="module")
def client(db_url: str, demo_backfill) -> Iterator[httpx.Client]:
    reader = SigmaSightReader(database_url=db_url, pool_size=4)
    with (
        running_server(create_app(reader, SECRET)) as url,
        httpx.Client(base_url=url + API_PREFIX, timeout=30) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def tokens(client: httpx.Client) -> dict[str, str]:
    out = {}
    for name, password in PASSWORDS.items():
        r = client.post("/auth/login", json={"username": name, "password": password})
        assert r.status_code == 200, r.text
        out[name] = r.json()["token"]
    return out


def call(client: httpx.Client, tokens: dict[str, str], path: str, pid: int, **params: Any):
    """GET `path` for portfolio `pid` with its owner's token; the JSON body (200 asserted)."""
    headers = {"Authorization": f"Bearer {tokens[PORTFOLIOS[pid]]}"}
    r = client.get(path, params={"portfolio_id": pid, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def rows(db_url: str, query: str, params: dict | tuple | None = None) -> list[dict[str, Any]]:
    """Rows as JSON would carry them: NaN and NULL as None, dates as ISO strings."""

    def plain(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        return value.isoformat() if hasattr(value, "isoformat") else value

    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)  # type: ignore[arg-type]
        return [{k: plain(v) for k, v in r.items()} for r in cur.fetchall()]


def renamed(row: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`row` with its columns renamed to the API's field names (units in the names)."""
    return {names.get(k, k): v for k, v in row.items()}


@pytest.fixture(scope="module")
def days(demo_backfill) -> list[str]:
    plan, _ = demo_backfill
    return [f"{d:%Y-%m-%d}" for d in plan.window]


# ---------------------------------------------------------------------------------------------
# Volatility

VOL_NAMES = {
    "vol_21d": "vol_21d_fraction", "vol_63d": "vol_63d_fraction",
    "vol_252d": "vol_252d_fraction", "vol_ewma": "vol_ewma_fraction",
    "vol_har_21d": "vol_har_21d_fraction", "vol_ex_ante": "vol_ex_ante_fraction",
}  # fmt: skip


def name_table(db_url: str, pid: int, day: str) -> pd.DataFrame:
    """Net exposure and weight per underlying, computed with the concentration asset's own
    function from the day's stored position values and Greeks."""
    held = pd.DataFrame(
        rows(
            db_url,
            "SELECT v.trade_date, v.portfolio_id, v.position_id, p.underlying, p.position_type, "
            "v.exposure, g.delta_adjusted_exposure FROM sigmasight.position_values v "
            "JOIN sigmasight.positions p ON p.id = v.position_id "
            "LEFT JOIN sigmasight.position_greeks g ON g.portfolio_id = v.portfolio_id "
            "AND g.trade_date = v.trade_date AND g.position_id = v.position_id "
            "WHERE v.portfolio_id = %s AND v.trade_date = %s",
            (pid, day),
        )
    )
    stock = held["position_type"].isin(["LONG", "SHORT"])
    held["exposure"] = held["exposure"].where(stock, held["delta_adjusted_exposure"])
    names = name_exposures(held.assign(exposure=held["exposure"].astype(float)))
    counts = held.groupby("underlying")["position_id"].apply(sorted)
    return names.set_index("underlying").assign(position_ids=counts)


@pytest.mark.parametrize("pid", [1, 3])
def test_volatility_is_the_tables(client, tokens, db_url, pid: int) -> None:
    body = call(client, tokens, "/risk/volatility", pid)
    assert body["as_of"] == DEMO_END and body["portfolio_id"] == pid
    (stored,) = rows(
        db_url,
        "SELECT vol_21d, vol_63d, vol_252d, vol_ewma, vol_har_21d, vol_percentile_252d, "
        "vol_ex_ante, vol_ex_ante_usd, n_obs, reason FROM sigmasight.portfolio_volatility "
        "WHERE portfolio_id = %s AND trade_date = %s",
        (pid, DEMO_END),
    )
    assert body["portfolio"] == renamed(stored, VOL_NAMES)
    assert body["portfolio"]["vol_ex_ante_usd"] > 0 and body["portfolio"]["n_obs"] > 60

    names = name_table(db_url, pid, DEMO_END)
    symbols = [u["symbol"] for u in body["underlyings"]]
    assert symbols == list(names.index)  # every name held, largest |exposure| first
    measures = {
        r.pop("symbol"): renamed(r, VOL_NAMES)
        for r in rows(
            db_url,
            "SELECT symbol, vol_21d, vol_63d, vol_252d, vol_ewma, vol_har_21d, "
            "vol_percentile_252d, n_obs, reason FROM sigmasight.symbol_volatility "
            "WHERE trade_date = %s AND symbol = ANY(%s)",
            (DEMO_END, symbols),
        )
    }
    for item in body["underlyings"]:
        symbol = item["symbol"]
        assert item["exposure_usd"] == pytest.approx(names.loc[symbol, "exposure"], rel=1e-12)
        assert item["weight_fraction"] == pytest.approx(names.loc[symbol, "weight"], rel=1e-12)
        assert item["position_ids"] == names.loc[symbol, "position_ids"]
        own = {k: v for k, v in item.items() if k in measures[symbol]}
        assert own == measures[symbol]
    # The names' gross is the concentration asset's.
    (gross,) = rows(
        db_url,
        "SELECT gross_exposure_usd FROM sigmasight.portfolio_concentration "
        "WHERE portfolio_id = %s AND trade_date = %s",
        (pid, DEMO_END),
    )
    total = sum(abs(u["exposure_usd"]) for u in body["underlyings"])
    assert total == pytest.approx(gross["gross_exposure_usd"], rel=1e-12)


def test_volatility_as_of_an_earlier_day(client, tokens, db_url, days) -> None:
    day = days[40]
    body = call(client, tokens, "/risk/volatility", 2, as_of=day)
    (stored,) = rows(
        db_url,
        "SELECT vol_21d FROM sigmasight.portfolio_volatility "
        "WHERE portfolio_id = 2 AND trade_date = %s",
        (day,),
    )
    assert body["as_of"] == day and body["portfolio"]["vol_21d_fraction"] == stored["vol_21d"]


# ---------------------------------------------------------------------------------------------
# Correlations


@pytest.mark.parametrize("pid", [1, 3])
def test_correlation_matrix_is_the_stored_pairs(client, tokens, db_url, pid: int) -> None:
    body = call(client, tokens, "/risk/correlations", pid)
    assert body["format"] == "matrix" and body["window_sessions"] == 90
    (stored,) = rows(
        db_url,
        "SELECT symbols, avg_pairwise_correlation, avg_pnl_correlation, "
        "effective_number_of_bets, n_clusters, reason "
        "FROM sigmasight.portfolio_correlation_matrices "
        "WHERE portfolio_id = %s AND trade_date = %s",
        (pid, DEMO_END),
    )
    symbols = stored.pop("symbols")
    assert body["symbols"] == symbols and len(symbols) > 2
    assert {k: body[k] for k in stored} == stored
    pairs = rows(
        db_url,
        "SELECT symbol_a, symbol_b, correlation, n_obs, reason FROM "
        "sigmasight.portfolio_correlations WHERE portfolio_id = %s AND trade_date = %s",
        (pid, DEMO_END),
    )
    assert len(pairs) == len(symbols) * (len(symbols) - 1) // 2
    matrix = np.array(body["matrix"], dtype=float)
    index = {s: i for i, s in enumerate(symbols)}
    for pair in pairs:
        a, b = index[pair["symbol_a"]], index[pair["symbol_b"]]
        expected = np.nan if pair["correlation"] is None else pair["correlation"]
        np.testing.assert_equal([matrix[a, b], matrix[b, a]], [expected, expected])
    np.testing.assert_array_equal(np.diag(matrix), np.ones(len(symbols)))
    assert body["pairs"] == [p for p in pairs if p["correlation"] is None]
    # ... and the pairs format is the view, row for row.
    long = call(client, tokens, "/risk/correlations", pid, format="pairs")
    assert long["matrix"] is None and long["pairs"] == pairs
    assert {k: long[k] for k in stored} == stored


def test_correlation_clusters_are_the_view(client, tokens, db_url) -> None:
    body = call(client, tokens, "/risk/correlations", 3)
    clustered = rows(
        db_url,
        "SELECT symbol, cluster_id FROM sigmasight.correlation_clusters "
        "WHERE portfolio_id = 3 AND trade_date = %s ORDER BY symbol",
        (DEMO_END,),
    )
    expected: dict[int, list[str]] = {}
    for r in clustered:
        expected.setdefault(r["cluster_id"], []).append(r["symbol"])
    assert {c["cluster_id"]: c["symbols"] for c in body["clusters"]} == expected
    assert [c["cluster_id"] for c in body["clusters"]] == sorted(expected)
    assert body["n_clusters"] == len(body["clusters"]) and body["unclustered"] == []
    assert any(len(c["symbols"]) > 1 for c in body["clusters"])  # SPY and its high-beta names


# ---------------------------------------------------------------------------------------------
# Concentration and sectors


@pytest.mark.parametrize("pid", [1, 2, 3])
def test_concentration_is_the_table(client, tokens, db_url, pid: int) -> None:
    body = call(client, tokens, "/risk/concentration", pid, top=1000)
    (stored,) = rows(
        db_url,
        "SELECT gross_exposure_usd, n_names, hhi, effective_n, top5_weight, top10_weight, "
        "largest_symbol, largest_weight, largest_exposure_usd, n_missing_exposure, reason "
        "FROM sigmasight.portfolio_concentration WHERE portfolio_id = %s AND trade_date = %s",
        (pid, DEMO_END),
    )
    names = {"top5_weight": "top5_weight_fraction", "top10_weight": "top10_weight_fraction",
             "largest_weight": "largest_weight_fraction"}  # fmt: skip
    expected = renamed(stored, names)
    assert {k: body[k] for k in expected} == expected
    # The listed names are the ones the asset measured: same weights, HHI and top-N.
    top = body["top_names"]
    weights = np.array([n["weight_fraction"] for n in top])
    assert len(top) == stored["n_names"]
    assert top[0]["symbol"] == stored["largest_symbol"]
    assert top[0]["exposure_usd"] == pytest.approx(stored["largest_exposure_usd"], rel=1e-12)
    assert (weights**2).sum() == pytest.approx(stored["hhi"], rel=1e-12)
    assert weights[:5].sum() == pytest.approx(stored["top5_weight"], rel=1e-12)
    assert weights[:10].sum() == pytest.approx(stored["top10_weight"], rel=1e-12)
    assert list(weights) == sorted(weights, reverse=True)
    default = call(client, tokens, "/risk/concentration", pid)
    assert default["top_names"] == top[:10]
    assert call(client, tokens, "/risk/concentration", pid, top=2)["top_names"] == top[:2]


def test_sectors_are_the_table(client, tokens, db_url) -> None:
    body = call(client, tokens, "/risk/sectors", 1)
    stored = rows(
        db_url,
        "SELECT sector, long_exposure_usd, short_exposure_usd, gross_exposure_usd, "
        "net_exposure_usd, gross_weight, net_weight, benchmark_weight, active_weight, n_names, "
        "benchmark_as_of, reason FROM sigmasight.portfolio_sector_exposures "
        "WHERE portfolio_id = 1 AND trade_date = %s",
        (DEMO_END,),
    )
    names = {
        "gross_weight": "gross_weight_fraction", "net_weight": "net_weight_fraction",
        "benchmark_weight": "benchmark_weight_fraction", "active_weight": "active_weight_fraction",
    }  # fmt: skip
    expected = sorted(
        (renamed(r, names) for r in stored), key=lambda r: (-r["gross_exposure_usd"], r["sector"])
    )
    assert body["sectors"] == expected
    assert len(body["sectors"]) >= 11  # every GICS sector, held or not
    assert body["benchmark_as_of"] == stored[0]["benchmark_as_of"]
    weights = sum(s["gross_weight_fraction"] for s in body["sectors"])
    assert weights == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Risk decomposition


@pytest.mark.parametrize("pid", [1, 3])
def test_decomposition_is_the_tables_and_sums_to_the_total(client, tokens, db_url, pid) -> None:
    body = call(client, tokens, "/risk/decomposition", pid, top=1000)
    stored = rows(
        db_url,
        "SELECT component, exposure_usd, variance_usd2, share_of_variance, "
        "vol_contribution_usd, total_vol_usd, coverage, reason "
        "FROM sigmasight.portfolio_risk_decomposition "
        "WHERE portfolio_id = %s AND trade_date = %s",
        (pid, DEMO_END),
    )
    total = stored[0]["total_vol_usd"]
    assert body["total_vol_usd"] == total and body["coverage_fraction"] == stored[0]["coverage"]
    assert [c["component"] for c in body["components"]] == [*MODEL_FACTORS, "specific"]
    by_name = {r["component"]: r for r in stored}
    for c in body["components"]:
        row = by_name[c["component"]]
        assert c["kind"] == ("specific" if c["component"] == "specific" else "factor")
        assert (c["exposure_usd"], c["variance_usd2"], c["vol_contribution_usd"]) == (
            row["exposure_usd"], row["variance_usd2"], row["vol_contribution_usd"],
        )  # fmt: skip
        assert c["share_of_variance_fraction"] == row["share_of_variance"]
    components = body["components"]
    assert sum(c["vol_contribution_usd"] for c in components) == pytest.approx(total, rel=1e-9)
    assert sum(c["share_of_variance_fraction"] for c in components) == pytest.approx(1.0)
    # Every position (top=1000): the Euler contributions sum to the model volatility.
    positions = body["positions"]
    contributions = rows(
        db_url,
        "SELECT c.position_id, p.symbol, c.exposure_usd, c.marginal_vol_usd, "
        "c.component_vol_usd, c.factor_vol_usd, c.specific_vol_usd, c.share_of_risk, c.reason "
        "FROM sigmasight.position_risk_contributions c "
        "JOIN sigmasight.positions p ON p.id = c.position_id "
        "WHERE c.portfolio_id = %s AND c.trade_date = %s",
        (pid, DEMO_END),
    )
    assert body["position_count"] == len(positions) == len(contributions)
    assert sum(p["component_vol_usd"] for p in positions) == pytest.approx(total, rel=1e-9)
    assert sum(p["share_of_risk_fraction"] for p in positions) == pytest.approx(1.0)
    stored_by_id = {r["position_id"]: r for r in contributions}
    for p in positions:
        row = stored_by_id[p["position_id"]]
        assert (p["symbol"], p["exposure_usd"], p["marginal_vol_per_usd"]) == (
            row["symbol"], row["exposure_usd"], row["marginal_vol_usd"],
        )  # fmt: skip
        assert (p["component_vol_usd"], p["factor_vol_usd"], p["specific_vol_usd"]) == (
            row["component_vol_usd"], row["factor_vol_usd"], row["specific_vol_usd"],
        )  # fmt: skip
        assert p["share_of_risk_fraction"] == row["share_of_risk"]
        assert p["factor_vol_usd"] + p["specific_vol_usd"] == pytest.approx(
            p["component_vol_usd"], rel=1e-9, abs=1e-9
        )
    ordered = [p["component_vol_usd"] for p in positions]
    assert ordered == sorted(ordered, reverse=True)
    # The default lists the 10 largest contributors.
    top = call(client, tokens, "/risk/decomposition", pid)
    assert top["top"] == 10 and top["positions"] == positions[:10]


# ---------------------------------------------------------------------------------------------
# Stress tests and rate sensitivity


def test_stress_is_the_tables_in_library_order(client, tokens, db_url) -> None:
    body = call(client, tokens, "/risk/stress", 1)
    library = rows(
        db_url,
        "SELECT scenario_id, name, kind, description, start_date, end_date "
        "FROM sigmasight.stress_scenarios ORDER BY ordinal",
    )
    results = {
        r.pop("scenario_id"): r
        for r in rows(
            db_url,
            "SELECT scenario_id, pnl_usd, pnl_usd_delta_gamma, pnl_pct_of_gross, "
            "gross_exposure_usd, method, n_positions, n_missing, reason "
            "FROM sigmasight.portfolio_stress_results WHERE portfolio_id = 1 AND trade_date = %s",
            (DEMO_END,),
        )
    }
    scenarios = body["scenarios"]
    assert [s["scenario_id"] for s in scenarios] == [s["scenario_id"] for s in library]
    assert len(scenarios) >= 15
    for scenario, meta in zip(scenarios, library, strict=True):
        assert {k: scenario[k] for k in meta} == meta
        expected = renamed(
            results[meta["scenario_id"]], {"pnl_pct_of_gross": "pnl_fraction_of_gross"}
        )
        assert {k: scenario[k] for k in expected} == expected
    replay = next(s for s in scenarios if s["scenario_id"] == "replay_2008_lehman")
    assert (replay["kind"], replay["start_date"]) == ("replay", "2008-09-12")


def test_stress_worst_positions_are_the_lowest_pnl(client, tokens, db_url) -> None:
    body = call(client, tokens, "/risk/stress", 3)
    pnl = pd.DataFrame(
        rows(
            db_url,
            "SELECT r.scenario_id, r.position_id, p.symbol, r.pnl_usd, r.pnl_usd_delta_gamma "
            "FROM sigmasight.position_stress_results r "
            "JOIN sigmasight.positions p ON p.id = r.position_id "
            "WHERE r.portfolio_id = 3 AND r.trade_date = %s",
            (DEMO_END,),
        )
    )
    stored_worst = {
        r["scenario_id"]: r["worst_position_id"]
        for r in rows(
            db_url,
            "SELECT scenario_id, worst_position_id FROM sigmasight.portfolio_stress_results "
            "WHERE portfolio_id = 3 AND trade_date = %s",
            (DEMO_END,),
        )
    }
    for scenario in body["scenarios"]:
        mine = pnl[pnl["scenario_id"] == scenario["scenario_id"]]
        worst = mine.sort_values(["pnl_usd", "position_id"]).head(3)
        got = scenario["worst_positions"]
        assert [w["position_id"] for w in got] == list(worst["position_id"])
        assert [w["symbol"] for w in got] == list(worst["symbol"])
        assert [w["pnl_usd"] for w in got] == list(worst["pnl_usd"])
        assert [w["pnl_usd_delta_gamma"] for w in got] == list(worst["pnl_usd_delta_gamma"])
        assert got[0]["position_id"] == stored_worst[scenario["scenario_id"]]
        # The portfolio's P&L is its positions' (stored as float4 per position).
        scale = mine["pnl_usd"].abs().sum()
        assert scenario["pnl_usd"] == pytest.approx(mine["pnl_usd"].sum(), abs=1e-6 * scale)
    five = call(client, tokens, "/risk/stress", 3, worst=5)
    assert all(len(s["worst_positions"]) == 5 for s in five["scenarios"])


def test_rate_sensitivity_in_stress_and_factors(client, tokens, db_url) -> None:
    (snap,) = rows(
        db_url,
        "SELECT beta_rates, pnl_usd_per_100bp FROM sigmasight.portfolio_snapshots "
        "WHERE portfolio_id = 2 AND trade_date = %s",
        (DEMO_END,),
    )
    stress = call(client, tokens, "/risk/stress", 2)
    assert (stress["beta_rates_60d"], stress["pnl_usd_per_100bp"]) == (
        snap["beta_rates"], snap["pnl_usd_per_100bp"],
    )  # fmt: skip
    assert snap["pnl_usd_per_100bp"] is not None
    factors = call(client, tokens, "/risk/factors", 2)
    assert factors["pnl_usd_per_100bp"] == snap["pnl_usd_per_100bp"]
    rates = next(f for f in factors["factors"] if f["factor"] == "Rates")
    assert rates["etf"] == "TLT" and rates["beta"] == snap["beta_rates"]
    assert "beta on TLT" in rates["method"]
    # $ per +100 bp = the Rates dollar exposure x TLT's return for +100 bp (-16.5 %).
    assert snap["pnl_usd_per_100bp"] == pytest.approx(rates["exposure_usd"] * -0.165)


# ---------------------------------------------------------------------------------------------
# Scoping and errors


@pytest.mark.parametrize("path", ROUTES)
def test_scoped_to_the_callers_portfolios(client, tokens, path: str) -> None:
    def status(user: str, **params: Any) -> tuple[int, Any]:
        r = client.get(path, params=params, headers={"Authorization": f"Bearer {tokens[user]}"})
        return r.status_code, r.json()

    assert status("demo_user_1", portfolio_id=2) == (404, {"detail": "portfolio not found"})
    assert status("demo_user_2", portfolio_id=1) == (404, {"detail": "portfolio not found"})
    code, body = status("demo_user_2")  # default: the caller's first portfolio
    assert code == 200 and body["portfolio_id"] == 2
    code, body = status("demo_admin", portfolio_id=1)
    assert code == 200 and body["portfolio_id"] == 1
    assert client.get(path, params={"portfolio_id": 1}).status_code == 401


@pytest.mark.parametrize("path", ROUTES)
def test_a_day_without_a_snapshot_is_404(client, tokens, path: str) -> None:
    headers = {"Authorization": f"Bearer {tokens['demo_user_1']}"}
    r = client.get(path, params={"as_of": "2026-11-21"}, headers=headers)  # a Saturday
    assert r.status_code == 404
    assert r.json() == {"detail": "no snapshot for portfolio 1 on 2026-11-21"}
