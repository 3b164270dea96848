#!/usr/bin/env bash
# Debian packages behind Podium's local models: Tesseract OCR (English) and Apertium (en<->es),
# and the DejaVu fonts the document-processing example renders its scans with.
# Idempotent: installs only what is missing. Needs root (or sudo) when something is missing.
set -euo pipefail
PACKAGES=(tesseract-ocr tesseract-ocr-eng apertium apertium-eng-spa fonts-dejavu-core)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "podium: missing system packages ${missing[*]} (no apt-get here: install them by hand)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "podium: run as root, or install: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "podium: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
