#!/bin/sh
# Installs the Debian packages sqz builds and tests with, if any is missing (chromium: the
# test that renders sqz report's HTML headless).
set -e
# pkg-config, g++, man-db: tests/cli/install.sh uses the install as a user would; python3-numpy,
# -venv, -pip, -setuptools: the Python binding and its pip install (tests/cli/python.sh)
PKGS="build-essential libcjson-dev libopenblas-dev liblapacke-dev libpcre2-dev libyaml-dev libopenmpi-dev openmpi-bin python3 python3-numpy python3-venv python3-pip python3-setuptools pkg-config g++ man-db chromium"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
