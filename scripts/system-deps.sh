#!/usr/bin/env bash
# Installs the system packages the video pipeline needs, when they are missing:
# ffmpeg (builds the sample archive and the test clips) and opencv-doc (vtest.avi,
# real street footage). Uses apt-get as root, or sudo; prints what to do otherwise.
set -euo pipefail

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
[ -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] || need+=(opencv-doc)
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${need[*]}; install them with your package manager" >&2
  command -v ffmpeg >/dev/null 2>&1 || exit 1
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${need[*]} with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
