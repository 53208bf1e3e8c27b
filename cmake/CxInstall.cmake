# Installation of the SDK (included at the end of the top-level CMakeLists.txt).
#
#   cmake --install build --prefix /opt/cx
#
# lib/libcx.a, lib/libcx_proto.a         the runtime and the contracts' codecs (static, PIC)
# include/cx/*.h, include/cx/<domain>/v1/*.h, include/google/protobuf/*.h
#                                        public headers, generated tables and protobuf-c headers
# bin/cx, bin/cx-conformance, bin/create-connector
# share/cx/create-connector/templates    the scaffolder's templates
# share/cx/generated, share/cx/schemas   the generated code (nanopb included) and the contracts
# lib/cmake/cx/cxConfig*.cmake           find_package(cx CONFIG): cx::cx and friends
# lib/pkgconfig/cx.pc                    pkg-config --cflags --libs cx
#
# libcx is static, so its consumers must link what it links. Rather than repeat that list
# here (and let it drift as the runtime grows), it is read from the cx target at configure
# time: imported targets are flattened to the libraries, include directories and definitions
# they stand for; Threads::Threads and OpenSSL::Crypto stay targets, found again with
# find_dependency by consumers.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(CX_PKG_VERSION ${PROJECT_VERSION})

# The pkg-config module behind PkgConfig::<prefix> (a prefix chosen where it was looked up:
# HIREDIS, CX_CLI_CURL, ...), found again as PkgConfig::CXI_<prefix>; *out is that target.
set(CX_PKGCONFIG_MODULES PROTOBUFC=libprotobuf-c CURL=libcurl MHD=libmicrohttpd)
function(cx_pkgconfig_again prefix out)
  string(REGEX REPLACE "^.*_" "" last "${prefix}")
  set(candidates "")
  foreach(pair ${CX_PKGCONFIG_MODULES})
    string(REPLACE "=" ";" kv "${pair}")
    list(GET kv 0 k)
    list(GET kv 1 v)
    if(prefix STREQUAL k OR last STREQUAL k)
      list(APPEND candidates ${v})
    endif()
  endforeach()
  string(TOLOWER "${prefix}" lp)
  string(TOLOWER "${last}" ll)
  list(APPEND candidates ${lp} lib${lp} ${ll} lib${ll})
  foreach(m ${candidates})
    pkg_check_modules(CXI_${prefix} QUIET IMPORTED_TARGET GLOBAL ${m})
    if(TARGET PkgConfig::CXI_${prefix})
      set(${out} PkgConfig::CXI_${prefix} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  message(WARNING "cx install: cannot tell which pkg-config module PkgConfig::${prefix} is; "
                  "cxConfig.cmake and cx.pc will lack it")
  set(${out} "" PARENT_SCOPE)
endfunction()

# Flattens the link interface of `target` (recursively) into out_link (cmake items), out_pc
# (linker flags for pkg-config), out_inc (include directories).
function(cx_flatten_link_interface target skip out_link out_pc out_inc)
  set(link "")
  set(pc "")
  set(inc "")
  set(queue ${target})
  set(seen "")
  while(queue)
    list(POP_FRONT queue t)
    if(t IN_LIST seen)
      continue()
    endif()
    list(APPEND seen ${t})
    get_target_property(items ${t} INTERFACE_LINK_LIBRARIES)
    if(NOT items)
      set(items "")
    endif()
    foreach(item ${items})
      string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" item "${item}")
      if(item MATCHES "^\\$<" OR item IN_LIST skip)
        if(item IN_LIST skip AND TARGET ${item})
          list(APPEND queue ${item})
        endif()
        continue()
      endif()
      if(item MATCHES "^PkgConfig::(.+)$" AND NOT TARGET ${item})
        # pkg_check_modules' imported targets are visible only in the directory that made
        # them: find the module again here, as a global target of our own.
        cx_pkgconfig_again(${CMAKE_MATCH_1} item)
      endif()
      if(item STREQUAL "Threads::Threads" OR item STREQUAL "OpenSSL::Crypto")
        list(APPEND link ${item})
        if(item STREQUAL "Threads::Threads")
          list(APPEND pc "-pthread")
        else()
          list(APPEND pc "-lcrypto")
        endif()
      elseif(item STREQUAL "")
      elseif(TARGET ${item})
        get_target_property(imported ${item} IMPORTED)
        get_target_property(type ${item} TYPE)
        if(imported AND NOT type STREQUAL "INTERFACE_LIBRARY")
          get_target_property(loc ${item} IMPORTED_LOCATION)
          if(NOT loc)
            get_target_property(loc ${item} IMPORTED_LOCATION_RELEASE)
          endif()
          if(loc)
            list(APPEND link ${loc})
            get_filename_component(n ${loc} NAME_WE)
            string(REGEX REPLACE "^lib" "" n "${n}")
            list(APPEND pc "-l${n}")
          endif()
        endif()
        get_target_property(dirs ${item} INTERFACE_INCLUDE_DIRECTORIES)
        if(dirs AND imported)
          list(APPEND inc ${dirs})
        endif()
        list(APPEND queue ${item})
      elseif(IS_ABSOLUTE "${item}")
        list(APPEND link ${item})
        get_filename_component(n ${item} NAME_WE)
        string(REGEX REPLACE "^lib" "" n "${n}")
        list(APPEND pc "-l${n}")
      elseif(item MATCHES "^-")
        list(APPEND link ${item})
        list(APPEND pc ${item})
      else()
        list(APPEND link ${item})
        list(APPEND pc "-l${item}")
      endif()
    endforeach()
  endwhile()
  list(REMOVE_DUPLICATES link)
  list(REMOVE_DUPLICATES pc)
  if(inc)
    list(REMOVE_DUPLICATES inc)
    list(FILTER inc EXCLUDE REGEX "^/usr/include$")
  endif()
  set(${out_link} "${link}" PARENT_SCOPE)
  set(${out_pc} "${pc}" PARENT_SCOPE)
  set(${out_inc} "${inc}" PARENT_SCOPE)
endfunction()

cx_flatten_link_interface(cx_proto "" CX_PKG_PROTO_LINK _cx_proto_pc _cx_proto_inc)
cx_flatten_link_interface(cx "cx_proto" CX_PKG_LINK _cx_pc CX_PKG_INCLUDES)
list(APPEND _cx_pc ${_cx_proto_pc})
list(REMOVE_DUPLICATES _cx_pc)
get_target_property(CX_PKG_DEFINITIONS cx INTERFACE_COMPILE_DEFINITIONS)
if(NOT CX_PKG_DEFINITIONS)
  set(CX_PKG_DEFINITIONS "")
endif()
list(JOIN _cx_pc " " CX_PC_LIBS)
set(CX_PC_CFLAGS "")
foreach(d ${CX_PKG_DEFINITIONS})
  string(APPEND CX_PC_CFLAGS " -D${d}")
endforeach()
foreach(d ${CX_PKG_INCLUDES})
  string(APPEND CX_PC_CFLAGS " -I${d}")
endforeach()
string(STRIP "${CX_PC_CFLAGS}" CX_PC_CFLAGS)
set(CX_PKG_INCLUDE_LIST "\${_cx_prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
foreach(d ${CX_PKG_INCLUDES})
  string(APPEND CX_PKG_INCLUDE_LIST ";${d}")
endforeach()
set(CX_PC_REQUIRES "")

# Relative ways back to the prefix from lib/cmake/cx and lib/pkgconfig (relocatable packages).
file(RELATIVE_PATH CX_PKG_UP "/prefix/${CMAKE_INSTALL_LIBDIR}/cmake/cx" "/prefix")
file(RELATIVE_PATH CX_PC_UP "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")

configure_file(${CMAKE_SOURCE_DIR}/cmake/cxConfig.cmake.in
               ${CMAKE_BINARY_DIR}/cmake/cxConfig.cmake @ONLY)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cmake/cxConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
configure_file(${CMAKE_SOURCE_DIR}/cmake/cx.pc.in ${CMAKE_BINARY_DIR}/cmake/cx.pc @ONLY)

install(TARGETS cx cx_proto ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS cx_cli cx_conformance_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/runtime/include/cx DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(FILES ${CMAKE_BINARY_DIR}/include/cx/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cx)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/generated/tables/ ${CMAKE_SOURCE_DIR}/generated/protobuf-c/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
install(DIRECTORY ${CMAKE_SOURCE_DIR}/generated/ DESTINATION ${CMAKE_INSTALL_DATADIR}/cx/generated)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/schemas/ DESTINATION ${CMAKE_INSTALL_DATADIR}/cx/schemas)
install(FILES ${CMAKE_BINARY_DIR}/cmake/cxConfig.cmake ${CMAKE_BINARY_DIR}/cmake/cxConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cx)
install(FILES ${CMAKE_BINARY_DIR}/cmake/cx.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
install(FILES ${CMAKE_SOURCE_DIR}/docs/conformance.md ${CMAKE_SOURCE_DIR}/docs/create-connector.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR} OPTIONAL)
