# Writes OUTPUT, a header defining SLIMRT_GIT_COMMIT, run with cmake -P at every build.
# Inputs: GIT_EXECUTABLE, SOURCE_DIR, COMMIT (when non-empty it wins), OUTPUT.
# file(CONFIGURE) leaves OUTPUT untouched when its content is unchanged, so nothing recompiles
# unless the commit did.
if(NOT COMMIT)
  set(COMMIT unknown)
  if(GIT_EXECUTABLE)
    execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short=12 HEAD
      WORKING_DIRECTORY ${SOURCE_DIR}
      OUTPUT_VARIABLE head OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE head_rc ERROR_QUIET)
    if(head_rc EQUAL 0 AND head)
      set(COMMIT ${head})
      # Results from uncommitted changes must not pass for the commit's own.
      execute_process(COMMAND ${GIT_EXECUTABLE} status --porcelain --untracked-files=no
        WORKING_DIRECTORY ${SOURCE_DIR}
        OUTPUT_VARIABLE changes OUTPUT_STRIP_TRAILING_WHITESPACE
        RESULT_VARIABLE status_rc ERROR_QUIET)
      if(NOT status_rc EQUAL 0 OR changes)
        string(APPEND COMMIT "-dirty")
      endif()
    endif()
  endif()
endif()
file(CONFIGURE OUTPUT ${OUTPUT}
  CONTENT "#pragma once\n#define SLIMRT_GIT_COMMIT \"@COMMIT@\"\n"
  @ONLY)
