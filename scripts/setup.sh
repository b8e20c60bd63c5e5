#!/usr/bin/env bash
# Sets up everything on a fresh Debian machine: system packages, then a virtual environment .venv
# with the project (editable) and its Python dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(bible-kjv espeak-ng sox slurm-wlm munge g++ make sctk)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
# Every Python dependency is pinned in constraints.txt (torch==2.13.0 resolves to the CPU build available
# locally). Reinstall when pyproject.toml or constraints.txt changed since the last install (their
# checksums are kept in .venv/.installed).
stamp="$(sha256sum pyproject.toml constraints.txt)"
if ! .venv/bin/python -c "import sisyphus, torch, returnn, sentencepiece, pocketsphinx" 2>/dev/null \
   || [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
  echo "setup: installing Python dependencies into .venv (pinned by constraints.txt)"
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
  echo "$stamp" > .venv/.installed
fi
