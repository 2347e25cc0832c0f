# The two commands of the README's quick start, and their set-up.
#   make run   apply every migration to the embedded default database and show what exists
#   make test  fmt check, clippy, and the whole test suite against real PostgreSQL
# Both install their prerequisites first (idempotent; fast when already there).

SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c
.PHONY: run test setup stop

setup:
	bash scripts/setup-postgres.sh

# `strata` without the local embedder here: neither command embeds, and candle at
# opt-level 3 doubled a first build (`cargo build -p cli` keeps it: a default feature).
run: setup
	cargo run -q -p migration -- up
	cargo run -q -p cli --bin strata --no-default-features -- doctor

test: setup
	# The console's browser test drives Debian's chromium through chromedriver.
	bash scripts/setup-browser.sh
	export PATH="$$(bash scripts/install-tools.sh):$$PATH"
	export STRATA_MODEL_DIR="$$(bash scripts/setup-model.sh)"
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace
	# The queue, cache, store, review and maintenance tests again, acting as Supabase's
	# service_role (BYPASSRLS, owns no table) instead of the tables' owner.
	STRATA_TEST_ROLE=service_role cargo test --workspace --test queue --test cache --test store --test review --test maintenance

# Stop the embedded cluster (it is otherwise left running for the next command).
stop:
	bash scripts/stop-embedded.sh
