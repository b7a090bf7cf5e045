#!/usr/bin/env bash
# Builds the LibTorch core (-DGCL_CORE_ONLY=ON) against LibTorch 2.x on a Debian 12 machine,
# whose own LibTorch is 1.13: Debian 13 (trixie) in a chroot has LibTorch 2.6, GCC 14 and a
# newer Abseil. GPU builds use an upstream LibTorch 2.x, so this keeps the 2.x code paths
# (c10d::Backend, TCPStore options, optimizer state keys, autocast) compiling and passing
# without a GPU. CI runs the CPU form after scripts/test.sh.
#
#   scripts/check_libtorch2.sh          CPU LibTorch 2.6: build the core, run its ctest suites
#   scripts/check_libtorch2.sh --cuda   CUDA LibTorch 2.6 (Debian contrib, with NCCL): compile
#                                       the core with -DGCL_CUDA=ON, USE_C10D_NCCL included;
#                                       nothing runs (no GPU here); ~8 GB of packages
#
# Needs root (debootstrap, mount, chroot). The trixie tree stays in build-trixie/ (TRIXIE_DIR)
# for the next run; the source is mounted read-only, the build lives inside the tree.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cuda=0
[[ ${1:-} == --cuda ]] && cuda=1
flavour=$([[ $cuda == 1 ]] && echo cuda || echo cpu)
root=${TRIXIE_DIR:-$src/build-trixie}/$flavour
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
jobs=${JOBS:-$(nproc)}
if [[ $(id -u) != 0 ]]; then
  command -v sudo > /dev/null || { echo "check_libtorch2.sh: needs root or sudo (debootstrap, mount, chroot)" >&2; exit 2; }
  exec sudo --preserve-env=TRIXIE_DIR,DEBIAN_MIRROR,JOBS bash "$0" "$@"
fi

packages=(build-essential cmake ninja-build ccache pkg-config libopenblas0-pthread
          libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
          libhdf5-dev libnifti2-dev libznz-dev)
components=main
cmake_args=(-DGCL_CORE_ONLY=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [[ $cuda == 1 ]]; then
  packages+=(libtorch-cuda-dev libgloo-cuda-dev libnccl-dev nvidia-cuda-toolkit nvidia-cuda-dev)
  components=main,contrib,non-free
  # No GPU to detect; sm_90 is the H100/H200 the device checks use.
  # The cuDNN stand-in below has no libcudnn.so.9, which libtorch_cuda.so needs: links check
  # our symbols and leave LibTorch's own to the loader of a real GPU machine.
  cmake_args+=(-DGCL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DTORCH_CUDA_ARCH_LIST=9.0
               -DCMAKE_EXE_LINKER_FLAGS=-Wl,--unresolved-symbols=ignore-in-shared-libs)
else
  packages+=(libtorch-dev libgloo-dev)
fi

if ! command -v debootstrap > /dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap > /dev/null
fi
if [[ ! -x $root/usr/bin/apt-get ]]; then
  echo "== debootstrap trixie into $root"
  rm -rf "$root"
  mkdir -p "$(dirname "$root")"
  debootstrap --variant=minbase --components=$components trixie "$root" "$mirror" > "$root.debootstrap.log" 2>&1 ||
    { tail -20 "$root.debootstrap.log"; exit 1; }
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/src" "$root/shared"
shared=$(realpath -m "$src/../shared")

# The mounts live in a private mount namespace and vanish with it.
export root src shared cuda jobs
export packages_line="${packages[*]}" cmake_line="${cmake_args[*]}"
exec unshare --mount --propagation private bash -euo pipefail -c '
  mount -t proc proc "$root/proc"
  mount --bind /dev "$root/dev"
  mount --bind "$src" "$root/src" && mount -o remount,bind,ro "$root/src"
  if [[ -d $shared ]]; then mount --bind "$shared" "$root/shared" && mount -o remount,bind,ro "$root/shared"; fi
  in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 bash -euo pipefail -c "$1"; }
  if [[ $cuda == 1 ]]; then
    # nvidia-cudnn downloads cuDNN from NVIDIA when it is configured, which fails offline;
    # the core does not use cuDNN (LibTorch says USE_CUDNN=0), so a stand-in satisfies it.
    in_root "dpkg-query -W nvidia-cudnn > /dev/null 2>&1 || {
      mkdir -p /tmp/cudnn-stub/DEBIAN
      printf \"Package: nvidia-cudnn\nVersion: 9.0.0.312-0gcl\nArchitecture: amd64\nMaintainer: gcl <gcl@localhost>\nDescription: stand-in for the cuDNN downloader (compile check only)\n\" > /tmp/cudnn-stub/DEBIAN/control
      dpkg-deb --build /tmp/cudnn-stub /tmp/nvidia-cudnn.deb > /dev/null && dpkg -i /tmp/nvidia-cudnn.deb > /dev/null; }"
  fi
  echo "== packages: $packages_line"
  in_root "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages_line > /tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; exit 1; }"
  in_root "grep PRETTY /etc/os-release; c++ --version | head -1"
  in_root "cmake -G Ninja -S /src -B /build-core $cmake_line > /tmp/configure.log 2>&1 ||
             { tail -30 /tmp/configure.log; exit 1; }; grep \"^-- LibTorch\" /tmp/configure.log"
  in_root "cmake --build /build-core -- -k 0 -j$jobs > /tmp/build.log 2>&1 ||
             { grep -E -A30 \"FAILED|error:\" /tmp/build.log | head -150; exit 1; }; tail -1 /tmp/build.log"
  if [[ $cuda == 1 ]]; then
    echo "== built with CUDA and NCCL (compile check: nothing runs without a GPU)"
  else
    in_root "cd /build-core; ctest -j$jobs --output-on-failure > /tmp/ctest.log 2>&1 || { tail -60 /tmp/ctest.log; exit 1; }
             tail -3 /tmp/ctest.log"
  fi
'
