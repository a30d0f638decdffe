# Shared part of the rv32 toolchain files: the bare-metal riscv64-unknown-elf
# GCC (it builds rv32 code with -march/-mabi), picolibc, semihosting for
# console output and the exit status, and the QEMU `virt` memory map.
# The including file sets BT_FW_MARCH, BT_FW_MABI and BT_FW_QEMU_CPU first.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR riscv32)

set(BT_FW_CROSS riscv64-unknown-elf-)
find_program(BT_FW_CC ${BT_FW_CROSS}gcc)
if(NOT BT_FW_CC)
    message(FATAL_ERROR "${BT_FW_CROSS}gcc not found: run scripts/install_cross.sh "
                        "(apt packages gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc)")
endif()
set(CMAKE_C_COMPILER ${BT_FW_CC})
find_program(CMAKE_SIZE ${BT_FW_CROSS}size)
find_program(CMAKE_OBJDUMP ${BT_FW_CROSS}objdump)
# No host libraries or headers: only the cross toolchain's own.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# The compiler check cannot run a bare-metal program: only compile it.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(BT_FW_PLATFORM riscv)
set(BT_FW_ARCH_FLAGS "-march=${BT_FW_MARCH} -mabi=${BT_FW_MABI}")
# CMake passes the C flags to the link step too: -march/-mabi and the specs
# file (which may be given only once) are therefore named here alone.
set(CMAKE_C_FLAGS_INIT "${BT_FW_ARCH_FLAGS} --specs=picolibc.specs")
# --oslib=semihost: stdout and exit() go through semihosting (QEMU
# -semihosting-config enable=on,target=native). The integer-only printf keeps
# the image small: the firmware prints floats as their bit patterns.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "--oslib=semihost --crt0=semihost -DPICOLIBC_INTEGER_PRINTF_SCANF -T${CMAKE_CURRENT_LIST_DIR}/../ld/qemu_virt.ld")
