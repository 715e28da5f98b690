"""How long a user waits for the CLI: wall time of whole `viewfinder` processes (imports, model
load, work), for each runtime of `mini`, on the demo sample.

    python benchmarks/bench_cli.py [--runtimes onnx torch] [--repeat 5] [--source DIR]

`--source DIR` runs another checkout's viewfinder package (e.g. a `git worktree` of an older
commit) in this environment, for before/after rows. Rows: text query, image query (both on an
index already built), and indexing the sample from scratch (model caches warm)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], env: dict) -> float:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "viewfinder", *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"viewfinder {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtimes", nargs="+", default=["onnx", "torch"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--source", type=Path, default=ROOT, help="the checkout whose viewfinder package runs")
    ap.add_argument("--sample", type=Path, default=ROOT / "demo-data" / "photos")
    args = ap.parse_args()
    if not args.sample.is_dir():
        sys.path.insert(0, str(ROOT))
        from viewfinder.data.samples import make_sample

        make_sample(args.sample)
    n_images = sum(1 for f in args.sample.rglob("*") if f.is_file())
    query_image = next(f for f in sorted(args.sample.rglob("*")) if f.suffix.lower() in (".jpg", ".png"))
    base_env = {**os.environ, "PYTHONPATH": str(args.source.resolve())}
    print(
        f"viewfinder from {args.source.resolve()}; {os.cpu_count()} CPUs; {n_images} sample images; "
        f"median of {args.repeat}"
    )
    print(f"| runtime | text query | image query | index {n_images} images (images/s) |")
    print("|---|---|---|---|")
    for runtime in args.runtimes:
        env = {**base_env, "VIEWFINDER_RUNTIME": runtime}
        work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
        try:
            run(["index", str(args.sample), "--db", str(work / "warm")], env)  # model caches built
            index_s = statistics.median(
                run(["index", str(args.sample), "--db", str(work / f"db{i}")], env)
                for i in range(max(1, args.repeat // 2))
            )
            db = ["--db", str(work / "warm")]
            text = statistics.median(run(["search", "a cat on a sofa", *db], env) for _ in range(args.repeat))
            image = statistics.median(run(["search", str(query_image), *db], env) for _ in range(args.repeat))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"| {runtime} | {text:.2f} s | {image:.2f} s | {index_s:.1f} s ({n_images / index_s:.1f}) |")


if __name__ == "__main__":
    main()
