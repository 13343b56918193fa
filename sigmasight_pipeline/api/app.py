"""The read-only HTTP API (`sigmasight api`): a thin FastAPI layer over `SigmaSightReader`.

Routes (under /api/v1, PRD section 3): `POST /auth/login`, `GET /portfolios`, `GET /portfolio`,
`GET /positions`, `GET /risk/greeks`, `GET /risk/factors`, `GET /risk/metrics`,
`GET /risk/volatility`, `GET /risk/correlations`, `GET /risk/concentration`, `GET /risk/sectors`,
`GET /risk/decomposition`, `GET /risk/stress`, `GET /portfolio/snapshots`,
`GET /portfolio/history`, `GET /portfolio/targets`, `GET /tags`. OpenAPI at /openapi.json;
Swagger UI at /docs and ReDoc at /redoc, both served with their assets from this server (no CDN:
they work offline).

Every route but login needs `Authorization: Bearer <token>` (HS256 JWT, signed with
`SIGMASIGHT_JWT_SECRET`). Per-portfolio routes take `portfolio_id` (default: the caller's first
portfolio). A user reads only their own portfolios; the admin role reads all. The role is
re-read from the database on every request, so demoting or deleting a user takes effect at once.

Errors are JSON `{"detail": ...}`: 401 for a missing, malformed, badly signed or expired token;
404 for a portfolio the caller may not read, exactly as for one that does not exist; 404 with a
reason when the portfolio has no data for the day; 422 with `detail[].field` naming the
parameter; 503 when the database is unreachable; 500 otherwise. No SQL, no traceback.

Units: money is in US dollars and its field names end in `_usd`; fractions are decimals
(0.05 = 5 %) and their names end in `_fraction`; every window counts NYSE sessions.

Two market betas: `beta_holdings_60d` (the overview and snapshots; the Market factor of
/risk/factors) is the exposure-weighted sum of the positions' 60-session betas on SPY over the
gross value; `beta_realized_60d` (the overview and /risk/metrics) is the 60-session regression
of the portfolio's own daily returns on SPY's.

Holdings change over time: a day's positions are those held on it, with that day's quantity; a
position closed on the day shows once more, with quantity 0 and its realized P&L. Expected
returns to target prices are sign-aware: (target / price - 1) x sign(quantity), so a short whose
target is below the price has a positive expected return.
"""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from sigmasight_pipeline.api import auth, portfolio_routes, risk_routes
from sigmasight_pipeline.api.common import Tokens
from sigmasight_pipeline.resources.read_api import NoDataError, SigmaSightReader

log = logging.getLogger(__name__)

SECRET_ENV = "SIGMASIGHT_JWT_SECRET"
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
DEFAULT_TOKEN_TTL_S = 86400
# Swagger UI and ReDoc bundles shipped by the `fastapi-offline` package (its static folder:
# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png), served here.
DOCS_ASSETS_URL = "/docs-assets"
DOCS_ASSETS_DIR = files("fastapi_offline") / "static"
# The docs pages may load nothing from another origin: the browser refuses, rather than tries
# (ReDoc's sidebar footer would fetch its vendor's logo from a CDN). Inline script and styles
# are the pages' own (FastAPI's HTML, styled-components); ReDoc's search runs in a blob worker.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
# The route groups, in the order the OpenAPI document lists them.
ROUTERS = (auth.router, portfolio_routes.router, risk_routes.router)


# ---------------------------------------------------------------------------------------------
# Errors


def _field_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for error in errors:
        loc = [p if isinstance(p, int) else str(p) for p in error.get("loc", ())]
        names = [p for p in loc if isinstance(p, str) and p not in ("query", "body", "path")]
        message = str(error.get("msg", "invalid value"))
        out.append(
            {
                "field": names[-1] if names else (loc[-1] if loc else None),
                "loc": loc,
                "msg": message.removeprefix("Value error, "),
                "type": str(error.get("type", "value_error")),
            }
        )
    return out


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _field_errors(exc.errors())}, status_code=422)


async def _on_no_data(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _on_database_down(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", exc)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


# ---------------------------------------------------------------------------------------------
# The app


def create_app(
    reader: SigmaSightReader, jwt_secret: str, token_ttl_s: int = DEFAULT_TOKEN_TTL_S
) -> FastAPI:
    """The FastAPI app over `reader`; tokens are signed with `jwt_secret` (HS256). The routes
    (modules `auth`, `portfolio_routes`, `risk_routes`) find the reader and the token signer
    on `app.state`."""
    if not jwt_secret or not jwt_secret.strip():
        raise ValueError("a JWT secret is required")
    if token_ttl_s <= 0:
        raise ValueError("token_ttl_s must be positive")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reader.warm_up()
        yield
        reader.close()

    app = FastAPI(
        title="SigmaSight read API",
        version="1.0.0",
        description=(__doc__ or "").split("\n\n", 1)[1],
        lifespan=lifespan,
        debug=False,
        docs_url=None,
        redoc_url=None,
    )
    _add_docs(app)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(NoDataError, _on_no_data)
    app.add_exception_handler(psycopg.OperationalError, _on_database_down)
    app.add_exception_handler(Exception, _on_error)
    app.state.reader = reader
    app.state.tokens = Tokens(jwt_secret, token_ttl_s)
    app.state.login_slots = auth.login_slots()
    for router in ROUTERS:
        app.include_router(router)
    return app


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc with their assets served from DOCS_ASSETS_URL
    (FastAPI's documented self-hosting pattern), so both work without the internet."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=str(DOCS_ASSETS_DIR)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no call to the online validator
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page


def jwt_secret_from_env() -> str:
    """`SIGMASIGHT_JWT_SECRET`, or SystemExit with what to do when it is missing or short."""
    secret = os.environ.get(SECRET_ENV, "")
    hint = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if not secret.strip():
        raise SystemExit(
            f"{SECRET_ENV} is not set: the API signs its login tokens with it and will not start "
            f"without one; {hint}"
        )
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise SystemExit(
            f"{SECRET_ENV} is too short ({len(secret.encode('utf-8'))} bytes): HS256 needs at "
            f"least {MIN_SECRET_BYTES}; {hint}"
        )
    return secret


def serve(host: str, port: int, access_log: bool = True) -> None:
    """Run the API with uvicorn on host:port; refuses to start without SIGMASIGHT_JWT_SECRET."""
    import uvicorn

    secret = jwt_secret_from_env()
    reader = SigmaSightReader()
    try:
        reader.check()
    except psycopg.Error as exc:
        raise SystemExit(
            f"the database is not ready ({type(exc).__name__}): run `sigmasight demo` or "
            "apply the migrations first"
        ) from None
    app = create_app(reader, secret)
    uvicorn.run(app, host=host, port=port, access_log=access_log, server_header=False)
