# lua-resty-warden
#
#   make build   build the Rust core into build/warden_core.so
#   make cli     build the `warden` command line into build/warden
#   make run     the demo: nginx in the foreground on 127.0.0.1:8080
#   make test    cargo test + prove -r t (installs what is missing)
#   make test-openresty  prove -r t against OpenResty's stack (built once
#                from ../shared/openresty when there is no OpenResty)
#   make openresty  print the path of that OpenResty binary (-s: only it)
#   make bench   criterion + wrk benchmarks (see bench/README.md)
#   make bench-ir  instructions per request under callgrind (bench/ir.sh)
#   make fuzz    every cargo-fuzz target for FUZZ_SECONDS each (nightly)
#   make valgrind  the functional t/ files under valgrind's memcheck
#
# NGINX=/usr/local/openresty/bin/openresty make run   uses OpenResty; so do
# make test, make bench and the bench/*.sh scripts.

SHELL := bash
NGINX    ?= $(shell command -v openresty 2>/dev/null || echo nginx)
CARGO    ?= cargo
PROVE    ?= prove
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
LUA_LIB_DIR ?= $(PREFIX)/lib/lua/5.1
LUA_SHARE_DIR ?= $(PREFIX)/share/lua/5.1
DEMO_DIR ?= /tmp/warden-demo

SO       := build/warden_core.so
SOURCES  := $(shell find src -name "*.rs" -o -name "*.html") Cargo.toml build.rs
CLI      := build/warden
CLI_SOURCES := $(shell find cli/src -name "*.rs") cli/Cargo.toml Cargo.toml

.PHONY: check-fmt valgrind fuzz all build cli deps test check-rockspec test-rust test-nginx run bench bench-ir install \
        install-lib install-cli opm lint clean openresty test-openresty test-tools

all: build

$(SO): $(SOURCES)
	$(CARGO) build --release --lib
	mkdir -p build
	cp target/release/libwarden_core.so $(SO)

build: $(SO)

# The command line (cli/, a member of the workspace): a program of its own,
# so the library above is built without it.
$(CLI): $(CLI_SOURCES)
	$(CARGO) build --release -p warden-cli
	mkdir -p build
	cp target/release/warden $(CLI)

cli: $(CLI)

