#!/usr/bin/env bash
# Install the built library like any C library:
#   LIBDIR/libqemu_machine.so.X.Y.Z, its SONAME link .so.X and the .so link,
#   LIBDIR/libqemu_machine.a, INCLUDEDIR/qemu_machine.h (+ .hpp),
#   LIBDIR/pkgconfig/qemu-machine.pc.
# Usage: scripts/install.sh BUILD_DIR
#   BUILD_DIR holds libqemu_machine.so and .a (make install passes
#   target/release). PREFIX (default /usr/local), LIBDIR, INCLUDEDIR and
#   DESTDIR are read from the environment.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: scripts/install.sh BUILD_DIR}

prefix=${PREFIX:-/usr/local}
libdir=${LIBDIR:-$prefix/lib}
includedir=${INCLUDEDIR:-$prefix/include}
destdir=${DESTDIR:-}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)
major=${version%%.*}

for f in libqemu_machine.so libqemu_machine.a; do
  [[ -f $build/$f ]] || { echo "install: $build/$f is missing (build first)" >&2; exit 1; }
done

install -d "$destdir$libdir/pkgconfig" "$destdir$includedir"
install -m 0755 "$build/libqemu_machine.so" "$destdir$libdir/libqemu_machine.so.$version"
ln -sfn "libqemu_machine.so.$version" "$destdir$libdir/libqemu_machine.so.$major"
ln -sfn "libqemu_machine.so.$major" "$destdir$libdir/libqemu_machine.so"
install -m 0644 "$build/libqemu_machine.a" "$destdir$libdir/libqemu_machine.a"
install -m 0644 "$top/include/qemu_machine.h" "$top/include/qemu_machine.hpp" "$destdir$includedir/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
  -e "s|@VERSION@|$version|" "$top/qemu-machine.pc.in" >"$destdir$libdir/pkgconfig/qemu-machine.pc"
chmod 0644 "$destdir$libdir/pkgconfig/qemu-machine.pc"
echo "installed qemu-machine $version into $destdir$prefix"
