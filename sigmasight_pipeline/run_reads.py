"""Reads shared by the steps of a run: what one step read, another step of the same run gets
without asking PostgreSQL again.

A backfill's portfolio steps each go through the book in the same chunks of portfolios, and six
of them start from the same risk rows of each chunk (positions, values and Greeks joined): about
0.3 s to read and join for a chunk of 1,250 positions over 90 sessions, and 240 reads at 1,000
portfolios. The last two reads stay in memory (a daily run's one chunk is read by all six, often
at once). While our executor runs the run (`kept_for_run`), every read is also kept on local disk
as an Arrow IPC file (lz4: about 7 MB and 0.01-0.05 s to read back per chunk), in a directory of
the run's that goes when the run ends (a run killed before it could remove it: when the next
run starts). Keyed by run: a run never sees another's reads, and the
tables a step reads are written by the steps it depends on before it starts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psutil
import pyarrow as pa
from pyarrow import feather

KEPT_IN_MEMORY = 2
FOLDER_PREFIX = "sigmasight-run-"  # then the pid of the run's process
_memory: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
_locks: dict[tuple, threading.Lock] = {}  # one per read: two steps wanting it read it once
_guard = threading.Lock()  # over _memory, _locks and _run_dirs
_run_dirs: dict[str, Path] = {}


def shared_read(run_id: str | None, key: tuple, read: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """`read()`, or with a `run_id` a copy of what this run already read under `key` (each
    caller gets its own copy to change). `read` may itself read through here (another key)."""
    if run_id is None:
        return read()
    entry = (run_id, *key)
    with _guard:
        lock = _locks.setdefault(entry, threading.Lock())
    with lock:
        with _guard:
            frame = _memory.get(entry)
            if frame is not None:
                _memory.move_to_end(entry)
                return frame.copy()
        path = _path_of(run_id, key)
        if path is not None and path.exists():
            frame = feather.read_feather(path)
        else:
            frame = read()
            if path is not None:
                _keep_on_disk(frame, path)
        with _guard:
            _memory[entry] = frame
            while len(_memory) > KEPT_IN_MEMORY:
                _memory.popitem(last=False)
            if run_id not in _run_dirs:  # no run end will forget it: a lock per read is enough
                _locks.pop(entry, None)
        return frame.copy()


@contextmanager
def kept_for_run(run_id: str) -> Iterator[Path]:
    """Keep the run's shared reads on disk (a temporary directory, yielded) while it runs;
    forget all of them, in memory and on disk, when it ends. Folders left by runs whose process
    is gone (killed) are removed first."""
    remove_orphan_folders()
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-{run_id[:8]}-"))
    with _guard:
        _run_dirs[run_id] = folder
    try:
        yield folder
    finally:
        with _guard:
            _run_dirs.pop(run_id, None)
            for entry in [e for e in _memory if e[0] == run_id]:
                del _memory[entry]
            for entry in [e for e in _locks if e[0] == run_id]:
                del _locks[entry]
        shutil.rmtree(folder, ignore_errors=True)


def remove_orphan_folders() -> list[Path]:
    """Remove the run folders in the temporary directory whose process no longer exists (a run
    killed before it could remove its own); the folders removed. The temporary directory must
    be this machine's own (as a run pod's): a pid means nothing on another machine."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        pid = folder.name.removeprefix(FOLDER_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _path_of(run_id: str, key: tuple) -> Path | None:
    with _guard:
        folder = _run_dirs.get(run_id)
    if folder is None:
        return None
    return folder / f"{hashlib.sha256(repr(key).encode()).hexdigest()[:32]}.arrow"


def _keep_on_disk(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` where `shared_read` finds it; a frame Arrow cannot store as it is (mixed
    object columns, an index of its own) stays in memory only."""
    partial = path.with_suffix(".partial")
    try:
        feather.write_feather(frame, partial, compression="lz4")
    except (pa.ArrowException, ValueError, TypeError):
        partial.unlink(missing_ok=True)
        return
    os.replace(partial, path)  # whole or not at all
