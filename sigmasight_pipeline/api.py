"""The read-only HTTP API (`sigmasight api`): a thin FastAPI layer over `SigmaSightReader`.

Routes (under /api/v1, PRD section 3): `POST /auth/login`, `GET /portfolios`, `GET /portfolio`,
`GET /positions`, `GET /risk/greeks`, `GET /risk/factors`, `GET /risk/metrics`,
`GET /risk/volatility`, `GET /risk/correlations`, `GET /risk/concentration`, `GET /risk/sectors`,
`GET /risk/decomposition`, `GET /risk/stress`, `GET /portfolio/snapshots`, `GET /tags`. OpenAPI
at /openapi.json; Swagger UI at /docs and ReDoc at /redoc, both served with their assets from
this server (no CDN: they work offline).

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
"""

import logging
import os
import threading
import time
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from importlib.resources import files
from typing import Annotated, Any, Literal

import jwt
import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, Field, field_validator

from sigmasight_pipeline.resources.read_api import (
    POSITION_TYPES,
    Concentration,
    CorrelationFormat,
    Correlations,
    FactorExposures,
    Greeks,
    GreeksView,
    GroupBy,
    NoDataError,
    Overview,
    PortfolioRef,
    Positions,
    RiskDecomposition,
    RiskMetrics,
    SectorExposures,
    SigmaSightReader,
    SnapshotHistory,
    StressResults,
    Tag,
    TagMode,
    Volatility,
)

__all__ = ["API_PREFIX", "DOCS_ASSETS_URL", "SECRET_ENV", "create_app", "serve"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
SECRET_ENV = "SIGMASIGHT_JWT_SECRET"
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
JWT_ALGORITHM = "HS256"
DEFAULT_TOKEN_TTL_S = 86400
MAX_PG_INT = 2**31 - 1
MAX_TAG_LENGTH = 100
# argon2id verification takes ~0.1 s and 64 MiB: at most one per core at a time, so a burst of
# logins queues (then gets 503) instead of exhausting memory.
LOGIN_SLOTS = max(1, os.cpu_count() or 1)
LOGIN_WAIT_S = 10.0
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


# ---------------------------------------------------------------------------------------------
# Request and response bodies


def _check_text(value: str, what: str) -> str:
    """Refuse text PostgreSQL or argon2 cannot take: NUL / control characters, lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid UTF-8 text") from None
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


class LoginRequest(BaseModel):
    """PRD 3.5: username and password."""

    username: str = Field(
        min_length=1, max_length=150, examples=["demo_user_1"], description="login name"
    )
    password: str = Field(
        min_length=1, max_length=1024, examples=["demo123"], description="the user's password"
    )

    @field_validator("username", "password")
    @classmethod
    def _text(cls, value: str, info: Any) -> str:
        return _check_text(value, info.field_name)


class LoginResponse(BaseModel):
    """PRD 3.5: the token, its lifetime in seconds, and the caller's first portfolio."""

    token: str = Field(description="HS256 JWT: send as `Authorization: Bearer <token>`")
    token_type: Literal["bearer"] = Field(default="bearer", description="always bearer")
    expires_in: int = Field(description="seconds until the token expires")
    portfolio_id: int | None = Field(description="the caller's first portfolio, if any")


class ErrorBody(BaseModel):
    """Every error but 422."""

    detail: str = Field(description="what went wrong (no internals)")


class FieldError(BaseModel):
    """One invalid parameter: `field` names it, `loc` says where (query, body, ...)."""

    field: str | None = Field(description="the parameter or body field at fault")
    loc: list[str | int] = Field(description="where it is: query, body, ... then the name")
    msg: str = Field(description="what is wrong with it")
    type: str = Field(description="pydantic's error type")


class ValidationErrorBody(BaseModel):
    """422: the parameters that failed validation."""

    detail: list[FieldError] = Field(description="one entry per invalid parameter")


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, invalid or expired token"},
    503: {"model": ErrorBody, "description": "database unavailable (or, login: too busy)"},
    404: {"model": ErrorBody, "description": "no such portfolio for this caller, or no data"},
    422: {"model": ValidationErrorBody, "description": "invalid parameters"},
}


