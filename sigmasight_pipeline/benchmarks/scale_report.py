"""The scale benchmark's measurements (see `scale.py`) and their rows for BENCHMARKS.md: the main
table (ours by book size, the reference and their ratio, 2 shards vs 1), the bytes per
position-day by table and the steps of our backfill on the largest book; and the stage and step
times read from the CLI's output."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sigmasight_pipeline.benchmarks.processes import MB, ProcessCost
from sigmasight_pipeline.resources.blocks import BLOCKS

TELLING = re.compile(r"error|rejected|failed|killed|exception", re.IGNORECASE)
# `sigmasight backfill` prints, per stage, `<stage> <start>..<end> (<n> sessions): one run` (or
# `<k> shard runs in parallel`), for a one-run stage `  [ 12.3s] <step>: started|done|FAILED`
# lines (seconds since its run began), and at the end one `run <id> succeeded|FAILED: <n>
# sessions in <seconds> s` line per run, stage by stage.
STAGE_LINE = re.compile(
    r"^(?P<stage>\S.*?) \S+\.\.\S+ \((?P<sessions>\d+) sessions\): "
    r"(?:one run|(?P<runs>\d+) shard runs in parallel)$"
)
STEP_LINE = re.compile(r"^\s+\[\s*(?P<at>[\d.]+)s\] (?P<step>\S+): (?P<verb>started|done|FAILED)$")
RUN_LINE = re.compile(r"^run \w+ (?:succeeded|FAILED): \d+ sessions in (?P<seconds>[\d.]+) s$")


@dataclass(frozen=True)
class StageTime:
    """One stage of a backfill as its CLI printed it: the wall seconds of each of its runs
    (several when its shard runs ran in parallel) and of each step that finished (printed for
    one-run stages only)."""

    stage: str
    sessions: int
    run_seconds: tuple[float, ...]
    step_seconds: tuple[tuple[str, float], ...] = ()

    @property
    def seconds(self) -> float:
        """The stage's wall time: its runs ran in parallel."""
        return max(self.run_seconds, default=0.0)


def stage_times(output: str) -> tuple[StageTime, ...]:
    """The stages of a `sigmasight backfill`'s output, with their runs' and steps' seconds (a
    step that failed is named `<step> (FAILED)`); empty when the output has no stage lines."""
    stages: list[tuple[str, int, int]] = []  # (stage, sessions, runs)
    steps: list[dict[str, float]] = []  # per stage: step -> seconds
    started: dict[str, float] = {}
    runs: list[float] = []
    for line in output.splitlines():
        if found := STAGE_LINE.match(line):
            stages.append((found["stage"], int(found["sessions"]), int(found["runs"] or 1)))
            steps.append({})
            started = {}
        elif (found := STEP_LINE.match(line)) and steps:
            at = float(found["at"])
            if found["verb"] == "started":
                started[found["step"]] = at
            elif found["step"] in started:
                step = found["step"] + (" (FAILED)" if found["verb"] == "FAILED" else "")
                steps[-1][step] = at - started.pop(found["step"])
        elif found := RUN_LINE.match(line):
            runs.append(float(found["seconds"]))
    out, first = [], 0
    for (stage, sessions, count), stage_steps in zip(stages, steps, strict=True):
        seconds = tuple(runs[first : first + count])
        out.append(StageTime(stage, sessions, seconds, tuple(stage_steps.items())))
        first += count
    return tuple(out)


def stages_note(stages: tuple[StageTime, ...]) -> str:
    """`stages (wall): market 150 sessions 30.1 s, portfolios 90 sessions 2 runs 80.2 / 79.9 s`"""
    parts = []
    for s in stages:
        runs = " / ".join(f"{seconds:.1f}" for seconds in s.run_seconds) or "?"
        count = f" {len(s.run_seconds)} runs in parallel" if len(s.run_seconds) > 1 else ""
        parts.append(f"{s.stage} {s.sessions} sessions{count} {runs} s")
    return "stages (wall, from the CLI's output): " + ", ".join(parts)


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
    shards: int = 1
    stages: tuple[StageTime, ...] = ()

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
    shards: int = 1


