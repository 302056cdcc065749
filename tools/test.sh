#!/usr/bin/env bash
# Runs the whole test suite, installing what the tests need first:
#   - s3s-fs, a real S3-compatible server (crates.io), which the storage tests start on 127.0.0.1;
#   - a Python venv with pyarrow, the independent reader of our parquet files (and grpcio, the
#     independent gRPC client);
#   - promtool (the Debian package `prometheus`), which checks the shipped alert rules.
# Everything goes under target/tools, so a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/target/tools"
mkdir -p "$tools"

# The debug test build needs about 4.5 GB under target/ (plus s3s-fs's build in a temp dir); a
# full disk shows up later as a cryptic linker error, so say it here first.
free_kb=$(df -Pk "$root/target" | awk 'NR==2 {print $4}')
echo "free disk under target/: $((free_kb / 1024)) MB (the debug test build needs about 4500 MB)" >&2

S3S_FS_VERSION=0.14.1
if [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "installing s3s-fs $S3S_FS_VERSION into $tools (once)" >&2
  cargo install --quiet --locked s3s-fs@"$S3S_FS_VERSION" --features binary --root "$tools" \
    || cargo install --quiet s3s-fs@"$S3S_FS_VERSION" --features binary --root "$tools"
fi

# System-wide (apt), unlike the rest: the test fails rather than skips without it.
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool: the Debian package prometheus (once)" >&2
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then as_root=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get install -y --no-install-recommends prometheus >/dev/null \
    || { "${as_root[@]}" apt-get update >/dev/null \
      && "${as_root[@]}" apt-get install -y --no-install-recommends prometheus >/dev/null; }
fi

venv="$tools/pyenv"
# Reinstalled whenever the requirements change (the installed copy is kept as a stamp).
if [ ! -x "$venv/bin/python" ] || ! cmp -s tools/python-requirements.txt "$venv/requirements.txt"; then
  echo "creating the Python test environment in $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/python-requirements.txt
  cp tools/python-requirements.txt "$venv/requirements.txt"
fi

export TIERDEX_S3S_FS="$tools/bin/s3s-fs"
export TIERDEX_PYTHON="$venv/bin/python"
# Credentials for the local S3-compatible servers the tests start; never a real account.
export AWS_ACCESS_KEY_ID=tierdex-test
export AWS_SECRET_ACCESS_KEY=tierdex-test-secret
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null
export AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_ENDPOINT_URL AWS_PROFILE AWS_SESSION_TOKEN

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
