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


def shards() -> int:
    """Portfolio shards a backfill runs in parallel, `SIGMASIGHT_SHARDS` (default 1)."""
    value = os.environ.get("SIGMASIGHT_SHARDS", "1").strip()
    try:
        count = int(value)
    except ValueError as exc:
        raise ValueError(f"SIGMASIGHT_SHARDS={value!r}: expected a whole number >= 1") from exc
    if count < 1:
        raise ValueError(f"SIGMASIGHT_SHARDS={value!r}: expected a whole number >= 1")
    return count
