# Finds cuBLAS for the CUDA backend and sets SLIMRT_CUBLAS_LIBRARY (the libcublas file),
# SLIMRT_CUBLAS_INCLUDE_DIR and SLIMRT_CUBLAS_LIBRARY_DIR, or leaves SLIMRT_CUBLAS_LIBRARY unset.
# Looks, in order, at: the CUDA toolkit (CUDA::cublas), SLIMRT_CUBLAS_ROOT (cache or environment
# variable: a directory with include/cublas_v2.h and lib/libcublas.so*), and the `nvidia-cublas`
# Python wheel (site-packages/nvidia/cu*/ or nvidia/cublas/) of the python3 on the PATH, for
# toolkits installed without cuBLAS.
set(SLIMRT_CUBLAS_ROOT "$ENV{SLIMRT_CUBLAS_ROOT}" CACHE PATH "cuBLAS install prefix (optional)")

if(TARGET CUDA::cublas)
  get_target_property(_slimrt_cublas_lib CUDA::cublas LOCATION)
  set(SLIMRT_CUBLAS_LIBRARY "${_slimrt_cublas_lib}")
  set(SLIMRT_CUBLAS_INCLUDE_DIR "${CUDAToolkit_INCLUDE_DIRS}")
else()
  set(_slimrt_cublas_roots "")
  if(SLIMRT_CUBLAS_ROOT)
    list(APPEND _slimrt_cublas_roots "${SLIMRT_CUBLAS_ROOT}")
  endif()
  find_program(_slimrt_python3 NAMES python3 python)
  if(_slimrt_python3)
    execute_process(
      # -I: ignore PYTHONPATH, so that inside pip's isolated build environment this still sees
      # the environment slimrt installs into (where libcublas will be loaded from at run time).
      COMMAND "${_slimrt_python3}" -I -c
              "import importlib.util as u; s = u.find_spec('nvidia'); print(';'.join(s.submodule_search_locations) if s else '')"
      OUTPUT_VARIABLE _slimrt_nvidia_dirs OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    foreach(_dir IN LISTS _slimrt_nvidia_dirs)
      file(GLOB _subdirs LIST_DIRECTORIES true "${_dir}/cu*" "${_dir}/cublas")
      list(APPEND _slimrt_cublas_roots ${_subdirs})
    endforeach()
  endif()
  find_path(SLIMRT_CUBLAS_INCLUDE_DIR cublas_v2.h PATHS ${_slimrt_cublas_roots}
            PATH_SUFFIXES include NO_DEFAULT_PATH)
  find_library(SLIMRT_CUBLAS_LIBRARY NAMES cublas libcublas.so.13 libcublas.so.12
               PATHS ${_slimrt_cublas_roots} PATH_SUFFIXES lib lib64 NO_DEFAULT_PATH)
endif()
if(SLIMRT_CUBLAS_LIBRARY)
  get_filename_component(_slimrt_cublas_real "${SLIMRT_CUBLAS_LIBRARY}" REALPATH)
  get_filename_component(SLIMRT_CUBLAS_LIBRARY_DIR "${_slimrt_cublas_real}" DIRECTORY)
endif()
