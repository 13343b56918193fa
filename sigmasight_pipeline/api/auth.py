"""Routes: `POST /auth/login` (a bearer token for a username and password) and
`GET /portfolios` (the portfolios the caller may read)."""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, field_validator

from sigmasight_pipeline.api.common import (
    API_PREFIX,
    ERRORS,
    CallerDep,
    ReaderDep,
    TokensDep,
    check_text,
    unauthorized,
)
from sigmasight_pipeline.resources.read_api import PortfolioRef

# argon2id verification takes ~0.1 s and 64 MiB: at most one per core at a time, so a burst of
# logins queues (then gets 503) instead of exhausting memory.
LOGIN_SLOTS = max(1, os.cpu_count() or 1)
LOGIN_WAIT_S = 10.0


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
        return check_text(value, info.field_name)


class LoginResponse(BaseModel):
    """PRD 3.5: the token, its lifetime in seconds, and the caller's first portfolio."""

    token: str = Field(description="HS256 JWT: send as `Authorization: Bearer <token>`")
    token_type: Literal["bearer"] = Field(default="bearer", description="always bearer")
    expires_in: int = Field(description="seconds until the token expires")
    portfolio_id: int | None = Field(description="the caller's first portfolio, if any")


def login_slots() -> threading.BoundedSemaphore:
    """The app's login slots (`create_app` puts one on app.state)."""
    return threading.BoundedSemaphore(LOGIN_SLOTS)


router = APIRouter(prefix=API_PREFIX)


@router.post(
    "/auth/login",
    response_model=LoginResponse,
    tags=["auth"],
    responses={401: ERRORS[401], 422: ERRORS[422], 503: ERRORS[503]},
)
def login(
    body: LoginRequest, request: Request, reader: ReaderDep, tokens: TokensDep
) -> LoginResponse:
    """Exchange a username and password for a bearer token (PRD 3.5)."""
    slots: threading.BoundedSemaphore = request.app.state.login_slots
    if not slots.acquire(timeout=LOGIN_WAIT_S):
        raise HTTPException(503, "too many logins at once, retry", {"Retry-After": "1"})
    try:
        user = reader.authenticate(body.username, body.password)
    finally:
        slots.release()
    if user is None:
        raise unauthorized("invalid username or password")
    owned = reader.portfolios_for(user.id, user.role)
    return LoginResponse(
        token=tokens.issue(user.id, user.username, user.role),
        expires_in=tokens.ttl_s,
        portfolio_id=owned[0].id if owned else None,
    )


@router.get(
    "/portfolios",
    response_model=list[PortfolioRef],
    tags=["portfolio"],
    responses={401: ERRORS[401]},
)
def list_portfolios(reader: ReaderDep, who: CallerDep) -> list[PortfolioRef]:
    """The portfolios the caller may read (their own first; all of them for an admin)."""
    access = reader.resolve_portfolio(who.id)
    if not access.user_exists:
        raise unauthorized("user no longer exists")
    return reader.portfolios_for(who.id, access.role or "user")
