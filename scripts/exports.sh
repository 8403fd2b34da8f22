#!/bin/sh
# Prints the linker version script of libsqz.so: the functions include/sqz.h declares are
# global, everything else local, so the shared library exports the public API and nothing of
# the ~600 internal sqz_* functions the CLI and the tests use through libsqz.a.
# usage: sh scripts/exports.sh CC HEADER > sqz.map
# The header goes through the preprocessor (comments and macros gone), then every identifier
# sqz_* directly followed by "(" is a function declaration: function-pointer typedefs read
# "(*sqz_x_fn)(", struct fields have no parenthesis, so neither matches.
set -e
cc=${1:-cc}; h=${2:-include/sqz.h}
names=$($cc -E -P -x c "$h" | tr '\n' ' ' | grep -oE '\bsqz_[A-Za-z0-9_]+[[:space:]]*\(' |
        sed 's/[[:space:]]*($//' | sort -u)
[ -n "$names" ] || { echo "exports.sh: no functions found in $h" >&2; exit 1; }
echo "/* generated from $h by scripts/exports.sh */"
echo "{"
echo "  global:"
for n in $names; do echo "    $n;"; done
echo "  local: *;"
echo "};"
