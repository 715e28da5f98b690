"""Latency of POST /search under concurrent clients, against a real server on 127.0.0.1.

    python benchmarks/bench_api.py [--images 10000] [--clients 8] [--requests 40]
    python benchmarks/bench_api.py --clients 32 --seconds 240 --json out.json   # memory over time

The 10k-image catalogue is written directly (indexing 10k images with mini on 2 cores would take
20 minutes and measure the indexer, not the API): its vectors are mini's real embeddings of the
data-set images (cached tower features through the shipped heads) plus small noise, so text
queries meet the score distribution of a real collection; each entry points at a real photo.
The server runs the real `mini` model: every request encodes its text, searches FAISS, reads the
catalogue and computes confidence and explanations."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

QUERIES = [
    "a dog",
    "a red car",
    "a cup of coffee",
    "flowers in a garden",
    "a rocket",
    "an old coin",
    "a smiling face",
    "a house",
    "a bird",
    "a musical instrument",
    "fruit",
    "a person running",
    "the moon",
    "a boat",
    "a tree",
]


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


ARENA_ALIGN = 64 << 20  # glibc maps each extra malloc arena's heap on a 64 MiB boundary (64-bit)


def process_facts(pid: int) -> tuple[float, int, int]:
    """(resident MiB, threads, malloc arenas besides the main one) of a Linux process: arenas
    counted as anonymous mappings that start on a 64 MiB boundary."""
    threads = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Threads:")
    )
    arenas = 0
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start = int(fields[0].split("-")[0], 16)
        arenas += len(fields) == 5 and start % ARENA_ALIGN == 0  # no path: anonymous
    return rss_mib(pid), threads, arenas


def build_catalogue(db: Path, n: int) -> None:
    from viewfinder import Engine
    from viewfinder.data.samples import make_sample
    from viewfinder.store import NewImage

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_engine import clustered, real_centres

    photos = Path(tempfile.mkdtemp(prefix="vf-api-photos-"))
    make_sample(photos)
    files = sorted(p for p in photos.rglob("*") if p.is_file())
    with Engine.open(db, model="mini") as engine:
        dim = engine.encoder.dim  # binds the model to the catalogue
        centres, _ = real_centres(dim)
        vectors = clustered(centres, n, np.random.default_rng(0), spread=0.3)
        for i in range(0, n, 1000):
            batch = [
                NewImage(f"{files[j % len(files)]}#{j}", 1, 1.0, f"{j:064x}", 100, 100)
                for j in range(i, min(n, i + 1000))
            ]
            engine.store.catalog.write_batch(batch, vectors[i : i + len(batch)])
        engine.store.vectors("images")
        engine.store.checkpoint("images")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=40, help="per client")
    ap.add_argument("--seconds", type=float, help="run the clients this long instead of --requests each")
    ap.add_argument("--json", type=Path, help="also write the figures and the server's memory samples here")
    args = ap.parse_args()
    db = Path(tempfile.mkdtemp(prefix="vf-api-db-"))
    build_catalogue(db, args.images)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "viewfinder", "serve", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        deadline = [float("inf")]

        def client(c: int) -> None:
            r = 0
            while (r < args.requests) if args.seconds is None else time.perf_counter() < deadline[0]:
                r += 1
                body = json.dumps({"query": QUERIES[(c * 7 + r) % len(QUERIES)], "k": 24}).encode()
                req = urllib.request.Request(
                    url + "/search", data=body, headers={"content-type": "application/json"}
                )
                t = time.perf_counter()
                try:
                    with urllib.request.urlopen(req, timeout=60) as resp:
                        hits = json.load(resp)["hits"]
                    ok = len(hits) == 24
                except OSError as exc:
                    ok, hits = False, str(exc)
                with lock:
                    latencies.append(time.perf_counter() - t)
                    if not ok:
                        errors.append(str(hits)[:100])

        warm = args.seconds
        args.seconds = None
        for c in range(2):  # warm-up
            client(c)
        args.seconds = warm
        latencies.clear()
        threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
        started = time.perf_counter()
        deadline[0] = started + (args.seconds or 0)
        memory = [(0.0, *process_facts(server.pid))]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            next(t for t in threads if t.is_alive()).join(
                timeout=10.0 - (time.perf_counter() - started) % 10.0
            )
            memory.append((time.perf_counter() - started, *process_facts(server.pid)))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(10)
    ms = np.array(latencies) * 1000
    print(
        f"\nPOST /search, {args.images:,}-image catalogue, model mini, {args.clients} concurrent clients, "
        f"{len(ms)} requests in {wall:.0f} s, k=24, loopback, {os.cpu_count()} CPU cores"
    )
    print(
        f"p50 {np.percentile(ms, 50):.1f} ms | p95 {np.percentile(ms, 95):.1f} ms | max {ms.max():.1f} ms | "
        f"{len(ms) / wall:.1f} requests/s | errors {len(errors)}"
    )
    print("server RSS (MiB) at seconds: " + ", ".join(f"{t:.0f}s {m:.0f}" for t, m, _, _ in memory))
    print(
        "server threads / malloc arenas at seconds: "
        + ", ".join(f"{t:.0f}s {n}/{a}" for t, _, n, a in memory[:: max(1, len(memory) // 20)])
    )
    if args.json:
        figures = {
            "clients": args.clients,
            "requests": len(ms),
            "seconds": wall,
            "requests_per_s": len(ms) / wall,
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "errors": len(errors),
            "rss_mib": [(t, m) for t, m, _, _ in memory],
            "threads_arenas": [(t, n, a) for t, _, n, a in memory],
        }
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
