#!/usr/bin/env bash
# The demo: set up, index the sample photos, run a text, an image and a hybrid search.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh core  # mini on ONNX Runtime: no torch
VF=.venv/bin/viewfinder
DB=${VIEWFINDER_DB:-demo-data/index}
.venv/bin/python scripts/make_sample.py demo-data/photos
$VF index demo-data/photos --db "$DB"
echo; echo '$ viewfinder search "a cat"'
$VF search "a cat" --db "$DB" -k 5
echo; echo '$ viewfinder search demo-data/photos/opencv/aloeL.jpg      (image -> image)'
$VF search demo-data/photos/opencv/aloeL.jpg --db "$DB" -k 3
echo; echo '$ viewfinder search "orange fruit" --image demo-data/photos/opencv/apple.jpg --text-weight 0.7   (hybrid)'
$VF search "orange fruit" --image demo-data/photos/opencv/apple.jpg --text-weight 0.7 --db "$DB" -k 3
echo
echo "Search your own photos:  $VF index ~/Pictures && $VF search \"a dog on a beach\""
echo "Start the web page:      $VF serve --db $DB   then open http://127.0.0.1:8000/"
