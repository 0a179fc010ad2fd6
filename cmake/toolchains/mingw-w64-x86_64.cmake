# Cross-compiles llmk.dll for win-x64 with Debian's mingw-w64 (apt package gcc-mingw-w64-x86-64):
#   cmake -S . -B build/win-x64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/mingw-w64-x86_64.cmake
# The win32 thread model is used on purpose: with it the DLL needs no libwinpthread-1.dll (native/CMakeLists.txt
# also links libgcc statically), so the DLL depends only on system DLLs (KERNEL32, msvcrt).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(LLMK_MINGW_PREFIX x86_64-w64-mingw32 CACHE STRING "mingw-w64 tool prefix")
# Prefer the explicit win32-threads compiler when Debian's alternatives provide it.
find_program(LLMK_MINGW_GCC NAMES ${LLMK_MINGW_PREFIX}-gcc-win32 ${LLMK_MINGW_PREFIX}-gcc REQUIRED)
set(CMAKE_C_COMPILER ${LLMK_MINGW_GCC})
find_program(CMAKE_RC_COMPILER NAMES ${LLMK_MINGW_PREFIX}-windres)

set(CMAKE_FIND_ROOT_PATH /usr/${LLMK_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
