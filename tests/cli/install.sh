#!/bin/sh
# make install into a temporary prefix, then use it as a user would: a C program built with
# `pkg-config --cflags --libs sqz` against the shared library, the same statically with
# `pkg-config --static`, a C++ program including sqz.h; the shared library exports exactly
# the functions sqz.h declares; `man sqz` renders and lists the commands `sqz --help` lists;
# the Python package is installed; make uninstall leaves no file behind.
BUILD=${BUILD:-build}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check() { if [ "$1" = 0 ]; then echo "ok - $2"; else echo "not ok - $2"; return 1; fi; }
P=$tmp/prefix
M="assets/stories260K/stories260K.bin assets/stories260K/tok512.bin"

make -s --no-print-directory BUILD="$BUILD" PREFIX="$P" install > "$tmp/install.log" 2>&1
check $? "make install PREFIX=tmp" || cat "$tmp/install.log"
so=$(cd "$P/lib" && ls libsqz.so.*.* 2>/dev/null)
major=$(sed -n 's/^#define SQZ_VERSION_MAJOR  *\([0-9]*\).*/\1/p' include/sqz.h)
[ -x "$P/bin/sqz" ] && [ -f "$P/lib/libsqz.a" ] && [ -f "$P/include/sqz.h" ] &&
    [ -f "$P/share/man/man1/sqz.1" ] && [ -f "$P/lib/pkgconfig/sqz.pc" ] &&
    [ "$(readlink "$P/lib/libsqz.so.$major")" = "$so" ] &&
    [ "$(readlink "$P/lib/libsqz.so")" = "libsqz.so.$major" ]
check $? "bin/sqz, lib/$so with its symlinks, libsqz.a, sqz.h, sqz.pc, sqz.1 installed"
readelf -d "$P/lib/$so" | grep -q "SONAME.*\[libsqz.so.$major\]"
check $? "the shared library's soname is libsqz.so.$major"

# a sanitizer build's library needs its runtime in the programs that link it
san=""; PYLD=""
if readelf -d "$P/lib/$so" | grep -q 'NEEDED.*libasan'; then
    san="-fsanitize=address,undefined"
    PYLD="LD_PRELOAD=$(cc -print-file-name=libasan.so):$(cc -print-file-name=libubsan.so) ASAN_OPTIONS=detect_leaks=0"
fi
export PKG_CONFIG_PATH="$P/lib/pkgconfig"
[ "$(pkg-config --modversion sqz)" = "$(sed -n 's/^#define SQZ_VERSION_\(MAJOR\|MINOR\|PATCH\)  *\([0-9]*\).*/\2/p' include/sqz.h | paste -sd.)" ]
check $? "pkg-config --modversion sqz is sqz.h's version"
cc -std=c11 -Wall -Werror $san -o "$tmp/use_c" tests/install/use_sqz.c $(pkg-config --cflags --libs sqz) -lm
check $? "a C program builds with pkg-config --cflags --libs sqz"
readelf -d "$tmp/use_c" | grep -q "NEEDED.*libsqz.so.$major"
check $? "it links the shared library"
LD_LIBRARY_PATH="$P/lib" "$tmp/use_c" $M
check $? "the C program runs against the installed shared library"
# static: libsqz.a found first; pkg-config --static adds what it needs (openblas, gomp, ...)
mkdir "$tmp/st" && cp "$P/lib/libsqz.a" "$tmp/st/"
cc -std=c11 $san -o "$tmp/use_st" tests/install/use_sqz.c -L"$tmp/st" $(pkg-config --static --cflags --libs sqz) -lm 2> "$tmp/st.err"
check $? "the same program links statically with pkg-config --static --libs sqz" || head -5 "$tmp/st.err"
! readelf -d "$tmp/use_st" | grep -q "NEEDED.*libsqz" && "$tmp/use_st" $M > /dev/null
check $? "the static program needs no libsqz.so and runs"
g++ -std=c++11 -Wall -Werror $san -o "$tmp/use_cxx" tests/install/use_sqz.cpp $(pkg-config --cflags --libs sqz)
check $? "a C++ program including sqz.h builds"
LD_LIBRARY_PATH="$P/lib" "$tmp/use_cxx" $M
check $? "the C++ program runs"

