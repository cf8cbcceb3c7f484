# Cross-compiling for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu:
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
#   cmake --build build-aarch64 -j2
#   qemu-aarch64-static -L /usr/aarch64-linux-gnu build-aarch64/awq-edge-run model.awqe -p "Hi"
#
# The programs are linked against the cross toolchain's glibc in /usr/aarch64-linux-gnu, which is
# what qemu's -L option (or QEMU_LD_PREFIX) points the emulated dynamic loader at. Only the C++
# engine and its programs build this way (no Python module: SKBUILD and AWQ_EDGE_PYTHON are off).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)   # neon/ turns itself on for this processor

set(AWQ_EDGE_CROSS_PREFIX aarch64-linux-gnu CACHE STRING "prefix of the cross compiler's programs")
set(CMAKE_C_COMPILER ${AWQ_EDGE_CROSS_PREFIX}-gcc)
set(CMAKE_CXX_COMPILER ${AWQ_EDGE_CROSS_PREFIX}-g++)

# Libraries and headers come from the target's sysroot only; programs (cmake, python) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${AWQ_EDGE_CROSS_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# try_run() and the tests run the programs through qemu when it is installed.
find_program(AWQ_EDGE_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(AWQ_EDGE_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${AWQ_EDGE_QEMU_AARCH64} -L /usr/${AWQ_EDGE_CROSS_PREFIX})
endif()
