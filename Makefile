# fluke — build, test, bench, install.
#
#   make run      install missing packages, build, run the default pipeline (configs/smoke.json)
#   make test     install missing packages, build, run unit + integration + sanitizer tests
#   make bench    benchmarks against peers (ratios), not tests
#   make install  PREFIX=/usr/local DESTDIR=
#
# Sources are found by wildcard: a new .c file in a module folder is built without editing this
# file; tests/unit/test_*.c each become a cmocka binary; tests/integration/*.sh run the CLI.

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
SAN     ?= 0
CC      ?= cc
NVCC    ?= nvcc
CONFIG  ?= configs/smoke.json

# CUDA sources compile when nvcc is found (override with CUDA=0/1); sanitizer builds are CPU-only.
ifeq ($(SAN),1)
CUDA := 0
else
CUDA ?= $(if $(shell command -v $(NVCC) 2>/dev/null),1,0)
endif
CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(shell command -v $(NVCC) 2>/dev/null)))

PKGS      = libxxhash libcjson libcurl libarchive libturbojpeg openblas
# Recursive (=) so pkg-config only runs once ci/deps.sh has had its chance.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TEST_LIBS  = $(shell pkg-config --libs cmocka 2>/dev/null)

OPT      ?= -O2
WARN     := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS   += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) -fopenmp -I. -I$(BUILD)/gen -MMD -MP \
            -DFLUKE_DATADIR='"$(PREFIX)/share/fluke"'
LDLIBS   += -fopenmp -lpthread -lm
ifeq ($(SAN),1)
OPT      := -O1
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif
ifeq ($(CUDA),1)
CFLAGS   += -DFLUKE_CUDA=1 -I$(CUDA_HOME)/include
NVFLAGS  ?= -O2 -std=c++17 -arch=sm_90 -I. -Xcompiler -fPIC
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib -Wl,-rpath,$(CUDA_HOME)/lib64 \
            -Wl,-rpath,$(CUDA_HOME)/lib -lcudnn -lcublas -lcudart -lstdc++
endif

MODULES  := artifacts kaggle runtime stages dag
find_src  = $(shell find $(1) -name '*.$(2)' 2>/dev/null | LC_ALL=C sort)
ALL_C    := $(call find_src,$(MODULES),c)
MAIN_C   := dag/main.c
TOOL_C   := dag/codeid_gen.c
LIB_C    := $(filter-out $(MAIN_C) $(TOOL_C),$(ALL_C))
CU_SRC   := $(if $(filter 1,$(CUDA)),$(call find_src,runtime,cu))
LIB_OBJ  := $(LIB_C:%.c=$(BUILD)/obj/%.o) $(CU_SRC:%.cu=$(BUILD)/obj/%.cu.o)
STAGE_C  := $(wildcard stages/*.c) $(wildcard tests/teststages/*.c)

UNIT_C   := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_C:tests/unit/%.c=$(BUILD)/tests/%)
TSUP_C   := $(wildcard tests/unit/support/*.c)
TS_C     := $(wildcard tests/teststages/*.c)
BENCH_C  := $(wildcard tests/bench/*.c)
BENCH_BIN:= $(BENCH_C:tests/bench/%.c=$(BUILD)/bench/%)
FUZZ_C   := $(wildcard tests/fuzz/*.c)
FUZZ_BIN := $(FUZZ_C:tests/fuzz/%.c=$(BUILD)/fuzz/%)

FLUKE    := $(BUILD)/fluke
FLUKE_TS := $(BUILD)/fluke-teststages
LIB      := $(BUILD)/libfluke.a

.PHONY: all run test bench install clean deps build build-tests fmt codeids fuzz fuzz-libfuzzer
.DEFAULT_GOAL := all
.SECONDARY:

all: $(FLUKE)

deps:
	@bash ci/deps.sh

# The README's two commands: set-up first, then the real work in a sub-make.
run: deps
	@$(MAKE) --no-print-directory $(FLUKE)
	$(FLUKE) run $(CONFIG)
	@o=out/$$(basename $(CONFIG) .json); echo; echo "submission: $$o/submission.csv"; \
	  if [ -f $$o/metrics.json ]; then \
	    echo "MAP@5:      $$(sed -n '/"map5":/{s/.*"map5":[[:space:]]*//;s/,.*//;p;q;}' $$o/metrics.json) (public/private, per species: $$o/metrics.json)"; fi

test: deps
	@$(MAKE) --no-print-directory build-tests
	@bash tests/run.sh $(BUILD)
	@$(MAKE) --no-print-directory BUILD=build-san SAN=1 build-tests
	@bash tests/run.sh build-san san

build-tests: $(FLUKE) $(FLUKE_TS) $(UNIT_BIN) $(FUZZ_BIN)

# Fuzz targets: with plain cc they replay the files given as arguments (and build in every test
# run so they cannot rot); `make fuzz-libfuzzer` builds real libFuzzer binaries with clang.
fuzz: $(FUZZ_BIN)
fuzz-libfuzzer:
	@$(MAKE) --no-print-directory BUILD=build-fuzz SAN=1 CC=clang \
	  EXTRA_FUZZ="-DFL_FUZZ_LIBFUZZER -fsanitize=fuzzer" fuzz

bench: deps
	@$(MAKE) --no-print-directory $(FLUKE) $(FLUKE_TS) $(BENCH_BIN)
	@bash tests/bench/run.sh $(BUILD)

# Code identity: one generated header per stage source, rewritten only when the hash changes,
# so a stage recompiles (and its cache keys change) exactly when a source that builds it changes.
$(BUILD)/codeid_gen: $(TOOL_C)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o $@ $< $(shell pkg-config --cflags --libs libxxhash)

codeids: $(BUILD)/codeid_gen
	@mkdir -p $(BUILD)/gen/codeid
	@for f in $(STAGE_C); do \
	  n=$$(basename $$f .c); id=$$($(BUILD)/codeid_gen . $$f) || exit 1; \
	  printf '#define FL_CODE_ID "%s"\n' "$$id" > $(BUILD)/gen/codeid/$$n.h.new; \
	  cmp -s $(BUILD)/gen/codeid/$$n.h.new $(BUILD)/gen/codeid/$$n.h || mv $(BUILD)/gen/codeid/$$n.h.new $(BUILD)/gen/codeid/$$n.h; \
	  rm -f $(BUILD)/gen/codeid/$$n.h.new; done

# Every object waits for the code identities (order-only: a stage recompiles only when its own
# generated header changed).
$(BUILD)/obj/%.o: %.c | codeids
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@.tmp.$$$$ && ar rcs $@.tmp.$$$$ $^ && mv -f $@.tmp.$$$$ $@

$(FLUKE): $(BUILD)/obj/$(MAIN_C:.c=.o) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(FLUKE_TS): $(TS_C:%.c=$(BUILD)/obj/%.o) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(TSUP_C:%.c=$(BUILD)/obj/%.o) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CUDA_LIBS) $(TEST_LIBS) $(LDLIBS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(EXTRA_FUZZ) $(LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CUDA_LIBS) $(LDLIBS)

install: $(FLUKE)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/fluke/configs
	install -m 0755 $(FLUKE) $(DESTDIR)$(PREFIX)/bin/fluke
	install -m 0644 configs/*.json $(DESTDIR)$(PREFIX)/share/fluke/configs/

fmt:
	clang-format -i $(ALL_C) $(call find_src,$(MODULES) tests,h)

clean:
	rm -rf build build-san

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
