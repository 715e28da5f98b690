"""GPU JPEG decoders (ingest/gpu_jpeg.py) side by side in ONE process, each in a
thread of its own with its own CUDA stream, alone or while a model runs on the same GPU (as it
does when indexing). Can two decoders decode more than one? Does the hardware JPEG engine
("nvimgcodec-hw") leave the SMs to the model? (On an H100: no; docs/benchmarks.md.)

    python benchmarks/bench_decoders.py --images 6000 torchvision nvimgcodec torchvision+nvimgcodec-hw
    python benchmarks/bench_decoders.py --with-model ViT-B/32 torchvision nvimgcodec-hw
    python benchmarks/bench_decoders.py --with-model ViT-B/32 --graph torchvision   # model as one CUDA graph
    python benchmarks/bench_decoders.py --images 512 --sizes 4032x3024 --batch 8 16 32 64 128 torchvision
    python benchmarks/bench_decoders.py --images 512 --sizes 4032x3024 --batch 24 32 \
        --memory pageable pinned -- torchvision

A decoder is named as gpu_jpeg.jpeg_decoder takes it, e.g. "nvimgcodec-hw:4" (4 host threads).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import make_jpegs, print_table, random_mini, random_vit_b_32


def _decoder(spec: str, high_priority: bool, number: int):
    """(decoder function, CUDA stream `number`) for "name" or "name:threads"."""
    from viewfinder.ingest.gpu_decode import side_stream
    from viewfinder.ingest.gpu_jpeg import jpeg_decoder

    return jpeg_decoder(spec, "cuda"), side_stream("cuda", high_priority, number)


def graphed(enc, batch: int = 256):
    """The image tower for one batch shape as a CUDA graph (one launch instead of hundreds of
    Python-issued kernels): a function of no arguments that runs it once and returns the output."""
    import torch

    pixels = torch.randn(batch, 3, 224, 224, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                enc._image_features(pixels)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = enc._image_features(pixels)

    def run():
        graph.replay()
        return out.float().cpu()  # as encode_image_tensors: the embeddings come back to the host

    return run


def _model_loop(enc, stop: threading.Event, batch: int = 256, graph=None) -> tuple[int, float]:
    """Run the image tower on random batches until `stop`: (images, seconds)."""
    import torch

    pixels = torch.randn(batch, 3, 224, 224, device="cuda")
    step = graph or (lambda: enc.encode_image_tensors(pixels))
    step()
    torch.cuda.synchronize()
    n, t = 0, time.perf_counter()
    while not stop.is_set():
        step()
        n += batch
    torch.cuda.synchronize()
    return n, time.perf_counter() - t


def rate(
    specs: list[str], data: list, batch: int, enc=None, graph=None, high_priority: bool = False
) -> tuple[float, float | None]:
    """Images/s of all the decoders together, the batches dealt out in turn, and the model's
    images/s meanwhile (None without a model)."""
    import torch

    decoders = [_decoder(s, high_priority, i) for i, s in enumerate(specs)]
    chunks = [data[i : i + batch] for i in range(0, len(data), batch)]
    for fn, stream in decoders:  # start-up
        with torch.cuda.stream(stream):
            fn(chunks[0])
    torch.cuda.synchronize()

    def run(k: int) -> int:
        fn, stream = decoders[k]
        n = 0
        with torch.cuda.stream(stream):
            for c in chunks[k :: len(decoders)]:
                n += len(fn(c))
            stream.synchronize()
        return n

    stop = threading.Event()
    with ThreadPoolExecutor(len(decoders) + 1) as pool:
        model = pool.submit(_model_loop, enc, stop, 256, graph) if enc is not None else None
        time.sleep(0.5 if enc is not None else 0)  # the model is running before decoding starts
        t = time.perf_counter()
        n = sum(pool.map(run, range(len(decoders))))
        decoding = n / (time.perf_counter() - t)
        stop.set()
        if model is None:
            return decoding, None
        m, seconds = model.result()
    return decoding, m / seconds


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--batch", type=int, nargs="+", default=[256], help="one row per batch size")
    ap.add_argument(
        "--sizes", nargs="+", default=["500x375", "1024x768"], help="JPEG sizes WxH, the images split evenly"
    )
    ap.add_argument(
        "--with-model", choices=["ViT-B/32", "mini"], help="also run this model (random init) meanwhile"
    )
    ap.add_argument(
        "--priorities",
        nargs="+",
        choices=["normal", "high"],
        default=["normal"],
        help="the decoders' CUDA stream priority; one row per mix and priority",
    )
    ap.add_argument("--graph", action="store_true", help="run the model as a CUDA graph")
    ap.add_argument(
        "--memory",
        nargs="+",
        choices=["pageable", "pinned"],
        default=["pageable"],
        help="where the JPEG bytes lie on the host (page-locked memory can be copied to the GPU by DMA)",
    )
    ap.add_argument(
        "--vocab",
        type=Path,
        default=None,
        help="MiniLM vocab.txt for mini where the package is not installed",
    )
    ap.add_argument("mixes", nargs="+", help="decoders joined by +, e.g. torchvision+nvimgcodec-hw")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    files = make_jpegs(Path(tempfile.mkdtemp(prefix="vf-jpegs-")), args.images, sizes)
    data = [torch.from_file(str(f), size=f.stat().st_size, dtype=torch.uint8) for f in files]
    enc = graph = None
    if args.with_model:
        enc = random_vit_b_32("cuda") if args.with_model == "ViT-B/32" else random_mini("cuda", args.vocab)
        enc.ensure_loaded()
        graph = graphed(enc) if args.graph else None
        m, seconds = _model_loop_for(enc, 3.0, graph)
        print(
            f"{args.with_model}{' as a CUDA graph' if graph else ''} alone: {m / seconds:,.0f} images/s",
            flush=True,
        )
    rows = []
    pinned = [t.pin_memory() for t in data] if "pinned" in args.memory else []
    for mix, priority, batch, memory in itertools.product(
        args.mixes, args.priorities, args.batch, args.memory
    ):
        label = mix + (", high-priority streams" if priority == "high" else "") + f", batch {batch}"
        label += ", bytes in pinned memory" if memory == "pinned" else ""
        try:
            chosen = pinned if memory == "pinned" else data
            decoding, model = rate(mix.split("+"), chosen, batch, enc, graph, priority == "high")
            rows.append((label, f"{decoding:,.0f}") + ((f"{model:,.0f}",) if enc is not None else ()))
        except Exception as exc:  # noqa: BLE001  (report, do not abort the table)
            rows.append(
                (label, f"failed: {type(exc).__name__}: {exc}"[:100]) + (("",) if enc is not None else ())
            )
        print(rows[-1], flush=True)
    head = ("decoders (one thread each)", "decoded images/s") + (
        (f"{args.with_model} images/s meanwhile",) if enc is not None else ()
    )
    print_table(
        f"{len(files)} JPEGs ({' and '.join(args.sizes)}), decoders in one process on "
        f"{torch.cuda.get_device_name(0)}"
        + (
            f", {args.with_model} (random init{', CUDA graph' if graph else ''}) running meanwhile"
            if enc
            else ""
        ),
        head,
        rows,
    )


def _model_loop_for(enc, seconds: float, graph=None) -> tuple[int, float]:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return _model_loop(enc, stop, 256, graph)


if __name__ == "__main__":
    main()
