"""The scale benchmark's measurements (see `scale.py`) and their rows for BENCHMARKS.md: the main
table (ours by book size, the reference and their ratio) and the bytes per position-day by
table."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sigmasight_pipeline.benchmarks.processes import MB, ProcessCost

TELLING = re.compile(r"error|rejected|failed|killed|exception", re.IGNORECASE)


@dataclass(frozen=True)
class Measurement:
    """One checkout's backfill of one book (and, when measured, the daily run after it)."""

    checkout: str
    portfolios: int
    positions: int
    days: int
    end: str
    setup_seconds: float
    backfill: ProcessCost
    rows_written: int
    tables: dict[str, tuple[int, int]]  # after the backfill: (rows, bytes)
    daily: ProcessCost | None = None
    daily_rows_written: int | None = None
    daily_end: str | None = None

    @property
    def position_days(self) -> int:
        return self.positions * self.days

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.tables.values())

    @property
    def bytes_per_position_day(self) -> float:
        return self.total_bytes / self.position_days


@dataclass(frozen=True)
class Outcome:
    """A measurement, or why there is none."""

    checkout: str
    portfolios: int
    positions: int
    measurement: Measurement | None = None
    error: str | None = None


def _label(outcome: Outcome) -> str:
    return f"{outcome.checkout}, {outcome.portfolios:,} portfolios"


def _reason(error: str) -> str:
    """One line for a failure: its first line and the last line of the output that tells what
    went wrong (an error, a rejection, a kill), else its last line."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else "unknown error"
    telling = [line for line in lines[1:] if TELLING.search(line)]
    return f"{lines[0]} ... {(telling or lines)[-1]}"


def _main_row(outcome: Outcome) -> dict:
    row = {
        "benchmark": _label(outcome),
        "portfolios": f"{outcome.portfolios:,}",
        "positions": f"{outcome.positions:,}",
    }
    m = outcome.measurement
    if m is None:
        return row | {"wall_s": "FAILED", "notes": f"FAILED: {_reason(outcome.error or '')}"}
    notes = [
        f"`backfill --days {m.days} --end {m.end}`",
        f"peak RSS of the largest single process {m.backfill.peak_process_rss / MB:,.0f} MB",
        f"sigmasight schema {m.total_bytes / MB:,.1f} MB after the backfill",
        f"setup (users, ingest) {m.setup_seconds:.0f} s",
    ]
    if m.daily is not None:
        notes.append(
            f"daily run (`backfill --days 1 --end {m.daily_end}` after the backfill): "
            f"{m.daily.seconds:.1f} s wall, peak RSS {m.daily.peak_tree_rss / MB:,.0f} MB, "
            f"{m.daily_rows_written:,} rows written"
        )
    return row | {
        "wall_s": m.backfill.seconds,
        "peak_rss_mb": m.backfill.peak_tree_rss / MB,
        "rows_written": f"{m.rows_written:,}",
        "bytes_per_position_day": m.bytes_per_position_day,
        "notes": "; ".join(notes),
    }


def _ratio_row(reference: Outcome, ours: Outcome) -> dict:
    r, o = reference.measurement, ours.measurement
    row = {"benchmark": f"ratio {reference.checkout} / ours, {ours.portfolios:,} portfolios"}
    if r is None or o is None:
        return row | {"wall_s": "n/a", "notes": "one side failed: no ratio"}
    return row | {
        "portfolios": f"{ours.portfolios:,}",
        "positions": f"{ours.positions:,}",
        "wall_s": f"{r.backfill.seconds / o.backfill.seconds:.2f}x",
        "peak_rss_mb": f"{r.backfill.peak_tree_rss / o.backfill.peak_tree_rss:.2f}x",
        "rows_written": f"{r.rows_written / o.rows_written:.2f}x" if o.rows_written else "n/a",
        "bytes_per_position_day": f"{r.bytes_per_position_day / o.bytes_per_position_day:.2f}x",
    }


def _per_table_rows(outcomes: list[Outcome]) -> list[dict]:
    """Bytes per position-day by table: one row per table, one column per measurement."""
    measured = [o for o in outcomes if o.measurement is not None]
    measured.sort(key=lambda o: o.checkout != "ours")  # ours first, as in the main table
    if not measured:
        return []
    title = "bytes per position-day by table (after the backfill; heap, TOAST and indexes)"
    names = sorted(
        {t for o in measured for t in o.measurement.tables},
        key=lambda t: -max(o.measurement.tables.get(t, (0, 0))[1] for o in measured),
    )
    rows = []
    for table in [*names, "total"]:
        row: dict = {"table": title, "db_table": table}
        for o in measured:
            m = o.measurement
            size = m.total_bytes if table == "total" else m.tables.get(table, (0, 0))[1]
            row[_label(o)] = size / m.position_days if table == "total" or table in m.tables else ""
        rows.append(row)
    return rows


def report(outcomes: list[Outcome]) -> list[dict]:
    """Rows for BENCHMARKS.md: the main table (ours by size, the reference, their ratio) and the
    per-table sizes."""
    ours = [o for o in outcomes if o.checkout == "ours"]
    others = [o for o in outcomes if o.checkout != "ours"]
    rows = [_main_row(o) for o in ours]
    for reference in others:
        rows.append(_main_row(reference))
        paired = [o for o in ours if o.portfolios == reference.portfolios]
        if paired:
            rows.append(_ratio_row(reference, paired[0]))
    return rows + _per_table_rows(outcomes)
