#!/bin/sh
# The Python binding (python/sqz) on Debian's python3 with numpy, against this build's
# libsqz.so: tests/python/test_binding.py (TAP lines).
BUILD=${BUILD:-build}
PY=/usr/bin/python3
if ! $PY -c 'import numpy' 2>/dev/null; then
    echo "not ok - $PY with numpy (sh scripts/install-deps.sh installs python3-numpy)"; exit 1
fi
export SQZ_LIB="$PWD/$BUILD/libsqz.so" PYTHONPATH="$PWD/python" SQZ="$PWD/${SQZ:-$BUILD/sqz}"
export PYTHONDONTWRITEBYTECODE=1
# a sanitizer build's library needs its runtimes loaded first; Python itself leaks by design
if readelf -d "$SQZ_LIB" 2>/dev/null | grep -q 'NEEDED.*libasan'; then
    export LD_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)"
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
exec $PY tests/python/test_binding.py
