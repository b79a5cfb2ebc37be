"""Benchmark: many openai SDK clients at once, each creating, using and deleting containers.

    python tests/bench/bench_sdk_load.py [--clients 50] [--rounds 4] [--file-kib 64]

Starts `kontainers dev` on fake nodes in a temporary state dir; then `--clients` AsyncOpenAI
clients (each its own connection pool, the SDK's default retries and timeouts) run `--rounds`
rounds at the same time, each round:

    containers.create → containers.files.create (upload) → containers.files.list
    → containers.files.content.retrieve (download, compared byte for byte) → containers.delete

Prints, per call, how many ran, the errors (an exception after the SDK's own retries, or a
download that differs) and p50/p90/p99/max latency; and the statuses the gateway answered
(from its /metrics, retries included). Asserts nothing about time; exits 1 on any error.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devstack import DevStack  # noqa: E402

CALLS = ("create", "upload", "list", "download", "delete")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def client_rounds(n: int, base_url: str, key: str, rounds: int, payload: bytes,
                        latencies: dict[str, list[float]], errors: list[str]) -> None:
    async with openai.AsyncOpenAI(base_url=base_url, api_key=key) as client:
        for r in range(rounds):
            step = "create"
            container_id = None
            try:
                started = time.perf_counter()
                container = await client.containers.create(name=f"load-{n}-{r}")
                latencies["create"].append(time.perf_counter() - started)
                container_id = container.id
                if container.status != "running":
                    errors.append(f"client {n} round {r}: create answered status {container.status}")

                step = "upload"
                started = time.perf_counter()
                uploaded = await client.containers.files.create(container_id, file=(f"data-{n}-{r}.bin", payload))
                latencies["upload"].append(time.perf_counter() - started)

                step = "list"
                started = time.perf_counter()
                page = await client.containers.files.list(container_id)
                latencies["list"].append(time.perf_counter() - started)
                if uploaded.id not in {f.id for f in page.data}:
                    errors.append(f"client {n} round {r}: list lacks {uploaded.id}")

                step = "download"
                started = time.perf_counter()
                content = await client.containers.files.content.retrieve(uploaded.id, container_id=container_id)
                body = content.read()
                latencies["download"].append(time.perf_counter() - started)
                if body != payload:
                    errors.append(f"client {n} round {r}: download differs ({len(body)} bytes)")

                step = "delete"
                started = time.perf_counter()
                await client.containers.delete(container_id)
                latencies["delete"].append(time.perf_counter() - started)
            except openai.OpenAIError as error:
                errors.append(f"client {n} round {r}: {step} of {container_id}: {type(error).__name__}: {error}")
                if container_id and step != "delete":
                    try:
                        await client.containers.delete(container_id)
                    except openai.OpenAIError:
                        pass


def gateway_statuses(metrics_url: str | None) -> collections.Counter:
    """kontainers_http_requests_total summed by status code."""
    counts: collections.Counter = collections.Counter()
    if not metrics_url:
        return counts
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith("kontainers_http_requests_total{"):
            status = re.search(r'status="(\d+)"', line)
            if status:
                counts[status.group(1)] += int(float(line.rsplit(" ", 1)[1]))
    return counts


async def load(args: argparse.Namespace, dev: DevStack) -> int:
    payload = os.urandom(args.file_kib * 1024)
    latencies: dict[str, list[float]] = collections.defaultdict(list)
    errors: list[str] = []
    before = gateway_statuses(dev.metrics_url)
    started = time.perf_counter()
    await asyncio.gather(*(client_rounds(n, dev.base_url, dev.api_key, args.rounds, payload, latencies, errors)
                           for n in range(args.clients)))
    wall = time.perf_counter() - started
    after = gateway_statuses(dev.metrics_url)
    print(f"{args.clients} clients × {args.rounds} rounds, {args.file_kib} KiB files, {wall:.0f}s wall; "
          f"errors {len(errors)}")
    print(f"  {'call':<9} {'n':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for call in CALLS:
        values = latencies.get(call, [])
        if values:
            print(f"  {call:<9} {len(values):>5} {statistics.median(values) * 1000:>9.0f} "
                  f"{quantile(values, 0.90) * 1000:>9.0f} {quantile(values, 0.99) * 1000:>9.0f} "
                  f"{max(values) * 1000:>9.0f}")
        else:
            print(f"  {call:<9} {0:>5}")
    answered = {status: after[status] - before[status] for status in after if after[status] != before[status]}
    print(f"  gateway answers by status (SDK retries included): {dict(sorted(answered.items()))}")
    for line in errors[:30]:
        print(f"  error: {line}")
    return 1 if errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--file-kib", type=int, default=64, help="size of each uploaded file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sdk-load-") as work:
        with DevStack(Path(work)) as dev:
            sys.exit(asyncio.run(load(args, dev)))


if __name__ == "__main__":
    main()
