"""Where the main process of the CUDA indexing path spends its time on phone-size JPEGs, thread by
thread, from py-spy samples (`pip install py-spy`; a static binary that can be copied to a GPU
host): each thread's most frequent innermost Python frames while the path runs (the readers are
other processes and not sampled), then the same with only the thread holding the GIL sampled.

    N=400 REP=40 python benchmarks/profile_gpu_path.py     # PY_SPY=path/to/py-spy if not on PATH

The CUDA path goes over N JPEGs of 4032x3024 REP times; sampling starts 3 s in (after the start)
and lasts SAMPLE_SECONDS (default 10) for each of the two profiles."""

from __future__ import annotations

import collections
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench_gpu import viewfinder_gpu_path

from common import make_jpegs, print_table, random_vit_b_32

RATE = 200  # samples a second


def sample(out: Path, seconds: int, gil: bool) -> None:
    """py-spy on this process for `seconds`, raw (collapsed) stacks by thread into `out`."""
    spy = os.environ.get("PY_SPY", "py-spy")
    cmd = [spy, "record", "--pid", str(os.getpid()), "--threads", "--nonblocking", "--rate", str(RATE)]
    cmd += ["--duration", str(seconds), "--format", "raw", "-o", str(out)]
    subprocess.run(cmd + (["--gil"] if gil else ["--idle"]), check=True, capture_output=True)


def by_thread(raw: Path, top: int = 5) -> tuple[int, list[tuple[str, str, str]]]:
    """(samples, rows of (thread, innermost frame, share of the thread's samples) for its `top`
    frames), from raw py-spy lines "thread (tid): name;frame;...;frame count"."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        name = frames[0].split(": ", 1)[-1] if len(frames) > 1 else frames[0]
        counts[name][frames[-1]] += int(n)
    total = sum(sum(c.values()) for c in counts.values())
    rows = []
    for name, c in sorted(counts.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(c.values())
        rows.append((f"{name} ({n / total:.0%} of the samples)", "", ""))
        rows += [("", frame, f"{k / n:.0%}") for frame, k in c.most_common(top)]
    return total, rows


def main() -> None:
    n, rep = int(os.environ.get("N", 400)), int(os.environ.get("REP", 40))
    seconds = int(os.environ.get("SAMPLE_SECONDS", 10))
    folder = Path(tempfile.mkdtemp())
    make_jpegs(folder, n, [(4032, 3024)])
    files = sorted(folder.iterdir())
    enc = random_vit_b_32(os.environ.get("DEV", "cuda"))
    viewfinder_gpu_path(enc, files[:64], 256, None)  # warm: CUDA context, kernels, nvJPEG
    out = {"idle": folder / "idle.txt", "gil": folder / "gil.txt"}

    def profile() -> None:
        time.sleep(3)
        sample(out["idle"], seconds, gil=False)
        sample(out["gil"], seconds, gil=True)

    spy = threading.Thread(target=profile, name="py-spy")
    spy.start()
    rate, note = viewfinder_gpu_path(enc, files, 256, None, repeat=rep)
    spy.join()
    print(f"CUDA path, {n} JPEGs of 4032x3024 x {rep}: {rate:,.0f}/s after the first batch; {note}")
    for what, title in (("idle", "every thread, waiting or not"), ("gil", "the thread holding the GIL")):
        total, rows = by_thread(out[what])
        instants = f"{total:,} samples (a thread each) of {seconds * RATE:,} instants"
        print_table(
            f"py-spy, {seconds} s at {RATE}/s, {title}: {instants}",
            ("thread", "innermost frame", "share"),
            rows,
        )


if __name__ == "__main__":
    main()
