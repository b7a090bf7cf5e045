#!/usr/bin/env bash
# The GPU check of issue 6 (docs/gpu.md), one script for one run on a machine
# with a CUDA GPU, nvcc, CMake, ninja and python3 with a CUDA torch:
#   1. configure the LibTorch core against that torch's LibTorch
#      (-DGCL_CUDA=ON -DGCL_CORE_ONLY=ON) and build it (ninja -k 0),
#   2. run train_device_test (CPU vs CUDA) and pretrain_step_bench on CUDA
#      (fp32 with the PyTorch reference side by side on the same GPU, and with
#      and without batch prefetching; then bf16) at BENCH_ARGS,
#   3. build the rest and run the core tests (ctest; GCL_EXPECT_CUDA=1 so the
#      CUDA tests cannot skip).
# Logs go to OUT ($1, else $OUT, else /tmp/gcl-gpu-out): env.txt, configure.log,
# build.log, device_test.txt, bench_fp32.txt, bench_bf16.txt, ctest.log, summary.txt.
#
# The machine needs no Abseil/GoogleTest/HDF5/NIfTI: scripts/gpu/fetch_deps.sh
# unpacks Debian's into DEPS (default: .gpu-deps/root beside or above this tree).
#
#   scripts/gpu/device_check.sh [OUT]
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:-${OUT:-/tmp/gcl-gpu-out}}")
mkdir -p "$out"
deps=${DEPS:-}
for d in "$src/.gpu-deps/root" "$src/../root" "$src/../.gpu-deps/root"; do
  [[ -z $deps && -d $d/usr/include/absl ]] && deps=$(cd "$d" && pwd)
done
build=${BUILD_DIR:-$src/build-gpu}
jobs=${JOBS:-$(nproc)}
BENCH_ARGS=${BENCH_ARGS:-"--size 128 --batch 32 --base 32 --steps 10 --threads 8"}
python=${PYTHON:-python3}
# Dry run on a CPU machine (done 2026-11-26: all phases, 18/18 core tests):
#   GCL_CUDA=OFF DEVICE=cpu BUILD_TYPE=RelWithDebInfo PYTHON=/usr/bin/python3 JOBS=2 \
#   BENCH_ARGS="--size 64 --batch 16 --base 8 --steps 4 --threads 2" scripts/gpu/device_check.sh /tmp/dry
# (the sampler needs batch >= 16: 2 patients x 2 phases x 4 positions).
cuda=${GCL_CUDA:-ON}
device=${DEVICE:-cuda}
summary=$out/summary.txt
note() { echo "== $(date -u +%T) $*" | tee -a "$summary"; }
t0=$(date +%s)

note "source $src, deps ${deps:-none}, build $build, $jobs jobs"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  # What gcl-worker's discovery parses (worker/agent/gpu_discovery.h), recorded
  # so that its test fixtures can be checked against a real driver.
  nvidia-smi --query-gpu=index,uuid,name,memory.total,mig.mode.current --format=csv,noheader,nounits
  nvidia-smi -L
  nvcc --version | tail -2
  grep PRETTY /etc/os-release
  $python -c 'import torch, torch.distributed as d; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU", "nccl", d.is_available() and d.is_nccl_available())'
  c++ --version | head -1
  cmake --version | head -1
  nproc
} > "$out/env.txt" 2>&1
cat "$out/env.txt" >> "$summary"

torch_prefix=$($python -c 'import torch; print(torch.utils.cmake_prefix_path)')
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
command -v nvcc > /dev/null && export CUDACXX=${CUDACXX:-$(command -v nvcc)}
cmake -G Ninja -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} -DGCL_CUDA=$cuda -DGCL_CORE_ONLY=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$torch_prefix;${deps:+$deps/usr}" \
  > "$out/configure.log" 2>&1
rc=$?
grep -E "LibTorch|CMake Error" "$out/configure.log" | tee -a "$summary"
note "configure rc=$rc ($(( $(date +%s) - t0 )) s)"
[[ $rc -ne 0 ]] && { tail -40 "$out/configure.log"; exit 1; }

# Phases share one deadline (DEADLINE_S after the start) so the logs come back
# inside the device tool's call limit: the bench and the CUDA test first, the
# rest of the test suite after.
deadline=$(( t0 + ${DEADLINE_S:-560} ))
left() { local l=$(( deadline - $(date +%s) - ${1:-0} )); (( l > 5 )) && echo $l || echo 5; }

