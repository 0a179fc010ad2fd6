# Builds libllmk_cuda (the C API with the CUDA backend) when a CUDA toolkit is usable (LLMK_CUDA AUTO/ON).
include(CheckLanguage)

# A macro, not a function: enable_language(CUDA) has to run in directory scope, or the CMAKE_CUDA_*
# rule variables it defines vanish with the function's scope and generation fails ("Missing variable
# CMAKE_CUDA_COMPILE_OBJECT").
macro(llmk_add_cuda_backend)
  set(_llmk_cuda_usable FALSE)
  file(GLOB _llmk_cuda_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/native/src/cuda/*.cu)
  if(LLMK_CUDA STREQUAL "OFF")
    message(STATUS "llmk: CUDA backend disabled (LLMK_CUDA=OFF)")
  elseif(NOT _llmk_cuda_sources)
    message(STATUS "llmk: no CUDA sources; CPU-only build")
  else()
    # check_language's probe (CMake 3.25) ignores CMAKE_CUDA_HOST_COMPILER, and nvcc 11.8 rejects the
    # default gcc 12; CUDAHOSTCXX reaches the probe.
    if(CMAKE_CUDA_HOST_COMPILER AND NOT DEFINED ENV{CUDAHOSTCXX})
      set(ENV{CUDAHOSTCXX} "${CMAKE_CUDA_HOST_COMPILER}")
    endif()
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      set(_llmk_cuda_usable TRUE)
    elseif(LLMK_CUDA STREQUAL "ON")
      message(FATAL_ERROR "llmk: LLMK_CUDA=ON but no CUDA compiler was found")
    else()
      message(STATUS "llmk: no usable CUDA compiler (where nvcc exists, set CMAKE_CUDA_HOST_COMPILER to a host "
                     "compiler it supports, e.g. clang-14 for nvcc 11.8); CPU-only build")
    endif()
  endif()
  if(_llmk_cuda_usable)
    # Architectures: 80 and 90 (the mma.sync kernels, SASS and PTX), plus 90a with CUDA 12+ (the sm_90a code
    # that wgmma/TMA need: the sm90 slot of the attention kernels, native/src/cuda/attention.cuh). 90a is
    # appended after enable_language because the toolkit's version is known only then; CMake accepts the
    # suffix from 3.25. A CMAKE_CUDA_ARCHITECTURES given by the user is taken as it is.
    set(_llmk_cuda_default_archs FALSE)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
      set(_llmk_cuda_default_archs TRUE)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    if(_llmk_cuda_default_archs AND CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0)
      if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.25)
        list(APPEND CMAKE_CUDA_ARCHITECTURES 90a-real)
      else()
        message(STATUS "llmk: CMake ${CMAKE_VERSION} does not know the 90a architecture (3.25+); no sm_90a code")
      endif()
    endif()
    message(STATUS "llmk: CUDA backend with CUDA ${CMAKE_CUDA_COMPILER_VERSION} for ${CMAKE_CUDA_ARCHITECTURES}")
    llmk_library(llmk_cuda)
    target_sources(llmk_cuda PRIVATE ${_llmk_cuda_sources})
    target_compile_definitions(llmk_cuda PRIVATE LLMK_WITH_CUDA)
    # LLMK_CUDA_SM90A: the library carries sm_90a code, so Hopper devices take the sm90 attention path.
    if("${CMAKE_CUDA_ARCHITECTURES}" MATCHES "(^|;)90a")
      target_compile_definitions(llmk_cuda PRIVATE LLMK_CUDA_SM90A)
    endif()
    set_target_properties(llmk_cuda PROPERTIES
      CUDA_STANDARD 17
      CUDA_VISIBILITY_PRESET hidden
      CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
    target_compile_options(llmk_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>)
    # cudart static: only the driver (libcuda) and cuBLAS are needed at run time.
    target_link_libraries(llmk_cuda PRIVATE CUDA::cudart_static CUDA::cublas)
    if(NOT MSVC)
      # The .cu files are C++ (exceptions are caught at every entry); with a C driver as the CUDA host
      # compiler (clang-14) the link does not add the C++ runtime by itself.
      target_link_libraries(llmk_cuda PRIVATE stdc++)
    endif()
    option(LLMK_BUILD_GPU_BENCH "Build bench/gpu/llmk_gpu_bench with the CUDA backend" OFF)
    if(LLMK_BUILD_GPU_BENCH)
      add_subdirectory(${PROJECT_SOURCE_DIR}/bench/gpu ${CMAKE_BINARY_DIR}/bench/gpu)
    endif()
  endif()
endmacro()
