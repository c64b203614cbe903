#!/usr/bin/env bash
# Tools-only dependencies of tools/codemodel (not needed to build or use lazyllm): Debian's
# SentencePiece Python module (tokenizer training, the tokenizer check) and apt's download
# tools (corpus.py; present on any Debian). numpy is not needed.
# Usage: bash tools/codemodel/setup.sh     (root or sudo for apt-get)
set -euo pipefail
PACKAGES=(python3 python3-sentencepiece xz-utils dpkg apt)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
/usr/bin/python3 -c "import sentencepiece; print('sentencepiece', sentencepiece.__version__)"