# ---------------------------------------------------------------------------------------------
# Errors


def _field_error(location: str, name: str, message: str) -> RequestValidationError:
    error = {"loc": (location, name), "msg": message, "type": "value_error"}
    return RequestValidationError([error])


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


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


# ---------------------------------------------------------------------------------------------
# Parameters


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    return [v for v in items if v] or None


def _valid_types(value: str | None) -> str | None:
    bad = [t for t in _split(value) or [] if t.upper() not in POSITION_TYPES]
    if bad:
        raise ValueError(f"unknown position type(s) {bad}; expected {list(POSITION_TYPES)}")
    return value


def _valid_tags(value: str | None) -> str | None:
    for item in _split(value) or []:
        _check_text(item, "a tag name")
        if len(item) > MAX_TAG_LENGTH:
            raise ValueError(f"a tag name is at most {MAX_TAG_LENGTH} characters")
    return value


TypesParam = Annotated[
    str | None,
    Query(
        max_length=200,
        description=f"comma-separated position types: {', '.join(POSITION_TYPES)}",
        examples=["LONG,LC"],
    ),
    AfterValidator(_valid_types),
]
TagsParam = Annotated[
    str | None,
    Query(max_length=2000, description="comma-separated tag names", examples=["momentum,tech"]),
    AfterValidator(_valid_tags),
]
PortfolioIdParam = Annotated[
    int | None,
    Query(ge=1, le=MAX_PG_INT, description="default: the caller's first portfolio"),
]
AsOfParam = Annotated[
    date | None,
    Query(description="trading day; default: the portfolio's latest fully materialized day"),
]
TopParam = Annotated[int, Query(ge=1, le=1000, description="how many to list, largest first")]


# ---------------------------------------------------------------------------------------------
# The app


class Caller(BaseModel):
    """The user a valid token names."""

    id: int
    username: str
    role: str


