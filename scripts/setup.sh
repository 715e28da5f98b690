#!/usr/bin/env bash
# Set up a fresh machine: Debian packages with real images and tools (when apt is there and we
# may use it), a virtual environment in .venv, and viewfinder with every extra the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS="opencv-doc mate-backgrounds tuxpaint-stamps-default tuxpaint-data gcompris-qt-data openclipart-png dataset-fashion-mnist fonts-noto-color-emoji tesseract-ocr tesseract-ocr-eng chromium chromium-driver"
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
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "installing viewfinder and its dependencies into .venv (log: .venv/install.log)"
  { .venv/bin/python -m pip install -q --upgrade pip &&
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[server,captions,train,eval,dist,test]"; } > .venv/install.log 2>&1 ||
    { tail -30 .venv/install.log; echo "install failed: see .venv/install.log"; exit 1; }
  touch "$stamp"
fi

# axe-core for the accessibility check of the web page (from npm, into the ignored .cache/)
if command -v npm >/dev/null && [ ! -f .cache/node_modules/axe-core/axe.min.js ]; then
  npm install --silent --no-audit --no-fund --prefix .cache axe-core@4.14.1 >/dev/null
fi
