"""The inbox's files: which are ready to read, their fingerprints, the stamped names they are
kept under in `processed/` and `rejected/`, moves that never overwrite, and reports written
atomically. The intake (`intake.py`) decides what happens to each file."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sigmasight_pipeline.settings import inbox_dir

__all__ = [
    "ERRORS_SUFFIX",
    "SETTLE_SECONDS",
    "Folders",
    "fingerprint",
    "free_path",
    "is_candidate",
    "move",
    "original_name",
    "ready_files",
    "stamped",
    "write_json",
]

SETTLE_SECONDS = 1.0  # a file modified more recently than this may still be being written
IGNORED_PREFIXES = (".", "~")  # hidden files, editor locks, partial uploads (`.name.csv.part`)
ERRORS_SUFFIX = ".errors.json"
STAMP_PREFIX = re.compile(r"^(?:\d{8}T\d{6}(?:\.\d+)?Z__)+")


@dataclass(frozen=True)
class Folders:
    """The inbox and its sibling folders `processed/` and `rejected/`."""

    inbox: Path
    processed: Path
    rejected: Path

    @classmethod
    def around(cls, inbox: Path | str | None = None) -> Folders:
        """Folders for `inbox` (default: `SIGMASIGHT_INBOX`, see `settings.inbox_dir`)."""
        inbox = Path(inbox).resolve() if inbox is not None else inbox_dir()
        return cls(inbox, inbox.parent / "processed", inbox.parent / "rejected")

    def create(self) -> None:
        for folder in (self.inbox, self.processed, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)


def fingerprint(data: bytes) -> str:
    """The sha256 (hex) of a file's bytes: its identity for idempotency and run keys."""
    return hashlib.sha256(data).hexdigest()


def is_candidate(path: Path) -> bool:
    return path.name.lower().endswith(".csv") and not path.name.startswith(IGNORED_PREFIXES)


def ready_files(
    inbox: Path, settle_seconds: float = SETTLE_SECONDS, now: float | None = None
) -> list[Path]:
    """`*.csv` files in `inbox` not modified in the last `settle_seconds`, oldest first.

    Hidden and temp names (`.x.csv`, `~x.csv`) and non-regular files are ignored.
    """
    if not inbox.is_dir():
        return []
    now = time.time() if now is None else now
    found: list[tuple[float, str, Path]] = []
    for path in inbox.iterdir():
        if not is_candidate(path):
            continue
        try:
            info = path.stat()
        except FileNotFoundError:  # moved away meanwhile
            continue
        if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= settle_seconds:
            found.append((info.st_mtime, path.name, path))
    return [path for *_, path in sorted(found)]


def stamped(name: str, when: datetime | None = None) -> str:
    """`<UTC timestamp>__<name>`, e.g. `20261121T153012.123456Z__alice__Growth.csv`."""
    when = when or datetime.now(UTC)
    return f"{when.strftime('%Y%m%dT%H%M%S.%fZ')}__{name}"


def original_name(name: str) -> str:
    """The name as dropped: a file moved back from processed/ or rejected/ loses its stamp."""
    return STAMP_PREFIX.sub("", name)


def free_path(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/<stem>-N<suffix>` if taken (a file is never overwritten)."""
    path = folder / name
    n = 1
    while path.exists() or Path(f"{path}{ERRORS_SUFFIX}").exists():
        stem, dot, suffix = name.rpartition(".")
        path = folder / (f"{stem}-{n}.{suffix}" if dot else f"{name}-{n}")
        n += 1
    return path


def move(source: Path, destination: Path) -> Path | None:
    """Move `source` to `destination` (a rename within one filesystem); None if it is gone."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        return Path(shutil.move(source, destination))
    except FileNotFoundError:  # another intake moved it first
        return None


def write_json(path: Path, content: dict) -> None:
    """Write atomically: a temp file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(content, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temp, path)