def create_app(
    reader: SigmaSightReader, jwt_secret: str, token_ttl_s: int = DEFAULT_TOKEN_TTL_S
) -> FastAPI:
    """The FastAPI app over `reader`; tokens are signed with `jwt_secret` (HS256)."""
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

    bearer = HTTPBearer(auto_error=False, description="the token from POST /api/v1/auth/login")

    def issue_token(user_id: int, username: str, role: str) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "username": username,
            "role": role,
            "iat": now,
            "exp": now + token_ttl_s,
        }
        return jwt.encode(claims, jwt_secret, algorithm=JWT_ALGORITHM)

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        if credentials is None:
            raise _unauthorized("not authenticated")
        try:
            claims = jwt.decode(
                credentials.credentials,
                jwt_secret,
                algorithms=[JWT_ALGORITHM],
                options={"require": ["exp", "iat", "sub"]},
            )
            return Caller(
                id=int(claims["sub"]),
                username=str(claims.get("username", "")),
                role=str(claims.get("role", "user")),
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired") from None
        except Exception:  # malformed, bad signature, missing claims, non-integer subject
            raise _unauthorized("invalid token") from None

    CallerDep = Annotated[Caller, Depends(caller)]

    def portfolio(who: CallerDep, portfolio_id: PortfolioIdParam = None) -> PortfolioRef:
        access = reader.resolve_portfolio(who.id, portfolio_id)
        if not access.user_exists:
            raise _unauthorized("user no longer exists")
        if access.portfolio is None:
            raise HTTPException(404, "portfolio not found")
        return access.portfolio

    PortfolioDep = Annotated[PortfolioRef, Depends(portfolio)]
    login_slots = threading.BoundedSemaphore(LOGIN_SLOTS)
    router = APIRouter(prefix=API_PREFIX)

    @router.post(
        "/auth/login",
        response_model=LoginResponse,
        tags=["auth"],
        responses={401: ERRORS[401], 422: ERRORS[422], 503: ERRORS[503]},
    )
    def login(body: LoginRequest) -> LoginResponse:
        """Exchange a username and password for a bearer token (PRD 3.5)."""
        if not login_slots.acquire(timeout=LOGIN_WAIT_S):
            raise HTTPException(503, "too many logins at once, retry", {"Retry-After": "1"})
        try:
            user = reader.authenticate(body.username, body.password)
        finally:
            login_slots.release()
        if user is None:
            raise _unauthorized("invalid username or password")
        owned = reader.portfolios_for(user.id, user.role)
        return LoginResponse(
            token=issue_token(user.id, user.username, user.role),
            expires_in=token_ttl_s,
            portfolio_id=owned[0].id if owned else None,
        )

    @router.get(
        "/portfolios",
        response_model=list[PortfolioRef],
        tags=["portfolio"],
        responses={401: ERRORS[401]},
    )
    def list_portfolios(who: CallerDep) -> list[PortfolioRef]:
        """The portfolios the caller may read (their own first; all of them for an admin)."""
        access = reader.resolve_portfolio(who.id)
        if not access.user_exists:
            raise _unauthorized("user no longer exists")
        return reader.portfolios_for(who.id, access.role or "user")

    @router.get("/portfolio", response_model=Overview, tags=["portfolio"], responses=ERRORS)
    def get_overview(p: PortfolioDep, as_of: AsOfParam = None) -> Overview:
        """Total value, long/short/gross/net exposure, both market betas (holdings-based and
        realized), daily/MTD/YTD P&L, counts by type."""
        return reader.overview(p.id, as_of)

    @router.get("/positions", response_model=Positions, tags=["positions"], responses=ERRORS)
    def get_positions(
        p: PortfolioDep,
        types: TypesParam = None,
        tags: TagsParam = None,
        tag_mode: Annotated[
            TagMode, Query(alias="tagMode", description="match any or all of the tags")
        ] = "any",
        group_by: Annotated[GroupBy | None, Query(alias="groupBy")] = None,
        as_of: AsOfParam = None,
    ) -> Positions:
        """Positions with market value, exposure and P&L; filter by type and tags, group."""
        return reader.positions(p.id, as_of, _split(types), _split(tags), tag_mode, group_by)

    @router.get("/risk/greeks", response_model=Greeks, tags=["risk"], responses=ERRORS)
    def get_greeks(
        p: PortfolioDep, view: GreeksView = "portfolio", as_of: AsOfParam = None
    ) -> Greeks:
        """Greeks of the whole portfolio, its longs or its shorts, with the positions'."""
        return reader.greeks(p.id, view, as_of)

    @router.get("/risk/factors", response_model=FactorExposures, tags=["risk"], responses=ERRORS)
    def get_factors(p: PortfolioDep, as_of: AsOfParam = None) -> FactorExposures:
        """Beta (holdings-based; each factor says its method) and dollar exposure to the eight
        factors and Rates, and the linear P&L per +100 bp of long Treasury yields."""
        return reader.factor_exposures(p.id, as_of)

    @router.get("/risk/metrics", response_model=RiskMetrics, tags=["risk"], responses=ERRORS)
    def get_metrics(p: PortfolioDep, as_of: AsOfParam = None) -> RiskMetrics:
        """Realized beta, volatility, Sharpe, Sortino, max drawdown, VaR and CVaR (parametric in
        USD; historical as a fraction and in USD)."""
        return reader.risk_metrics(p.id, as_of)

    @router.get("/risk/volatility", response_model=Volatility, tags=["risk"], responses=ERRORS)
    def get_volatility(p: PortfolioDep, as_of: AsOfParam = None) -> Volatility:
        """Realized (21/63/252 sessions), EWMA, HAR-forecast and ex-ante volatility of the
        portfolio; every name held with its exposure and its own volatility measures."""
        return reader.volatility(p.id, as_of)

    @router.get("/risk/correlations", response_model=Correlations, tags=["risk"], responses=ERRORS)
    def get_correlations(
        p: PortfolioDep,
        form: Annotated[
            CorrelationFormat,
            Query(
                alias="format",
                description="matrix: symbols x symbols (heatmap); pairs: one row per pair",
            ),
        ] = "matrix",
        as_of: AsOfParam = None,
    ) -> Correlations:
        """90-session correlations of the underlyings (matrix or pairs; null where undefined,
        with the reason), clusters at |rho| >= 0.7, average and P&L-weighted correlation and
        the effective number of bets."""
        return reader.correlations(p.id, as_of, form)

    @router.get(
        "/risk/concentration", response_model=Concentration, tags=["risk"], responses=ERRORS
    )
    def get_concentration(
        p: PortfolioDep, top: TopParam = 10, as_of: AsOfParam = None
    ) -> Concentration:
        """HHI, effective N, top-5/top-10 weights and the largest name, with the `top` names."""
        return reader.concentration(p.id, as_of, top)

    @router.get("/risk/sectors", response_model=SectorExposures, tags=["risk"], responses=ERRORS)
    def get_sectors(p: PortfolioDep, as_of: AsOfParam = None) -> SectorExposures:
        """Long, short, gross and net exposure per GICS sector, weights, the S&P 500 weight
        and the active weight."""
        return reader.sector_exposures(p.id, as_of)

    @router.get(
        "/risk/decomposition", response_model=RiskDecomposition, tags=["risk"], responses=ERRORS
    )
    def get_decomposition(
        p: PortfolioDep, top: TopParam = 10, as_of: AsOfParam = None
    ) -> RiskDecomposition:
        """Model variance split into factors and specific risk, and the `top` positions by
        Euler contribution to the model volatility."""
        return reader.risk_decomposition(p.id, as_of, top)

    @router.get("/risk/stress", response_model=StressResults, tags=["risk"], responses=ERRORS)
    def get_stress(
        p: PortfolioDep,
        worst: Annotated[
            int, Query(ge=1, le=100, description="worst positions listed per scenario")
        ] = 3,
        as_of: AsOfParam = None,
    ) -> StressResults:
        """Every stress scenario's P&L (options fully revalued; delta-gamma beside it) with its
        worst positions, and the rate beta and P&L per +100 bp."""
        return reader.stress_results(p.id, as_of, worst)

    @router.get(
        "/portfolio/snapshots", response_model=SnapshotHistory, tags=["portfolio"], responses=ERRORS
    )
    def get_snapshots(
        p: PortfolioDep,
        start: Annotated[date | None, Query(description="first day (default: the first)")] = None,
        end: Annotated[date | None, Query(description="last day (default: the latest)")] = None,
    ) -> SnapshotHistory:
        """Daily snapshots over a date range, for charts."""
        if start is not None and end is not None and start > end:
            raise _field_error("query", "start", "start must not be after end")
        return reader.snapshots(p.id, start, end)

    @router.get("/tags", response_model=list[Tag], tags=["tags"], responses=ERRORS)
    def get_tags(
        who: CallerDep,
        portfolio_id: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_PG_INT,
                description="only the tags used in this portfolio, counting its positions "
                "(default: all the caller's tags, counting their positions in all portfolios)",
            ),
        ] = None,
    ) -> list[Tag]:
        """With `portfolio_id`: the tags used in that portfolio, with how many of its positions
        carry each. Without: the caller's tags (unused ones too), with how many of their
        positions, over all their portfolios, carry each."""
        access = reader.resolve_portfolio(who.id, portfolio_id)
        if not access.user_exists:
            raise _unauthorized("user no longer exists")
        if portfolio_id is None:
            return reader.tags(who.id)
        if access.portfolio is None:
            raise HTTPException(404, "portfolio not found")
        return reader.portfolio_tags(access.portfolio.id)

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
