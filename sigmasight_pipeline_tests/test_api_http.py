"""The HTTP API through a real uvicorn server on 127.0.0.1, over the dataset of test_read_api.

Routes and numbers, authorization (no token, bad token, expired token, another user's
portfolio, admin), 422s naming the field, errors without internals, /docs and /redoc served
with local assets only, every schema field documented with its unit, and fuzzing (schemathesis
from the OpenAPI spec, plus hypothesis on the positions filters) with no 5xx.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigmasight_pipeline import api
from sigmasight_pipeline.api import API_PREFIX, DOCS_ASSETS_URL, create_app
from sigmasight_pipeline.resources.read_api import SigmaSightReader
from sigmasight_pipeline_tests.test_read_api import (
    FACTORS_D,
    PASSWORDS,
    PORTFOLIO_GREEKS_D,
    VALUES_D,
    seeded_database,
)

SECRET = "test-secret-for-the-read-api-0123456789abcdef"


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread on 127.0.0.1 (a free port); yields the base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with seeded_database("http") as url:
        yield url


@pytest.fixture(scope="module")
def base_url(db_url: str) -> Iterator[str]:
    reader = SigmaSightReader(database_url=db_url, pool_size=4)
    with running_server(create_app(reader, SECRET)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url + API_PREFIX, timeout=10) as c:
        yield c


def login(client: httpx.Client, username: str) -> str:
    r = client.post("/auth/login", json={"username": username, "password": PASSWORDS[username]})
    assert r.status_code == 200, r.text
    return r.json()["token"]


@pytest.fixture(scope="module")
def tokens(client: httpx.Client) -> dict[str, str]:
    return {name: login(client, name) for name in PASSWORDS}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(client: httpx.Client, path: str, token: str, **params: Any) -> httpx.Response:
    return client.get(path, params=params, headers=auth(token))


# ---------------------------------------------------------------------------------------------
# Login


def test_login_response_shape(client: httpx.Client) -> None:
    r = client.post("/auth/login", json={"username": "alice", "password": "alice-pw"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"token", "token_type", "expires_in", "portfolio_id"}
    assert body["expires_in"] == 86400 and body["portfolio_id"] == 1
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == "1" and claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == 86400
    bob = client.post("/auth/login", json={"username": "bob", "password": "bob-pw"}).json()
    assert bob["portfolio_id"] == 3


@pytest.mark.parametrize(
    "body", [{"username": "alice", "password": "wrong"}, {"username": "nobody", "password": "x"}]
)
def test_login_rejects_bad_credentials_alike(client: httpx.Client, body: dict) -> None:
    r = client.post("/auth/login", json=body)
    assert r.status_code == 401
    assert r.json() == {"detail": "invalid username or password"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "alice"}, "password"),
        ({"username": "", "password": "x"}, "username"),
        ({"username": "al\x00ice", "password": "x"}, "username"),
        ({"username": "alice", "password": "\ud800"}, "password"),
        ({"username": "alice", "password": "x" * 2000}, "password"),
    ],
)
def test_login_422_names_the_field(client: httpx.Client, body: dict, field: str) -> None:
    r = client.post(
        "/auth/login",
        content=json.dumps(body),  # ASCII-escaped: a lone surrogate travels as \ud800
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["detail"]] == [field]


# ---------------------------------------------------------------------------------------------
# Routes


def test_overview(client: httpx.Client, tokens: dict[str, str]) -> None:
    body = get(client, "/portfolio", tokens["alice"]).json()
    assert body["portfolio_id"] == 1 and body["as_of"] == "2024-02-02"
    assert (body["total_value_usd"], body["net_exposure_usd"]) == (41800.0, -5600.0)
    assert body["pnl"]["daily_usd"] == -100.0 and body["pnl"]["mtd_usd"] == 30.0
    assert body["pnl"]["ytd_usd"] == 90.0
    assert (body["beta_holdings_60d"], body["beta_realized_60d"]) == (1.1, 1.05)
    assert body["position_counts"]["LC"] == 1 and body["position_counts"]["total"] == 6
    older = get(client, "/portfolio", tokens["alice"], as_of="2024-02-01").json()
    assert older["total_value_usd"] == 40300.0
    p2 = get(client, "/portfolio", tokens["alice"], portfolio_id=2).json()
    assert p2["pnl"]["mtd_usd"] is None
    assert "1 of 2 sessions" in p2["pnl"]["mtd_coverage"]["note"]


def test_positions(client: httpx.Client, tokens: dict[str, str]) -> None:
    body = get(client, "/positions", tokens["alice"]).json()
    assert [p["position_id"] for p in body["positions"]] == [1, 2, 3, 4, 5, 6]
    for p in body["positions"]:
        assert p["market_value_usd"] == VALUES_D[p["position_id"]][2]
    assert body["totals"]["market_value_usd"] == 41800.0
    grouped = get(
        client, "/positions", tokens["alice"], groupBy="tag", tags="momentum,hedge", tagMode="any"
    ).json()
    assert sorted(p["position_id"] for p in grouped["positions"]) == [1, 2, 3, 4]
    assert grouped["tag_mode"] == "any" and grouped["group_by"] == "tag"
    keys = [g["key"] for g in grouped["groups"]]
    assert keys == ["hedge", "momentum", "options", "tech"]
    both = get(client, "/positions", tokens["alice"], tags="options,hedge", tagMode="all").json()
    assert [p["position_id"] for p in both["positions"]] == [4]
    typed = get(client, "/positions", tokens["alice"], types="lc,SC", groupBy="type").json()
    assert [g["key"] for g in typed["groups"]] == ["LC", "SC"]


@pytest.mark.parametrize("view", ["portfolio", "longs", "shorts"])
def test_greeks(client: httpx.Client, tokens: dict[str, str], view: str) -> None:
    body = get(client, "/risk/greeks", tokens["alice"], view=view).json()
    totals = body["totals"]
    expected = PORTFOLIO_GREEKS_D[view]
    assert [totals[k] for k in ("delta", "gamma", "theta", "vega", "rho")] == list(expected[:5])
    assert totals["position_count"] == len(body["positions"]) == expected[7]


def test_factors_metrics_snapshots_tags(client: httpx.Client, tokens: dict[str, str]) -> None:
    factors = get(client, "/risk/factors", tokens["alice"]).json()["factors"]
    market = factors[0]
    assert len(factors) == 8 and market == {
        "factor": "Market", "etf": "SPY", "method": market["method"], "beta": 1.1,
        "exposure_usd": -6160.0, "coverage_fraction": 1.0,
    }  # fmt: skip
    assert market["method"].startswith("holdings-based market beta")
    assert {f["factor"]: f["beta"] for f in factors} == {k: v[0] for k, v in FACTORS_D.items()}
    metrics = get(client, "/risk/metrics", tokens["alice"]).json()
    assert (metrics["beta_realized_60d"], metrics["sharpe"], metrics["n_obs"]) == (1.05, 1.3, 5)
    assert (metrics["var_95_1d_parametric_usd"], metrics["var_95_1d_hist_fraction"]) == (
        0.021, 0.02,
    )  # fmt: skip
    assert metrics["var_95_1d_hist_usd"] == 836.0 and "beta" not in metrics
    history = get(
        client, "/portfolio/snapshots", tokens["alice"], start="2024-01-30", end="2024-02-01"
    ).json()
    assert [p["trade_date"] for p in history["points"]] == [
        "2024-01-30", "2024-01-31", "2024-02-01",
    ]  # fmt: skip
    assert [p["cumulative_pnl_usd"] for p in history["points"]] == [-20.0, 10.0, 140.0]


def test_tags_without_a_portfolio_are_the_callers(
    client: httpx.Client, tokens: dict[str, str]
) -> None:
    tags = get(client, "/tags", tokens["alice"]).json()
    assert [(t["name"], t["position_count"]) for t in tags] == [
        ("hedge", 2), ("momentum", 2), ("options", 3), ("tech", 3), ("Unused", 0),
    ]  # fmt: skip
    assert [t["name"] for t in get(client, "/tags", tokens["bob"]).json()] == ["momentum"]


def test_tags_of_a_portfolio_count_its_positions(
    client: httpx.Client, tokens: dict[str, str]
) -> None:
    # tech is on positions 1 and 2 in portfolio 1 and on 7 in portfolio 2; "Unused" is in none.
    p1 = get(client, "/tags", tokens["alice"], portfolio_id=1).json()
    assert [(t["name"], t["position_count"]) for t in p1] == [
        ("hedge", 2), ("momentum", 2), ("options", 3), ("tech", 2),
    ]  # fmt: skip
    p2 = get(client, "/tags", tokens["alice"], portfolio_id=2).json()
    assert [(t["name"], t["position_count"]) for t in p2] == [("tech", 1)]


def test_portfolios(client: httpx.Client, tokens: dict[str, str]) -> None:
    portfolios = get(client, "/portfolios", tokens["alice"]).json()
    assert [p["id"] for p in portfolios] == [1, 2]


def test_non_finite_numbers_are_null(client: httpx.Client, tokens: dict[str, str]) -> None:
    r = get(client, "/risk/metrics", tokens["bob"], as_of="2024-02-01")
    assert r.status_code == 200
    assert (r.json()["sharpe"], r.json()["sortino"], r.json()["n_obs"]) == (None, None, 2)


def test_no_data_is_404_with_a_reason(client: httpx.Client, tokens: dict[str, str]) -> None:
    r = get(client, "/risk/greeks", tokens["alice"], portfolio_id=1, as_of="2024-01-31")
    assert r.status_code == 404
    assert r.json() == {"detail": "no Greeks for portfolio 1 on 2024-01-31"}
    r = get(client, "/portfolio", tokens["alice"], as_of="2024-02-03")
    assert r.status_code == 404 and "no snapshot" in r.json()["detail"]


# The risk-depth routes and the table each reads (the dataset has snapshots, none of these).
RISK_DEPTH = {
    "/risk/volatility": ("volatility", "portfolio_volatility"),
    "/risk/correlations": ("correlations", "portfolio_correlation_matrices"),
    "/risk/concentration": ("concentration", "portfolio_concentration"),
    "/risk/sectors": ("sector exposures", "portfolio_sector_exposures"),
    "/risk/decomposition": ("risk decomposition", "portfolio_risk_decomposition"),
    "/risk/stress": ("stress results", "portfolio_stress_results"),
}


@pytest.mark.parametrize("path", list(RISK_DEPTH))
def test_risk_depth_day_without_rows_is_404_naming_day_and_table(
    client: httpx.Client, tokens: dict[str, str], path: str
) -> None:
    what, table = RISK_DEPTH[path]
    r = get(client, path, tokens["alice"])
    assert r.status_code == 404
    assert r.json() == {"detail": f"no {what} for portfolio 1 on 2024-02-02 (no rows in {table})"}
    r = get(client, path, tokens["bob"], as_of="2024-02-01")
    assert r.json() == {"detail": f"no {what} for portfolio 3 on 2024-02-01 (no rows in {table})"}
    r = get(client, path, tokens["alice"], as_of="2024-01-28")  # a Sunday: no snapshot
    assert r.status_code == 404
    assert r.json() == {"detail": "no snapshot for portfolio 1 on 2024-01-28"}


def test_factors_rate_sensitivity_is_null_when_not_computed(
    client: httpx.Client, tokens: dict[str, str]
) -> None:
    assert get(client, "/risk/factors", tokens["alice"]).json()["pnl_usd_per_100bp"] is None


def test_openapi_routes(base_url: str) -> None:
    spec = httpx.get(base_url + "/openapi.json").json()
    paths = set(spec["paths"])
    for route in ("/auth/login", "/portfolio", "/positions", "/risk/greeks", "/risk/factors",
                  "/risk/metrics", "/portfolio/snapshots", "/portfolio/history",
                  "/portfolio/targets", "/tags", *RISK_DEPTH):  # fmt: skip
        assert API_PREFIX + route in paths
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert not any(p.startswith(DOCS_ASSETS_URL) for p in paths)


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(
        r"""url:\s*['"]([^'"]+)['"]""", html
    )


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js": "javascript", "swagger-ui.css": "css"}),
        ("/redoc", {"redoc.standalone.js": "javascript"}),
    ],
)
def test_docs_pages_load_only_local_assets(
    base_url: str, page: str, assets: dict[str, str]
) -> None:
    """/docs and /redoc reference no other host (no CDN, no fonts): they work offline."""
    r = httpx.get(base_url + page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    # ... and the browser may not load anything from elsewhere (ReDoc's footer logo would).
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data:" in csp
    urls = _asset_urls(r.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "http://" not in r.text and "https://" not in r.text
    for name, kind in assets.items():
        url = f"{DOCS_ASSETS_URL}/{name}"
        assert url in urls
        asset = httpx.get(base_url + url)
        assert asset.status_code == 200 and kind in asset.headers["content-type"]
        assert len(asset.content) > 100_000  # the real bundle, not a stub
    assert "/openapi.json" in r.text


def test_every_response_field_is_documented_and_says_its_unit(base_url: str) -> None:
    """Every property of every schema has a description; money names end in _usd and
    fractions in _fraction (a name that looks like money or a ratio must say its unit)."""
    schemas = httpx.get(base_url + "/openapi.json").json()["components"]["schemas"]
    money_words = {"pnl", "value", "exposure", "price", "strike", "var", "cvar"}
    fraction_words = {"volatility", "drawdown", "coverage"}
    unitless_words = {"correlation"}  # avg_pnl_correlation: a correlation of P&L, no unit
    undocumented, unitless = [], []
    for name, schema in schemas.items():
        if name in ("HTTPValidationError", "ValidationError"):  # FastAPI's own, unused here
            continue
        for prop, spec in schema.get("properties", {}).items():
            if not spec.get("description"):
                undocumented.append(f"{name}.{prop}")
            types = {spec.get("type")} | {t.get("type") for t in spec.get("anyOf", [])}
            words = set(prop.split("_"))
            if "number" not in types or words & {"usd", "fraction", *unitless_words}:
                continue
            if words & (money_words | fraction_words):
                unitless.append(f"{name}.{prop}")
    assert undocumented == [] and unitless == []


# ---------------------------------------------------------------------------------------------
# Authorization

PROTECTED = [
    "/portfolio", "/positions", "/risk/greeks", "/risk/factors", "/risk/metrics",
    "/portfolio/snapshots", "/portfolio/history", "/portfolio/targets", "/tags", "/portfolios",
    *RISK_DEPTH,
]  # fmt: skip


def _token(secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    base = {"sub": "1", "username": "alice", "role": "user", "iat": now, "exp": now + 60}
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


@pytest.mark.parametrize("path", PROTECTED)
def test_no_token_is_401(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401
    assert r.json() == {"detail": "not authenticated"}
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Bearer not-a-jwt", "invalid token"),
        (f"Bearer {_token(secret='another-secret-of-enough-length-0123456789')}", "invalid token"),
        (f"Bearer {_token(exp=int(time.time()) - 10)}", "token expired"),
        (f"Bearer {_token(sub='alice')}", "invalid token"),
        (
            f"Bearer {jwt.encode({'sub': '1', 'iat': 1, 'exp': 2**40}, '', algorithm='none')}",
            "invalid token",
        ),
        ("Basic YWxpY2U6YWxpY2UtcHc=", "not authenticated"),
    ],
    ids=["garbage", "wrong-secret", "expired", "bad-subject", "alg-none", "basic"],
)
def test_bad_tokens_are_401(client: httpx.Client, header: str, detail: str) -> None:
    r = client.get("/portfolio", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.json() == {"detail": detail}


def test_token_of_a_deleted_user_is_401(client: httpx.Client) -> None:
    r = get(client, "/portfolio", _token(sub="999"))
    assert r.status_code == 401 and r.json() == {"detail": "user no longer exists"}


@pytest.mark.parametrize("path", [p for p in PROTECTED if p != "/portfolios"])
def test_another_users_portfolio_is_indistinguishable_from_none(
    client: httpx.Client, tokens: dict[str, str], path: str
) -> None:
    theirs = get(client, path, tokens["alice"], portfolio_id=3)
    missing = get(client, path, tokens["alice"], portfolio_id=99999)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json() == {"detail": "portfolio not found"}
    assert get(client, path, tokens["bob"], portfolio_id=1).status_code == 404


def test_admin_reads_every_portfolio(client: httpx.Client, tokens: dict[str, str]) -> None:
    admin = tokens["root"]
    assert get(client, "/portfolio", admin, portfolio_id=3).json()["total_value_usd"] == 5850.0
    assert get(client, "/portfolio", admin).json()["portfolio_id"] == 1  # first of all
    assert [p["id"] for p in get(client, "/portfolios", admin).json()] == [1, 2, 3]
    bobs = get(client, "/tags", admin, portfolio_id=3).json()
    assert [(t["name"], t["color"], t["position_count"]) for t in bobs] == [
        ("momentum", "#AAAAAA", 1)
    ]
    assert get(client, "/tags", admin).json() == []  # the admin's own tags
    assert get(client, "/positions", admin, portfolio_id=3).json()["totals"]["count"] == 2


def test_role_comes_from_the_database(client: httpx.Client) -> None:
    # A forged "admin" claim would need the secret; a genuine token of a user whose role is
    # "user" in the database gets user access even if the claim says otherwise.
    r = get(client, "/portfolio", _token(role="admin"), portfolio_id=3)
    assert r.status_code == 404


# ---------------------------------------------------------------------------------------------
# Validation and errors


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/positions", {"types": "LONG,STOCK"}, "types"),
        ("/positions", {"tagMode": "some"}, "tagMode"),
        ("/positions", {"groupBy": "sector"}, "groupBy"),
        ("/positions", {"tags": "a\x01b"}, "tags"),
        ("/positions", {"tags": "x" * 101}, "tags"),
        ("/risk/greeks", {"view": "everything"}, "view"),
        ("/portfolio", {"portfolio_id": "abc"}, "portfolio_id"),
        ("/portfolio", {"portfolio_id": "0"}, "portfolio_id"),
        ("/portfolio", {"portfolio_id": str(2**31)}, "portfolio_id"),
        ("/portfolio", {"as_of": "yesterday"}, "as_of"),
        ("/portfolio/snapshots", {"start": "2024-02-02", "end": "2024-02-01"}, "start"),
        ("/portfolio/snapshots", {"end": "2024-13-01"}, "end"),
        ("/portfolio/history", {"from": "2024-02-02", "to": "2024-02-01"}, "from"),
        ("/portfolio/history", {"to": "2024-02-30"}, "to"),
        ("/portfolio/targets", {"as_of": "soon"}, "as_of"),
        ("/risk/correlations", {"format": "heatmap"}, "format"),
        ("/risk/concentration", {"top": "0"}, "top"),
        ("/risk/decomposition", {"top": "1001"}, "top"),
        ("/risk/decomposition", {"top": "ten"}, "top"),
        ("/risk/stress", {"worst": "0"}, "worst"),
        ("/risk/volatility", {"as_of": "2024-02-30"}, "as_of"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    client: httpx.Client, tokens: dict[str, str], path: str, params: dict, field: str
) -> None:
    r = get(client, path, tokens["alice"], **params)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert [e["field"] for e in detail] == [field]
    assert all(set(e) == {"field", "loc", "msg", "type"} for e in detail)


@pytest.fixture
def failing_server(db_url: str) -> Iterator[str]:
    """A server whose reader fails inside a query with an error quoting SQL."""

    class Broken(SigmaSightReader):
        def overview(self, portfolio_id: int, as_of: date | None = None) -> Any:
            raise RuntimeError('syntax error at or near "SELECT password_hash FROM users"')

    with running_server(create_app(Broken(database_url=db_url), SECRET)) as url:
        yield url


def test_internal_errors_leak_nothing(failing_server: str) -> None:
    with httpx.Client(base_url=failing_server + API_PREFIX) as c:
        r = get(c, "/portfolio", _token())
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error"}
    assert "SELECT" not in r.text and "Traceback" not in r.text


def test_database_down_is_503(db_url: str) -> None:
    dead = db_url.replace("/sigmasight_api_test_http_", "/no_such_database_")
    with (
        running_server(
            create_app(SigmaSightReader(database_url=dead, pool_timeout_s=0.5), SECRET)
        ) as url,
        httpx.Client(base_url=url + API_PREFIX) as c,
    ):
        r = get(c, "/portfolio", _token())
        assert r.status_code == 503
        assert r.json() == {"detail": "database unavailable"}
        assert "no_such_database" not in r.text


def test_serve_refuses_to_start_without_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGMASIGHT_JWT_SECRET", raising=False)
    with pytest.raises(SystemExit, match="SIGMASIGHT_JWT_SECRET is not set"):
        api.serve("127.0.0.1", 0)
    monkeypatch.setenv("SIGMASIGHT_JWT_SECRET", "short")
    with pytest.raises(SystemExit, match="too short"):
        api.serve("127.0.0.1", 0)
    with pytest.raises(ValueError, match="secret"):
        create_app(SigmaSightReader(), "")


# ---------------------------------------------------------------------------------------------
# Fuzzing


def test_schemathesis_fuzz_no_server_errors(base_url: str, tokens: dict[str, str]) -> None:
    """Positive and negative cases for every operation in the spec, with a valid token (login,
    where each case costs an argon2 verification, with fewer examples)."""
    import schemathesis
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    login = f"{API_PREFIX}/auth/login"
    reads, logins = schema.exclude(path=login), schema.include(path=login)
    headers = auth(tokens["alice"])
    seen: dict[int, int] = {}
    plan = [(reads, 200), (logins, 25)]
    for (part, examples), mode in itertools.product(plan, list(GenerationMode)):

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=part.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=10)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.path, case.query, case.body, response.text)

        check()
    assert all(seen.get(code, 0) > 0 for code in (200, 401, 404, 422)), seen


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    types=st.one_of(st.none(), st.sampled_from(["LONG", "lc,sp", "SHORT,XX", ""]), _text),
    tags=st.one_of(st.none(), st.sampled_from(["tech", "momentum,hedge", "Tech , ,"]), _text),
    tag_mode=st.one_of(st.none(), st.sampled_from(["any", "all"]), _text),
    group_by=st.one_of(st.none(), st.sampled_from(["type", "tag"]), _text),
    portfolio_id=st.one_of(st.none(), st.integers(-5, 2**33), _text),
)
def test_positions_parameters_fuzz(
    client: httpx.Client,
    tokens: dict[str, str],
    types: str | None,
    tags: str | None,
    tag_mode: str | None,
    group_by: str | None,
    portfolio_id: Any,
) -> None:
    params = {
        k: v
        for k, v in {
            "types": types, "tags": tags, "tagMode": tag_mode, "groupBy": group_by,
            "portfolio_id": portfolio_id,
        }.items()
        if v is not None
    }  # fmt: skip
    r = get(client, "/positions", tokens["alice"], **params)
    assert r.status_code in (200, 404, 422), (params, r.text)
    if r.status_code == 422:
        assert all(e["field"] for e in r.json()["detail"])
