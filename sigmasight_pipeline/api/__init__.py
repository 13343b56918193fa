"""The read-only HTTP API (`sigmasight api`): see `app` for the routes, authorization, errors
and units.

Layout: `app` builds the app (`create_app`, the one way to) and serves it (`serve`); `common`
holds what the routes share (error bodies, parameters, the reader / caller / portfolio
dependencies); the routes are grouped by what they serve: `auth` (login, portfolios),
`portfolio_routes` (overview, positions, snapshots, history, targets, tags) and `risk_routes`
(/risk/*).
"""

from sigmasight_pipeline.api.app import (
    DOCS_ASSETS_URL,
    SECRET_ENV,
    create_app,
    jwt_secret_from_env,
    serve,
)
from sigmasight_pipeline.api.common import API_PREFIX

__all__ = [
    "API_PREFIX",
    "DOCS_ASSETS_URL",
    "SECRET_ENV",
    "create_app",
    "jwt_secret_from_env",
    "serve",
]
