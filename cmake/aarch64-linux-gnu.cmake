# Cross-compiling lowbit's C++ library and GoogleTest suite for aarch64 Linux with Debian's
# g++-aarch64-linux-gnu; test binaries run under qemu user-mode emulation (scripts/check_arm.sh).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Libraries and headers from the aarch64 sysroot only; programs (and Eigen, header-only and
# passed as Eigen3_DIR) from the build machine.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest (and anything CMake runs) starts aarch64 binaries through qemu.
find_program(LOWBIT_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(LOWBIT_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LOWBIT_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
endif()
