#!/usr/bin/env bash
# Developer build: compiles the C core and the extension into build/dev and
# drops _core into python/biotrain_rt/ so that PYTHONPATH=python works without
# reinstalling. Serialised with a lock so parallel builds do not collide.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec 9>"$root/build/.dev_build.lock" 2>/dev/null || { mkdir -p "$root/build"; exec 9>"$root/build/.dev_build.lock"; }
flock 9
pyb=$(python3 -c 'import pybind11; print(pybind11.get_cmake_dir())')
cmake -S "$root" -B "$root/build/dev" -G Ninja -DBT_BUILD_PYTHON=ON -DCMAKE_BUILD_TYPE=Release \
      -Dpybind11_DIR="$pyb" >/dev/null
cmake --build "$root/build/dev" 2>&1 | grep -v '^\[' || true
test -f "$root/build/dev/"_core*.so
# copy then rename: a running process keeps its mapped file instead of crashing
for so in "$root/build/dev/"_core*.so "$root/build/dev/libbiotrain.so"; do
  cp "$so" "$root/python/biotrain_rt/.$(basename "$so").tmp"
  mv -f "$root/python/biotrain_rt/.$(basename "$so").tmp" "$root/python/biotrain_rt/$(basename "$so")"
done
