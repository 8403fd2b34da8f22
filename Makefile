# sqz - build, test, demo, install.  `make` builds build/sqz; `make test` runs every test;
# `make demo` installs what is missing, builds and runs the embedded model;
# `make install PREFIX=/usr/local DESTDIR=` installs the CLI, the libraries, sqz.h, sqz.pc, the
# man page and the Python package; `make uninstall` removes them.
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra -Wno-unused-parameter -fPIC -fopenmp -Iinclude -Isrc \
           -D_GNU_SOURCE
LDLIBS  += -fopenmp -lopenblas -lcjson -lpcre2-8 -lyaml -lm
# Open MPI (data-parallel training, --dp) when its compiler wrapper is there; without it sqz
# builds the same and --dp says what is missing.
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
ifneq ($(MPI_CFLAGS),)
CFLAGS  += -DSQZ_MPI $(MPI_CFLAGS)
LDLIBS  += $(shell mpicc --showme:link)
endif
# The version lives in include/sqz.h alone (SQZ_VERSION_MAJOR/MINOR/PATCH).
sqz_ver = $(shell sed -n 's/^\#define SQZ_VERSION_$(1)  *\([0-9][0-9]*\).*/\1/p' include/sqz.h)
MAJOR   := $(call sqz_ver,MAJOR)
MINOR   := $(call sqz_ver,MINOR)
PATCH   := $(call sqz_ver,PATCH)
VERSION := $(MAJOR).$(MINOR).$(PATCH)
SONAME  := libsqz.so.$(MAJOR)
SOFILE  := libsqz.so.$(MAJOR).$(MINOR)
MPI_LIBS := $(if $(MPI_CFLAGS),$(shell mpicc --showme:link))
SAN     ?=
ifneq ($(SAN),)
CFLAGS  += -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS  += -fsanitize=$(SAN)
endif

# Kernels for one instruction set live in files named *_avx2.c / *_avx512.c and are chosen at
# run time, so only those files get the ISA flags.
AVX2_FLAGS   = -mavx2 -mfma -mf16c
AVX512_FLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c

