"""Bad input and crashes, made on demand (never committed as binaries): the corpus of files that
break decoders and walkers, and kill -9 cycles against a running `viewfinder` command. Used by
tests/test_reliability.py and scripts/reliability_report.py."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

NON_UTF8 = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not valid UTF-8


def _jpeg(color=(200, 40, 40), size=(64, 48), **save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", **save)
    return buf.getvalue()


def _png(im: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **save)
    return buf.getvalue()


def _lying_png(width: int, height: int) -> bytes:
    """A real PNG whose header claims width x height pixels (a decompression bomb's header)."""
    data = bytearray(_png(Image.new("L", (2, 2))))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def make_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus under `folder`; returns {relative path: "indexed" | "reported"}."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    good: dict[str, bytes] = {
        "plain.jpg": _jpeg(),
        "cmyk.jpg": _cmyk_jpeg(photo),
        "sixteen_bit.png": _png(Image.linear_gradient("L").resize((64, 64)).convert("I;16")),
        "palette_transparent.png": _png(Image.new("P", (32, 32), 1), transparency=1),
        "exif_rotated.jpg": _rotated_jpeg(photo),
        "one_pixel.png": _png(Image.new("RGB", (1, 1), (0, 128, 0))),
        "strip_20000x20.png": _png(Image.new("RGB", (20000, 20), (90, 90, 200))),
        "png_named.jpg": _png(photo),  # wrong extension, real image
        "animated.gif": _animated(photo, "GIF"),
        "animated.webp": _animated(photo, "WEBP"),
        "n" * 200 + ".jpg": _jpeg((10, 200, 10)),  # a very long name
        NON_UTF8: _jpeg((10, 10, 200)),
        "album.jpg/inside.png": _png(photo),  # a folder named like an image
    }
    whole = _jpeg(size=(640, 480), quality=95)
    whole_png = _png(photo)
    bad: dict[str, bytes] = {
        "empty.jpg": b"",
        "html_saved_as.jpg": b"<!doctype html><html><body>404 Not Found</body></html>",
        "bomb_header.png": _lying_png(30000, 30000),
        **{f"truncated_{pct}pct.jpg": whole[: len(whole) * pct // 100] for pct in (5, 50, 90)},
        "truncated_50pct.png": whole_png[: len(whole_png) // 2],
    }
    real_bomb = _openclipart_bomb()
    if real_bomb is not None:  # Debian's openclipart-png holds real ones (scripts/setup.sh installs it)
        bad["openclipart_bomb.png"] = real_bomb.read_bytes()
    for name, data in {**good, **bad}.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (folder / "dangling.jpg").symlink_to(folder / "gone.jpg")
    (folder / "loop_a.jpg").symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / "loop_a.jpg")
    links = {"dangling.jpg": "reported", "loop_a.jpg": "reported", "loop_b.jpg": "reported"}
    return {**dict.fromkeys(good, "indexed"), **dict.fromkeys(bad, "reported"), **links}


def _openclipart_bomb(limit: int = 89_478_485) -> Path | None:
    """The first openclipart PNG whose header declares more pixels than `limit`, read from the
    headers alone; None where the package is not installed."""
    for path in sorted(Path("/usr/share/openclipart/png").rglob("*.png")):
        with open(path, "rb") as fh:
            head = fh.read(24)
        if int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big") > limit:
            return path
    return None


def _cmyk_jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.convert("CMYK").save(buf, "JPEG")
    return buf.getvalue()


def _rotated_jpeg(im: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def _animated(im: Image.Image, fmt: str) -> bytes:
    frames = [im, im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


@dataclass
class KillCycle:
    after_seconds: float
    images: int  # with vectors, after the kill
    problems: list[str]  # Store.verify() after the kill
    lost: int  # images (or captions) committed before this kill and missing after it
    search_ok: bool
    captions: int = 0  # images with a caption, after the kill
    mid_run: bool = True  # False: the run had ended before the kill came (nothing was cut)


@dataclass
class KillReport:
    cycles: list[KillCycle] = field(default_factory=list)
    final_images: int = 0
    final_problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.cycles)


def kill_cycles(
    args: list[str],
    db: Path,
    model: str,
    cycles: int,
    seconds: tuple[float, float],
    before_each: Callable[[int], None] | None = None,
    seed: int = 0,
) -> KillReport:
    """Run `viewfinder ARGS --db DB` and kill -9 it at a random moment, `cycles` times
    (`before_each(i)` may give each run new work); after each kill check the index (it opens, the
    vector index matches the catalogue, a search works, nothing committed before was lost), then
    run it to the end once more."""
    from viewfinder import Engine

    rng = random.Random(seed)
    cmd = [sys.executable, "-m", "viewfinder", *args, "--db", str(db)]
    report, before = KillReport(), set()
    for i in range(cycles):
        if before_each is not None:
            before_each(i)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait = rng.uniform(*seconds)
        time.sleep(wait)
        mid_run = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not (db / "catalog.sqlite").exists():
            continue  # killed before it made the catalogue
        with Engine.open(db, model=model) as engine:
            catalog = engine.store.catalog
            ids = {int(i) for ids, _ in catalog.iter_vectors("images", engine.store.dim or 1) for i in ids}
            captioned = {
                r[0] for r in catalog.conn.execute("SELECT id FROM images WHERE caption IS NOT NULL")
            }
            problems = engine.store.verify()
            search_ok = not ids or bool(engine.search("a photo", k=1).hits)
        kept = {("image", i) for i in ids} | {("caption", i) for i in captioned}
        report.cycles.append(
            KillCycle(wait, len(ids), problems, len(before - kept), search_ok, len(captioned), mid_run)
        )
        before = kept
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
    with Engine.open(db, model=model) as engine:
        report.final_images = engine.counts()["images"]
        report.final_problems = engine.store.verify()
    return report
