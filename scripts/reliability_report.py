"""Run the reliability suite against the real CLI and server with a real model and write
docs/reliability.md from what happened: the bad-input corpus, kill -9 cycles during indexing,
captioning and re-indexing, and the server under load with its memory over time.

    python scripts/reliability_report.py                  # mini; about 30 minutes on 2 cores
    python scripts/reliability_report.py --load /tmp/api_8.json /tmp/api_32.json   # reuse load runs

The load figures come from benchmarks/bench_api.py (--seconds, --json), run here unless given."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from viewfinder.errors import shown_path  # noqa: E402

from chaos import kill_cycles, make_corpus  # noqa: E402


def corpus_rows(model: str, work: Path) -> list[tuple[str, str, str, str]]:
    """Index the corpus with the CLI; per file: expected, what happened, ok."""
    folder = work / "corpus"
    expected = make_corpus(folder)
    proc = subprocess.run(
        [sys.executable, "-m", "viewfinder", "index", str(folder), "--db", str(work / "corpus-db"), "-q"],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        env={**os.environ, "VIEWFINDER_MODEL": model},
    )
    lines = [
        line.removeprefix("skipped ") for line in proc.stderr.splitlines() if line.startswith("skipped ")
    ]
    rows = []
    for name, outcome in expected.items():
        full = shown_path(str(folder / name))
        said = [line for line in lines if line.startswith(full + ":")]
        got = "reported: " + said[0][len(full) + 2 :] if said else "indexed"
        ok = (outcome == "reported") == bool(said) and len(said) <= 1
        rows.append((shown_path(name)[:40], outcome, got[:110], "yes" if ok else "NO"))
    return rows


def kill_rows(model: str, work: Path, photos: Path) -> tuple[list[tuple], dict]:
    sample = sorted(p for p in photos.rglob("*") if p.is_file())
    folder = work / "kill-pics"

    def new_files(i: int) -> None:
        for f in sample:
            dst = folder / f"set{i:02d}" / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(f.read_bytes())

    db = work / "kill-db"
    index = kill_cycles(
        ["index", str(folder), "--model", model, "-q"], db, model, 20, (4.5, 8.5), before_each=new_files
    )
    # windows around a run's commits with the ONNX runtime on 2 cores: an index run of 42 new
    # photos commits at about 6-7 s and ends soon after; a caption pass over 840 images from
    # their stored vectors commits from about 4 s (earlier kills cut runs before any commit)
    caption = kill_cycles(["caption", "-q"], db, model, 5, (3.0, 7.0), seed=2)
    rebuild = kill_cycles(["reindex", "--model", model, "-q"], db, model, 5, (4.0, 30.0), seed=1)
    runs = (("index", index), ("caption", caption), ("reindex (rebuild beside, then switch)", rebuild))
    rows = []
    for what, rep in runs:
        for i, c in enumerate(rep.cycles, 1):
            verdict = "; ".join(c.problems) or "matches"
            ok = "yes" if c.search_ok else "NO"
            cut = "yes" if c.mid_run else "no (it had ended)"
            rows.append((what, i, f"{c.after_seconds:.1f}", cut, c.images, c.captions, verdict, c.lost, ok))
    cycles = [c for _, rep in runs for c in rep.cycles]
    totals = {
        "kills": len(cycles),
        "mid_run": sum(c.mid_run for c in cycles),
        "lost": sum(c.lost for c in cycles),
        "problems": sum(bool(c.problems) for c in cycles),
        "final_images": rebuild.final_images,
        "expected_images": 20 * len(sample),
        "final_problems": index.final_problems + caption.final_problems + rebuild.final_problems,
    }
    return rows, totals


def load_runs(files: list[Path] | None, work: Path) -> list[dict]:
    if not files:
        files = []
        for clients in (8, 32):
            out = work / f"api_{clients}.json"
            subprocess.run(
                [sys.executable, str(ROOT / "benchmarks" / "bench_api.py"), "--clients", str(clients)]
                + ["--seconds", "300", "--json", str(out)],
                check=True,
            )
            files.append(out)
    return [json.loads(f.read_text()) for f in files]


def table(header: tuple, rows: list[tuple]) -> str:
    out = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mini")
    ap.add_argument(
        "--load", type=Path, nargs="*", help="bench_api --json outputs to use instead of running it"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = ap.parse_args()
    from viewfinder.data.samples import make_sample

    work = Path(tempfile.mkdtemp(prefix="vf-reliability-"))
    photos = work / "photos"
    make_sample(photos)
    started = time.time()
    # the code under test is what was checked out when the run began
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    corpus = corpus_rows(args.model, work)
    kills, totals = kill_rows(args.model, work, photos)
    loads = load_runs(args.load, work)
    load_rows = [
        (
            r["clients"],
            r["requests"],
            f"{r['requests_per_s']:.1f}",
            f"{r['p50_ms']:.0f}",
            f"{r['p95_ms']:.0f}",
            r["errors"],
            " → ".join(
                f"{m:.0f}" for _, m in r["rss_mib"][:: max(1, len(r["rss_mib"]) // 8)] + [r["rss_mib"][-1]]
            ),
        )
        for r in loads
    ]
    summary = table(
        ("what", "tried", "survived", "data lost"),
        [
            (
                "bad input files (one line each, good files indexed)",
                len(corpus),
                sum(r[3] == "yes" for r in corpus),
                0,
            ),
            (
                f"kill -9 during index, caption and reindex runs ({totals['mid_run']} cut mid-run)",
                totals["kills"],
                totals["kills"] - totals["problems"],
                f"{totals['lost']} images",
            ),
            (
                "API under load",
                f"{sum(r['requests'] for r in loads)} requests",
                sum(r["requests"] - r["errors"] for r in loads),
                "-",
            ),
        ],
    )
    final = "matching the catalogue" if not totals["final_problems"] else "; ".join(totals["final_problems"])
    load_header = (
        "clients",
        "requests",
        "requests/s",
        "p50 ms",
        "p95 ms",
        "errors",
        "server RSS MiB over the run",
    )
    minutes = f"{time.time() - started:.0f} s"
    doc = f"""# Reliability

