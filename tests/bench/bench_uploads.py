"""Benchmark: one file sent as an Upload in parts vs `files.create` of the same bytes, through the gateway.

    python tests/bench/bench_uploads.py [--size-mib 1536] [--part-mib 64] [--rounds 2]

Starts `kontainers dev` in a temporary state dir (its gateway, with the file store in a directory
and the /v1/files limit raised above the size), writes one file of incompressible bytes, then per
round, alternated so disk writeback hits both alike:

- `client.uploads.upload_file_chunked(file=…, part_size=…)` with the openai SDK (parts sent one
  after another, as the SDK does; the time of `complete`, which assembles the File, is printed too);
- `POST /v1/files` of the same file, streamed from disk with aiohttp (the SDK would read it whole).

Prints MiB/s of each, the ratio chunked/files.create, and the gateway's resident memory sampled
every 100 ms during each (start, peak). Asserts nothing about time. Files are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import openai

MIB = 1024 * 1024
sys.path.insert(0, str(Path(__file__).parent))
from bench_files import free_port, process_with, wait_for  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def sampled_rss(pid: int) -> Iterator[list[float]]:
    samples = [rss_mib(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            samples.append(rss_mib(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        samples.append(rss_mib(pid))


def write_source(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as out:
        for start in range(0, size, MIB):
            out.write(block[: min(MIB, size - start)])


async def files_create(base_url: str, key: str, path: Path) -> str:
    async def chunks():
        with path.open("rb") as source:
            while block := source.read(MIB):
                yield block

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        with aiohttp.MultipartWriter("form-data") as form:
            form.append("user_data").set_content_disposition("form-data", name="purpose")
            part = form.append(chunks(), {"Content-Type": "application/octet-stream"})
            part.set_content_disposition("form-data", name="file", filename=path.name)
            async with http.post(f"{base_url}/files", data=form, headers={"Authorization": f"Bearer {key}"}) as resp:
                body = await resp.json()
                assert resp.status == 200, body
                return body["id"]


def chunked(client: openai.OpenAI, path: Path, part_size: int) -> tuple[str, float]:
    """upload_file_chunked, timed by hand around its `complete` (the SDK's own loop otherwise)."""
    upload = client.uploads.create(bytes=path.stat().st_size, filename=path.name,
                                   mime_type="application/octet-stream", purpose="user_data")
    part_ids = []
    with path.open("rb") as source:
        while data := source.read(part_size):
            part_ids.append(client.uploads.parts.create(upload.id, data=data).id)
    started = time.perf_counter()
    done = client.uploads.complete(upload.id, part_ids=part_ids)
    assert done.status == "completed" and done.file is not None
    return done.file.id, time.perf_counter() - started


def report(label: str, size: int, seconds: float, rss: list[float]) -> float:
    rate = size / MIB / seconds
    print(f"  {label:<34} {rate:8.1f} MiB/s ({seconds:6.2f} s)  gateway RSS {rss[0]:.0f} → peak {max(rss):.0f} MiB",
          flush=True)
    return rate


def run(size: int, part_size: int, rounds: int, work: Path) -> None:
    state = work / "dev"
    env = {**os.environ, "KONTAINERS_FILES_MAX_UPLOAD_BYTES": str(2 * size), "KONTAINERS_GATEWAY_LOG_LEVEL": "WARNING",
           "KONTAINERS_SIDECAR_LOG_LEVEL": "WARNING"}
    dev = subprocess.Popen(
        [sys.executable, "-m", "kontainers.cli", "dev", "--state-dir", str(state), "--port", "0",
         # Fake nodes: the sidecars are host processes (no pod network in the figures), and the
         # bench runs beside a real node in use.
         "--fake-nodes",
         "--sidecar-port", str(free_port())],
        env=env, stdout=(work / "dev.out").open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: (state / "env").exists(), "kontainers dev", 300, dev)
        values = {}
        for line in (state / "env").read_text().splitlines():
            name, _, value = line.partition("=")
            values[name] = shlex.split(value)[0]
        base_url, key = values["OPENAI_BASE_URL"], values["OPENAI_API_KEY"]
        gateway_pid = process_with(dev.pid, "gateway")
        source = work / "bench-upload.bin"
        write_source(source, size)
        client = openai.OpenAI(base_url=base_url, api_key=key, timeout=600, max_retries=0)
        print(f"{size // MIB} MiB, parts of {part_size // MIB} MiB, {rounds} rounds "
              f"(openai {openai.__version__}):", flush=True)
        rates: dict[str, list[float]] = {"chunked": [], "files.create": []}
        for _ in range(rounds):
            with sampled_rss(gateway_pid) as rss:
                started = time.perf_counter()
                file_id, completing = chunked(client, source, part_size)
                seconds = time.perf_counter() - started
            rates["chunked"].append(report("uploads (parts + complete)", size, seconds, rss))
            print(f"    of which complete (assembling the File): {completing:.2f} s", flush=True)
            client.files.delete(file_id)
            with sampled_rss(gateway_pid) as rss:
                started = time.perf_counter()
                file_id = asyncio.run(files_create(base_url, key, source))
                seconds = time.perf_counter() - started
            rates["files.create"].append(report("files.create (one multipart body)", size, seconds, rss))
            client.files.delete(file_id)
        c, f = statistics.median(rates["chunked"]), statistics.median(rates["files.create"])
        print(f"  median chunked {c:.1f} MiB/s, files.create {f:.1f} MiB/s, ratio chunked/files.create {c / f:.2f}")
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1536)
    parser.add_argument("--part-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-uploads-") as work:
        run(args.size_mib * MIB, args.part_mib * MIB, args.rounds, Path(work))


if __name__ == "__main__":
    main()
