# Finds nlohmann/json (header only; slimrt's parsers use it privately) and sets
# SLIMRT_JSON_INCLUDE_DIR. Looks, in order, at: an installed CMake package (Debian's
# nlohmann-json3-dev), then the PyPI wheel `nlohmann-json` of the Python that runs the build
# (pyproject.toml lists it as a build requirement, so `pip install .` always has it).
find_package(nlohmann_json 3.10 CONFIG QUIET)
if(nlohmann_json_FOUND)
  get_target_property(SLIMRT_JSON_INCLUDE_DIR nlohmann_json::nlohmann_json
                      INTERFACE_INCLUDE_DIRECTORIES)
else()
  find_package(Python COMPONENTS Interpreter QUIET)
  if(Python_EXECUTABLE)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c
              "import importlib.util as u; s = u.find_spec('nlohmann_json'); print(list(s.submodule_search_locations)[0] + '/include' if s else '')"
      OUTPUT_VARIABLE _slimrt_json_dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  endif()
  find_path(SLIMRT_JSON_INCLUDE_DIR nlohmann/json.hpp PATHS ${_slimrt_json_dir} NO_DEFAULT_PATH)
endif()
if(NOT SLIMRT_JSON_INCLUDE_DIR)
  message(FATAL_ERROR "slimrt: nlohmann/json not found: apt-get install nlohmann-json3-dev, or "
                      "pip install nlohmann-json")
endif()
