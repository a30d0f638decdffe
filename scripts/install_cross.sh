#!/usr/bin/env bash
# Installs what the firmware build and its tests need: the bare-metal RISC-V
# GCC (riscv64-unknown-elf-gcc, which also builds rv32), picolibc for it, and
# qemu-system-riscv32. Idempotent: does nothing when all three are present.
# Installs with apt-get when run as root on a Debian/Ubuntu machine (CI);
# otherwise says what is missing and exits non-zero.
set -euo pipefail

missing=()
have_gcc=0
if command -v riscv64-unknown-elf-gcc >/dev/null 2>&1; then
    have_gcc=1
else
    missing+=("riscv64-unknown-elf-gcc")
fi
# picolibc ships picolibc.specs where the cross GCC finds it.
have_picolibc() {
    local p
    p=$(riscv64-unknown-elf-gcc -print-file-name=picolibc.specs 2>/dev/null) || return 1
    [[ "$p" = /* && -f "$p" ]]
}
if [[ $have_gcc -eq 0 ]] || ! have_picolibc; then
    missing+=("picolibc")
fi
if ! command -v qemu-system-riscv32 >/dev/null 2>&1; then
    missing+=("qemu-system-riscv32")
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install_cross: riscv64-unknown-elf-gcc, picolibc and qemu-system-riscv32 are present"
    exit 0
fi

echo "install_cross: missing ${missing[*]}"
packages=(gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc)
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_cross: cannot install: need root and apt-get. Install these packages yourself:" >&2
    echo "    apt-get install ${packages[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update; then
    echo "install_cross: apt-get update failed" >&2
    exit 1
fi
if ! apt-get install -y "${packages[@]}"; then
    echo "install_cross: apt-get install ${packages[*]} failed" >&2
    exit 1
fi

# Check again: a package may exist under another layout on this distribution.
fail=0
command -v riscv64-unknown-elf-gcc >/dev/null 2>&1 || { echo "install_cross: still no riscv64-unknown-elf-gcc" >&2; fail=1; }
have_picolibc || { echo "install_cross: picolibc.specs still not found by riscv64-unknown-elf-gcc" >&2; fail=1; }
command -v qemu-system-riscv32 >/dev/null 2>&1 || { echo "install_cross: still no qemu-system-riscv32" >&2; fail=1; }
if [[ $fail -ne 0 ]]; then
    exit 1
fi
echo "install_cross: installed ${packages[*]}"
