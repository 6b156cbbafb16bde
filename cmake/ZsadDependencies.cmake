# Finds every external dependency once; targets below are what the folders link.
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)                       # Debian libtorch-dev 1.13.1 (CPU)
find_package(HDF5 REQUIRED COMPONENTS C)           # serial HDF5, C API
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(ZLIB REQUIRED)
find_package(ICU REQUIRED COMPONENTS uc i18n)
find_package(GTest REQUIRED)
find_package(benchmark QUIET)

# LibTorch's imported target sets CXX_STANDARD 14 and a set of defines; wrap it so that
# folders link one name.
add_library(zsad_torch INTERFACE)
target_link_libraries(zsad_torch INTERFACE ${TORCH_LIBRARIES})
target_compile_options(zsad_torch INTERFACE ${TORCH_CXX_FLAGS})

# c10d Gloo headers come from libgloo-dev; reducer.hpp needs a header Debian does not ship (cmake/shim).
find_path(GLOO_INCLUDE_DIR gloo/algorithm.h)
if(GLOO_INCLUDE_DIR)
  set(ZSAD_WITH_GLOO ON)
else()
  set(ZSAD_WITH_GLOO OFF)
endif()

# OpenMPI for the mpi communicator backend.
find_package(MPI COMPONENTS C)
if(MPI_C_FOUND)
  set(ZSAD_WITH_MPI ON)
else()
  set(ZSAD_WITH_MPI OFF)
endif()

# OpenCV: the minimal -dev packages ship no CMake config, so find the three libraries by hand.
find_path(OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4 REQUIRED)
foreach(m core imgproc imgcodecs)
  find_library(OPENCV_${m}_LIB opencv_${m} REQUIRED)
endforeach()
add_library(zsad_opencv INTERFACE)
target_include_directories(zsad_opencv SYSTEM INTERFACE ${OPENCV_INCLUDE_DIR})
target_link_libraries(zsad_opencv INTERFACE ${OPENCV_imgcodecs_LIB} ${OPENCV_imgproc_LIB} ${OPENCV_core_LIB})

# CUDA + NCCL are optional: found under /usr/local/cuda when present, never required.
option(ZSAD_ENABLE_NCCL "Build the NCCL communicator when a CUDA toolkit with NCCL is found" ON)
set(ZSAD_WITH_NCCL OFF)
if(ZSAD_ENABLE_NCCL)
  find_path(ZSAD_CUDA_INCLUDE_DIR cuda_runtime_api.h HINTS /usr/local/cuda/include ENV CUDA_HOME PATH_SUFFIXES include)
  find_path(ZSAD_NCCL_INCLUDE_DIR nccl.h HINTS /usr/local/cuda/include ENV CUDA_HOME ENV NCCL_HOME PATH_SUFFIXES include)
  find_library(ZSAD_NCCL_LIBRARY nccl HINTS /usr/local/cuda/lib64 /usr/local/cuda/lib ENV NCCL_HOME PATH_SUFFIXES lib lib64)
  find_library(ZSAD_CUDART_LIBRARY cudart HINTS /usr/local/cuda/lib64 /usr/local/cuda/lib PATH_SUFFIXES lib64 lib)
  if(ZSAD_CUDA_INCLUDE_DIR AND ZSAD_NCCL_INCLUDE_DIR AND ZSAD_NCCL_LIBRARY AND ZSAD_CUDART_LIBRARY)
    set(ZSAD_WITH_NCCL ON)
    add_library(zsad_nccl INTERFACE)
    target_include_directories(zsad_nccl SYSTEM INTERFACE ${ZSAD_NCCL_INCLUDE_DIR} ${ZSAD_CUDA_INCLUDE_DIR})
    target_link_libraries(zsad_nccl INTERFACE ${ZSAD_NCCL_LIBRARY} ${ZSAD_CUDART_LIBRARY})
  endif()
endif()

# Whether the LibTorch we found was built with CUDA (Debian's is not).
set(ZSAD_WITH_TORCH_CUDA OFF)
if(TORCH_CUDA_LIBRARIES OR CAFFE2_USE_CUDA)
  set(ZSAD_WITH_TORCH_CUDA ON)
endif()

set(ZSAD_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with Debian's python3-torch/sklearn/scipy/h5py/pil, used by reference tests")

message(STATUS "zsad: gloo=${ZSAD_WITH_GLOO} mpi=${ZSAD_WITH_MPI} nccl=${ZSAD_WITH_NCCL} torch_cuda=${ZSAD_WITH_TORCH_CUDA} benchmark=${benchmark_FOUND}")
