"""Settings read from the environment, each with its default in one place."""

from __future__ import annotations

import os
from pathlib import Path

from sigmasight_pipeline.resources.database import PROJECT_ROOT

DEFAULT_RISK_FREE_RATE = 0.04
BACKFILL_DAYS = 90


def risk_free_rate() -> float:
    """Annual risk-free rate (decimal), `SIGMASIGHT_RISK_FREE_RATE`, default 4%."""
    return float(os.environ.get("SIGMASIGHT_RISK_FREE_RATE", DEFAULT_RISK_FREE_RATE))


def inbox_dir() -> Path:
    """Folder the CSV sensor watches; processed/ and rejected/ are its siblings."""
    return Path(os.environ.get("SIGMASIGHT_INBOX", PROJECT_ROOT / "data" / "inbox")).resolve()
