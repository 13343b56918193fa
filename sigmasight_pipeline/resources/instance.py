"""The Dagster instance: dagster.yaml on the same PostgreSQL as our tables."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance

from sigmasight_pipeline.resources.database import (
    PROJECT_ROOT,
    database_url,
    migrate,
    sigmasight_home,
)

INSTANCE_YAML = PROJECT_ROOT / "dagster.yaml"


def prepare_environment(url: str | None = None, write_dotenv: bool = True) -> str:
    """Database up and migrated, Dagster pointed at it; returns the database URL.

    Sets DATABASE_URL (so child processes such as `dagster dev` use the same server),
    SIGMASIGHT_DAGSTER_PG_URL (read by dagster.yaml) and DAGSTER_HOME (.sigmasight/dagster, a
    folder holding a link to the checkout's dagster.yaml).
    """
    url = url or database_url()
    migrate(url)
    os.environ["DATABASE_URL"] = url
    # dagster-postgres is written for psycopg2; SQLAlchemy 2.1 would otherwise pick psycopg 3.
    os.environ["SIGMASIGHT_DAGSTER_PG_URL"] = "postgresql+psycopg2://" + url.split("://", 1)[1]
    home = Path(os.environ.get("DAGSTER_HOME") or sigmasight_home() / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    if not link.exists():
        link.symlink_to(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    if write_dotenv and not os.environ.get("SIGMASIGHT_NO_DOTENV"):
        _write_dotenv()
    return url


DOTENV_KEYS = ("DAGSTER_HOME", "SIGMASIGHT_DAGSTER_PG_URL", "DATABASE_URL")


def _write_dotenv() -> None:
    """Write `.env` in the checkout (git-ignored): the plain `dagster` CLI loads it before it
    opens the instance, so `dagster asset materialize ...` run here uses the same instance and
    database as the last `sigmasight` command."""
    lines = [f"{key}={os.environ[key]}" for key in DOTENV_KEYS]
    text = "# written by sigmasight; the dagster CLI reads it\n" + "\n".join(lines) + "\n"
    path = PROJECT_ROOT / ".env"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def dagster_instance() -> DagsterInstance:
    prepare_environment(os.environ.get("DATABASE_URL") or None)
    return DagsterInstance.get()
