#!/usr/bin/env bash
# Mingchu's two commands:
#   ./dev.sh demo   set up, then run camera-sim + gateway + web page on this machine
#   ./dev.sh test   set up, check formatting and lints, then build and run every test
# Other:
#   ./dev.sh setup  only install what is missing
#   ./dev.sh web    build the dashboard (web/dist) alone
#   ./dev.sh bench  run the relay, detection, access, events API, dashboard and soak benchmarks (target/bench/*.md)
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(pkg-config libgstrtspserver-1.0-dev gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-x
  # The browser test (tests/web): Chromium, and a font with Chinese characters for its screenshot.
  chromium fonts-wqy-zenhei)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

setup() {
  local missing=()
  # pip only downloads wheels here (ONNX Runtime, photos); any python3 with pip will do.
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  # npm builds the dashboard, packs one tarball of photos for the scenes and installs the
  # browser-test driver.
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    local line="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    if [[ $(id -u) -eq 0 ]]; then
      say "installing system packages: ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      say "installing system packages with sudo: ${missing[*]}"
      sudo apt-get update -qq
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
      echo "Missing system packages. Run as root, then run this command again:" >&2
      echo "  sudo sh -c '$line'" >&2
      exit 1
    fi
  fi
  install_onnxruntime
  if [[ ! -f .tools/photos/astronaut.png ]]; then
    camera-sim/fetch-photos.sh .tools/photos
  fi
  if ! command -v cargo >/dev/null; then
    echo "cargo (Rust 1.95 or newer) is required; install the Rust toolchain, then run this command again." >&2
    exit 1
  fi
}

# ONNX Runtime's shared library comes from its PyPI wheel: downloaded (not installed) and
# unpacked under .tools/onnxruntime/, where the gateway looks for it by default.
ORT_VERSION=1.32.0
install_onnxruntime() {
  local lib=.tools/onnxruntime/libonnxruntime.so.$ORT_VERSION
  [[ -f $lib ]] && return 0
  say "fetching ONNX Runtime $ORT_VERSION (PyPI wheel onnxruntime==$ORT_VERSION)"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "onnxruntime==$ORT_VERSION"
  python3 - "$tmp" "$lib" <<'PY'
import glob, os, sys, zipfile
tmp, lib = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "onnxruntime-*.whl"))[0]
name = "onnxruntime/capi/" + os.path.basename(lib)
os.makedirs(os.path.dirname(lib), exist_ok=True)
with zipfile.ZipFile(wheel) as z, open(lib + ".part", "wb") as out:
    out.write(z.read(name))
os.replace(lib + ".part", lib)
PY
  rm -rf "$tmp"
}

# The dashboard and the share page: built into web/dist, which release builds embed
# (debug builds read it from disk).
build_web() {
  say "building the dashboard (web/dist)"
  (cd web && npm ci --no-audit --no-fund --silent && npm run build --silent)
}

demo() {
  setup
  build_web
  say "building (release)"
  cargo build --release --locked --workspace --bins
  mkdir -p data
  local token
  if [[ ! -f data/demo.toml ]]; then
    token=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    cat > data/demo.toml <<TOML
# Demo config written by ./dev.sh demo. Edit freely; see README.md for every key.
[server]
listen = "127.0.0.1:8080"
data_dir = "./data"

[auth]
admin_token = "$token"

[webrtc]
udp_listen = "127.0.0.1:8189"

[[sites]]
id = "sunny"
name = "阳光小学食堂"
kind = "school"
district = "东城区"

[[sites]]
id = "redstar"
name = "红星幼儿园"
kind = "kindergarten"
district = "东城区"

[[sites]]
id = "sunset"
name = "夕阳红养老院"
kind = "elderly_care"
district = "西城区"

[[cameras]]
id = "cam1"
name = "阳光小学 后厨"
site = "sunny"
url = "rtsp://127.0.0.1:8554/cam1"

[[cameras]]
id = "cam2"
name = "阳光小学 备餐间"
url = "rtsp://127.0.0.1:8554/cam2"
site = "sunny"

[[cameras]]
id = "cam3"
name = "红星幼儿园 厨房"
url = "rtsp://127.0.0.1:8554/cam3"
site = "redstar"

[[cameras]]
id = "cam4"
name = "夕阳红养老院 厨房"
url = "rtsp://127.0.0.1:8554/cam4"
site = "sunset"
TOML
  fi
  chmod 600 data/demo.toml
  token=$(sed -n 's/^admin_token = "\(.*\)"/\1/p' data/demo.toml)
  # Three accounts, made once; their passwords are shown this one time.
  if ! ./target/release/mingchu --config data/demo.toml user list 2>/dev/null | grep -q .; then
    local spec role name sites pw
    for spec in "admin:admin:" "regulator:wang:*" "reviewer:li:sunny"; do
      IFS=: read -r role name sites <<<"$spec"
      pw=$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')
      if printf '%s\n' "$pw" | ./target/release/mingchu --config data/demo.toml \
          user add --role "$role" --sites "$sites" --password-stdin "$name" >/dev/null; then
        say "account $name ($role${sites:+, sites $sites}): password $pw"
      fi
    done
  fi
  trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
  # Every camera plays the built-in kitchen scene (a person with a phone, then a cat),
  # staggered so events keep coming; the gateway runs the default model on each.
  ./target/release/camera-sim --listen 127.0.0.1:8554 --cameras 4 --control 127.0.0.1:8555 \
    --scene default --scene-offset-s 15 &
  sleep 1
  ./target/release/mingchu --config data/demo.toml &
  sleep 1
  say "Mingchu is running: open http://127.0.0.1:8080/ and log in with an account above"
  say "API: curl -H 'Authorization: Bearer $token' http://127.0.0.1:8080/api/cameras   (Ctrl-C stops)"
  wait
}

run_tests() {
  setup
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    echo "the test command checks formatting and lints: install the rustfmt and clippy components of your Rust toolchain" >&2
    exit 1
  fi
  say "checking formatting"
  cargo fmt --all --check
  say "linting"
  cargo clippy --locked --workspace --all-targets -- -D warnings
  build_web
  say "building"
  cargo build --locked --workspace --bins --tests
  say "testing"
  cargo test --locked --workspace --no-fail-fast -- --test-threads=1
  say "testing the web page in Chromium"
  local bins
  bins="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug"   # the binaries just built
  (cd tests/web && npm ci --no-audit --no-fund --silent && MINGCHU_BIN_DIR="$bins" node --test)
}

bench() {
  setup
  build_web
  cargo build --release --locked --workspace --bins
  cargo bench --locked -p mingchu-e2e --bench relay
  cargo bench --locked -p mingchu-e2e --bench detect
  cargo bench --locked -p mingchu-e2e --bench access
  cargo bench --locked -p mingchu-e2e --bench events_api
  local bins
  bins="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release"
  (cd tests/web && npm ci --no-audit --no-fund --silent && MINGCHU_BIN_DIR="$bins" node bench.mjs)
  cargo bench --locked -p mingchu-e2e --bench soak
}

case "${1:-}" in
  demo) demo ;;
  test) run_tests ;;
  setup) setup ;;
  web) build_web ;;
  bench) bench ;;
  *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
