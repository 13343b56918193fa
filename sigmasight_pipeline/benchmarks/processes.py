"""Commands measured by the long benchmarks: a subprocess run with its process tree's RSS sampled
(killed past a timeout or an RSS limit, its log's tail in the error), the bytecode compile of a
checkout, and a past commit checked out in a temporary git worktree with its own .venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

from sigmasight_pipeline.resources.database import PROJECT_ROOT

SAMPLE_SECONDS = 0.2
TIMEOUT_SECONDS = 3_600  # per command
MB = 1_000_000
LOG_TAIL_LINES = 25
# Not passed to the CLIs: bytecode is cached as usual, and nothing of this process's own
# environment (venv, Python path, Dagster instance, inbox, shard count) leaks into the
# checkout measured.
DROPPED_ENV = (
    "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "VIRTUAL_ENV", "DAGSTER_HOME",
    "SIGMASIGHT_DAGSTER_PG_URL", "SIGMASIGHT_INBOX", "SIGMASIGHT_SHARDS",
)  # fmt: skip

Say = Callable[[str], None]


def print_progress(message: str) -> None:
    print(f"   {message}", flush=True)


class BenchmarkFailure(RuntimeError):
    """A command failed, timed out or went over the RSS limit; the message says which and ends
    with the tail of its output."""


# --- one command, measured ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessCost:
    """Wall time and memory of one command. `peak_tree_rss`: the largest sum of RSS over the
    process and its descendants at one sample; `peak_process_rss`: the largest single process."""

    seconds: float
    peak_tree_rss: int
    peak_process_rss: int
    samples: int


def tree_rss(process: psutil.Process) -> tuple[int, int]:
    """(sum, max) of the RSS of `process` and its descendants now; gone processes count 0."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    total = largest = 0
    for member in members:
        try:
            rss = member.memory_info().rss
        except psutil.NoSuchProcess:  # exited (or a zombie) since the listing
            continue
        total += rss
        largest = max(largest, rss)
    return total, largest


def kill_tree(process: psutil.Process) -> None:
    try:
        members = [*process.children(recursive=True), process]
    except psutil.NoSuchProcess:
        return
    for member in members:
        with suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(members, timeout=10)


def tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no output)"


def run_sampled(
    command: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    timeout: float = TIMEOUT_SECONDS,
    rss_limit: int | None = None,
    stdin_text: str | None = None,
    interval: float = SAMPLE_SECONDS,
) -> ProcessCost:
    """Run `command` (output to `log`), sampling its process tree's RSS every `interval` s.

    BenchmarkFailure when it exits non-zero, runs past `timeout` seconds or its tree goes over
    `rss_limit` bytes (the tree is killed in the last two cases, and on any interruption)."""
    began = time.perf_counter()
    peak_tree = peak_process = samples = 0
    with open(log, "wb") as output:
        process = psutil.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        stopped = None
        try:
            if stdin_text is not None:
                process.stdin.write(stdin_text.encode())
                process.stdin.close()
            while True:
                tree, largest = tree_rss(process)
                samples += 1
                peak_tree, peak_process = max(peak_tree, tree), max(peak_process, largest)
                elapsed = time.perf_counter() - began
                if rss_limit is not None and tree > rss_limit:
                    stopped = f"killed after {elapsed:.0f} s: its process tree reached "
                    stopped += f"{tree / MB:,.0f} MB of RSS (limit {rss_limit / MB:,.0f} MB)"
                    break
                if elapsed > timeout:
                    stopped = f"killed: still running after the {timeout:,.0f} s timeout"
                    break
                try:
                    returncode = process.wait(timeout=interval)
                    break
                except psutil.TimeoutExpired:
                    continue
        finally:
            if process.poll() is None:
                kill_tree(process)
    seconds = time.perf_counter() - began
    name = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command))
    if stopped:
        raise BenchmarkFailure(f"`{name}` {stopped}:\n{tail(log)}")
    if returncode != 0:
        raise BenchmarkFailure(f"`{name}` exited with {returncode}:\n{tail(log)}")
    return ProcessCost(seconds, peak_tree, peak_process, samples)


# --- a checkout and its CLI ----------------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    """A checkout of the pipeline whose CLI is measured: its root and its venv's python."""

    label: str
    root: Path
    python: Path


# Compiles the checkout's package and its venv's packages, as a deployed image would be built.
COMPILE_BYTECODE = (
    "import compileall, sys, sysconfig\n"
    "paths = {sysconfig.get_paths()[k] for k in ('purelib', 'platlib')} | {sys.argv[1]}\n"
    "for path in sorted(paths):\n"
    "    compileall.compile_dir(path, quiet=2, workers=0)\n"
)


def compile_bytecode(checkout: Checkout, say: Say = print_progress) -> None:
    """Write the bytecode of everything the checkout's CLI may import, once, so that no measured
    command spends its time compiling (files that do not compile are skipped)."""
    say(f"{checkout.label}: compiling bytecode (once; later runs find it up to date)")
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    package = checkout.root / "sigmasight_pipeline"
    command = [str(checkout.python), "-c", COMPILE_BYTECODE, str(package)]
    subprocess.run(command, env=env, capture_output=True, check=False)


def uv_executable() -> str:
    """uv: $UV (the Makefile passes its own), else on PATH, else ~/.local/bin/uv."""
    return os.environ.get("UV") or shutil.which("uv") or str(Path.home() / ".local/bin/uv")


@contextmanager
def reference_checkout(commit: str, folder: Path, say: Say = print_progress) -> Iterator[Checkout]:
    """`commit` in a temporary git worktree under `folder` with its own .venv; the worktree
    is removed (and unregistered) on the way out."""
    path = folder / f"reference-{commit}"
    git = ["git", "-C", str(PROJECT_ROOT), "worktree"]
    say(f"git worktree add --detach {path} {commit}")
    done = subprocess.run(
        [*git, "add", "--detach", str(path), commit], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchmarkFailure(f"git worktree add {commit} failed: {done.stderr.strip()}")
    try:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
        }
        say(f"uv sync --frozen in {path}")
        done = subprocess.run(
            [uv_executable(), "sync", "--frozen", "--quiet"],
            cwd=path, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchmarkFailure(
                f"uv sync in the {commit} worktree failed: {done.stderr[-2000:]}"
            )
        checkout = Checkout(f"today's design ({commit})", path, path / ".venv" / "bin" / "python")
        compile_bytecode(checkout, say)
        yield checkout
    finally:
        removed = subprocess.run(
            [*git, "remove", "--force", str(path)], capture_output=True, text=True, check=False
        )
        if removed.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            subprocess.run([*git, "prune"], capture_output=True, check=False)
