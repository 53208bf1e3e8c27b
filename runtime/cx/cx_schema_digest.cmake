# cmake -DSCHEMA_DIR=... -DOUT=... -P cx_schema_digest.cmake
# Writes OUT defining CX_SCHEMA_DIGEST: the SHA-256 of every schemas/**/*.proto file's bytes,
# concatenated in sorted relative-path order. The same value as
#   (cd schemas && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort | xargs cat) | sha256sum
# The header is rewritten only when the digest changes, so nothing rebuilds needlessly.
file(GLOB_RECURSE files RELATIVE ${SCHEMA_DIR} ${SCHEMA_DIR}/*.proto)
list(SORT files)
set(all "")
foreach(f IN LISTS files)
  file(READ ${SCHEMA_DIR}/${f} content)
  string(APPEND all "${content}")
endforeach()
string(SHA256 digest "${all}")
list(LENGTH files n)
set(text "/* Generated at build time by runtime/cx/cx_schema_digest.cmake from ${n} schema files. */\n#define CX_SCHEMA_DIGEST \"${digest}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
  if(old STREQUAL text)
    return()
  endif()
endif()
file(WRITE ${OUT} "${text}")
