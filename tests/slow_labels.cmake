# Read by ctest after the discovered tests (tests/CMakeLists.txt): a slow test keeps the label of
# its kind besides `slow`, so `ctest -L process` and `ctest -L unit` still run it and
# `ctest -LE slow` leaves it out. The lists are the ones gtest_discover_tests' TEST_LIST names.
foreach(test IN LISTS dvrouter_slow_unit_tests)
  set_tests_properties("${test}" PROPERTIES LABELS "unit;slow")
endforeach()
foreach(test IN LISTS dvrouter_slow_process_tests)
  set_tests_properties("${test}" PROPERTIES LABELS "process;slow")
endforeach()
# A test that measures a process's RSS runs alone: next to other tests' servers under `ctest -j2`
# the same binary showed 13-24 MiB more growth than alone (0.3-3.5 MiB), none of it its own.
foreach(test IN LISTS dvrouter_slow_process_tests)
  if(test MATCHES "^DeliveryMemoryTest\\.")
    set_tests_properties("${test}" PROPERTIES RUN_SERIAL TRUE)
  endif()
endforeach()
