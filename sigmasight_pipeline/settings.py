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


DEFAULT_TLT_DURATION = 16.5  # TLT's effective duration in years (roughly 16-17)


def tlt_duration() -> float:
    """Years of duration that turn a yield change into TLT's return (+100 bp -> -16.5 %),
    `SIGMASIGHT_TLT_DURATION`, default 16.5."""
    value = os.environ.get("SIGMASIGHT_TLT_DURATION", str(DEFAULT_TLT_DURATION)).strip()
    try:
        duration = float(value)
    except ValueError as exc:
        raise ValueError(f"SIGMASIGHT_TLT_DURATION={value!r}: expected years, e.g. 16.5") from exc
    if not duration > 0:
        raise ValueError(f"SIGMASIGHT_TLT_DURATION={value!r}: expected a positive number")
    return duration


def stress_scenario_files() -> list[Path]:
    """The scenario library (data/stress_scenarios.yaml) and the files of your own scenarios
    listed in `SIGMASIGHT_STRESS_SCENARIOS` (separated by the OS path separator)."""
    from sigmasight_pipeline.analytics.scenarios import DEFAULT_SCENARIO_FILE

    extra = os.environ.get("SIGMASIGHT_STRESS_SCENARIOS", "").strip()
    return [DEFAULT_SCENARIO_FILE, *(Path(p).expanduser() for p in extra.split(os.pathsep) if p)]


def benchmark_sector_file() -> Path:
    """The dated S&P 500 sector weights, `SIGMASIGHT_BENCHMARK_SECTOR_WEIGHTS`, default
    data/benchmark_sector_weights.csv."""
    from sigmasight_pipeline.analytics.sectors import DEFAULT_BENCHMARK_FILE

    value = os.environ.get("SIGMASIGHT_BENCHMARK_SECTOR_WEIGHTS", "").strip()
    return Path(value).expanduser() if value else DEFAULT_BENCHMARK_FILE