# exports: sqz.h's function declarations as the compiler reads them (gcc -aux-info), not as
# the build's own script (scripts/exports.sh) reads them
echo '#include <sqz.h>' > "$tmp/h.c"
gcc -fsyntax-only -aux-info "$tmp/aux" -I"$P/include" "$tmp/h.c" &&
    grep 'sqz\.h:' "$tmp/aux" | sed -E 's/^\/\*[^*]*\*\/ *//; s/ \(.*//; s/.*[ *]//' | sort -u > "$tmp/declared"
nm -D --defined-only "$P/lib/$so" | awk '{print $3}' | sed 's/@.*//' | sort -u > "$tmp/exported"
[ "$(wc -l < "$tmp/declared")" -gt 40 ] && cmp -s "$tmp/declared" "$tmp/exported"
check $? "the shared library exports exactly the $(wc -l < "$tmp/declared") functions sqz.h declares"
diff "$tmp/declared" "$tmp/exported" | head -10

# the man page: renders, and names the commands `sqz --help` names
MANPATH="$P/share/man" MANWIDTH=80 man sqz > "$tmp/man.txt" 2> "$tmp/man.err" && grep -q "^COMMANDS" "$tmp/man.txt"
check $? "man sqz renders from the prefix" || head -3 "$tmp/man.err"
"$P/bin/sqz" --help | sed -n '/^commands:/,/^[^ c]/p' | grep -E '^  [a-z]' | awk '{print $1}' | sort -u > "$tmp/help_cmds"
awk '/^\.SH/ {in_cmds = ($0 == ".SH COMMANDS")} in_cmds && p == ".TP" && $1 == ".B" {print $2} {p = $1}' "$P/share/man/man1/sqz.1" | sort -u > "$tmp/man_cmds"
[ "$(wc -l < "$tmp/help_cmds")" -ge 10 ] && cmp -s "$tmp/help_cmds" "$tmp/man_cmds"
check $? "sqz --help and the man page list the same $(wc -l < "$tmp/help_cmds") commands"
diff "$tmp/help_cmds" "$tmp/man_cmds" | head
for c in $(cat "$tmp/man_cmds"); do grep -q "^       $c " "$tmp/man.txt" || echo "not ok - man sqz shows no command $c"; done

# the Python package: in python3's dist-packages of the prefix; it finds the prefix's
# libsqz.so.MAJOR beside itself (no LD_LIBRARY_PATH) unless the loader knows another one
pydir=$(ls -d "$P"/lib/python3*/dist-packages/sqz 2>/dev/null)
ver=$(pkg-config --modversion sqz)
[ -f "$pydir/__init__.py" ] && (cd "$tmp" && env -u SQZ_LIB PYTHONPATH=$(dirname "$pydir") $PYLD \
    /usr/bin/python3 -c "import sqz, sys; sys.exit(sqz.version() != '$ver' or sqz.__version__ != '$ver')")
check $? "make install put the Python package in the prefix's dist-packages; it loads libsqz"
# pip without network into a venv that sees Debian's numpy (a copy: pip builds in the tree)
cp -r python "$tmp/pysrc" && /usr/bin/python3 -m venv --system-site-packages "$tmp/venv" &&
    "$tmp/venv/bin/pip" install -q --no-build-isolation --no-index "$tmp/pysrc" > "$tmp/pip.log" 2>&1 &&
    (cd "$tmp" && env SQZ_LIB="$P/lib/libsqz.so.$major" $PYLD "$tmp/venv/bin/python" -c "
import sqz, sys; sys.exit(not sqz.__file__.startswith('$tmp/venv/') or sqz.version() != '$ver')")
check $? "pip install --no-build-isolation into a --system-site-packages venv" || tail -5 "$tmp/pip.log"

make -s --no-print-directory BUILD="$BUILD" PREFIX="$P" uninstall > "$tmp/un.log" 2>&1
check $? "make uninstall"
left=$(find "$P" ! -type d | head -5)
[ -z "$left" ]
check $? "nothing of sqz is left in the prefix $left"
