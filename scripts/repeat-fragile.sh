#!/usr/bin/env bash
# Repeats the kinds of test that have been flaky before, so that a regression shows up as
# a failure in CI rather than as a coin toss on some later submission:
# - log capture while other tests run on other threads of the same binary (the
#   callsite-interest race of `tracing`): core/tests/hostile.rs and the conformance
#   suite's secrets tests;
# - many concurrent operations over one login, over every transport;
# - property tests (their seed is fixed; this checks it stays fixed).
# Usage: scripts/repeat-fragile.sh [ROUNDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"

cargo test --quiet --locked -p dap-proto --test hostile --test proptests --no-run
cargo test --quiet --locked -p dap-tests --test conformance --no-run
for i in $(seq "$rounds"); do
    echo "== fragile tests, round $i of $rounds"
    cargo test --quiet --locked -p dap-proto --test hostile --test proptests
    cargo test --quiet --locked -p dap-tests --test conformance -- secrets_absent fifty_concurrent concurrent
done
