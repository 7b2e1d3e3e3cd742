# Trellis tasks. CI runs `.ci/run`, which runs `just test`: the same command as here.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Run the server with embedded defaults (own PostgreSQL under ./.trellis).
run *ARGS: web
    cargo run -p trellis-server -- {{ARGS}}

# Every test: lint, schema drift, the TypeScript SDK check, unit and integration tests
# (real PostgreSQL), browser e2e.
test: web clients chromium mongo-test-server lint
    cargo test --workspace

# Install GraphiQL's pinned assets (ruru), the e2e driver and the graphql-http audits
# from web/package-lock.json when node_modules is missing or older than the lock file.
web:
    [ web/node_modules/.package-lock.json -nt web/package-lock.json ] || npm ci --prefix web --no-audit --no-fund

# The TypeScript client SDK (clients/typescript): install its pinned toolchain when
# node_modules is missing or older than package-lock.json, generate its types from
# schema.graphql and type-check them with the example dashboard code.
clients:
    [ clients/typescript/node_modules/.package-lock.json -nt clients/typescript/package-lock.json ] || npm ci --prefix clients/typescript --no-audit --no-fund
    npm run --prefix clients/typescript check

# Debian's Chromium for the GraphiQL browser test (skipped when already installed).
chromium:
    command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# A MongoDB wire-protocol server for the log-store tests: `mongod` when installed, else
# SecantusDB (pinned, from PyPI) in a virtual environment under target/secantus-venv.
mongo-test-server:
    command -v mongod >/dev/null || [ -x target/secantus-venv/bin/secantusd-py ] || { python3 -m venv target/secantus-venv && target/secantus-venv/bin/pip install -q --disable-pip-version-check "secantusdb==0.7.0b3"; }

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Regenerate schema.graphql from the code.
schema:
    cargo run -q -p trellis-server -- export-schema > schema.graphql

# Run the RLS doctor against the configured (or embedded) database.
doctor:
    cargo run -q -p trellis-server -- doctor

# Apply migrations.
migrate:
    cargo run -q -p trellis-server -- migrate

# Release-build load benchmark (see bench/README.md).
bench: web
    bench/run.sh
