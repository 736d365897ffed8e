# Sourced by the scripts: one target dir outside the clone and one profile
# (release) for tests, demo and benches, so RocksDB's C++ is built once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tranzcast/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
