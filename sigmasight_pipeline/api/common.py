"""What every route module shares: error bodies, parameters, and the dependencies that give a
route the reader, the caller (from the bearer token) and the portfolio the caller may read.

The dependencies read what `create_app` put on `app.state` (`reader`, `tokens`), so route
modules define plain module-level routers and `create_app` is the one way to build the app.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field

from sigmasight_pipeline.resources.read_api import POSITION_TYPES, PortfolioRef, SigmaSightReader

API_PREFIX = "/api/v1"
JWT_ALGORITHM = "HS256"
MAX_PG_INT = 2**31 - 1
MAX_TAG_LENGTH = 100

# ---------------------------------------------------------------------------------------------
# Error bodies


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


def field_error(location: str, name: str, message: str) -> RequestValidationError:
    """A 422 naming one parameter (`location`: query, body, ...)."""
    error = {"loc": (location, name), "msg": message, "type": "value_error"}
    return RequestValidationError([error])


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def check_text(value: str, what: str) -> str:
    """Refuse text PostgreSQL or argon2 cannot take: NUL / control characters, lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid UTF-8 text") from None
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


# ---------------------------------------------------------------------------------------------
# Parameters


def split(value: str | None) -> list[str] | None:
    """A comma-separated parameter as its non-blank items (None when there are none)."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    return [v for v in items if v] or None


def _valid_types(value: str | None) -> str | None:
    bad = [t for t in split(value) or [] if t.upper() not in POSITION_TYPES]
    if bad:
        raise ValueError(f"unknown position type(s) {bad}; expected {list(POSITION_TYPES)}")
    return value


def _valid_tags(value: str | None) -> str | None:
    for item in split(value) or []:
        check_text(item, "a tag name")
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


def check_range(start: date | None, end: date | None, start_name: str, end_name: str) -> None:
    """422 naming `start_name` when both bounds are given and start is after end."""
    if start is not None and end is not None and start > end:
        raise field_error("query", start_name, f"{start_name} must not be after {end_name}")


# ---------------------------------------------------------------------------------------------
# Dependencies: the reader, the caller, the portfolio


@dataclass(frozen=True)
class Tokens:
    """Signs and checks the bearer tokens (HS256 JWT) with the app's secret."""

    secret: str
    ttl_s: int

    def issue(self, user_id: int, username: str, role: str) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "username": username,
            "role": role,
            "iat": now,
            "exp": now + self.ttl_s,
        }
        return jwt.encode(claims, self.secret, algorithm=JWT_ALGORITHM)

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; jwt's errors for an invalid or expired one."""
        return jwt.decode(
            token,
            self.secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "iat", "sub"]},
        )


class Caller(BaseModel):
    """The user a valid token names."""

    id: int
    username: str
    role: str


# Dependencies that do no I/O are async: FastAPI runs a sync dependency in a worker thread,
# and each hop costs more than their work.
async def reader_of(request: Request) -> SigmaSightReader:
    return request.app.state.reader


async def tokens_of(request: Request) -> Tokens:
    return request.app.state.tokens


ReaderDep = Annotated[SigmaSightReader, Depends(reader_of)]
TokensDep = Annotated[Tokens, Depends(tokens_of)]
bearer = HTTPBearer(auto_error=False, description="the token from POST /api/v1/auth/login")


async def caller(
    tokens: TokensDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller named by the bearer token; 401 when it is missing, invalid or expired."""
    if credentials is None:
        raise unauthorized("not authenticated")
    try:
        claims = tokens.decode(credentials.credentials)
        return Caller(
            id=int(claims["sub"]),
            username=str(claims.get("username", "")),
            role=str(claims.get("role", "user")),
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("token expired") from None
    except Exception:  # malformed, bad signature, missing claims, non-integer subject
        raise unauthorized("invalid token") from None


CallerDep = Annotated[Caller, Depends(caller)]


def portfolio(
    reader: ReaderDep, who: CallerDep, portfolio_id: PortfolioIdParam = None
) -> PortfolioRef:
    """The portfolio the caller may read (`portfolio_id`, default their first); 404 when they
    may not, exactly as for one that does not exist; 401 when the user no longer exists."""
    access = reader.resolve_portfolio(who.id, portfolio_id)
    if not access.user_exists:
        raise unauthorized("user no longer exists")
    if access.portfolio is None:
        raise HTTPException(404, "portfolio not found")
    return access.portfolio


PortfolioDep = Annotated[PortfolioRef, Depends(portfolio)]
