# C unit tests and fuzz targets for csrc/core. The Python extension is built by setup.py.
#   make test-c          build and run the C unit tests (gcc, -Werror, ASan+UBSan)
#   make fuzz            build the libFuzzer targets (clang-14)
#   make fuzz-run FUZZ_SECONDS=600   run every target for that long each
#   make dist-check      sdist + wheel with no warning, sdist complete, installs and serves
#   make wheels          dist/: the sdist and a manylinux wheel per CPython 3.9-3.13 found here
#   make wheels-check    install each wheel in dist/ with no compiler on PATH and serve a request
#   make docs            the documentation site into out/site (mkdocs build --strict)
CC ?= cc
CFLAGS_C = -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Icsrc/core \
           -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZCC ?= clang-14
FUZZFLAGS = -std=c11 -D_GNU_SOURCE -O1 -g -Icsrc/core -fsanitize=fuzzer,address,undefined \
            -fno-sanitize-recover=all
FUZZ_SECONDS ?= 20
BUILD = build/c

# Each unit test or fuzz target links only the core files it exercises.
DEPS_http1 = csrc/core/http1.c
DEPS_router = csrc/core/router.c
DEPS_compress = csrc/core/compress.c
LIBS_compress = -lz
DEPS_multipart = csrc/core/multipart.c
DEPS_utf8 = csrc/core/utf8.c
DEPS_ws_handshake = csrc/core/ws_handshake.c
DEPS_ws_frame = csrc/core/ws_frame.c csrc/core/utf8.c
LIBS_ws_frame = -lz
DEPS_ws = csrc/core/ws_handshake.c csrc/core/ws_frame.c csrc/core/utf8.c
LIBS_ws = -lz

# The runtime's lower layers, each linked alone (docs/architecture.md).
DEPS_loop = csrc/core/loop.c
DEPS_pool = csrc/core/pool.c
DEPS_body = csrc/core/body.c
DEPS_options = csrc/core/options.c
LIBS_loop = -lpthread
LIBS_pool = -lpthread
LIBS_body = -lpthread

UNIT = http1 router compress utf8 ws_handshake ws_frame multipart loop pool body options
FUZZ = http1 chunked router ws multipart

.PHONY: test-c fuzz fuzz-run clean-c dist-check wheels wheels-check docs
test-c: $(UNIT:%=$(BUILD)/test_%)
	@set -e; for t in $^; do echo "== $$t"; $$t; done

$(BUILD)/test_%: tests/c/test_%.c tests/c/harness.h csrc/core/*.h $(wildcard csrc/core/*.c)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_C) -Itests/c -o $@ $< $(DEPS_$*) $(LIBS_$*)

fuzz: $(FUZZ:%=$(BUILD)/fuzz_%)

$(BUILD)/fuzz_chunked: tests/fuzz/fuzz_chunked.c tests/fuzz/fuzz_common.h csrc/core/http1.c \
                       csrc/core/http1.h
	@mkdir -p $(BUILD)
	$(FUZZCC) $(FUZZFLAGS) -o $@ $< csrc/core/http1.c

$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h csrc/core/*.h $(wildcard csrc/core/*.c)
	@mkdir -p $(BUILD)
	$(FUZZCC) $(FUZZFLAGS) -o $@ $< $(DEPS_$*) $(LIBS_$*)

fuzz-run: fuzz
	@set -e; for t in $(FUZZ); do echo "== fuzz_$$t $(FUZZ_SECONDS)s"; mkdir -p $(BUILD)/corpus_$$t; \
	  $(BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
	  $(BUILD)/corpus_$$t tests/fuzz/corpus/$$t 2>&1 | tail -n 3; done

clean-c:
	rm -rf $(BUILD)

# Release files. PYTHON runs the checks (it needs `build`; scripts/wheels.sh makes its own venv).
PYTHON ?= python3
dist-check:
	$(PYTHON) scripts/dist_check.py

wheels:
	bash scripts/wheels.sh

wheels-check:
	$(PYTHON) scripts/wheels_check.py dist

# NO_MKDOCS_2_WARNING: mkdocs-material's banner about its successor, not about our pages
docs:
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict --site-dir out/site
