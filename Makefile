# The two commands that matter: `make run` (the console) and `make test` (every test).
# Both install what they need first (setup/install.sh) and take seconds when it is there.

CARGO ?= cargo
ARGS ?=

.PHONY: setup build run test lint bench clean

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

clean:
	$(CARGO) clean
	rm -rf .venv images/target
