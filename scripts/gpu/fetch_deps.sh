#!/usr/bin/env bash
# Downloads the Debian bookworm packages that the LibTorch core needs besides
# LibTorch itself (Abseil, GoogleTest, HDF5, NIfTI, OpenSSL, zlib headers and
# their runtime chain) and unpacks them into DEST/root, for a GPU machine that
# has a CUDA LibTorch, CMake and a compiler but none of these (docs/gpu.md).
#
#   scripts/gpu/fetch_deps.sh [DEST]      # default: .gpu-deps (git-ignored)
#
# Then configure with CMAKE_PREFIX_PATH="<libtorch>;DEST/root/usr" and run the
# binaries with LD_LIBRARY_PATH=DEST/root/usr/lib/x86_64-linux-gnu.
set -euo pipefail
dest=$(realpath -m "${1:-.gpu-deps}")
dev=(libabsl-dev libgtest-dev libgmock-dev libhdf5-dev libniftiio-dev libnifti2-dev libznz-dev
     libssl-dev zlib1g-dev)
# Runtime chain of libabsl, libhdf5_serial and libnifti2 (ldd, minus libc/libm/libz).
run=(libabsl20220623 libhdf5-103-1 libnifti2-2 libniftiio2 libznz3 libaec0 libsz2 libcurl4
     libbrotli1 libcom-err2 libgmp10 libgnutls30 libgssapi-krb5-2 libhogweed6 libidn2-0
     libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 libldap-2.5-0 libnettle8
     libnghttp2-14 libp11-kit0 libpsl5 librtmp1 libsasl2-2 libssh2-1 libssl3 libtasn1-6
     libunistring2 libzstd1 libffi8)
mkdir -p "$dest/debs" "$dest/root"
(cd "$dest/debs" && apt-get download "${dev[@]}" "${run[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
for f in "$dest"/debs/*.deb; do dpkg -x "$f" "$dest/root"; done
# Static archives and docs are not needed (GoogleTest's are: it ships only .a).
find "$dest/root" -name '*.a' ! -name 'libgtest*' ! -name 'libgmock*' -delete
rm -rf "$dest/root/usr/share/doc" "$dest/root/usr/share/man" "$dest/root/usr/share/lintian" "$dest/debs"
# Absolute symlinks: into the tree when the target was unpacked, else to the
# system's copy (libz.so -> the runtime zlib every machine has).
find "$dest/root" -type l -lname '/*' -print | while read -r l; do
  t=$(readlink "$l")
  if [[ -e "$dest/root$t" ]]; then
    ln -sfn "$(realpath --relative-to="$(dirname "$l")" "$dest/root$t")" "$l"
  elif [[ $(basename "$l") == libz.so ]]; then
    ln -sfn /lib/x86_64-linux-gnu/libz.so.1 "$l"
  fi
done
du -sh "$dest"
