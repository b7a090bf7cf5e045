# Shared by scripts/test.sh and scripts/demo.sh: install what is missing, configure, build.
# Sourced, not run. Honours BUILD_DIR (default build) and GCL_SKIP_INSTALL=1.

GCL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$GCL_ROOT/build}"

GCL_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-pthread
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libsqlite3-dev libssl-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libhdf5-dev libnifti2-dev libznz-dev libyaml-cpp-dev
  gnuplot-nox openssl
  prometheus curl python3
)

gcl_install_packages() {
  [ "${GCL_SKIP_INSTALL:-0}" = 1 ] && return 0
  local missing=()
  for p in "${GCL_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

gcl_build() {
  cmake -S "$GCL_ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -- -j"$(nproc)" "$@"
}
