"""What the memory that a phone photo's bytes lie in costs the GPU path: the readers' own work per
file (one process alone, then 14 at once), and nvJPEG's rate in calls of one reader batch whose
bytes lie in ordinary, page-locked or shared memory (shared: handed over by reader processes as
the pipeline did until 2026-11-27, first touched by the decode call, or touched before it; or in
the pipeline's read slots, written for the first time, reused, or reused and page-locked).

    python benchmarks/bench_jpeg_memory.py            # the nvJPEG rows need a CUDA GPU

On a CPU machine only the first table is printed."""

from __future__ import annotations

import io
import os
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import torch
import torch.utils.data as tud

from common import _one_photo, file_stats, file_tensor, make_jpegs, print_table

CALL = 25  # JPEGs a decode call gets from one reader batch of phone photos (128 MB less the Pillow share)
WORKS = (
    "decode_for_model (draft + resize)",
    "Pillow draft decode",
    "read_jpegs, ordinary",
    "read_jpegs, shared",
    "read_jpegs, a reused read slot",
    "BLAKE3",
)


def per_file_ms(args: tuple[str, str, int]) -> float:
    """Milliseconds of `what` on the photo at `path`, averaged over `n` runs, in this process."""
    path, what, n = args
    import blake3
    from PIL import Image
    from torchvision import transforms as T

    from viewfinder.ingest.gpu_decode import read_jpegs, shared_bytes
    from viewfinder.ingest.prepare import decode_for_model
    from viewfinder.ingest.read_slots import ReadSlots
    from viewfinder.ingest.walk import FileStat

    torch.set_num_threads(1)
    transform = T.Compose(
        [T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.PILToTensor()]
    )
    st = os.stat(path)
    f, data = FileStat(path, st.st_size, st.st_mtime), Path(path).read_bytes()
    slots = ReadSlots(1, f.size)
    t = time.perf_counter()
    for _ in range(n):
        if what == WORKS[0]:
            decode_for_model(f, transform, 10**9)
        elif what == WORKS[1]:
            im = Image.open(io.BytesIO(data))
            im.draft("RGB", (448, 448))
            im.load()
        elif what == WORKS[2]:
            read_jpegs([f], 10**9)
        elif what == WORKS[3]:
            read_jpegs([f], 10**9, shared_bytes(f.size))
        elif what == WORKS[4]:
            read_jpegs([f], 10**9, slots.view(0, f.size))
        else:
            blake3.blake3(data).hexdigest()
    return (time.perf_counter() - t) / n * 1000


class _Read(tud.Dataset):
    """Reader batches as the pipeline's reader processes make them: the bytes in fresh shared
    memory (item: (buffer, spans)), or in a free slot of `slots` (item: (slot, spans))."""

    def __init__(self, groups: list, slots=None) -> None:
        self.groups, self.slots = groups, slots

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int):
        from viewfinder.ingest.gpu_decode import jpeg_bytes, read_jpegs, shared_bytes

        nbytes = jpeg_bytes(self.groups[i])
        if self.slots is None:
            buf, spans, *_ = read_jpegs(self.groups[i], 10**9, shared_bytes(nbytes))
            return buf, spans
        slot = self.slots.take()
        _, spans, *_ = read_jpegs(self.groups[i], 10**9, self.slots.view(slot, nbytes))
        return slot, spans


def _as_is(x):
    return x


def nvjpeg_rows(folder: Path) -> list[tuple[str, str, str]]:
    from torchvision.io import ImageReadMode, decode_jpeg

    torch.multiprocessing.set_sharing_strategy("file_system")  # as the pipeline (gpu_decode.device_setup)
    files = make_jpegs(folder, 16 * CALL, [(4032, 3024)])
    stats = file_stats(files)
    groups = [stats[i : i + CALL] for i in range(0, len(stats), CALL)]

    def decode(jpegs: list):
        return decode_jpeg(jpegs, mode=ImageReadMode.RGB, device="cuda", apply_exif_orientation=False)

    decode([file_tensor(files[0])])
    torch.cuda.synchronize()
    rows = []

    def timed(calls: list, name: str, note: str = "") -> None:
        torch.cuda.synchronize()
        t = time.perf_counter()
        for jpegs in calls:
            decode(jpegs)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t
        rows.append(
            (
                name,
                f"{len(calls) * CALL / elapsed:,.0f}",
                f"{elapsed / len(calls) * 1000:.1f} ms a call{note}",
            )
        )

    def from_readers(slots=None) -> list:
        return list(tud.DataLoader(_Read(groups, slots), batch_size=None, collate_fn=_as_is, num_workers=4))

    for rep in ("", " (again)"):
        ordinary = [[file_tensor(f.path) for f in g] for g in groups]
        timed(ordinary, f"ordinary memory{rep}")
        timed([[t.pin_memory() for t in g] for g in ordinary], f"page-locked memory{rep}")
        got = from_readers()
        timed([[buf[a:b] for a, b in spans] for buf, spans in got], f"shared, from reader processes{rep}")
        got = from_readers()
        t = time.perf_counter()
        sum(int(buf[::4096].sum()) for buf, _ in got)  # a byte of every page
        touch = (time.perf_counter() - t) / len(got) * 1000
        timed(
            [[buf[a:b] for a, b in spans] for buf, spans in got],
            f"shared, from reader processes, every page touched before{rep}",
            f" (touching: {touch:.1f} ms a batch)",
        )
    from viewfinder.ingest.gpu_decode import jpeg_bytes
    from viewfinder.ingest.read_slots import ReadSlots

    # a slot for every batch (as many as a run's readers, queues and decoders hold at once)
    slots = ReadSlots(len(groups), max(jpeg_bytes(g) for g in groups))

    def in_slots(name: str) -> None:
        got = from_readers(slots)
        timed([[slots.view(k, slots.size)[a:b] for a, b in spans] for k, spans in got], name)
        for k, _ in got:
            slots.give_back(k)

    in_slots("read slots, first written")
    in_slots("read slots, reused")
    whole = slots.view(0, slots.size).data_ptr(), slots.count * slots.size
    t = time.perf_counter()
    assert int(torch.cuda.cudart().cudaHostRegister(*whole, 0)) == 0
    pin = (time.perf_counter() - t) * 1000
    in_slots("read slots, reused, page-locked")
    rows[-1] = rows[-1][:2] + (f"{rows[-1][2]} (locking {whole[1] >> 20} MB: {pin:.0f} ms)",)
    in_slots("read slots, reused, page-locked (again)")
    torch.cuda.cudart().cudaHostUnregister(whole[0])
    return rows


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="vf-memory-"))
    path = str(_one_photo((folder / "one.jpg", (4032, 3024), 3)))
    rows = []
    for what, n in zip(WORKS, (20, 20, 100, 100, 100, 100)):
        alone = per_file_ms((path, what, n))
        with Pool(14) as pool:
            many = pool.map(per_file_ms, [(path, what, n)] * 14)
        rows.append((what, f"{alone:.2f}", f"{sum(many) / len(many):.2f}"))
    size = os.path.getsize(path) / 1e6
    print_table(
        f"a 12 MP JPEG ({size:.1f} MB), milliseconds a file, on {os.cpu_count()} cores",
        ("work", "one process alone", "14 processes at once"),
        rows,
    )
    if torch.cuda.is_available():
        print_table(
            f"nvJPEG (torchvision) in calls of {CALL} phone photos, {torch.cuda.get_device_name(0)}",
            ("where the bytes lie", "images/s", ""),
            nvjpeg_rows(folder / "photos"),
        )


if __name__ == "__main__":
    main()
