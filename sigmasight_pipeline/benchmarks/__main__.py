"""`make bench`: run every benchmark side by side with its reference, write BENCHMARKS.md.

`python -m sigmasight_pipeline.benchmarks [NAME ...]` runs the named benchmarks (default: the
short ones, MODULES) and rewrites BENCHMARKS.md with their sections; with `--update` it replaces
only the named `## NAME` sections of the existing file and keeps the others (`make bench-scale`
runs `--update scale`). Each module's `run()` returns rows: one table, plus a `### title`
sub-table for the rows that carry a `table` key.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from datetime import UTC, datetime

from sigmasight_pipeline.resources.database import PROJECT_ROOT

MODULES = ("greeks", "factors", "backfill", "intake", "daemon", "api", "market_data", "database_io")
LONG_MODULES = ("scale",)  # run only when named (`make bench-scale`)
BENCHMARKS_MD = PROJECT_ROOT / "BENCHMARKS.md"


def _fmt(value) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 0.01 or value == 0:
            return f"{value:.3g}" if abs(value) < 1 else f"{value:,.2f}"
        return f"{value:.2e}"
    return str(value)


def _table(rows: list[dict]) -> list[str]:
    columns = list(dict.fromkeys(k for row in rows for k in row if k != "notes"))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    notes = [f"- {row['benchmark']}: {row['notes']}" for row in rows if row.get("notes")]
    return lines + (["", *notes] if notes else [])


def tables(rows: list[dict]) -> list[str]:
    """Markdown for a module's rows: rows without a `table` key first, then a `### <table>`
    sub-table per distinct `table` value, in order of appearance."""
    groups: dict[str | None, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get("table"), []).append(
            {k: v for k, v in row.items() if k != "table"}
        )
    lines: list[str] = []
    for title, group in sorted(groups.items(), key=lambda item: item[0] is not None):
        if lines:
            lines.append("")
        if title is not None:
            lines += [f"### {title}", ""]
        lines += _table(group)
    return lines


def _header() -> list[str]:
    return [
        "# Benchmarks",
        "",
        f"Produced by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {platform.python_version()}, "
        f"{os.cpu_count()} cores. Each figure is measured side by side with its "
        "reference in the same run; `ratio` = reference time / our time.",
    ]


def split_sections(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """(lines before the first `## ` heading, {name: its section's lines, heading included})."""
    head: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] = head
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        current.append(line)
    return head, sections


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def merge_sections(existing: str, updated: dict[str, list[str]]) -> str:
    """`existing` BENCHMARKS.md text with the `updated` sections replaced (new ones appended)
    and every other section kept as it is."""
    head, sections = split_sections(existing)
    sections.update(updated)
    out = _trimmed(head) or _header()
    for lines in sections.values():
        out += ["", *_trimmed(lines)]
    return "\n".join(out) + "\n"


def _section(name: str, update: bool) -> tuple[list[str], bool]:
    """The `## name` section's lines and whether the benchmark ran without an exception."""
    began = time.perf_counter()
    print(f"== {name}", flush=True)
    lines = [f"## {name}", ""]
    if update:
        stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
        lines += [f"Measured on {stamp} UTC on its own (`--update {name}`).", ""]
    try:
        rows = importlib.import_module(f"sigmasight_pipeline.benchmarks.{name}").run()
    except Exception as exc:  # a failed benchmark is reported, the others still run
        print(f"   failed: {exc}", flush=True)
        return [*lines, f"FAILED: {type(exc).__name__}: {exc}"], False
    print(f"   {len(rows)} rows in {time.perf_counter() - began:.1f} s", flush=True)
    return [*lines, *tables(rows)], True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sigmasight_pipeline.benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "names",
        nargs="*",
        help=f"default: {' '.join(MODULES)}; run only when named: {' '.join(LONG_MODULES)}",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="replace only these sections of the existing BENCHMARKS.md, keep the others",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in MODULES + LONG_MODULES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}")
    selected = args.names or list(MODULES)
    sections, failed = {}, 0
    for name in selected:
        sections[name], ok = _section(name, args.update)
        failed += not ok
    if args.update and BENCHMARKS_MD.exists():
        text = merge_sections(BENCHMARKS_MD.read_text(), sections)
    else:
        text = merge_sections("", sections)
    BENCHMARKS_MD.write_text(text)
    print(f"wrote {BENCHMARKS_MD}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
