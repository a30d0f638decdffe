# rv32imfc: hardware single-precision float (F), hard-float ABI.
# cmake -S firmware -B build -DCMAKE_TOOLCHAIN_FILE=firmware/cmake/toolchain-rv32imfc.cmake -DBT_FW_APP_DIR=<export dir>
set(BT_FW_TARGET_NAME rv32imfc)
set(BT_FW_MARCH rv32imfc)
set(BT_FW_MABI ilp32f)
# QEMU's generic rv32 CPU has F (and D, unused here).
set(BT_FW_QEMU_CPU "rv32")
include(${CMAKE_CURRENT_LIST_DIR}/riscv-picolibc.cmake)
