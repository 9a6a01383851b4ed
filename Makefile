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
# clang warns when it does not vectorize a loop marked `omp simd` (always at -O1, the sanitizer
# level): a missed hint, not a defect. gcc keeps every warning.
IS_CLANG := $(shell $(CC) --version 2>/dev/null | grep -q clang && echo 1)
ifeq ($(IS_CLANG),1)
WARN     += -Wno-pass-failed
endif
# FUZZ_INSTR: instrumentation every object gets in the libFuzzer build (coverage of the library).
CFLAGS   += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) -fopenmp -I. -I$(BUILD)/gen -MMD -MP \
            -DFLUKE_DATADIR='"$(PREFIX)/share/fluke"' $(FUZZ_INSTR)
LDLIBS   += -fopenmp -lpthread -lm
ifeq ($(SAN),1)
OPT      := -O1
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif
# CUDA_ARCH: the GPU generations the CUDA objects carry machine code for (sm_80 A100, sm_90
# H100/H200); CUDA_PTX: the one also embedded as PTX, which newer GPUs JIT-compile. Override
# either (`make CUDA_ARCH=80`); the flags file below rebuilds the objects when they change.
CUDA_ARCH ?= 80 90
CUDA_PTX  ?= $(lastword $(CUDA_ARCH))
CUDA_GENCODE = $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) \
               $(foreach a,$(CUDA_PTX),-gencode arch=compute_$(a),code=compute_$(a))
ifeq ($(CUDA),1)
CFLAGS   += -DFLUKE_CUDA=1 -I$(CUDA_HOME)/include
NVFLAGS  ?= -O2 -std=c++17 $(CUDA_GENCODE) -I. -Xcompiler -fPIC
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib -Wl,-rpath,$(CUDA_HOME)/lib64 \
            -Wl,-rpath,$(CUDA_HOME)/lib -lcudnn -lcublas -lcudart -lstdc++
endif

