#!/usr/bin/env bash
# Installs what a fresh Debian machine with only the Swift toolchain lacks: OpenBLAS, HDF5, pkg-config
# (and libpng/libjpeg for the image codecs), and Open MPI (mpirun and libmpi, which data-parallel training
# loads at run time; the tests run 2-rank jobs). Safe to run repeatedly; installs only what is missing.
set -euo pipefail
need=()
for pkg in libopenblas-dev libhdf5-dev pkg-config libpng-dev libjpeg-dev openmpi-bin libopenmpi-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
