# The two commands that matter: `make run` (the console) and `make test` (every test).
# Both install what they need first (setup/install.sh) and take seconds when it is there.

CARGO ?= cargo
ARGS ?=

.PHONY: setup build run test lint bench bench-packer clean

setup:
	@setup/install.sh

build: setup
	$(CARGO) build --release --locked

run: build
	./target/release/factory $(ARGS)

lint: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test: lint
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(CARGO) test --locked

# Requests per second of the sandbox, upload throughput and memory, start-up times: the factory's
# OpenStack client beside python-openstackclient (bench/openstack.sh says what and how).
bench: setup
	bench/openstack.sh

# The same bundle built by HashiCorp Packer 1.6.6 (Debian's package, installed if missing) and by
# `factory build`, on one sandbox cloud with QEMU machines: wall time and time per step
# (bench/packer-vs-factory.sh; BENCH_ROUNDS=N for more rounds).
bench-packer: setup
	@command -v packer >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q packer
	bench/packer-vs-factory.sh

clean:
	$(CARGO) clean
	rm -rf .venv images/target
