# GAP9 (GreenWaves): 1 fabric controller + 8-core cluster, RV32 with the
# vendor's Xgap9 extensions, fp32 FPU shared in the cluster, 1.5 MB L2.
#
# UNTESTED: written against the GAP SDK's documented compiler flags and PMSIS
# API; no SDK or board was available when it was written. The SDK must be
# installed and sourced (its sourceme.sh sets GAP_SDK_HOME and
# GAP_RISCV_GCC_TOOLCHAIN). Without it this file stops with a message; the
# firmware/CMakeLists.txt gap9 branch then pulls in the SDK's own cmake
# (utils/cmake/setup.cmake) for the OS, the link script and the board runner.
if(NOT DEFINED ENV{GAP_SDK_HOME})
    message(FATAL_ERROR "toolchain-gap9.cmake: GAP_SDK_HOME is not set. Install the GAP SDK and source its "
                        "sourceme.sh (selecting a GAP9 board) before configuring; the rv32imfc/rv32imc "
                        "toolchains under QEMU need no SDK.")
endif()
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR riscv32)
find_program(BT_FW_CC riscv32-unknown-elf-gcc
             HINTS "$ENV{GAP_RISCV_GCC_TOOLCHAIN}/bin" "$ENV{GAP_SDK_HOME}/../gap_riscv_toolchain/bin")
if(NOT BT_FW_CC)
    message(FATAL_ERROR "toolchain-gap9.cmake: riscv32-unknown-elf-gcc (the GAP SDK's compiler) not found; "
                        "set GAP_RISCV_GCC_TOOLCHAIN")
endif()
set(CMAKE_C_COMPILER ${BT_FW_CC})
get_filename_component(_bt_gap_bin ${BT_FW_CC} DIRECTORY)
find_program(CMAKE_SIZE riscv32-unknown-elf-size HINTS ${_bt_gap_bin})
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

set(BT_FW_PLATFORM gap9)
set(BT_FW_TARGET_NAME gap9)
set(BT_FW_QEMU_CPU "")
# The SDK's flags for GAP9 cluster code: 8 processing elements, one fabric
# controller. -ffp-contract=off is added by firmware/CMakeLists.txt, as for
# every target: the FPU's fused multiply-add would change the bits.
set(BT_FW_ARCH_FLAGS "-march=rv32imcxgap9 -mPE=8 -mFC=1 -D__riscv__")
set(CMAKE_C_FLAGS_INIT "${BT_FW_ARCH_FLAGS}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "${BT_FW_ARCH_FLAGS}")
