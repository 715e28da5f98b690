"""Whether nvJPEG's hardware decoder scales its output (nvjpegDecodeParamsSetScaleFactor, which its
header says "works only with the hardware decoder backend"): a decode at 1/2, 1/4 and 1/8 of the
size would move an eighth or less of the pixels of a 12 MP photo. nvImageCodec and torchvision do
not expose the setting, so this calls nvJPEG through ctypes: a batched hardware decode of two
phone-size JPEGs into full-size planar RGB buffers (so that a decoder that ignores the setting
cannot write out of bounds), once into buffers of zeros and once of 255s; what both decodes wrote
alike is the region it wrote. One line per scale factor.

    python benchmarks/probe_nvjpeg_scale.py      # on the GPU machine, nvImageCodec's nvJPEG installed"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import tempfile
from pathlib import Path

from common import file_tensor, make_jpegs

HARDWARE, PLANAR_RGB = 3, 3  # nvjpegBackend_t, nvjpegOutputFormat_t


class Image(ctypes.Structure):  # nvjpegImage_t
    _fields_ = [("channel", ctypes.c_void_p * 4), ("pitch", ctypes.c_size_t * 4)]


def nvjpeg() -> ctypes.CDLL:
    """The libnvjpeg that the nvidia-nvjpeg wheel installs, or the system's."""
    for root in sys.path:
        found = glob.glob(os.path.join(root, "nvidia", "*", "lib", "libnvjpeg.so*"))
        if found:
            return ctypes.CDLL(found[0])
    return ctypes.CDLL("libnvjpeg.so")


def main() -> None:
    import torch

    lib = nvjpeg()

    def check(status: int, call: str) -> None:
        if status:
            raise RuntimeError(f"{call}: nvJPEG status {status}")

    handle, state = ctypes.c_void_p(), ctypes.c_void_p()
    check(lib.nvjpegCreateEx(HARDWARE, None, None, 0, ctypes.byref(handle)), "nvjpegCreateEx")
    check(lib.nvjpegJpegStateCreate(handle, ctypes.byref(state)), "nvjpegJpegStateCreate")
    jpegs = [file_tensor(f).pin_memory() for f in make_jpegs(Path(tempfile.mkdtemp()), 2, [(4032, 3024)])]
    check(lib.nvjpegDecodeBatchedInitialize(handle, state, len(jpegs), 1, PLANAR_RGB), "initialize")
    data = (ctypes.c_void_p * len(jpegs))(*[j.data_ptr() for j in jpegs])
    lengths = (ctypes.c_size_t * len(jpegs))(*[j.numel() for j in jpegs])
    for scale in (1, 2, 3):  # nvjpegScaleFactor_t: 1/2, 1/4, 1/8
        params = (ctypes.c_void_p * len(jpegs))()
        for i in range(len(jpegs)):
            p = ctypes.c_void_p()
            check(lib.nvjpegDecodeParamsCreate(handle, ctypes.byref(p)), "nvjpegDecodeParamsCreate")
            check(lib.nvjpegDecodeParamsSetOutputFormat(p, PLANAR_RGB), "SetOutputFormat")
            check(lib.nvjpegDecodeParamsSetScaleFactor(p, scale), "SetScaleFactor")
            params[i] = p
        written = []
        for fill in (0, 255):
            outs = [torch.full((3, 3024, 4032), fill, dtype=torch.uint8, device="cuda") for _ in jpegs]
            images = (Image * len(jpegs))()
            for image, out in zip(images, outs):
                for c in range(3):
                    # the scaled width as the row pitch: a scaled decode fills the top rows only
                    image.channel[c], image.pitch[c] = out[c].data_ptr(), 4032 >> scale
            stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
            check(lib.nvjpegDecodeBatchedEx(handle, state, data, lengths, images, params, stream), "decode")
            torch.cuda.synchronize()
            written.append(outs[0])
        alike = (written[0] == written[1]).all(0).flatten().nonzero()
        nbytes = int(alike.max()) + 1 if len(alike) else 0
        scaled = (3024 >> scale) * (4032 >> scale)
        full = 3023 * (4032 >> scale) + 4032  # full-size rows at the scaled pitch
        print(
            f"scale 1/{1 << scale}: wrote {nbytes:,} bytes of each plane; a scaled decode writes "
            f"{scaled:,}, a full-size one {full:,}"
        )


if __name__ == "__main__":
    main()
