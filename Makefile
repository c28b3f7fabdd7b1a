# Shoal — the two commands a newcomer needs:
#   make run    start a three-zone dev cluster (shoal dev) on 127.0.0.1:50051-50053
#   make test   build everything and run every test
#
# Builds go to a target directory outside the clone so repeated clones on one
# machine (and CI) reuse the expensive RocksDB build.

export CARGO_TARGET_DIR ?= /var/tmp/shoal-target
SHOAL := $(CARGO_TARGET_DIR)/debug/shoal
VENV ?= /var/tmp/shoal-venv
SDK_TARGET_DIR ?= /var/tmp/shoal-sdk-target
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps pydeps pgdeps build run test lint fmt clean image cluster-up cluster-up-tls cluster-down test-compose test-compose-tls bench-compare bench-profile

IMAGE ?= shoal:local
COMPOSE := docker-compose -f deploy/docker-compose.yml
# Docker is optional: the compose fault test runs where an engine answers.
HAVE_DOCKER := $(shell docker info >/dev/null 2>&1 && command -v docker-compose >/dev/null && echo yes)

## deps: install what the build needs (libclang for RocksDB's bindings)
deps:
	@if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 \
		&& ! ls /usr/lib/*-linux-gnu/libclang-[0-9]*.so* >/dev/null 2>&1; then \
		echo "installing libclang-dev (needed to build RocksDB's bindings)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libclang-dev; \
	fi

## pydeps: a virtualenv with boto3, the aws CLI, pytest, cbor2 and aws-kinesis-agg
## for the AWS-compatibility tests (kept outside the clone, like the build)
pydeps:
	@test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	@cmp -s tests/aws/requirements.txt $(VENV)/requirements.txt || \
		( $(VENV)/bin/pip install -q -r tests/aws/requirements.txt && cp tests/aws/requirements.txt $(VENV)/requirements.txt )

## pgdeps: PostgreSQL's server (Debian's package) for the Firehose PostgreSQL test
pgdeps:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
		echo "installing postgresql (the Firehose PostgreSQL destination test runs a server)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql; }

## build: compile the shoal binary, every crate and every test (one feature set,
## so RocksDB is built once)
build: deps
	cargo build --workspace --all-targets

## run: start `shoal dev`, a three-node, three-zone cluster in one process
run: build
	$(SHOAL) dev

## test: unit, storage-conformance, in-process cluster and binary tests, then
## boto3, the aws CLI and the Rust AWS SDK against a real `shoal dev`, the Helm
## chart (real helm, offline schema validation), and the compose fault test
test: build pydeps pgdeps
	cargo test --workspace --no-fail-fast -- --test-threads=2
	PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python -m pytest -q tests/aws tests/helm
	cd tests/aws-sdk-rust && CARGO_TARGET_DIR=$(SDK_TARGET_DIR) SHOAL_BIN=$(SHOAL) cargo test
ifeq ($(HAVE_DOCKER),yes)
	$(MAKE) test-compose
else
	@echo "no Docker engine or docker-compose: skipping the compose fault test"
endif

## image: the `shoal` container image, FROM scratch out of the locally built
## binary and the libraries it links (no base image is pulled)
image: build
	deploy/docker/make-rootfs.sh $(SHOAL) deploy/docker/build/rootfs
	cp deploy/docker/Dockerfile.local deploy/docker/build/Dockerfile
	docker build -q -t $(IMAGE) deploy/docker/build

## cluster-up / cluster-down: the three-node docker-compose cluster
cluster-up: image
	SHOAL_IMAGE=$(IMAGE) $(COMPOSE) up -d
	@echo "gRPC 127.0.0.1:50051-50053, AWS API http://127.0.0.1:4567-4569, metrics :9464-9466"

cluster-down:
	$(COMPOSE) down -v

## cluster-up-tls: the same cluster with TLS on (deploy/docker-compose.tls.yml),
## certificates made in deploy/tls by `shoal tls generate` if absent
cluster-up-tls: image deploy/tls/ca.pem
	SHOAL_IMAGE=$(IMAGE) $(COMPOSE) -f deploy/docker-compose.tls.yml up -d
	@echo "gRPC 127.0.0.1:50051-50053 (--tls-ca deploy/tls/ca.pem), AWS API https://127.0.0.1:4567-4569"

deploy/tls/ca.pem:
	$(SHOAL) tls generate --out deploy/tls --node node-1 --node node-2 --node node-3

## test-compose: kill, cut off, pause and restart nodes of a compose cluster
## under load; fails if an acknowledged record is lost, doubled or reordered
test-compose: image pydeps
	$(COMPOSE) -p shoal-faults down -v >/dev/null 2>&1 || true
	SHOAL_IMAGE=$(IMAGE) $(COMPOSE) -p shoal-faults up -d
	PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python tests/compose/fault_test.py --project shoal-faults --shoal $(SHOAL) \
		|| { $(COMPOSE) -p shoal-faults logs --tail 50; $(COMPOSE) -p shoal-faults down -v; exit 1; }
	$(COMPOSE) -p shoal-faults down -v
	$(MAKE) test-compose-tls

## test-compose-tls: the TLS variant of the compose cluster, used over TLS by the
## shoal CLI and boto3; plain and untrusting clients must be refused
test-compose-tls: image pydeps deploy/tls/ca.pem
	$(COMPOSE) -f deploy/docker-compose.tls.yml -p shoal-tls down -v >/dev/null 2>&1 || true
	SHOAL_IMAGE=$(IMAGE) $(COMPOSE) -f deploy/docker-compose.tls.yml -p shoal-tls up -d
	PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python tests/compose/tls_test.py --shoal $(SHOAL) --ca deploy/tls/ca.pem \
		|| { $(COMPOSE) -f deploy/docker-compose.tls.yml -p shoal-tls logs --tail 50; $(COMPOSE) -f deploy/docker-compose.tls.yml -p shoal-tls down -v; exit 1; }
	$(COMPOSE) -f deploy/docker-compose.tls.yml -p shoal-tls down -v

## bench-compare: Shoal (three `shoal node` processes, release build) against a
## three-server NATS JetStream cluster, bench/workloads.toml on both, one table
bench-compare: deps
	@command -v nats-server >/dev/null || $(SUDO) apt-get install -y -qq nats-server
	cargo build --release --workspace
	bench/compare.sh $(CARGO_TARGET_DIR)/release/shoal $(BENCH_FLAGS)

## bench-profile: perf profile of three `shoal node`s under one workload
## (release build); BENCH_FLAGS are `shoal bench` flags
bench-profile: deps
	@command -v perf >/dev/null || $(SUDO) apt-get install -y -qq linux-perf
	cargo build --release --workspace
	bench/profile.sh $(CARGO_TARGET_DIR)/release/shoal $(BENCH_FLAGS)

## lint: formatting and clippy, warnings are errors
lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
