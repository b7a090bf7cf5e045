# LibTorch: find it, pick the C++ standard its headers need, check GCL_CUDA
# against what it was built with, and pass USE_C10D_NCCL on to the core.
#
# Inputs: GCL_CUDA (option), GCL_CXX_STANDARD (cache; empty = automatic),
# GCL_C10D_NCCL (cache: AUTO | ON | OFF).
# Sets: CMAKE_CXX_STANDARD, GCL_TORCH_HAS_CUDA, GCL_TORCH_HAS_NCCL,
# GCL_TORCH_HAS_GLOO (gloo's headers, which ProcessGroupGloo.hpp includes), and the
# interface target gcl_torch (LibTorch as the core links it).
find_package(Torch REQUIRED)

# LibTorch 2.10 and later need C++20 in the headers (torch/all.h errors out
# below it); older ones build with C++17, which is what CI uses (Debian 1.13).
set(GCL_CXX_STANDARD "" CACHE STRING "C++ standard (empty: 17, or 20 for LibTorch >= 2.10)")
if(GCL_CXX_STANDARD)
  set(CMAKE_CXX_STANDARD ${GCL_CXX_STANDARD})
elseif(DEFINED Torch_VERSION AND Torch_VERSION VERSION_GREATER_EQUAL 2.10)
  set(CMAKE_CXX_STANDARD 20)
else()
  set(CMAKE_CXX_STANDARD 17)
endif()

# Compile definitions LibTorch's targets export (USE_DISTRIBUTED, USE_C10D_GLOO, ...).
set(_gcl_torch_defs "")
foreach(_t torch torch_cpu torch_cuda)
  if(TARGET ${_t})
    get_target_property(_d ${_t} INTERFACE_COMPILE_DEFINITIONS)
    if(_d)
      list(APPEND _gcl_torch_defs ${_d})
    endif()
  endif()
endforeach()

set(GCL_TORCH_HAS_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(GCL_TORCH_HAS_CUDA ON)
endif()
if(GCL_CUDA AND NOT GCL_TORCH_HAS_CUDA)
  message(FATAL_ERROR "GCL_CUDA=ON but the LibTorch at ${Torch_DIR} has no CUDA "
                      "(set CMAKE_PREFIX_PATH to an upstream CUDA LibTorch; docs/gpu.md)")
endif()

# USE_C10D_NCCL guards the NCCL process group (ProcessGroupNCCL.hpp and our
# c10d code). Upstream CUDA builds for Linux all have NCCL; some exported
# configs carry the define on torch_cuda, others (pip wheels) do not, so AUTO
# adds it for a CUDA LibTorch that does not export it (OFF: never added).
set(GCL_C10D_NCCL AUTO CACHE STRING "Compile the NCCL process-group code: AUTO | ON | OFF")
set_property(CACHE GCL_C10D_NCCL PROPERTY STRINGS AUTO ON OFF)
set(GCL_TORCH_HAS_NCCL OFF)
if("USE_C10D_NCCL" IN_LIST _gcl_torch_defs)
  set(GCL_TORCH_HAS_NCCL ON)
  set(_gcl_nccl_how "exported by LibTorch")
elseif(GCL_C10D_NCCL STREQUAL "ON" OR (GCL_C10D_NCCL STREQUAL "AUTO" AND GCL_TORCH_HAS_CUDA AND
       EXISTS "${TORCH_INSTALL_PREFIX}/include/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp"))
  set(GCL_TORCH_HAS_NCCL ON)
  set(_gcl_nccl_how "added (GCL_C10D_NCCL=${GCL_C10D_NCCL})")
endif()
if(GCL_TORCH_HAS_NCCL AND NOT "USE_C10D_NCCL" IN_LIST _gcl_torch_defs)
  # Everything that links torch (the whole core) sees the define.
  set_property(TARGET torch APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS USE_C10D_NCCL)
endif()
if(GCL_CUDA)
  set_property(TARGET torch APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS GCL_CUDA=1)
endif()

# gcl_torch: what the core links instead of `torch`. Upstream LibTorch 2.x
# (pip, 2.11 seen) exports its own copies of some libstdc++ symbols,
# std::filesystem::remove_all among them; an executable that meets libtorch.so
# before libstdc++ in its link line imports them from libtorch, and
# remove_all then jumped through a null pointer (every test that removed a
# temporary folder crashed on the GPU machine, GCC 13 in /opt/gcc). Naming
# libstdc++ ahead of LibTorch resolves them from libstdc++, whether it is
# linked statically or shared. Debian's 1.13 exports none: plain `torch`.
add_library(gcl_torch INTERFACE)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND DEFINED Torch_VERSION AND
   Torch_VERSION VERSION_GREATER_EQUAL 2.0)
  target_link_libraries(gcl_torch INTERFACE stdc++ torch)
else()
  target_link_libraries(gcl_torch INTERFACE torch)
endif()

if(NOT GCL_TORCH_HAS_NCCL)
  set(_gcl_nccl_how "off")
endif()
find_path(GCL_GLOO_INCLUDE_DIR gloo/algorithm.h HINTS ${TORCH_INCLUDE_DIRS})
if(GCL_GLOO_INCLUDE_DIR)
  set(GCL_TORCH_HAS_GLOO ON)
  set(_gcl_gloo_how "headers in ${GCL_GLOO_INCLUDE_DIR}")
else()
  set(GCL_TORCH_HAS_GLOO OFF)
  set(_gcl_gloo_how "off (no gloo/algorithm.h: CPU data-parallel groups are refused)")
endif()
message(STATUS "LibTorch ${Torch_VERSION} at ${TORCH_INSTALL_PREFIX}: C++${CMAKE_CXX_STANDARD}, "
               "CUDA ${GCL_TORCH_HAS_CUDA}, USE_C10D_NCCL ${_gcl_nccl_how}, Gloo ${_gcl_gloo_how}; "
               "exported definitions: ${_gcl_torch_defs}")
