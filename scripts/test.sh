#!/usr/bin/env bash
# Sets up everything the tests need and runs them all:
#  - the RISC-V cross compiler, picolibc and QEMU (Debian packages) when missing,
#  - the package with its test extras (builds the C core and the extension),
#  - pytest over tests/ (C kernels against NumPy and PyTorch, sanitizer runs,
#    training equivalence, planner, firmware under QEMU, calibration).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install_cross.sh
python3 -m pip install --quiet ".[test]"
# run from a directory where the source tree's python/ is not importable, so the installed package is tested
cd "$root/tests"
exec python3 -m pytest -q -p no:cacheprovider "$@" "$root/tests"