MODULES  := artifacts kaggle runtime stages dag
TS_C     := $(wildcard tests/teststages/*.c)
find_src  = $(shell find $(1) -name '*.$(2)' 2>/dev/null | LC_ALL=C sort)
ALL_C    := $(call find_src,$(MODULES),c)
MAIN_C   := dag/main.c
TOOL_C   := dag/codeid_gen.c
LIB_C    := $(filter-out $(MAIN_C) $(TOOL_C),$(ALL_C))
CU_SRC   := $(if $(filter 1,$(CUDA)),$(call find_src,runtime,cu))
LIB_OBJ  := $(LIB_C:%.c=$(BUILD)/obj/%.o) $(CU_SRC:%.cu=$(BUILD)/obj/%.cu.o)
# Stage sources: those that take a code identity ("codeid/NAME.h"); see "Code identity" below.
STAGE_C  := $(shell grep -l '^\#include "codeid/' stages/*.c tests/teststages/*.c 2>/dev/null)
STAGE_N  := $(basename $(notdir $(STAGE_C)))
TS_OBJ   := $(TS_C:%.c=$(BUILD)/obj/%.o)

UNIT_C   := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_C:tests/unit/%.c=$(BUILD)/tests/%)
TSUP_C   := $(wildcard tests/unit/support/*.c)
BENCH_C  := $(wildcard tests/bench/*.c)
BENCH_BIN:= $(BENCH_C:tests/bench/%.c=$(BUILD)/bench/%)
FUZZ_C   := $(wildcard tests/fuzz/*.c)
FUZZ_BIN := $(FUZZ_C:tests/fuzz/%.c=$(BUILD)/fuzz/%)

FLUKE    := $(BUILD)/fluke
FLUKE_TS := $(BUILD)/fluke-teststages
LIB      := $(BUILD)/libfluke.a

.PHONY: all run test bench install clean deps build build-tests fmt codeids fuzz fuzz-libfuzzer \
        fuzz-replay
.DEFAULT_GOAL := all
.SECONDARY:

all: $(FLUKE)

deps:
	@bash ci/deps.sh

# The sub-makes of run / test / bench build with one job per core unless -j was given (then
# they share its jobserver): a serial build was half of `make run`'s first two minutes on 2
# cores. Decided in the recipe, where MAKEFLAGS shows -j (make 4.3 hides it while parsing).
JOBS = j=; case " $$MAKEFLAGS " in *" -j"*|*jobserver*) ;; *) j=-j$$(nproc 2>/dev/null || echo 1);; esac;

# The README's two commands: set-up first, then the real work in a sub-make.
run: deps
	@$(JOBS) $(MAKE) --no-print-directory $$j $(FLUKE)
	$(FLUKE) run $(CONFIG)
	@o=out/$$(basename $(CONFIG) .json); echo; echo "submission: $$o/submission.csv"; \
	  if [ -f $$o/metrics.json ]; then \
	    echo "MAP@5:      $$(sed -n '/"map5":/{s/.*"map5":[[:space:]]*//;s/,.*//;p;q;}' $$o/metrics.json) (public/private, per species: $$o/metrics.json)"; fi; \
	  if [ -f $$o/cv.json ]; then \
	    echo "CV MAP@5:   $$(sed -n '/"map5":/{s/.*"map5":[[:space:]]*//;s/,.*//;p;q;}' $$o/cv.json) (out of fold, per fold and thresholds: $$o/cv.json)"; fi; \
	  if grep -q '"rounds"' $$o/metrics.json 2>/dev/null; then \
	    echo "per round:  CV and MAP@5 of every pseudo-label round in $$o/metrics.json (rounds)"; fi; \
	  if [ -f $$o/report.html ]; then echo "report:     $$o/report.html (open it in a browser: the DAG, curves, CV, crops)"; fi

test: deps
	@FLUKE_TEST_DEPS=1 bash ci/deps.sh
	@$(JOBS) $(MAKE) --no-print-directory $$j build-tests
	@bash tests/run.sh $(BUILD)
	@$(JOBS) $(MAKE) --no-print-directory $$j BUILD=build-san SAN=1 build-tests
	@bash tests/run.sh build-san san

build-tests: $(FLUKE) $(FLUKE_TS) $(UNIT_BIN) $(FUZZ_BIN)

# Fuzz targets (tests/fuzz/): with plain cc they replay the files given as arguments; they build
# in every test run and tests/integration/fuzz_corpus.sh replays tests/fuzz/corpus/ through
# them. `make fuzz-libfuzzer` builds real libFuzzer binaries with clang in build-fuzz/, the whole
# library instrumented for coverage and built with ASan/UBSan; `make fuzz` also runs each for
# FUZZ_TIME seconds (not part of `make test`) and reports executions and findings per target.
FUZZ_TIME ?= 60
fuzz-replay: $(FUZZ_BIN)
# clang, its sanitizer and libFuzzer runtimes, and its OpenMP runtime: only for fuzzing.
FUZZ_PKGS := clang libclang-rt-14-dev libomp-14-dev
fuzz-libfuzzer: deps
	@bash ci/deps.sh $(FUZZ_PKGS)
	@$(MAKE) --no-print-directory BUILD=build-fuzz SAN=1 CC=clang \
	  FUZZ_INSTR=-fsanitize=fuzzer-no-link EXTRA_FUZZ="-DFL_FUZZ_LIBFUZZER -fsanitize=fuzzer" fuzz-replay
fuzz: fuzz-libfuzzer
	@bash tests/fuzz/run.sh build-fuzz $(FUZZ_TIME)

bench: deps
	@$(JOBS) $(MAKE) --no-print-directory $$j $(FLUKE) $(FLUKE_TS) $(BENCH_BIN)
	@bash tests/bench/run.sh $(BUILD)

# Code identity (dag/codeid_gen.c): a stage's id covers the objects the linker pulls in for it
# (closure over undefined symbols), their sources and headers (-MMD files) and the compiler and
# flags. It needs the objects, so it cannot be inside the stage's object: codeid/NAME.h (fixed
# text) declares the id, and NAME.c, written by the tool after the objects are built (and only
# when the id changed), defines it. The tool runs only when an object it reads changed, that is
# only when the binaries relink anyway; an id changes exactly when what it covers changes.
CODEID_D := $(BUILD)/gen/codeid
LIB_STAGE_C := $(filter-out tests/%,$(STAGE_C))
TS_STAGE_C  := $(filter tests/%,$(STAGE_C))
CODEID_LIB_O := $(patsubst %,$(BUILD)/obj/codeid/%.o,$(basename $(notdir $(LIB_STAGE_C))))
CODEID_TS_O  := $(patsubst %,$(BUILD)/obj/codeid/%.o,$(basename $(notdir $(TS_STAGE_C))))
# The compiler and flags every object is built with, as files rewritten only on a change: a
# changed flag rebuilds the objects and changes the ids. Written while the Makefile is read, as
# are the fixed headers (so even the first compile finds them); `overrides` keeps this build's
# command-line variables for tests/integration/codeid.sh.
FLAGS_C  := $(BUILD)/flags/cc
FLAGS_CU := $(BUILD)/flags/nvcc
ifeq ($(filter clean fmt deps,$(MAKECMDGOALS)),)
define nl


endef
write_if_changed = $(file >$(1).new,$(2))$(shell cmp -s $(1).new $(1) || mv -f $(1).new $(1); rm -f $(1).new)
codeid_h = /* generated by the Makefile: the id is defined in $(1).c beside this file */$(nl)$\
  extern const char fl_code_id__$(1)[];$(nl)\#define FL_CODE_ID fl_code_id__$(1)
$(shell mkdir -p $(BUILD)/flags $(CODEID_D))
$(call write_if_changed,$(FLAGS_C),$(shell $(CC) --version 2>&1 | head -n1)$(nl)$(CC) $(CFLAGS) $(PKG_CFLAGS))
$(call write_if_changed,$(FLAGS_CU),$(if $(CU_SRC),$(shell $(NVCC) --version 2>&1 | tail -n1)$(nl)$(NVCC) $(NVFLAGS)))
$(call write_if_changed,$(BUILD)/flags/overrides,$(MAKEOVERRIDES))
$(foreach n,$(STAGE_N),$(call write_if_changed,$(CODEID_D)/$(n).h,$(call codeid_h,$(n))))
endif

$(BUILD)/codeid_gen: $(TOOL_C)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o $@ $< $(shell pkg-config --cflags --libs libxxhash)

# Two groups: the library's stages (their ids go into libfluke.a) and the test stages (linked
# into fluke-teststages only), so each id object is rebuilt only when its binary relinks anyway.
# A stamp marks a run of the tool; the tool rewrites only the ids that changed.
codeid_run = $(BUILD)/codeid_gen -o $(CODEID_D) -c $(FLAGS_C) $(if $(CU_SRC),-u $(FLAGS_CU)) \
  $(1:%.c=$(BUILD)/obj/%.o) -- $(2) && touch $@
$(CODEID_D)/lib.stamp: $(BUILD)/codeid_gen $(FLAGS_C) $(FLAGS_CU) $(LIB_OBJ)
	$(call codeid_run,$(LIB_STAGE_C),$(LIB_OBJ))
$(CODEID_D)/ts.stamp: $(BUILD)/codeid_gen $(FLAGS_C) $(FLAGS_CU) $(LIB_OBJ) $(TS_OBJ)
	$(call codeid_run,$(TS_STAGE_C),$(LIB_OBJ) $(TS_OBJ))
codeids: $(CODEID_LIB_O) $(CODEID_TS_O)

CODEID_CC = $(CC) $(filter-out -MMD -MP,$(CFLAGS)) -c -o $@ $(CODEID_D)/$*.c
$(CODEID_LIB_O): $(BUILD)/obj/codeid/%.o: $(CODEID_D)/lib.stamp
	@mkdir -p $(dir $@)
	$(CODEID_CC)
$(CODEID_TS_O): $(BUILD)/obj/codeid/%.o: $(CODEID_D)/ts.stamp
	@mkdir -p $(dir $@)
	$(CODEID_CC)

$(BUILD)/obj/%.o: %.c $(FLAGS_C)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.cu.o: %.cu $(FLAGS_CU)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -MMD -MP -MT $@ -MF $(@:.o=.d) -c -o $@ $<

$(LIB): $(LIB_OBJ) $(CODEID_LIB_O)
	@mkdir -p $(dir $@)
	@rm -f $@.tmp.$$$$ && ar rcs $@.tmp.$$$$ $^ && mv -f $@.tmp.$$$$ $@

$(FLUKE): $(BUILD)/obj/$(MAIN_C:.c=.o) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(FLUKE_TS): $(TS_OBJ) $(CODEID_TS_O) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(TSUP_C:%.c=$(BUILD)/obj/%.o) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CUDA_LIBS) $(TEST_LIBS) $(LDLIBS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB) $(FLAGS_C)
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
	rm -rf build build-san build-fuzz

-include $(shell find $(BUILD)/obj $(BUILD)/fuzz -name '*.d' 2>/dev/null)