# Debian packages the tests and the demo need; installed only when missing.
DEB_PKGS := nginx libnginx-mod-http-lua lua-resty-core lua-cjson dirb gobuster \
            prometheus curl jq redis-server procps
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && [ "$(NGINX)" = nginx ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $$missing; \
	fi

test: deps build cli check-fmt check-rockspec test-rust test-nginx

# rustfmt, on the crate and the fuzz targets (skipped where the toolchain
# has no rustfmt component).
check-fmt:
	@if $(CARGO) fmt --version >/dev/null 2>&1; then \
	  $(CARGO) fmt --all -- --check && (cd fuzz && $(CARGO) fmt -- --check); \
	else echo "rustfmt is not installed: format not checked"; fi

# The mlua rockspec lists the Lua modules one by one: none may be missing.
check-rockspec:
	@for f in lua/resty/warden/*.lua; do \
	  grep -q "\"$$f\"" rockspec/lua-resty-warden-0.1.0-1.rockspec || \
	  { echo "$$f is missing from rockspec/lua-resty-warden-0.1.0-1.rockspec"; exit 1; }; \
	done

test-rust:
	$(CARGO) test --release
	$(CARGO) test --release --no-default-features --features vendored --lib lua::
	$(CARGO) test --release -p warden-cli

test-nginx: build cli
	TEST_NGINX_BINARY=$(NGINX) $(PROVE) -r t

# OpenResty's stack (.ci/run runs it after make test): bench/openresty.sh
# finds the binary: OPENRESTY= (or NGINX= given to make), else `openresty`
# on the PATH, else the sources in OPENRESTY_SRC (default: shared/openresty
# beside the checkout) built once into OPENRESTY_CACHE (default
# ~/.cache/lua-resty-warden, /var/cache/lua-resty-warden for root).
ifneq ($(filter command line environment,$(origin NGINX)),)
OPENRESTY ?= $(NGINX)
endif
export OPENRESTY OPENRESTY_SRC OPENRESTY_CACHE

openresty:
	@bench/openresty.sh

# (openresty first: without one, it stops before building anything)
test-openresty: openresty test-tools build cli
	@bin=$$(bench/openresty.sh) && "$$bin" -v && \
	  echo "TEST_NGINX_BINARY=$$bin $(PROVE) -r t" && \
	  TEST_NGINX_BINARY=$$bin $(PROVE) -r t

# The programs the t/ files run besides nginx, for test-openresty (make
# test installs them with deps): installed when missing and root.
TEST_TOOLS := dirb gobuster prometheus curl jq redis-server procps
test-tools:
	@missing=""; for p in $(TEST_TOOLS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $$missing; \
	elif [ -n "$$missing" ]; then \
	  echo "not installed:$$missing (the tests that use them fail)"; fi

# The functional t/ files under valgrind's memcheck (nginx, its workers and
# warden_core): a block fails on any invalid access or definite leak in
# warden's Rust library. The fault, state and fleet files are left out:
# they time things that valgrind slows down 20-50 times.
VALGRIND_TESTS ?= t/00-new.t t/01-lists.t t/02-block.t t/03-jit.t \
                  t/05-detector.t t/06-scanners.t t/07-http.t t/08-iprepd.t \
                  t/09-iprepd-report.t t/10-warden-iprepd.t t/11-api.t \
                  t/12-policy.t
valgrind: build
	command -v valgrind >/dev/null || apt-get install -y -q valgrind
	TEST_NGINX_USE_VALGRIND=1 TEST_NGINX_BINARY=$(NGINX) $(PROVE) $(VALGRIND_TESTS)

run: deps build
	examples/run.sh $(NGINX) $(DEMO_DIR)

bench: build
	$(CARGO) bench --bench prefix
	$(CARGO) bench --bench detector
	NGINX=$(NGINX) bench/nginx.sh

# Instructions per request (valgrind's callgrind): plain nginx, empty Lua
# handlers, warden's full pipeline, and where warden's own work goes; on
# NGINX, then on OpenResty's stack when one is built or installed
# (bench/openresty.sh --no-build).
IR_REQUESTS ?= 20000
bench-ir: build
	command -v valgrind >/dev/null || apt-get install -y -q valgrind
	@echo "== $(NGINX)"; NGINX=$(NGINX) bench/ir.sh $(IR_REQUESTS)
	@if bin=$$(env -u OPENRESTY bench/openresty.sh --no-build) && \
	    [ "$$bin" != "$$(command -v $(NGINX))" ]; then \
	  echo "== $$bin"; NGINX=$$bin bench/ir.sh $(IR_REQUESTS); \
	else echo "(no OpenResty built: make openresty, then make bench-ir again)"; fi

# cargo-fuzz (libFuzzer) targets in fuzz/: one per parser or matcher that
# sees outside input. Needs a nightly toolchain (rustup toolchain install
# nightly); installs cargo-fuzz when missing. Each run starts from the small
# committed corpus in fuzz/seeds/<target> (every finding is kept there) and
# grows fuzz/corpus/<target>, which git ignores.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := addr forwarded prefix duration options glob agents \
                iprepd_http accesslog api_json state_file payload dns challenge
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t; \
	  $(CARGO) +nightly fuzz run -O $$t corpus/$$t seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 \
	    | grep -E "^stat::number_of_executed_units|SUMMARY|panicked" \
	    | sed "s/^/$$t: /"; \
	  [ $${PIPESTATUS[0]} -eq 0 ] || exit 1; \
	done

# install: the library, the Lua files and the command line; install-lib
# alone is what LuaRocks' make backend runs (rockspec/make).
install: install-lib install-cli

install-cli: cli
	install -d $(DESTDIR)$(BINDIR)
	install -m 755 -s $(CLI) $(DESTDIR)$(BINDIR)/warden

install-lib: build
	install -d $(DESTDIR)$(LUA_LIB_DIR) $(DESTDIR)$(LUA_SHARE_DIR)/resty/warden
	install -m 755 $(SO) $(DESTDIR)$(LUA_LIB_DIR)/
	install -m 644 lua/resty/warden.lua $(DESTDIR)$(LUA_SHARE_DIR)/resty/
	install -m 644 lua/resty/warden/*.lua $(DESTDIR)$(LUA_SHARE_DIR)/resty/warden/

# Stage the opm package (the Lua part) in build/opm; build it if opm exists.
opm:
	rm -rf build/opm && mkdir -p build/opm
	cp -r opm/dist.ini lua README.md build/opm/
	cd build/opm && if command -v opm >/dev/null; then opm build; \
	  else echo "opm not installed: staged in build/opm"; fi

lint:
	$(MAKE) check-fmt
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	luacheck -q lua

clean:
	rm -rf build t/servroot*
	$(CARGO) clean
