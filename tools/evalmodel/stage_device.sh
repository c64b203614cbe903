#!/usr/bin/env bash
# Copies what the device training run needs into DEST (default /work/main/.dev-train):
# the Python sources of tools/evalmodel and the eval sets. Run the device command there:
#   bash .dev-train/evalmodel/lazy_aware_chain.sh N   (the model in eval/models/; or train.py directly:)
#   cd .dev-train && PYTHONUNBUFFERED=1 timeout 560 python3 evalmodel/train.py --out $OUT \
#     --eval-dir data --budget-s 400 --workers 14
set -euo pipefail
cd "$(dirname "$0")/../.."
dest="${1:-/work/main/.dev-train}"
rm -rf "$dest"
mkdir -p "$dest/evalmodel" "$dest/data"
cp tools/evalmodel/*.py tools/evalmodel/*_chain.sh "$dest/evalmodel/"
cp eval/data/*.jsonl "$dest/data/"
du -sh "$dest"
