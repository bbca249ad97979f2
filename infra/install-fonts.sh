#!/usr/bin/env bash
# System packages for training and benchmarking OCR models: the font families
# `shardscribe synth` renders with (the bundled model was trained on them, less the
# families held out for its evaluation) and Tesseract, the benchmark's peer.
set -euo pipefail
packages=(
    fonts-liberation fonts-dejavu fonts-freefont-ttf fonts-urw-base35 fonts-noto-core
    fonts-croscore fonts-texgyre fonts-linuxlibertine fonts-ebgaramond fonts-roboto
    fonts-cantarell fonts-firacode fonts-stix fonts-inconsolata fonts-hack
    fonts-jetbrains-mono fonts-cmu fonts-noto-extra tesseract-ocr tesseract-ocr-eng
)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
