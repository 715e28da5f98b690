"""Assemble the demo sample folder of real photos from installed packages.

python scripts/make_sample.py demo-data/photos
"""

from __future__ import annotations

import argparse
from pathlib import Path

from viewfinder.data.samples import make_sample

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    print(f"{make_sample(args.out)} photos in {args.out}")