LIB_SRC  := $(sort $(wildcard src/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC  := $(sort $(wildcard tools/sqz/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_REPLAY := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%_replay)

.PHONY: all test test-asan demo deps bench fuzz clean install uninstall
all: $(BUILD)/sqz $(BUILD)/libsqz.a $(BUILD)/libsqz.so

$(BUILD)/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# the CLI's objects also depend on its private header (a changed opts struct must rebuild them all)
$(CLI_OBJ): $(wildcard tools/sqz/*.h)

$(BUILD)/src/kernels/%_avx2.o: src/kernels/%_avx2.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(BUILD)/src/kernels/%_avx512.o: src/kernels/%_avx512.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -c $< -o $@

# the AVX-512 half of a format's reference quantizer (formats/qkx3_avx512.c), dispatched on cpuid
$(BUILD)/src/formats/%_avx512.o: src/formats/%_avx512.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -c $< -o $@

# AVX512-VBMI2 kernels (vpexpandb): the AVX-512 flags plus VBMI2; dispatched on a cpuid check
$(BUILD)/src/kernels/%_vbmi2.o: src/kernels/%_vbmi2.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -mavx512vbmi2 -mbmi2 -c $< -o $@

$(BUILD)/libsqz.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The shared library exports exactly the functions sqz.h declares: a linker version script
# made from the header (scripts/exports.sh) makes every other symbol local. libsqz.a keeps
# them all (the CLI, tests and benchmarks call internal functions).
$(BUILD)/sqz.map: include/sqz.h scripts/exports.sh
	@mkdir -p $(dir $@)
	sh scripts/exports.sh "$(CC)" include/sqz.h > $@.tmp && mv $@.tmp $@

$(BUILD)/$(SOFILE): $(LIB_OBJ) $(BUILD)/sqz.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(BUILD)/sqz.map -Wl,-z,defs \
	    -o $@ $(LIB_OBJ) $(LDLIBS)

$(BUILD)/libsqz.so: $(BUILD)/$(SOFILE)
	ln -sf $(SOFILE) $(BUILD)/$(SONAME)
	ln -sf $(SOFILE) $@

$(BUILD)/sqz: $(CLI_OBJ) $(BUILD)/libsqz.a
	$(CC) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/libsqz.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libsqz.a $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libsqz.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libsqz.a $(LDLIBS)

# Each fuzz target also links with a main() that replays its corpus (fuzz/replay_main.c), so
# the corpus runs as a regression test with any compiler.
$(BUILD)/fuzz/%_replay: fuzz/%.c fuzz/replay_main.c $(BUILD)/libsqz.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< fuzz/replay_main.c $(BUILD)/libsqz.a $(LDLIBS)

# Everything the tests need, then the runner (prints "N passed, N failed", exits non-zero on
# any failure). SQZ_SHARED points at ../shared; tests that need it skip when it is absent.
test: all $(TEST_BIN) $(FUZZ_REPLAY)
	BUILD=$(BUILD) sh tests/run.sh

# The unit tests, fuzz replays and bad-input tests under AddressSanitizer + UBSan.
test-asan:
	$(MAKE) BUILD=build-asan SAN=address,undefined OPT=-O1 all \
	    $(patsubst $(BUILD)/%,build-asan/%,$(TEST_BIN) $(FUZZ_REPLAY))
	BUILD=build-asan SQZ_QUICK=1 ASAN_OPTIONS=detect_leaks=1 sh tests/run.sh

# libFuzzer builds (clang) for open-ended fuzzing: build/fuzz/<target> CORPUS_DIR
fuzz:
	@mkdir -p $(BUILD)/fuzz-clang
	for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Iinclude -Isrc \
	    -o $(BUILD)/fuzz-clang/$$n $$f $(LIB_SRC) -fopenmp -lopenblas -lcjson -lpcre2-8 -lyaml -lm \
	    $(AVX2_FLAGS) $(AVX512_FLAGS) || exit 1; done

bench: all $(BENCH_BIN)

deps:
	sh scripts/install-deps.sh

demo:
	sh scripts/demo.sh

clean:
	rm -rf build build-asan

# ---- install: PREFIX (default /usr/local), DESTDIR for staging.
# The Python package goes where Debian's python3 looks for that prefix:
# PREFIX/lib/python3.X/dist-packages (/usr/local/lib/python3.11/dist-packages for /usr/local,
# /usr/lib/python3.11/dist-packages for /usr); PYTHON_SITEDIR overrides, PYTHON= skips it.
PREFIX  ?= /usr/local
DESTDIR ?=
PYTHON  ?= /usr/bin/python3
PYVER    = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PYTHON_SITEDIR ?= $(if $(PYVER),$(PREFIX)/lib/python$(PYVER)/dist-packages)
I := $(DESTDIR)$(PREFIX)
PY_SRC := $(sort $(wildcard python/sqz/*.py))

$(BUILD)/sqz.pc: sqz.pc.in include/sqz.h Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@MPI_LIBS@|$(MPI_LIBS)|' \
	    sqz.pc.in > $@.tmp && mv $@.tmp $@

# sqz.pc depends on PREFIX: remade on every install
install: $(BUILD)/sqz $(BUILD)/libsqz.a $(BUILD)/libsqz.so
	@rm -f $(BUILD)/sqz.pc
	$(MAKE) --no-print-directory $(BUILD)/sqz.pc
	install -d $(I)/bin $(I)/lib/pkgconfig $(I)/include $(I)/share/man/man1
	install -m 755 $(BUILD)/sqz $(I)/bin/sqz
	install -m 755 $(BUILD)/$(SOFILE) $(I)/lib/$(SOFILE)
	ln -sf $(SOFILE) $(I)/lib/$(SONAME)
	ln -sf $(SONAME) $(I)/lib/libsqz.so
	install -m 644 $(BUILD)/libsqz.a $(I)/lib/libsqz.a
	install -m 644 include/sqz.h $(I)/include/sqz.h
	install -m 644 $(BUILD)/sqz.pc $(I)/lib/pkgconfig/sqz.pc
	sed 's/@VERSION@/$(VERSION)/' docs/sqz.1 > $(I)/share/man/man1/sqz.1
	if [ -n "$(PYTHON_SITEDIR)" ]; then \
	    install -d $(DESTDIR)$(PYTHON_SITEDIR)/sqz && \
	    install -m 644 $(PY_SRC) $(DESTDIR)$(PYTHON_SITEDIR)/sqz/; fi
	-if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig 2>/dev/null; fi

uninstall:
	rm -f $(I)/bin/sqz $(I)/lib/$(SOFILE) $(I)/lib/$(SONAME) $(I)/lib/libsqz.so \
	    $(I)/lib/libsqz.a $(I)/include/sqz.h $(I)/lib/pkgconfig/sqz.pc \
	    $(I)/share/man/man1/sqz.1
	if [ -n "$(PYTHON_SITEDIR)" ]; then rm -rf $(DESTDIR)$(PYTHON_SITEDIR)/sqz; fi
