"""`make bench`: run every benchmark side by side with its reference, write BENCHMARKS.md."""

from __future__ import annotations

import importlib
import platform
import sys
import time
from datetime import UTC, datetime

from sigmasight_pipeline.resources.database import PROJECT_ROOT

MODULES = ("greeks", "factors", "backfill", "intake", "api", "market_data")


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


def main(names: list[str]) -> int:
    selected = names or list(MODULES)
    out = [
        "# Benchmarks",
        "",
        f"Produced by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {platform.python_version()}, "
        f"{__import__('os').cpu_count()} cores. Each figure is measured side by side with its "
        "reference in the same run; `ratio` = reference time / our time.",
    ]
    failed = 0
    for name in selected:
        began = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            rows = importlib.import_module(f"sigmasight_pipeline.benchmarks.{name}").run()
        except Exception as exc:  # a failed benchmark is reported, the others still run
            failed += 1
            out += ["", f"## {name}", "", f"FAILED: {type(exc).__name__}: {exc}"]
            print(f"   failed: {exc}", flush=True)
            continue
        out += ["", f"## {name}", "", *_table(rows)]
        print(f"   {len(rows)} rows in {time.perf_counter() - began:.1f} s", flush=True)
    (PROJECT_ROOT / "BENCHMARKS.md").write_text("\n".join(out) + "\n")
    print(f"wrote {PROJECT_ROOT / 'BENCHMARKS.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
