# Cross build for arm64 (aarch64) Linux with Debian's cross compiler (g++-aarch64-linux-gnu),
# against arm64 libraries unpacked into a private sysroot (scripts/check-arm64.sh makes one from
# Debian's :arm64 packages without installing them):
#
#   cmake -S . -B build-arm64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#         -DLAZYLLM_ARM64_SYSROOT=/path/to/sysroot -DLAZYLLM_CUDA=OFF
#
# The sysroot holds the libraries' files as the packages lay them out (usr/include,
# usr/lib/aarch64-linux-gnu, lib/...); the C and C++ runtimes' headers and startup files come
# from the cross compiler's own /usr/aarch64-linux-gnu, so the sysroot needs no libc6-dev. A
# sysroot of "/" uses the machine's own multiarch :arm64 packages (dpkg --add-architecture arm64).
# Where qemu-aarch64(-static) is found, it runs the arm64 binaries (CMAKE_CROSSCOMPILING_EMULATOR).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# The sysroot: -DLAZYLLM_ARM64_SYSROOT or the environment's LAZYLLM_ARM64_SYSROOT (try_compile
# projects see the variable through CMAKE_TRY_COMPILE_PLATFORM_VARIABLES).
if(NOT LAZYLLM_ARM64_SYSROOT)
  set(LAZYLLM_ARM64_SYSROOT "$ENV{LAZYLLM_ARM64_SYSROOT}")
endif()
if(NOT LAZYLLM_ARM64_SYSROOT)
  message(FATAL_ERROR "aarch64-linux-gnu.cmake: set LAZYLLM_ARM64_SYSROOT (-D or environment) to the arm64 sysroot")
endif()
get_filename_component(LAZYLLM_ARM64_SYSROOT "${LAZYLLM_ARM64_SYSROOT}" ABSOLUTE)
set(ENV{LAZYLLM_ARM64_SYSROOT} "${LAZYLLM_ARM64_SYSROOT}")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LAZYLLM_ARM64_SYSROOT)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Libraries, headers and CMake packages from the sysroot (and the cross compiler's runtime);
# programs (pkg-config, python3) from this machine.
set(CMAKE_FIND_ROOT_PATH "${LAZYLLM_ARM64_SYSROOT}" /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# The multiarch headers (OpenSSL's opensslconf.h, OpenBLAS's cblas.h) are in
# usr/include/aarch64-linux-gnu, which the cross compiler does not search by itself.
set(CMAKE_C_FLAGS_INIT "-isystem ${LAZYLLM_ARM64_SYSROOT}/usr/include/aarch64-linux-gnu")
set(CMAKE_CXX_FLAGS_INIT "-isystem ${LAZYLLM_ARM64_SYSROOT}/usr/include/aarch64-linux-gnu")

# The libraries' own dependencies (libicuuc's libicudata, OpenBLAS's libgfortran) are found at
# link time in the sysroot; at run time the loader finds them there through qemu's -L.
set(_arm64_libdirs "${LAZYLLM_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu:${LAZYLLM_ARM64_SYSROOT}/lib/aarch64-linux-gnu")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_arm64_libdirs}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_arm64_libdirs}")

# pkg-config (cpp-httplib) reads the sysroot's .pc files only.
if(NOT LAZYLLM_ARM64_SYSROOT STREQUAL "/")
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "${LAZYLLM_ARM64_SYSROOT}")
endif()
set(ENV{PKG_CONFIG_LIBDIR}
    "${LAZYLLM_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${LAZYLLM_ARM64_SYSROOT}/usr/share/pkgconfig")

find_program(LAZYLLM_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static NO_CMAKE_FIND_ROOT_PATH)
if(LAZYLLM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${LAZYLLM_QEMU_AARCH64};-L;${LAZYLLM_ARM64_SYSROOT}")
endif()
