# rv32imc: no FPU; float arithmetic in software (libgcc's soft-float routines,
# IEEE 754 round-to-nearest like the hardware), soft-float ABI.
set(BT_FW_TARGET_NAME rv32imc)
set(BT_FW_MARCH rv32imc)
set(BT_FW_MABI ilp32)
# Run on a CPU without F and D, so a stray float instruction traps instead of
# silently using an FPU the target does not have.
set(BT_FW_QEMU_CPU "rv32,f=false,d=false")
include(${CMAKE_CURRENT_LIST_DIR}/riscv-picolibc.cmake)
