# llama-server on top of the installed engine: this file replaces the top-level
# CMakeLists.txt of a temporary copy of the llama-cpp-python sdist's vendor/llama.cpp
# (src/scalezero/system/engine_build.py puts it there). Instead of compiling ggml,
# libllama and llama-common a second time, it imports the shared libraries the engine
# wheel installed (same sdist, same flags, so the same ABI) and compiles only what
# the server adds: mtmd, the HTTP library, the (empty) UI stub and the server itself,
# linked statically into one executable that finds the engine's libraries through its
# RPATH at run time.
#
# Inputs (-D):
#   SCALEZERO_ENGINE_PREFIX  the directory holding the wheel's lib/ and include/
#                            (site-packages: lib/libllama.so, lib/libllama-common.so,
#                            lib/libggml*.so, lib/cmake/{llama,ggml}/, include/)
#   SCALEZERO_SERVER_RPATH   the RPATH written into llama-server ($ORIGIN-relative)
cmake_minimum_required(VERSION 3.21)
project("llama.cpp" C CXX)

foreach(required SCALEZERO_ENGINE_PREFIX SCALEZERO_SERVER_RPATH)
    if(NOT DEFINED ${required})
        message(FATAL_ERROR "${required} is not set")
    endif()
endforeach()

# The version variables mtmd's library properties read, as the upstream top-level
# file (kept beside this one as CMakeLists.upstream.txt) sets them.
file(STRINGS "${CMAKE_CURRENT_SOURCE_DIR}/CMakeLists.upstream.txt" version_lines
     REGEX "^set\\(LLAMA_VERSION_(MAJOR|MINOR|PATCH) [0-9]+\\)")
foreach(line IN LISTS version_lines)
    string(REGEX MATCH "LLAMA_VERSION_([A-Z]+) ([0-9]+)" _ "${line}")
    set(LLAMA_VERSION_${CMAKE_MATCH_1} ${CMAKE_MATCH_2})
endforeach()
if(NOT DEFINED LLAMA_VERSION_MAJOR OR NOT DEFINED LLAMA_VERSION_PATCH)
    message(FATAL_ERROR "no LLAMA_VERSION_* in CMakeLists.upstream.txt")
endif()
set(LLAMA_VERSION_BASE "${LLAMA_VERSION_MAJOR}.${LLAMA_VERSION_MINOR}.${LLAMA_VERSION_PATCH}")

if(NOT CMAKE_BUILD_TYPE)
    set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()
list(APPEND CMAKE_MODULE_PATH "${CMAKE_CURRENT_SOURCE_DIR}/cmake/")
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
set(CMAKE_LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)

# What the server build adds is linked into the executable; only the engine's
# libraries are shared.
set(BUILD_SHARED_LIBS OFF)
# The options the upstream file declares and the added directories read, at the values
# the engine's build had (llama-cpp-python leaves them at their defaults), so that the
# headers compile to the same layout as in libllama-common.
option(LLAMA_ALL_WARNINGS "llama: enable all compiler warnings" ON)
option(LLAMA_FATAL_WARNINGS "llama: enable -Werror flag" OFF)
option(LLAMA_OPENSSL "llama: use openssl to support HTTPS" ON)
option(LLAMA_SUBPROCESS "llama-common: use subprocess" ON)
set(LLAMA_BUILD_COMMON ON)
set(LLAMA_BUILD_SERVER ON)
set(LLAMA_TOOLS_INSTALL OFF)
set(LLAMA_BUILD_UI OFF)
set(LLAMA_USE_PREBUILT_UI OFF)

include(${CMAKE_CURRENT_SOURCE_DIR}/cmake/build-info.cmake)
include(${CMAKE_CURRENT_SOURCE_DIR}/cmake/common.cmake)
include(${CMAKE_CURRENT_SOURCE_DIR}/cmake/license.cmake)
set(LLAMA_BUILD_NUMBER ${BUILD_NUMBER})
set(LLAMA_BUILD_COMMIT ${BUILD_COMMIT})
license_add_file("llama.cpp" "LICENSE")

find_package(Threads REQUIRED)

# The engine's libraries, through the CMake packages the wheel installs beside them.
find_package(llama REQUIRED CONFIG PATHS "${SCALEZERO_ENGINE_PREFIX}/lib/cmake/llama"
             NO_DEFAULT_PATH)
add_library(ggml ALIAS ggml::ggml)
find_library(llama_common_LIBRARY llama-common REQUIRED
             PATHS "${SCALEZERO_ENGINE_PREFIX}/lib" NO_DEFAULT_PATH)
add_library(llama-common SHARED IMPORTED GLOBAL)
set_target_properties(llama-common PROPERTIES
    IMPORTED_LOCATION "${llama_common_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CMAKE_CURRENT_SOURCE_DIR}/common"
    INTERFACE_LINK_LIBRARIES "llama;vendor::nlohmann;vendor::sheredom;Threads::Threads"
    INTERFACE_COMPILE_FEATURES cxx_std_17)
if(LLAMA_SUBPROCESS)
    set_property(TARGET llama-common APPEND PROPERTY
                 INTERFACE_COMPILE_DEFINITIONS LLAMA_SUBPROCESS)
endif()

llama_add_compile_flags()
add_subdirectory(vendor)
add_subdirectory(tools/mtmd)
add_subdirectory(tools/ui)
add_subdirectory(tools/server)

# The binary is copied into the virtualenv's bin/ and finds the engine's libraries
# from there; no absolute path into this machine's build tree is kept.
set_target_properties(llama-server PROPERTIES
    BUILD_WITH_INSTALL_RPATH TRUE
    INSTALL_RPATH "${SCALEZERO_SERVER_RPATH}")