Generated by `python scripts/reliability_report.py` (model `{args.model}`, commit
{commit.stdout.strip()}, {time.strftime("%Y-%m-%d")}, {os.cpu_count()} CPU cores, {minutes}).
The same cases run in CI with a tiny model: `tests/test_reliability.py`, `tests/test_api_fuzz.py`.

## Summary

{summary}

After the kills a last run completed the index: {totals["final_images"]} images of
{totals["expected_images"]} files, vector index {final}.

## Bad input

Each file of the corpus (`tests/chaos.py`, written on demand) indexed by `viewfinder index`:
what it should do, what it did (the line it printed), and whether that was right.

{table(("file", "expected", "what happened", "right"), corpus)}

## kill -9

`viewfinder index` (each run given a new set of {len(list(photos.rglob("*.*")))} photos),
`viewfinder caption` and `viewfinder reindex` killed with SIGKILL after a random number of
seconds; after each kill the index is opened and checked: every catalogue vector in the vector
index once and nothing else (`Store.verify`), images and captions committed before the kill still
there ("lost" counts both), a search answers. "mid-run" says whether the run was still going
when the kill came ({totals["mid_run"]} of {totals["kills"]} were).

{table(("run", "kill", "after s", "mid-run", "images", "captions", "vector index", "lost", "search"), kills)}

## Under load

`benchmarks/bench_api.py --clients N --seconds 300`: POST /search on a 10,000-image catalogue,
the server's resident memory (MiB) sampled every 10 s (shown: about every 8th sample and the last).

{table(load_header, load_rows)}
"""
    args.out.write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
