# Read by ctest after the discovered tests (tests/CMakeLists.txt): a slow test keeps the label of
# its kind besides `slow`, so `ctest -L process` and `ctest -L unit` still run it and
# `ctest -LE slow` leaves it out. The lists are the ones gtest_discover_tests' TEST_LIST names.
foreach(test IN LISTS dvrouter_slow_unit_tests)
  set_tests_properties("${test}" PROPERTIES LABELS "unit;slow")
endforeach()
foreach(test IN LISTS dvrouter_slow_process_tests)
  set_tests_properties("${test}" PROPERTIES LABELS "process;slow")
endforeach()
