"""Benchmark: latency and throughput of the read API over HTTP with 100 portfolios loaded.

Run with ``uv run python -m sigmasight_pipeline.benchmarks.api``. It creates a throwaway
database on the project's server (embedded or DATABASE_URL), loads 50 users x 2 portfolios of
50 positions each (20 long, 15 short, 15 options: the PRD's sample shape) over 90 NYSE sessions,
with every table the routes read (the risk-depth tables of issue 11 too: a 35 x 35 correlation
matrix, 20 stress scenarios with every position's P&L; issue 12's position events, equity
changes and target prices), all by set-based SQL, starts the real
server (`api.serve`, uvicorn in a subprocess on a free 127.0.0.1 port), logs every user in over
HTTP, then per route measures:

- p50 / p99 latency of sequential requests (one keep-alive client, rotating over the 100
  portfolios with their owners' tokens), after a short warm-up;
- requests per second with CONCURRENCY clients in threads.

Each phase is bounded in requests and seconds. The database is dropped at the end.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import psycopg

from sigmasight_pipeline.benchmarks.api_book import PASSWORD, load_book
from sigmasight_pipeline.resources.database import (
    create_database,
    database_url,
    drop_database,
    migrate,
)
from sigmasight_pipeline.resources.read_api import SigmaSightReader

POOL_SIZE = SigmaSightReader.model_fields["pool_size"].default

WARMUP = 20
SEQUENTIAL = 300
CONCURRENT = 400
CONCURRENCY = 4
PHASE_SECONDS = 15.0
LOGINS = 50  # one per user (argon2 verification: the slow route by design)

ROUTES: list[tuple[str, str, dict[str, str]]] = [
    ("GET /portfolio (overview)", "/portfolio", {}),
    ("GET /positions", "/positions", {}),
    ("GET /positions?groupBy=tag&tags=momentum,hedge", "/positions",
     {"groupBy": "tag", "tags": "momentum,hedge", "tagMode": "any"}),
    ("GET /positions?types=LC,SC&groupBy=type", "/positions",
     {"types": "LC,SC", "groupBy": "type"}),
    ("GET /risk/greeks?view=longs", "/risk/greeks", {"view": "longs"}),
    ("GET /risk/factors", "/risk/factors", {}),
    ("GET /risk/metrics", "/risk/metrics", {}),
    ("GET /portfolio/snapshots (90 days)", "/portfolio/snapshots", {}),
    ("GET /tags?portfolio_id (that portfolio's tags)", "/tags", {}),
    ("GET /risk/volatility (35 names)", "/risk/volatility", {}),
    ("GET /risk/correlations (35 x 35 matrix)", "/risk/correlations", {}),
    ("GET /risk/correlations?format=pairs (595 pairs)", "/risk/correlations",
     {"format": "pairs"}),
    ("GET /risk/concentration (top 10)", "/risk/concentration", {}),
    ("GET /risk/sectors", "/risk/sectors", {}),
    ("GET /risk/decomposition (top 10 of 50)", "/risk/decomposition", {}),
    ("GET /risk/stress (20 scenarios, worst 3 each)", "/risk/stress", {}),
    ("GET /portfolio/history (60 events, 10 flows)", "/portfolio/history", {}),
    ("GET /portfolio/history?from (last 31 sessions)", "/portfolio/history",
     {"from": "2024-05-15"}),
    ("GET /portfolio/targets (34 of 50 with targets)", "/portfolio/targets", {}),
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(url: str, port: int, log_file: Any) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SIGMASIGHT_JWT_SECRET": secrets.token_urlsafe(48),
    }
    code = (
        f"from sigmasight_pipeline.api import serve; serve('127.0.0.1', {port}, access_log=False)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=log_file, stderr=subprocess.STDOUT
    )


def _wait_ready(base: str, server: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API server exited with {server.returncode}")
        try:
            if httpx.get(base + "/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API server did not start in time")


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples_s) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _sequential(call: Callable[[httpx.Client, int], httpx.Response], client: httpx.Client,
                count: int) -> list[float]:  # fmt: skip
    for i in range(WARMUP):
        call(client, i)
    samples = []
    deadline = time.monotonic() + PHASE_SECONDS
    for i in range(count):
        start = time.perf_counter()
        response = call(client, i)
        samples.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        if time.monotonic() > deadline:
            break
    return samples


def _throughput(base: str, call: Callable[[httpx.Client, int], httpx.Response]) -> float:
    """Requests per second with CONCURRENCY clients sharing CONCURRENT requests."""
    done = [0] * CONCURRENCY
    errors: list[str] = []
    deadline = time.monotonic() + PHASE_SECONDS

    def worker(w: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(w, CONCURRENT, CONCURRENCY):
                response = call(client, i)
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}")
                    return
                done[w] += 1
                if time.monotonic() > deadline:
                    return

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(CONCURRENCY)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"throughput phase failed: {errors[0]}")
    return sum(done) / elapsed


def _login_all(
    client: httpx.Client, usernames: dict[int, str]
) -> tuple[dict[int, str], list[float]]:
    """Log every bench user in over HTTP: their tokens and the login latencies."""
    tokens: dict[int, str] = {}
    samples = []
    for user_id, username in sorted(usernames.items())[:LOGINS]:
        start = time.perf_counter()
        r = client.post("/auth/login", json={"username": username, "password": PASSWORD})
        samples.append(time.perf_counter() - start)
        r.raise_for_status()
        tokens[user_id] = r.json()["token"]
    return tokens, samples


def run() -> list[dict]:
    """Load 100 portfolios, start the API, measure every route; one row per route."""
    server_url = database_url()
    name = f"sigmasight_api_bench_{os.getpid()}"
    drop_database(server_url, name)
    url = create_database(server_url, name)
    rows: list[dict] = []
    server: subprocess.Popen | None = None
    try:
        migrate(url)
        load_start = time.perf_counter()
        counts = load_book(url)
        load_s = time.perf_counter() - load_start
        with psycopg.connect(url) as conn:
            owners = dict(conn.execute("SELECT id, owner_id FROM sigmasight.portfolios").fetchall())
            usernames = dict(conn.execute("SELECT id, username FROM sigmasight.users").fetchall())
        portfolio_ids = sorted(owners)
        setup = (
            f"Setup: {', '.join(f'{v:,} {k}' for k, v in counts.items())} loaded by SQL in "
            f"{load_s:.1f} s; one uvicorn process (uvloop, httptools; access log off; "
            f"psycopg_pool of {POOL_SIZE} connections) in a "
            f"subprocess on 127.0.0.1; client, server and PostgreSQL share {os.cpu_count()} "
            "cores. "
        )

        port = _free_port()
        base = f"http://127.0.0.1:{port}/api/v1"
        with tempfile.TemporaryFile() as log_file:
            server = _start_server(url, port, log_file)
            _wait_ready(f"http://127.0.0.1:{port}", server)
            with httpx.Client(base_url=base, timeout=30) as client:
                tokens, login_samples = _login_all(client, usernames)
                for label, path, params in ROUTES:

                    def call(c: httpx.Client, i: int, path: str = path, params: dict = params):
                        pid = portfolio_ids[i % len(portfolio_ids)]
                        headers = {"Authorization": f"Bearer {tokens[owners[pid]]}"}
                        query = {**params, "portfolio_id": str(pid)}
                        return c.get(path, params=query, headers=headers)

                    samples = _sequential(call, client, SEQUENTIAL)
                    p50, p99 = _percentiles(samples)
                    rows.append(
                        {
                            "benchmark": f"API {label}",
                            "p50_ms": p50,
                            "p99_ms": p99,
                            "rps": _throughput(base, call),
                            "notes": ("" if rows else setup)
                            + f"{len(samples)} sequential requests (after {WARMUP} warm-up) "
                            f"over {len(portfolio_ids)} portfolios, each with its owner's token; "
                            f"rps with {CONCURRENCY} concurrent clients",
                        }
                    )
            p50, p99 = _percentiles(login_samples)
            rows.append(
                {
                    "benchmark": "API POST /auth/login",
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "rps": len(login_samples) / sum(login_samples),
                    "notes": f"{len(login_samples)} sequential logins; argon2id verification "
                    "(m=64 MiB, t=3) dominates by design; rps sequential",
                }
            )
            server.terminate()
            server.wait(timeout=20)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait(timeout=20)
        drop_database(server_url, name)
    return rows


def main() -> None:
    for row in run():
        print(
            f"{row['benchmark']}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
            f"{row['rps']:,.0f} req/s"
        )
        print(f"    {row['notes']}")


if __name__ == "__main__":
    main()
