#!/usr/bin/env bash
# Fetch the real photographs that camera-sim scenes show (see camera-sim/scenes/README.md).
#
#   camera-sim/fetch-photos.sh [OUT_DIR]
#
# OUT_DIR defaults to .tools/photos at the repository root (git-ignored), which is
# where `camera-sim --scene` looks unless given --photos. Nothing is committed: the
# photos come out of two pinned packages, each checked against its sha256:
#   * the scikit-image 0.26.0 wheel (PyPI, 13.7 MB, via `python3 -m pip download`):
#     skimage/data/{astronaut,chelsea,coffee,camera}.png
#   * the @vladmandic/face-api 1.7.15 tarball (npm, 12.7 MB, via `npm pack`):
#     demo/sample2.jpg (a group photo with a mobile phone), saved as faceapi-sample2.jpg
# Only the files listed are kept; the packages are downloaded into a temporary
# directory that is removed on exit. A package is only downloaded when one of its
# photos is missing, so running the script again does nothing.
#
# Needs: python3 with pip (for the wheel) and npm (for the tarball), and access
# to the Python and npm package registries.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/../.tools/photos}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# The wheel is pinned to one platform build so its hash is fixed; the photos are
# the same in every build, so this works on any machine.
WHEEL_REQ="scikit-image==0.26.0"
WHEEL_ARGS=(--platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311)
WHEEL_SHA256="74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"
WHEEL_PHOTOS=(astronaut.png chelsea.png coffee.png camera.png)

NPM_PKG="@vladmandic/face-api@1.7.15"
NPM_SHA256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
NPM_PHOTOS=(sample2.jpg)
NPM_PREFIX="faceapi-"

missing() { # missing NAME... -> prints the names not yet in $OUT
  local n
  for n in "$@"; do [[ -s "$OUT/$n" ]] || echo "$n"; done
}

WORK=""
workdir() {
  if [[ -z "$WORK" ]]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/fetch-photos.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
  fi
}

check_sha256() { # check_sha256 FILE EXPECTED
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [[ "$got" != "$2" ]]; then
    echo "fetch-photos: $(basename "$1") has sha256 $got, expected $2" >&2
    exit 1
  fi
}

fetched=0

mapfile -t need < <(missing "${WHEEL_PHOTOS[@]}")
if ((${#need[@]})); then
  command -v python3 >/dev/null || { echo "fetch-photos: python3 not found" >&2; exit 1; }
  workdir
  echo "fetch-photos: downloading $WHEEL_REQ wheel (13.7 MB) for ${need[*]}"
  PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "${WHEEL_ARGS[@]}" --dest "$WORK/wheel" "$WHEEL_REQ"
  whl=$(ls "$WORK"/wheel/scikit_image-*.whl)
  check_sha256 "$whl" "$WHEEL_SHA256"
  python3 - "$whl" "$OUT" "${need[@]}" <<'EOF'
import os, sys, zipfile
whl, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(whl) as z:
    for name in names:
        tmp = os.path.join(out, "." + name + ".part")
        with z.open("skimage/data/" + name) as src, open(tmp, "wb") as dst:
            dst.write(src.read())
        os.replace(tmp, os.path.join(out, name))
        print(f"fetch-photos: wrote {os.path.join(out, name)}")
EOF
  fetched=1
fi

mapfile -t need < <(missing "${NPM_PHOTOS[@]/#/$NPM_PREFIX}")
if ((${#need[@]})); then
  command -v npm >/dev/null || { echo "fetch-photos: npm not found" >&2; exit 1; }
  workdir
  echo "fetch-photos: downloading $NPM_PKG tarball (12.7 MB) for ${need[*]}"
  mkdir -p "$WORK/npm"
  npm pack "$NPM_PKG" --pack-destination "$WORK/npm" --silent >/dev/null
  tgz=$(ls "$WORK"/npm/vladmandic-face-api-*.tgz)
  check_sha256 "$tgz" "$NPM_SHA256"
  for name in "${need[@]}"; do
    member="package/demo/${name#"$NPM_PREFIX"}"
    tar -xzf "$tgz" -C "$WORK/npm" "$member"
    mv -f "$WORK/npm/$member" "$OUT/$name"
    echo "fetch-photos: wrote $OUT/$name"
  done
  fetched=1
fi

if ((fetched == 0)); then
  echo "fetch-photos: all photos already in $OUT, nothing to do"
fi
