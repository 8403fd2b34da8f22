# sqz - build, test, demo.  `make` builds build/sqz; `make test` runs every test;
# `make demo` installs what is missing, builds and runs the embedded model.
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

.PHONY: all test test-asan demo deps bench fuzz clean
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

# AVX512-VBMI2 kernels (vpexpandb): the AVX-512 flags plus VBMI2; dispatched on a cpuid check
$(BUILD)/src/kernels/%_vbmi2.o: src/kernels/%_vbmi2.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -mavx512vbmi2 -c $< -o $@

$(BUILD)/libsqz.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libsqz.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS)

$(BUILD)/sqz: $(CLI_OBJ) $(BUILD)/libsqz.a
	$(CC) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test.h $(BUILD)/libsqz.a
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
