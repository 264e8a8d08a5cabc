# Feeds fusedkd-train broken data files and checks that it says so and exits with status 1.
# Usage: cmake -DPROG=... -DWORK=<scratch dir> [-DREAL=<dir with the real .gz files>] -P corrupt_data.cmake
set(names train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz
          t10k-labels-idx1-ubyte.gz)

function(expect_failure case pattern)
  execute_process(COMMAND ${PROG} --quick --data-dir ${WORK}/${case} --out ${WORK}/out
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("[${case}] exit status ${rc}; stderr: ${err}")
  if(NOT rc STREQUAL "1")
    message(FATAL_ERROR "[${case}] expected exit status 1, got ${rc}")
  endif()
  if(NOT err MATCHES "${pattern}")
    message(FATAL_ERROR "[${case}] expected the message to match '${pattern}'")
  endif()
endfunction()

# 1. Files that are not IDX at all (gzip passes plain files through unchanged).
file(REMOVE_RECURSE ${WORK})
foreach(n IN LISTS names)
  file(WRITE ${WORK}/garbage/${n} "this is not an IDX file\n")
endforeach()
expect_failure(garbage "not an IDX image file")

# 2. A truncated gzip stream: the first 4 KiB of the real training images (cut with coreutils'
#    head, since CMake's file() cannot write binary data).
if(REAL AND EXISTS ${REAL}/train-images-idx3-ubyte.gz)
  foreach(n IN LISTS names)
    if(NOT n STREQUAL "train-images-idx3-ubyte.gz")
      file(COPY ${REAL}/${n} DESTINATION ${WORK}/truncated)
    endif()
  endforeach()
  find_program(HEAD_PROG head)
  if(HEAD_PROG)
    execute_process(COMMAND ${HEAD_PROG} -c 4096 ${REAL}/train-images-idx3-ubyte.gz
      OUTPUT_FILE ${WORK}/truncated/train-images-idx3-ubyte.gz)
    expect_failure(truncated "ends early|corrupt")
  endif()
endif()
