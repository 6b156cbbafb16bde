include(GoogleTest)

# zsad_library(NAME folder-relative sources are globbed; LINK deps...)
# One library per top-level folder; every .cpp below the folder belongs to it.
function(zsad_library name)
  cmake_parse_arguments(ARG "" "" "LINK;EXCLUDE" ${ARGN})
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  foreach(ex ${ARG_EXCLUDE})
    list(FILTER srcs EXCLUDE REGEX "${ex}")
  endforeach()
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} PUBLIC ${ARG_LINK})
    target_compile_options(${name} PRIVATE -Wall -Wextra)
  else()  # a folder whose code has not landed yet
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE ${ARG_LINK})
  endif()
endfunction()

# zsad_test(NAME SOURCES... LINK deps...): a GoogleTest executable registered with ctest.
# Tests run from the build dir; ZSAD_SOURCE_DIR / ZSAD_SHARED_DIR / ZSAD_PYTHON / ZSAD_BINARY
# are passed as environment so tests find fixtures, the reference Python and the CLI.
function(zsad_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LINK;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LINK} GTest::gtest GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 180)
  endif()
  # An empty LABELS value would shift the PROPERTIES key/value list; add LABELS only when given.
  set(label_props)
  if(ARG_LABELS)
    set(label_props LABELS "${ARG_LABELS}")
  endif()
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} ${label_props})
  # The environment is set by a ctest include file that runs after discovery, over the discovered
  # test list (${name}_TESTS): passed through gtest_discover_tests' PROPERTIES, the ';'-separated
  # ENVIRONMENT list is split into separate property names and every other variable is lost.
  set(env_file ${CMAKE_CURRENT_BINARY_DIR}/${name}_environment.cmake)
  file(GENERATE OUTPUT ${env_file} CONTENT
"if(${name}_TESTS)
  set_tests_properties(\${${name}_TESTS} PROPERTIES ENVIRONMENT
    \"ZSAD_SOURCE_DIR=${PROJECT_SOURCE_DIR};ZSAD_SHARED_DIR=${PROJECT_SOURCE_DIR}/../shared;ZSAD_PYTHON=${ZSAD_PYTHON};ZSAD_BINARY=$<TARGET_FILE:zsad>;OMP_NUM_THREADS=1\")
endif()
")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${env_file})
endfunction()