def _label(outcome: Outcome) -> str:
    sharded = f", {outcome.shards} shards" if outcome.shards > 1 else ""
    return f"{outcome.checkout}, {outcome.portfolios:,} portfolios{sharded}"


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
    sharded = f" --shards {m.shards}" if m.shards > 1 else ""
    notes = [
        f"`backfill --days {m.days} --end {m.end}{sharded}`",
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
    if m.stages:
        notes.append(stages_note(m.stages))
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


def _shards_row(single: Outcome, sharded: Outcome) -> dict:
    """`N shards vs 1`: 1-shard figure / N-shard figure, the same book on fresh databases."""
    one, many = single.measurement, sharded.measurement
    row = {"benchmark": f"{sharded.shards} shards vs 1, {single.portfolios:,} portfolios"}
    if one is None or many is None:
        return row | {"wall_s": "n/a", "notes": "one side failed: no ratio"}
    same_rows = "the same" if one.rows_written == many.rows_written else "NOT the same"
    return row | {
        "portfolios": f"{single.portfolios:,}",
        "positions": f"{single.positions:,}",
        "wall_s": f"{one.backfill.seconds / many.backfill.seconds:.2f}x",
        "peak_rss_mb": f"{one.backfill.peak_tree_rss / many.backfill.peak_tree_rss:.2f}x",
        "rows_written": (
            f"{one.rows_written / many.rows_written:.2f}x" if many.rows_written else "n/a"
        ),
        "notes": (
            f"wall-time ratio = 1-shard wall / {sharded.shards}-shard wall (above 1: the shards "
            f"finish sooner); both shards share this machine's {os.cpu_count()} cores, so the "
            "ratio shows the overhead and overlap of sharding, not a cluster's speed-up; rows "
            f"written {one.rows_written:,} with 1 shard, {many.rows_written:,} with "
            f"{sharded.shards} ({same_rows})"
        ),
    }


# Our tables that store what a table of the reference design stored under another name (its
# name is now a view over them): counted with that table's like for like. The blocks tables
# store the tables named as their views (sql/0024); position_exposures stores what the
# reference's position_factor_exposures did (sql/0023).
_VIEW_OF_BLOCKS = {blocks.table: view for view, blocks in BLOCKS.items()}
_REFERENCE_NAMES = {"position_exposures": "position_factor_exposures"}
RENAMED_TABLES = {
    **_REFERENCE_NAMES,
    **{table: _REFERENCE_NAMES.get(view, view) for table, view in _VIEW_OF_BLOCKS.items()},
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
    # Like for like with the reference: our bytes in the tables it has (the tables the issue
    # measured; the later issues' tables are in the total above, not here).
    for reference in (o for o in measured if o.checkout != "ours"):
        kept = set(reference.measurement.tables)
        row = {"table": title, "db_table": f"total of the tables {reference.checkout} has"}
        for o in measured:
            m = o.measurement
            size = sum(b for t, (_, b) in m.tables.items() if RENAMED_TABLES.get(t, t) in kept)
            row[_label(o)] = size / m.position_days
        rows.append(row)
    return rows


def _step_rows(ours: list[Outcome]) -> list[dict]:
    """Seconds per step of our backfill on the largest book measured (one-run stages)."""
    measured = [o for o in ours if o.measurement is not None and o.measurement.stages]
    if not measured:
        return []
    largest = max(measured, key=lambda o: o.portfolios)
    title = (
        f"steps of our backfill on {largest.portfolios:,} portfolios (seconds from start to done "
        "in the CLI's progress lines, 0.5 s resolution)"
    )
    return [
        {"table": title, "stage": stage.stage, "step": step, "seconds": seconds}
        for stage in largest.measurement.stages
        for step, seconds in stage.step_seconds
    ]


def report(outcomes: list[Outcome]) -> list[dict]:
    """Rows for BENCHMARKS.md: the main table (ours by size, the reference and their ratio, N
    shards and N shards vs 1), the per-table sizes and our steps on the largest book."""
    single = [o for o in outcomes if o.shards == 1]
    ours = [o for o in single if o.checkout == "ours"]
    rows = [_main_row(o) for o in ours]
    for reference in (o for o in single if o.checkout != "ours"):
        rows.append(_main_row(reference))
        paired = [o for o in ours if o.portfolios == reference.portfolios]
        if paired:
            rows.append(_ratio_row(reference, paired[0]))
    for sharded in (o for o in outcomes if o.shards > 1):
        rows.append(_main_row(sharded))
        paired = [o for o in ours if o.portfolios == sharded.portfolios]
        if paired:
            rows.append(_shards_row(paired[0], sharded))
    return rows + _per_table_rows(single) + _step_rows(ours)
