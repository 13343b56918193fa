"""Reads shared by a run's steps (run_reads): kept in memory and, while the run runs, on disk."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sigmasight_pipeline import run_reads
from sigmasight_pipeline.run_reads import KEPT_IN_MEMORY, kept_for_run, shared_read


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "trade_date": pd.to_datetime(["2026-11-19", "2026-11-20", "2026-11-20"]),
            "position_id": np.array([1, 2, 3], dtype=np.int32),
            "symbol": ["AAPL", None, "SPY"],
            "exposure": rng.normal(size=3),
            "delta": [1.0, np.nan, 0.25],
        }
    )


class Reads:
    """A read that counts how often it ran."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame, self.count = frame, 0

    def __call__(self) -> pd.DataFrame:
        self.count += 1
        return self.frame.copy()


def test_a_run_reads_each_key_once_and_keeps_it_on_disk_until_it_ends():
    reads = [Reads(_frame(k)) for k in range(KEPT_IN_MEMORY + 2)]
    with kept_for_run("run-a") as folder:
        for key, read in enumerate(reads):
            pd.testing.assert_frame_equal(shared_read("run-a", ("k", key), read), read.frame)
        # The first reads left memory; they come back from disk, exactly, without reading.
        assert len(list(folder.glob("*.arrow"))) == len(reads)
        for key, read in enumerate(reads):
            again = shared_read("run-a", ("k", key), read)
            pd.testing.assert_frame_equal(again, read.frame, check_exact=True)
        assert [r.count for r in reads] == [1] * len(reads)
        # Each caller gets its own copy to change.
        mine = shared_read("run-a", ("k", 0), reads[0])
        mine.loc[0, "exposure"] = 1e9
        assert shared_read("run-a", ("k", 0), reads[0])["exposure"].iloc[0] != 1e9
        # Another run never sees this run's reads.
        other = Reads(_frame(99))
        pd.testing.assert_frame_equal(shared_read("run-b", ("k", 0), other), other.frame)
        assert other.count == 1
    assert not folder.exists()
    assert not [e for e in run_reads._memory if e[0] == "run-a"]
    # After the run, the same key is read again.
    shared_read("run-a", ("k", 0), reads[0])
    assert reads[0].count == 2


def test_two_steps_wanting_the_same_rows_read_them_once():
    started, release = threading.Event(), threading.Event()

    class SlowRead(Reads):
        def __call__(self) -> pd.DataFrame:
            started.set()
            release.wait(5)
            return super().__call__()

    read = SlowRead(_frame(1))
    got: list[pd.DataFrame] = []
    with kept_for_run("run-c"):
        first = threading.Thread(target=lambda: got.append(shared_read("run-c", ("k",), read)))
        first.start()
        started.wait(5)
        second = threading.Thread(target=lambda: got.append(shared_read("run-c", ("k",), read)))
        second.start()
        # Another key is not held up by the read in progress.
        assert shared_read("run-c", ("other",), Reads(_frame(2))).shape == (3, 5)
        release.set()
        first.join(5)
        second.join(5)
    assert read.count == 1 and len(got) == 2


def test_a_frame_arrow_cannot_store_stays_in_memory_only():
    mixed = pd.DataFrame({"value": [1, "one", 2.5]})  # an object column of mixed types
    read = Reads(mixed)
    with kept_for_run("run-d") as folder:
        pd.testing.assert_frame_equal(shared_read("run-d", ("mixed",), read), mixed)
        assert not list(folder.iterdir())
        pd.testing.assert_frame_equal(shared_read("run-d", ("mixed",), read), mixed)
    assert read.count == 1


def test_a_killed_runs_folder_goes_when_the_next_run_starts():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that no longer exists, as a killed run's
    orphan = Path(tempfile.mkdtemp(prefix=f"{run_reads.FOLDER_PREFIX}{gone.pid}-deadbeef-"))
    (orphan / "rows.arrow").write_bytes(b"left behind")
    alive = Path(tempfile.mkdtemp(prefix=f"{run_reads.FOLDER_PREFIX}{os.getpid()}-cafe0000-"))
    try:
        with kept_for_run("run-e") as folder:
            assert folder.name.startswith(f"{run_reads.FOLDER_PREFIX}{os.getpid()}-")
            assert not orphan.exists()
            assert alive.exists()  # a running process's folder is left alone
    finally:
        shutil.rmtree(orphan, ignore_errors=True)
        shutil.rmtree(alive, ignore_errors=True)


def test_without_a_run_every_call_reads():
    read = Reads(_frame(3))
    shared_read(None, ("k",), read)
    shared_read(None, ("k",), read)
    assert read.count == 2


def test_a_run_outside_our_executor_leaves_no_lock_per_read_behind():
    for key in range(5):  # no kept_for_run: only the last reads in memory
        shared_read("run-f", ("k", key), Reads(_frame(key)))
    assert not [e for e in run_reads._locks if e[0] == "run-f"]


@pytest.fixture(autouse=True)
def _forget_reads():
    yield
    with run_reads._guard:
        run_reads._memory.clear()
        run_reads._locks.clear()