timeout $(left 200) ninja -C "$build" -j "$jobs" -k 0 pretrain_step_bench train_device_test > "$out/build.log" 2>&1
rc=$?
note "build bench + device test rc=$rc ($(( $(date +%s) - t0 )) s)"
if [[ $rc -ne 0 ]]; then
  grep -E "error|Error" "$out/build.log" | head -30 | tee -a "$summary"
fi

# Debian's runtime libraries only for our binaries (not for python or cmake).
ldp=${deps:+$deps/usr/lib/x86_64-linux-gnu:$deps/usr/lib/x86_64-linux-gnu/hdf5/serial:}${LD_LIBRARY_PATH:-}
dt=$(find "$build" -name train_device_test -type f -perm -u+x | head -1)
if [[ -n $dt ]]; then
  timeout 90 env LD_LIBRARY_PATH="$ldp" GCL_EXPECT_CUDA=$([[ $cuda == ON ]] && echo 1) "$dt" > "$out/device_test.txt" 2>&1
  note "train_device_test rc=$?"
  grep -E "cpu vs cuda|OK \]|FAILED|SKIPPED|Failure" "$out/device_test.txt" | tee -a "$summary"
fi
bench=$build/bench/pretrain_step_bench
if [[ -x $bench && -z ${SKIP_BENCH:-} ]]; then
  ref=$src/scripts/gpu/gcl_step_device.py
  export GCL_STEP_PY=${GCL_STEP_PY:-$(ls "$src/../gcl_step.py" "$src/.gpu-deps/gcl_step.py" "$src/../shared/reference/gcl_step.py" 2>/dev/null | head -1)}
  note "bench fp32 on $device, reference $GCL_STEP_PY: $BENCH_ARGS"
  timeout $(left 150) env LD_LIBRARY_PATH="$ldp" "$bench" $BENCH_ARGS --device $device --precision fp32 \
    --prefetch both --reference "$ref" --python "env -u LD_LIBRARY_PATH $python" > "$out/bench_fp32.txt" 2>&1
  note "bench fp32 rc=$? ($(( $(date +%s) - t0 )) s)"
  cat "$out/bench_fp32.txt" >> "$summary"
  timeout $(left 110) env LD_LIBRARY_PATH="$ldp" "$bench" $BENCH_ARGS --device $device --precision bf16 \
    --no-reference --no-breakdown > "$out/bench_bf16.txt" 2>&1
  note "bench bf16 rc=$? ($(( $(date +%s) - t0 )) s)"
  cat "$out/bench_bf16.txt" >> "$summary"
fi

timeout $(left 50) ninja -C "$build" -j "$jobs" -k 0 >> "$out/build.log" 2>&1
note "build all rc=$? ($(( $(date +%s) - t0 )) s)"
grep -E "error:" "$out/build.log" | sort -u | head -20 | tee -a "$summary"

(cd "$build" && timeout $(left 25) env LD_LIBRARY_PATH="$ldp" \
   GCL_EXPECT_CUDA=$([[ $cuda == ON ]] && echo 1) \
   ctest -j "$jobs" --timeout 120 --output-on-failure > "$out/ctest.log" 2>&1)
note "ctest rc=$? ($(( $(date +%s) - t0 )) s)"
grep -E "tests passed|tests failed|\(Failed\)|\(Timeout\)|Not Run|\*\*\*" "$out/ctest.log" | tee -a "$summary"
grep -E "Test +#.*sec" "$out/ctest.log" >> "$summary"
# A crashing test gets a backtrace (the machine has cuda-gdb, not gdb).
crashed=$(grep -oE "Test +#[0-9]+: [a-z_]+ .*SegFault" "$out/ctest.log" | head -1 | awk '{print $3}')
if [[ -n $crashed ]] && command -v cuda-gdb > /dev/null; then
  exe=$(find "$build" -name "$crashed" -type f -perm -u+x | head -1)
  echo "-- backtrace of $crashed:" >> "$summary"
  timeout 20 env LD_LIBRARY_PATH="$ldp" cuda-gdb -batch -ex run -ex bt --args "$exe" 2>&1 |
    grep -E "^#|signal" | head -25 >> "$summary"
fi
note "done ($(( $(date +%s) - t0 )) s)"
