"""A folder that stays indexed: `Engine.watch` and `viewfinder watch` under real file operations
(copy in, move, delete), with a tiny random model on real photos."""

import queue
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from viewfinder import Engine
from viewfinder.errors import NotFoundError

from conftest import copy_photos, ctrl_c_works


def _next(reports: queue.Queue, timeout: float = 60.0):
    return reports.get(timeout=timeout)


def test_watch_follows_new_moved_and_deleted_files(tmp_path, photos, tiny_spec):
    spare = copy_photos(photos, tmp_path / "spare", ["coffee.png"])
    folder = copy_photos(photos, tmp_path / "pics", ["chelsea.png", "rocket.jpg"])
    reports: queue.Queue = queue.Queue()
    stop = threading.Event()
    engine = Engine.open(tmp_path / "db", model=tiny_spec, workers=0)
    thread = threading.Thread(
        target=engine.watch, args=(folder, stop), kwargs={"on_report": reports.put, "debounce_ms": 300}
    )
    thread.start()
    try:
        first = _next(reports)
        assert (first.scanned, first.embedded) == (2, 2)

        shutil.copy2(spare / "coffee.png", folder / "coffee.png")
        added = _next(reports)
        assert (added.embedded, added.unchanged) == (1, 2)

        (folder / "trip").mkdir()
        (folder / "rocket.jpg").rename(folder / "trip" / "rocket.jpg")
        moved = _next(reports)
        while moved.moved == 0 and moved.embedded == 0:  # the mkdir alone may come as its own burst
            moved = _next(reports)
        assert (moved.moved, moved.embedded, moved.deleted) == (1, 0, 0)  # a move keeps its vector

        (folder / "chelsea.png").unlink()
        gone = _next(reports)
        assert (gone.deleted, gone.scanned) == (1, 2)
    finally:
        stop.set()
        thread.join(timeout=30)
        engine.close()
    assert not thread.is_alive()
    with Engine.open(tmp_path / "db", workers=0) as eng:
        assert eng.counts()["images"] == 2
        assert eng.image_info(folder / "trip" / "rocket.jpg")["path"].endswith("rocket.jpg")
        assert eng.image_info(folder / "coffee.png")
        with pytest.raises(NotFoundError):
            eng.image_info(folder / "chelsea.png")


@pytest.mark.slow
def test_cli_watch_picks_up_a_new_file_and_stops_on_ctrl_c(tmp_path, photos, tiny_spec):
    folder = copy_photos(photos, tmp_path / "pics", ["chelsea.png"])
    spare = copy_photos(photos, tmp_path / "spare", ["coffee.png"])
    db = str(tmp_path / "db")
    subprocess.run(
        [sys.executable, "-m", "viewfinder", "index", str(folder), "--db", db, "--model", tiny_spec],
        check=True,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "viewfinder", "watch", str(folder), "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_works,
    )
    watchdog = threading.Timer(120, proc.kill)  # a missed event fails the test instead of hanging it
    watchdog.start()
    try:
        assert "0 embedded, 1 unchanged" in proc.stdout.readline()  # the first pass
        shutil.copy2(spare / "coffee.png", folder / "coffee.png")
        line = proc.stdout.readline()
        assert "1 embedded, 1 unchanged" in line and "holds 2 images" in line
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        watchdog.cancel()
    assert proc.returncode == 0 and "stopped; index" in err and "holds 2 images" in err
