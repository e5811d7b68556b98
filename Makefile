# OpenVMFS — top-level, non-recursive build.
#
#   make            build every library and binary into build/
#   make check      install missing packages, build, run unit tests (plain and
#                   ASan+UBSan), fuzzers (bounded) and system tests (pytest)
#   make demo       install missing packages, build, show the newest layer working
#   make bench      run the benchmarks in bench/
#   make install    PREFIX=/usr/local DESTDIR=
#
# Layout: every .c file in a library folder goes into build/libvmfs.a; every
# program folder becomes one binary; every tests/unit/test_*.c one test.

CC       ?= cc
CLANG    ?= clang
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
ASAN_BUILD ?= build-asan

PKGS     := libiscsi libnfs rocksdb uuid openssl fuse3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LIBS     := $(PKG_LIBS) -laio -lpthread -lm

WARN     := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wstrict-prototypes
CFLAGS   ?= -O2 -g
ALL_CFLAGS := -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
	      -Iinclude $(PKG_CFLAGS) -MMD -MP
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# Library layers, bottom up.  A folder that does not exist yet contributes nothing.
LIB_DIRS := util blockdev fs lockmgr journal host thinprov hypervisor-io iscsi nfs
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))

# Programs: folder -> binary name.
PROGS := tools/mkvmfs:mkvmfs tools/vmfsck:vmfsck tools/vmkfstools:vmkfstools \
	 tools/vmfsctl:vmfsctl vmfsd:vmfsd fuse:vmfs-fuse
prog_dir  = $(word 1,$(subst :, ,$(1)))
prog_name = $(word 2,$(subst :, ,$(1)))
HAVE_PROGS := $(foreach p,$(PROGS),$(if $(wildcard $(call prog_dir,$(p))/*.c),$(p)))
BINS := $(foreach p,$(HAVE_PROGS),$(BUILD)/bin/$(call prog_name,$(p)))

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_HELPERS := $(filter-out $(UNIT_SRCS),$(wildcard tests/unit/*.c))
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
ASAN_TESTS := $(patsubst tests/unit/%.c,$(ASAN_BUILD)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS    := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
TEST_PROGS_SRCS := $(wildcard tests/progs/*.c)
TEST_PROGS := $(patsubst tests/progs/%.c,$(BUILD)/tests/progs/%,$(TEST_PROGS_SRCS))

.PHONY: all check unit unit-asan fuzz systest demo bench install uninstall clean deps test-progs
.DEFAULT_GOAL := all

all: $(BUILD)/libvmfs.a $(BINS) $(TEST_PROGS)

# ---- objects --------------------------------------------------------------
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(ASAN_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -c $< -o $@

LIB_OBJS      := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
ASAN_LIB_OBJS := $(patsubst %.c,$(ASAN_BUILD)/obj/%.o,$(LIB_SRCS))

$(BUILD)/libvmfs.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(ASAN_BUILD)/libvmfs.a: $(ASAN_LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# ---- programs ---------------------------------------------------------------
define PROG_RULE
$(BUILD)/bin/$(call prog_name,$(1)): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(call prog_dir,$(1))/*.c)) $(BUILD)/libvmfs.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) -o $$@ $$^ $$(LIBS)
endef
$(foreach p,$(HAVE_PROGS),$(eval $(call PROG_RULE,$(p))))

$(BUILD)/tests/progs/%: $(BUILD)/obj/tests/progs/%.o $(BUILD)/libvmfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

# ---- unit tests (cmocka) ----------------------------------------------------
UNIT_HELPER_OBJS      := $(patsubst %.c,$(BUILD)/obj/%.o,$(UNIT_HELPERS))
ASAN_UNIT_HELPER_OBJS := $(patsubst %.c,$(ASAN_BUILD)/obj/%.o,$(UNIT_HELPERS))

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(UNIT_HELPER_OBJS) $(BUILD)/libvmfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS) -lcmocka

$(ASAN_BUILD)/tests/%: $(ASAN_BUILD)/obj/tests/unit/%.o $(ASAN_UNIT_HELPER_OBJS) $(ASAN_BUILD)/libvmfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ $^ $(LIBS) -lcmocka

# ---- fuzzers (clang libFuzzer + ASan) ----------------------------------------
# The library is compiled once with coverage instrumentation; each harness
# links against it.
FUZZ_BUILD ?= build-fuzz
FUZZ_CFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude $(PKG_CFLAGS) \
	       -Wall -Wextra -Werror -Wno-unused-parameter -fsanitize=address,undefined
FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(LIB_SRCS))
# non-harness sources in tests/fuzz (the fs harnesses' image builder) link into every harness
FUZZ_HELPER_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(filter-out $(FUZZ_SRCS),$(wildcard tests/fuzz/*.c)))

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libvmfs.a: $(FUZZ_LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_HELPER_OBJS) $(FUZZ_BUILD)/libvmfs.a
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -MMD -MP -MF $@.d -fsanitize=fuzzer -o $@ $< $(FUZZ_HELPER_OBJS) $(FUZZ_BUILD)/libvmfs.a $(LIBS)

# ---- top-level jobs ------------------------------------------------------------
deps:
	@sh scripts/install-deps.sh

unit: $(UNIT_TESTS)
	@sh scripts/run-unit.sh plain $(UNIT_TESTS)

unit-asan: $(ASAN_TESTS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		sh scripts/run-unit.sh asan $(ASAN_TESTS)

fuzz: $(FUZZERS)
	@sh scripts/run-fuzz.sh $(FUZZERS)

systest: all
	@sh scripts/run-systest.sh

check: deps
	@$(MAKE) --no-print-directory -j2 all $(UNIT_TESTS) $(ASAN_TESTS) $(FUZZERS)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-asan
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory systest

demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/run-bench.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/vmfs
	for b in $(BINS); do install -m 755 $$b $(DESTDIR)$(PREFIX)/bin/; done
	install -m 644 $(BUILD)/libvmfs.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/vmfs/*.h $(DESTDIR)$(PREFIX)/include/vmfs/
	if ls docs/*.[1-8] >/dev/null 2>&1; then \
		for m in docs/*.[1-8]; do s=$${m##*.}; install -d $(DESTDIR)$(PREFIX)/share/man/man$$s; \
		install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/; done; fi

uninstall:
	for b in $(BINS); do rm -f $(DESTDIR)$(PREFIX)/bin/$$(basename $$b); done
	rm -f $(DESTDIR)$(PREFIX)/lib/libvmfs.a
	rm -rf $(DESTDIR)$(PREFIX)/include/vmfs

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/fuzz $(ASAN_BUILD)/obj $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
.SECONDARY:
