#!/usr/bin/env bash
# Installs missing Debian packages, builds, and runs every test (ctest).
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -R gradients
set -euo pipefail
source "$(dirname "$0")/common.sh"
gcl_install_packages
gcl_build
cd "$BUILD_DIR"
ctest --output-on-failure -j"$(nproc)" "$@"
