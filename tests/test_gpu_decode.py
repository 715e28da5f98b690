"""The GPU decode path, run on the CPU (torchvision's decode_jpeg works on both): same records
and nearly the same embeddings as the Pillow path; other formats and bad files fall back."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viewfinder.config import Config
from viewfinder.ingest.gpu_decode import gpu_batches
from viewfinder.ingest.gpu_jpeg import installed
from viewfinder.ingest.walk import scan
from viewfinder.models import load_encoder

from conftest import copy_photos

MAX_PIXELS = Config.max_pixels


def batches_of(
    files, transform, mean, std, *, batch_size, workers, max_pixels=MAX_PIXELS, device="cpu", **kw
):
    """gpu_batches with the settings these tests share (32 px crops)."""
    return gpu_batches(
        files,
        batch_size=batch_size,
        device=device,
        side=32,
        mean=mean,
        std=std,
        max_pixels=max_pixels,
        fallback=transform,
        workers=workers,
        **kw,
    )


def left_running(before: set, wait: float = 5.0) -> set:
    """The threads started since `before` still running after up to `wait` seconds: a
    multiprocessing queue's feeder thread ends on its own just after the DataLoader closes the
    queue, which does not wait for it."""
    import threading
    import time

    deadline = time.monotonic() + wait
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
    return set(threading.enumerate()) - before


def test_gpu_batches_match_the_pillow_path(tmp_path, photos, tiny_spec):
    folder = copy_photos(
        photos, tmp_path / "pics", ["rocket.jpg", "fruits.jpg", "apple.jpg", "chelsea.png", "aloeL.jpg"]
    )
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    enc = load_encoder(tiny_spec, device="cpu")
    transform, mean, std = enc.uint8_transform()
    files = scan(folder)
    out = list(batches_of(files, transform, mean, std, batch_size=4, workers=2))
    records = [r for _, batch in out for r in batch]
    assert sorted(r.path for r in records) == sorted(f.path for f in files)
    bad = [r for r in records if r.error]
    assert len(bad) == 1 and bad[0].path.endswith("broken.jpg") and "not an image" in bad[0].error
    vecs = {}
    for pixels, batch in out:
        emb = enc.encode_image_tensors(pixels)
        vecs.update({r.path: v for r, v in zip([r for r in batch if not r.error], emb)})
    from PIL import Image

    for path, v in vecs.items():
        ref = enc.encode_images([Image.open(path)])[0]
        assert float(v @ ref) > 0.98, path  # bicubic resampling on tensors vs Pillow: close, not bit-equal
    ok = next(r for r in records if r.path.endswith("rocket.jpg"))
    assert ok.width and ok.height and ok.content_hash.startswith("blake3:") and len(ok.content_hash) == 71


def test_jpeg_decoders_by_name(tmp_path):
    import torch

    from viewfinder.ingest.gpu_jpeg import jpeg_decoder

    path = tmp_path / "wide.jpg"
    Image.new("RGB", (90, 40), "teal").save(path)
    data = torch.from_file(str(path), size=path.stat().st_size, dtype=torch.uint8)
    (image,) = jpeg_decoder("torchvision", "cpu")([data])
    assert tuple(image.shape) == (3, *Image.open(path).size[::-1])
    for bad, says in (("nvjpeg", "unknown GPU JPEG decoder 'nvjpeg'"), ("nvimgcodec-hw:two", "thread count")):
        with pytest.raises(ValueError, match=says):
            jpeg_decoder(bad, "cpu")


def test_decoders_are_kept_for_the_next_run_not_shared_by_two_at_once():
    """A new nvImageCodec decoder spent 0.4-0.8 s in its first call: a run takes the one an
    earlier run left, and a run going on at the same time gets its own."""
    from viewfinder.ingest.gpu_jpeg import reused_decoder

    with reused_decoder("torchvision", "cpu:reuse-test") as first:
        with reused_decoder("torchvision", "cpu:reuse-test") as beside:
            assert beside is not first
    with reused_decoder("torchvision", "cpu:reuse-test") as later:
        assert later in (first, beside)
        with reused_decoder("torchvision", "cpu:reuse-test") as other:
            assert {later, other} == {first, beside}


def test_a_new_decoder_with_a_slow_start_is_warmed_up_once_on_the_first_batch(tmp_path, photos, monkeypatch):
    """A new nvImageCodec decoder spends its slow first call on a warm-up while the readers read
    (the first JPEG of the first batch, as often as the batch's JPEG bytes hold it and at most once
    for each of its JPEGs); a decoder kept from an earlier run is not warmed again, and a warm-up
    that fails costs nothing."""
    from viewfinder.ingest import gpu_decode, gpu_jpeg

    calls = []

    def decode(jpegs: list) -> list:
        calls.append(jpegs)
        if len(jpegs) == 1:
            raise RuntimeError("cannot decode")
        return jpegs

    monkeypatch.setattr(
        gpu_jpeg, "jpeg_decoder", lambda spec, device: gpu_jpeg.JpegDecoder(decode, slow_start=True)
    )
    folder = copy_photos(photos, tmp_path / "pics", ["rocket.jpg", "fruits.jpg", "chelsea.png"])
    batches = gpu_decode._Batches(scan(folder), 2, MAX_PIXELS, transform=None)
    jpegs = [f.path for f in batches.batches[0] if f.path.endswith(".jpg")]
    first = batches.warm_up()
    assert len(first) == len(jpegs) == 1 and bytes(first[0].numpy()) == Path(jpegs[0]).read_bytes()
    with gpu_jpeg.reused_decoder("nvimgcodec-hw", "cpu:warm-test", batches.warm_up):
        assert len(calls) == 1  # the warm-up failed: the run goes on
    with gpu_jpeg.reused_decoder("nvimgcodec-hw", "cpu:warm-test", batches.warm_up):
        assert len(calls) == 1  # kept from the run before: warm already
    small = gpu_decode._Batches(
        scan(copy_photos(photos, tmp_path / "small", ["apple.jpg", "fruits.jpg"])), 2, MAX_PIXELS, None
    )
    with gpu_jpeg.reused_decoder("nvimgcodec-hw", "cpu:warm-test-2", small.warm_up):
        assert [len(c) for c in calls] == [1, 2]  # apple.jpg twice: the two files hold it twice
    # a large first photo beside a small one is decoded once, not once for each JPEG of the batch
    mixed = copy_photos(photos, tmp_path / "mixed", ["Blinds.jpg", "FreshFlower.jpg"])
    assert len(gpu_decode._Batches(scan(mixed), 2, MAX_PIXELS, None).warm_up()) == 1
    # no warm-up on a first JPEG the readers would not give the GPU: a bomb, or not a JPEG at all
    assert gpu_decode._Batches(scan(mixed), 2, 10_000, None).warm_up() == []
    (mixed / "A-broken.jpg").write_bytes(b"not a jpeg at all")
    assert gpu_decode._Batches(scan(mixed), 2, MAX_PIXELS, None).warm_up() == []


def test_torchcodec_decodes_as_torchvision_does(tmp_path, photos):
    """The same libjpeg-turbo on a CPU: the same pixels (on a GPU both use nvJPEG; the CUDA test
    below compares them there)."""
    pytest.importorskip("torchcodec", reason="TorchCodec is not installed (pip install 'viewfinder[gpu]')")
    import torch

    from viewfinder.ingest.gpu_jpeg import jpeg_decoder

    files = sorted(copy_photos(photos, tmp_path / "pics", ["rocket.jpg", "fruits.jpg"]).iterdir())
    data = [torch.from_file(str(p), size=p.stat().st_size, dtype=torch.uint8) for p in files]
    for ours, ref in zip(jpeg_decoder("torchcodec", "cpu")(data), jpeg_decoder("torchvision", "cpu")(data)):
        assert torch.equal(ours, ref)


def test_gpu_batches_refuse_bombs_before_decoding(tmp_path, tiny_spec):
    from PIL import Image

    Image.new("RGB", (400, 300), "red").save(tmp_path / "big.jpg")
    enc = load_encoder(tiny_spec, device="cpu")
    transform, mean, std = enc.uint8_transform()
    ((_, records),) = batches_of(
        scan(tmp_path), transform, mean, std, batch_size=4, workers=0, max_pixels=10_000
    )
    assert records[0].error and "over the limit" in records[0].error


def test_resize_groups_by_size_and_keeps_the_order():
    import torch

    from viewfinder.ingest.gpu_decode import resize_crop

    g = torch.Generator().manual_seed(0)
    shapes = [(375, 500), (768, 1024), (375, 500), (300, 200), (768, 1024)]
    images = [torch.randint(0, 256, (3, *hw), dtype=torch.uint8, generator=g) for hw in shapes]
    together = resize_crop(images, 32, group=2)  # groups of one size, split in two
    for i, im in enumerate(images):
        alone = resize_crop([im], 32)
        torch.testing.assert_close(together[i], alone[0], atol=1e-3, rtol=0)


def test_draft_processes_take_batches_from_the_back_and_every_file_comes_once(tmp_path, photos, tiny_spec):
    """With draft processes beside the readers every file comes out once, the drafts' being the
    run's last batches (a suffix: the two sides meet once), their pixels as Pillow's path gives
    them."""
    import shutil

    import torch

    from viewfinder.ingest.prepare import decode_for_model

    folder = copy_photos(photos, tmp_path / "pics", ["rocket.jpg", "fruits.jpg", "apple.jpg", "chelsea.png"])
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    for i, f in enumerate(sorted(folder.iterdir()) * 5):
        shutil.copy(f, folder / f"{i:02d}-{f.name}")
    enc = load_encoder(tiny_spec, device="cpu")
    transform, mean, std = enc.uint8_transform()
    files = scan(folder)
    clock = {}
    out = list(batches_of(files, transform, mean, std, batch_size=2, workers=1, drafters=2, timings=clock))
    records = [r for _, batch in out for r in batch]
    assert sorted(r.path for r in records) == sorted(f.path for f in files)
    assert sum(1 for r in records if r.error) == 6  # broken.jpg and its five copies, once each
    assert clock["draft processes' own time, summed"] > 0
    # a JPEG's row equals Pillow's path exactly only if a draft process decoded it (the readers'
    # go to the GPU decoder and resize)
    m, s = (torch.tensor(v).view(1, 3, 1, 1) for v in (mean, std))
    stats = {f.path: f for f in files}
    drafted = {}
    for pixels, batch in out:
        for row, r in zip(pixels if pixels is not None else [], batch):
            if r.path.endswith(".jpg"):
                ref = decode_for_model(stats[r.path], transform, MAX_PIXELS)[1]
                drafted[r.path] = torch.equal(row[None], (ref[None].float() / 255.0 - m) / s)
    in_order = [drafted[f.path] for f in files if f.path in drafted]
    assert in_order[-1] and in_order == sorted(in_order)  # the last file drafted; readers' first


@pytest.mark.parametrize("drafters", [0, 1])
def test_stopping_early_releases_the_producer(tmp_path, photos, tiny_spec, drafters):
    import shutil
    import threading

    folder = copy_photos(photos, tmp_path / "pics", ["rocket.jpg", "fruits.jpg", "apple.jpg", "aloeL.jpg"])
    for i, f in enumerate(sorted(folder.iterdir()) * 6):  # more one-file batches than the stages hold
        shutil.copy(f, folder / f"{i:02d}-{f.name}")
    enc = load_encoder(tiny_spec, device="cpu")
    transform, mean, std = enc.uint8_transform()
    before = set(threading.enumerate())
    batches = batches_of(scan(folder), transform, mean, std, batch_size=1, workers=2, drafters=drafters)
    next(batches)
    assert {"torchvision-prepare-0", "torchvision-decoder-0", "resize", "reader-batches"} <= {
        t.name for t in threading.enumerate()
    }
    batches.close()  # the consumer goes away (an error in the model, Ctrl-C)
    assert not left_running(before)


@pytest.mark.parametrize("drafters", [0, 1])
def test_an_error_stops_every_stage_while_its_traceback_is_kept(
    tmp_path, photos, tiny_spec, monkeypatch, drafters
):
    """A bug in a stage (here the decoder) reaches the caller, and the receiving thread and the
    readers stop then, not when the error's traceback, which keeps gpu_batches' frame, goes."""
    import shutil
    import threading

    from viewfinder.ingest import gpu_jpeg

    def broken(jpegs: list) -> list:
        raise ValueError("a bug in the decoder")

    monkeypatch.setattr(gpu_jpeg, "jpeg_decoder", lambda spec, device: gpu_jpeg.JpegDecoder(broken))
    monkeypatch.setattr(gpu_jpeg, "_idle", {})
    folder = copy_photos(photos, tmp_path / "pics", ["rocket.jpg", "fruits.jpg", "apple.jpg", "aloeL.jpg"])
    for i, f in enumerate(sorted(folder.iterdir()) * 6):  # more one-file batches than the stages hold
        shutil.copy(f, folder / f"{i:02d}-{f.name}")
    transform, mean, std = load_encoder(tiny_spec, device="cpu").uint8_transform()
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="a bug in the decoder") as caught:
        list(batches_of(scan(folder), transform, mean, std, batch_size=1, workers=2, drafters=drafters))
    assert caught.value.__traceback__ is not None  # held here, with every frame it names
    assert not left_running(before)


def test_a_jpeg_the_decoder_refuses_sends_its_batch_to_pillow(tmp_path, photos, tiny_spec):
    folder = copy_photos(photos, tmp_path / "pics", ["rocket.jpg", "aloeL.jpg"])
    data = (folder / "aloeL.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 3])  # the header parses; the decoder fails
    enc = load_encoder(tiny_spec, device="cpu")
    transform, mean, std = enc.uint8_transform()
    ((pixels, records),) = batches_of(scan(folder), transform, mean, std, batch_size=8, workers=0)
    by_name = {Path(r.path).name: r for r in records}
    assert by_name["cut.jpg"].error and "cut.jpg" in by_name["cut.jpg"].error
    assert by_name["rocket.jpg"].error is None and by_name["aloeL.jpg"].error is None
    assert pixels.shape[0] == 2 and [r.error for r in records[:2]] == [None, None]


@pytest.mark.parametrize("step", ["prepare", "decode"])
def test_a_batch_the_decoder_refuses_in_either_step_goes_to_pillow(
    tmp_path, photos, tiny_spec, monkeypatch, step
):
    """A decoder may refuse a batch while its call is prepared (in the prepare thread, e.g. a
    header nvImageCodec cannot parse) or in the call itself: either way Pillow decodes the batch
    and the embeddings are those of the Pillow path."""
    import torch

    from viewfinder.ingest import gpu_jpeg
    from viewfinder.ingest.prepare import decode_for_model

    def refuse(jpegs: list) -> list:
        raise RuntimeError("cannot decode")

    steps = {"prepare": refuse, "decode": gpu_jpeg._as_given}
    refusing = gpu_jpeg.JpegDecoder(refuse if step == "decode" else gpu_jpeg._as_given, steps[step])
    monkeypatch.setattr(gpu_jpeg, "jpeg_decoder", lambda spec, device: refusing)
    monkeypatch.setattr(gpu_jpeg, "_idle", {})
    folder = copy_photos(photos, tmp_path / "pics", ["rocket.jpg", "aloeL.jpg", "fruits.jpg"])
    enc = load_encoder(tiny_spec, device="cpu")
    transform, mean, std = enc.uint8_transform()
    files = scan(folder)
    got = list(batches_of(files, transform, mean, std, batch_size=2, workers=2))
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    for pixels, records in got:
        stats = [next(f for f in files if f.path == r.path) for r in records]
        want = torch.stack([decode_for_model(f, transform, MAX_PIXELS)[1] for f in stats])
        assert torch.equal(pixels, (want.float() / 255.0 - m) / s)
    assert sorted(Path(r.path).name for _, records in got for r in records if not r.error) == [
        "aloeL.jpg",
        "fruits.jpg",
        "rocket.jpg",
    ]


def test_read_slots_carry_batch_after_batch_without_mixing_them(tmp_path, photos, tiny_spec, monkeypatch):
    import torch
    from torchvision.io import decode_jpeg

    from viewfinder.ingest import gpu_decode

    names = ["rocket.jpg", "fruits.jpg", "apple.jpg", "aloeL.jpg"]
    source, folder = copy_photos(photos, tmp_path / "source", names), tmp_path / "pics"
    folder.mkdir()
    for i, name in enumerate(names * 6):
        with Image.open(source / name) as im:  # 24 different JPEGs of a few sizes
            im.convert("RGB").crop((i, 2 * i, im.width - i, im.height)).save(folder / f"{i:02d}.jpg")
    given_back = []

    class Counted(gpu_decode.ReadSlots):
        def give_back(self, slot: int) -> None:
            given_back.append(slot)
            super().give_back(slot)

    monkeypatch.setattr(gpu_decode, "ReadSlots", Counted)
    enc = load_encoder(tiny_spec, device="cpu")
    transform, mean, std = enc.uint8_transform()
    out = list(batches_of(scan(folder), transform, mean, std, batch_size=1, workers=2))
    # 24 one-file batches through 11 slots (2 readers x 2 prefetched + 7): each slot carried several
    assert len(given_back) == 24 and len(set(given_back)) <= 11
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    for pixels, (record,) in out:
        image = decode_jpeg(torch.frombuffer(bytearray(Path(record.path).read_bytes()), dtype=torch.uint8))
        want = (gpu_decode.resize_crop([image], 32) / 255.0 - m) / s
        assert torch.equal(pixels, want), record.path


def test_without_room_for_read_slots_each_batch_gets_a_buffer_of_its_own(
    tmp_path, photos, tiny_spec, monkeypatch
):
    from viewfinder.ingest import gpu_decode

    def refused(count: int, size: int):
        raise OSError(12, "Cannot allocate memory")

    folder = copy_photos(photos, tmp_path / "pics", ["rocket.jpg", "fruits.jpg", "apple.jpg", "aloeL.jpg"])
    enc = load_encoder(tiny_spec, device="cpu")
    transform, mean, std = enc.uint8_transform()
    want = list(batches_of(scan(folder), transform, mean, std, batch_size=1, workers=2))
    monkeypatch.setattr(gpu_decode, "ReadSlots", refused)
    got = list(batches_of(scan(folder), transform, mean, std, batch_size=1, workers=2))
    assert [r.path for _, (r,) in got] == [r.path for _, (r,) in want]
    assert all(p.equal(q) for (p, _), (q, _) in zip(got, want))


def test_background_stage_raises_its_error_in_the_caller():
    from viewfinder.ingest.gpu_decode import in_background

    def items():
        yield 1
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for x in in_background(items(), "test-stage"):
            got.append(x)
    assert got == [1]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_turns_as_pillow_does(orientation):
    import torch
    from PIL import ImageOps

    from viewfinder.ingest.gpu_decode import upright

    pixels = np.random.default_rng(orientation).integers(0, 256, (3, 5, 3), dtype=np.uint8)  # H 3, W 5
    im = Image.fromarray(pixels)
    im.getexif()[0x0112] = orientation
    want = np.asarray(ImageOps.exif_transpose(im))
    got = upright(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    assert got.shape == want.shape and (got == want).all()


@pytest.mark.parametrize("decoder", ["torchvision", "torchcodec"])
def test_exif_rotated_photos_come_out_upright(tmp_path, photos, tiny_spec, decoder):
    """torchvision's nvJPEG ignores EXIF, TorchCodec's applies it: either way a phone photo stored
    sideways reaches the model upright, turned once."""
    if decoder == "torchcodec":
        pytest.importorskip(
            "torchcodec", reason="TorchCodec is not installed (pip install 'viewfinder[gpu]')"
        )
    import torch

    from viewfinder.ingest.prepare import decode_for_model

    src = Image.open(next(photos.rglob("rocket.jpg"))).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    src.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    enc = load_encoder(tiny_spec, device="cpu")
    transform, mean, std = enc.uint8_transform()
    ((pixels, (record,)),) = batches_of(
        scan(tmp_path), transform, mean, std, batch_size=4, workers=0, decoders=(decoder,)
    )
    ref_record, ref = decode_for_model(scan(tmp_path)[0], transform, MAX_PIXELS)
    ref = (ref.float() / 255.0 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert (record.width, record.height) == (ref_record.width, ref_record.height)
    upright_diff = float((pixels[0] - ref).abs().mean())
    sideways_diff = float((pixels[0] - ref.transpose(-2, -1)).abs().mean())
    assert upright_diff < 0.1 < sideways_diff


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)"
)
@pytest.mark.parametrize(
    "decoders", [("torchvision",), ("torchcodec",), ("nvimgcodec-hw",), ("torchvision", "nvimgcodec-hw")]
)
def test_cuda_path_matches_the_cpu_run_of_the_same_code(tmp_path, tiny_spec, decoders):
    """The GPU decoders, the threads and the streams on a real GPU: same records, same pixels (up
    to the decoders' rounding) as the CPU run that CI checks against Pillow; the caller runs on
    the model's stream while it takes batches, and on its own stream again after."""
    import torch

    from viewfinder.ingest.gpu_decode import model_stream

    for name in decoders:
        if not installed(name):
            pytest.skip(f"the library of GPU decoder {name} is not installed (pip install 'viewfinder[gpu]')")
    x, y = np.meshgrid(np.linspace(0, 255, 640), np.linspace(0, 255, 480))
    for i in range(10):
        im = Image.fromarray(np.stack([x, y, (x + y * i) % 256], -1).astype(np.uint8))
        exif = Image.Exif()
        exif[0x0112] = (1, 6, 8, 3, 1, 1, 2, 5, 7, 4)[i]
        im.resize((500, 375) if i % 2 else (640, 480)).save(tmp_path / f"p{i}.jpg", exif=exif)
    Image.fromarray(np.uint8(x)).save(tmp_path / "gray.png")
    Image.fromarray(np.uint8(y)).save(tmp_path / "gray.jpg")  # one channel, decoded to three
    transform, mean, std = load_encoder(tiny_spec, device="cpu").uint8_transform()
    runs = {}
    for device, names in (("cpu", ("torchvision",)), ("cuda", decoders)):
        rows = {}  # by path: with several decoders, batches come in the order they are done
        for pixels, records in batches_of(
            scan(tmp_path), transform, mean, std, batch_size=4, workers=2, device=device, decoders=names
        ):
            if device == "cuda":
                assert torch.cuda.current_stream() == model_stream(device)
            for i, r in enumerate(records):
                rows[r.path] = (
                    (r.content_hash, r.width, r.height, r.error),
                    pixels[i].cpu() if not r.error else None,
                )
        runs[device] = rows
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    assert runs["cpu"].keys() == runs["cuda"].keys() and len(runs["cpu"]) == 12
    for path, (record, px) in runs["cuda"].items():
        assert record == runs["cpu"][path][0]
        assert float((px - runs["cpu"][path][1]).abs().mean()) < 0.05, path


def test_gpu_decoders_setting_reads_a_toml_list(tmp_path):
    from viewfinder.config import load_config

    (tmp_path / "vf.toml").write_text('gpu_decoders = ["torchvision", "nvimgcodec-hw:4"]\n')
    assert load_config(tmp_path / "vf.toml").gpu_decoders == ("torchvision", "nvimgcodec-hw:4")


def test_gpu_pillow_share_setting_is_a_share(tmp_path):
    from viewfinder.config import Config, load_config

    (tmp_path / "vf.toml").write_text("gpu_pillow_share = 0.15\n")
    assert load_config(tmp_path / "vf.toml").gpu_pillow_share == 0.15
    assert Config().gpu_pillow_share is None  # the rate formula (auto_cpu_share)
    (tmp_path / "vf.toml").write_text("gpu_pillow_share = 15\n")
    with pytest.raises(ValueError, match="gpu_pillow_share"):
        load_config(tmp_path / "vf.toml")


def test_gpu_draft_processes_setting_is_a_count(tmp_path):
    from viewfinder.config import load_config

    (tmp_path / "vf.toml").write_text("gpu_draft_processes = 3\n")
    assert load_config(tmp_path / "vf.toml").gpu_draft_processes == 3
    assert Config().gpu_draft_processes is None  # gpu_decode.gpu_drafters
    for bad in ("-1", "2.5", '"many"'):
        (tmp_path / "vf.toml").write_text(f"gpu_draft_processes = {bad}\n")
        with pytest.raises(ValueError, match="gpu_draft_processes"):
            load_config(tmp_path / "vf.toml")


def test_no_draft_processes_where_the_readers_take_every_batch_as_they_start(tmp_path, photos, tiny_spec):
    import threading

    folder = copy_photos(photos, tmp_path / "pics", ["rocket.jpg", "fruits.jpg", "apple.jpg"])
    transform, mean, std = load_encoder(tiny_spec, device="cpu").uint8_transform()
    clock, before = {}, set(threading.enumerate())
    batches = batches_of(
        scan(folder), transform, mean, std, batch_size=1, workers=2, drafters=4, timings=clock
    )
    assert next(batches) and "draft-chunks" not in {t.name for t in threading.enumerate()}
    assert len([r for _, batch in batches for r in batch]) == 2  # the other two files, from the readers
    assert not any(step.startswith("draft") for step in clock)
    assert not left_running(before)


def test_draft_processes_only_for_large_photos_whose_readers_draft_none(monkeypatch):
    from viewfinder.ingest import gpu_decode

    monkeypatch.setattr(gpu_decode.os, "cpu_count", lambda: 16)
    assert gpu_decode.gpu_drafters(large=True, share=0.0) == 8
    assert gpu_decode.gpu_drafters(large=False, share=0.0) == 0  # small files: the GPU is faster
    assert gpu_decode.gpu_drafters(large=True, share=0.22) == 0  # the readers draft already
