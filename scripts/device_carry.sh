#!/usr/bin/env bash
# What the lent GPU machine lacks for `index --ray` benchmarks, packed to travel (64 MiB in all):
# Ray, faiss, open_clip, blake3 and their missing needs as Python 3.12 wheels, unpacked, pruned of what
# indexing never loads (Java jars, RLlib, Serve, LLM, the dashboard's web UI), binaries stripped,
# in .carry/site12.tar.xz (about 32 MB); TorchCodec's image decoders; and MiniLM's vocab.txt for
# the random-init mini.
# Versions from constraints.txt. On the device: tar -xJf .carry/site12.tar.xz -C /tmp/site
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/.carry"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$root/.venv/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 -c "$root/constraints.txt" -d "$tmp/whl" \
  ray faiss-cpu open_clip_torch ftfy regex wcwidth jsonschema jsonschema-specifications referencing rpds-py blake3
mkdir -p "$tmp/site" "$out"
for w in "$tmp"/whl/*.whl; do unzip -q -o "$w" -d "$tmp/site"; done
cd "$tmp/site"
rm -rf ray/jars ray/rllib ray/serve ray/llm ray/dashboard/client/build
find . -name '*.js.map' -delete
strip --strip-unneeded ray/core/src/ray/gcs/gcs_server ray/core/src/ray/raylet/raylet ray/_raylet.so
tar -cf - . | xz -T2 -9 > "$out/site12.tar.xz"
# TorchCodec's image decoders (gpu_decoders = ["torchcodec"]) apart, in .carry/torchcodec12.tar.xz
# (about 5 MB): its FFmpeg-bound video libraries stay behind, it loads them only where FFmpeg is
"$root/.venv/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 -c "$root/constraints.txt" -d "$tmp/tc" torchcodec
mkdir -p "$tmp/tcsite"
unzip -q -o "$tmp"/tc/*.whl -d "$tmp/tcsite"
rm -f "$tmp"/tcsite/torchcodec/libtorchcodec_core?.so "$tmp"/tcsite/torchcodec/libtorchcodec_custom_ops?.so
rm -f "$tmp"/tcsite/torchcodec/_core/*.cpp "$tmp"/tcsite/torchcodec/_core/*.h
tar -C "$tmp/tcsite" -cf - . | xz -T2 -9 > "$out/torchcodec12.tar.xz"
"$root/.venv/bin/python" -c "
import shutil; from viewfinder.models.mini import text_model_path
shutil.copy(text_model_path() / 'vocab.txt', '$out/vocab.txt')"
ls -l "$out"
