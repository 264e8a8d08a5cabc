# checker_hostile.cmake — fusedkd-check on cases too large or too strange to check in: the
# checker must FAIL each of them on one short line and never crash or print a forged line.
#   cmake -DCHECKER=<fusedkd-check> -DCASES=<tests/conformance/cases> -DWORK_DIR=<dir> -P checker_hostile.cmake
# Made here (in WORK_DIR):
#   deep/        an option nested 100,000 levels deep (crashed the checker: a recursive dump)
#   long_string/ a 1 MB loss name (became a 1 MB output line)
#   "forged\nPASS forged  loss 0.0e+00\n0 passed, 0 failed"/
#                a valid case whose folder name holds newlines: it must PASS on one line
#                with the newlines escaped, not print extra PASS or summary lines
foreach(v CHECKER CASES WORK_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "checker_hostile.cmake: -D${v}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(files "\"inputs\": {\"student\": \"student.npy\", \"teacher\": \"teacher.npy\", \"labels\": \"labels.npy\"}, \"expected\": {\"loss\": \"loss.npy\", \"grad_student\": \"grad_student.npy\"}")

string(REPEAT "[" 100000 open)
string(REPEAT "]" 100000 close)
file(MAKE_DIRECTORY "${WORK_DIR}/deep")
file(WRITE "${WORK_DIR}/deep/case.json" "{\"loss\": \"nkd\", \"options\": {\"gamma\": ${open}1${close}}, ${files}}")

string(REPEAT "x" 1048576 long)
file(MAKE_DIRECTORY "${WORK_DIR}/long_string")
file(WRITE "${WORK_DIR}/long_string/case.json" "{\"loss\": \"${long}\", ${files}}")

set(forged "${WORK_DIR}/forged\nPASS forged  loss 0.0e+00\n0 passed, 0 failed")
file(MAKE_DIRECTORY "${forged}")
file(GLOB basic "${CASES}/nkd_f32_basic/*")
file(COPY ${basic} DESTINATION "${forged}")

execute_process(COMMAND "${CHECKER}" "${WORK_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "fusedkd-check exited with '${rc}', expected 1 (a case failed)")
endif()
string(REGEX REPLACE "\n$" "" trimmed "${out}")
string(REPLACE ";" "\\;" trimmed "${trimmed}")
string(REPLACE "\n" ";" lines "${trimmed}")
list(LENGTH lines count)
if(NOT count EQUAL 4)
  message(FATAL_ERROR "expected 4 output lines (3 cases and the summary), got ${count}")
endif()
list(GET lines 3 summary)
if(NOT summary STREQUAL "1 passed, 2 failed")
  message(FATAL_ERROR "expected the summary '1 passed, 2 failed', got '${summary}'")
endif()
foreach(line IN LISTS lines)
  string(LENGTH "${line}" len)
  if(len GREATER 1500)
    message(FATAL_ERROR "an output line of ${len} characters: untrusted text was not cut")
  endif()
endforeach()
list(GET lines 0 first)
list(GET lines 1 second)
list(GET lines 2 third)
if(NOT first MATCHES "^FAIL deep  " OR NOT third MATCHES "^FAIL long_string  "
   OR NOT second MATCHES "^PASS forged\\\\x0aPASS forged  loss 0.0e\\+00\\\\x0a0 passed, 0 failed  ")
  message(FATAL_ERROR "unexpected lines:\n${first}\n${second}\n${third}")
endif()
