#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, unit tests, parity with the authors'
# outputs, CLI end to end. Installs what it needs (rustfmt, clippy). Reads ../shared (override
# with BRN_SHARED). The build cache lives outside the clone (BRN_TARGET_DIR) so reruns are fast.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${BRN_TARGET_DIR:-$HOME/.cache/brn/target}"
export BRN_SHARED="${BRN_SHARED:-$(cd .. && pwd)/shared}"
export CARGO_TERM_COLOR=never

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (shared data: $BRN_SHARED)"
cargo test --workspace --locked -- --nocapture
