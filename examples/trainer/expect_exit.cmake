# Runs ${PROG} ${ARGS} and fails unless it exits with ${EXPECT} and prints a message on stderr.
# Usage: cmake -DPROG=... -DARGS="a;b" -DEXPECT=2 -P expect_exit.cmake
execute_process(COMMAND ${PROG} ${ARGS}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("exit status ${rc}\nstderr: ${err}")
if(NOT rc STREQUAL "${EXPECT}")
  message(FATAL_ERROR "expected exit status ${EXPECT}, got ${rc}")
endif()
if(err STREQUAL "")
  message(FATAL_ERROR "expected a message on stderr")
endif()
