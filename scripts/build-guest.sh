#!/usr/bin/env bash
# Build the test guest: the kernel from Debian's linux-image-*-amd64 package
# (downloaded, never installed) and a busybox initramfs whose /init mounts
# proc/sys/dev, prints QM-GUEST-READY and runs a shell on the console.
#
# Outputs: vmlinuz (as packaged), vmlinux (the same kernel decompressed: an
# ELF that QEMU boots through its PVH entry point, skipping the slow
# decompression under TCG: ~2.5 s to a shell instead of ~6 s), and
# initramfs.cpio.gz.
#
# Cached: prints the output directory (default target/guest) and does
# nothing else when the guest is already built.
# Usage: scripts/build-guest.sh [OUTDIR]
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${QM_GUEST_DIR:-$top/target/guest}}
recipe=4 # bump when the guest's contents change

if [[ -s $out/vmlinux && -s $out/initramfs.cpio.gz && "$(cat "$out/recipe" 2>/dev/null)" == "$recipe" ]]; then
  echo "$out"
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb cpio gzip xz zstd; do
  command -v "$tool" >/dev/null || {
    echo "build-guest: '$tool' is missing (scripts/install-deps.sh installs it)" >&2
    exit 1
  }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [[ -z $kernel_pkg ]]; then
  echo "build-guest: cannot resolve linux-image-amd64 (run apt-get update?)" >&2
  exit 1
fi
echo "build-guest: downloading $kernel_pkg and busybox-static" >&2
if ! apt-get download -q "$kernel_pkg" busybox-static >&2; then
  if ((EUID == 0)); then
    apt-get update -q >&2
    apt-get download -q "$kernel_pkg" busybox-static >&2
  else
    echo "build-guest: apt-get download failed; run 'sudo apt-get update' and retry" >&2
    exit 1
  fi
fi

dpkg-deb --fsys-tarfile "${kernel_pkg}"_*.deb | tar -x --wildcards './boot/vmlinuz-*'
dpkg-deb -x busybox-static_*.deb busybox

root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,etc}
cp busybox/bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cat >"$root/init" <<'INIT'
#!/bin/sh
# The initramfs has no /dev/console node; devtmpfs provides it.
/bin/busybox --install -s
mount -t devtmpfs devtmpfs /dev
exec 0<>/dev/console 1>&0 2>&0
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
export HOME=/root PATH=/bin:/sbin:/usr/bin:/usr/sbin PS1='guest# '
cd /root
echo "QM-GUEST-READY"
# A shell with the console as its controlling terminal; if it ever exits,
# power off rather than panic.
setsid cttyhack sh
poweroff -f
INIT
chmod 755 "$root/init"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet --owner=0:0) | gzip -9 >initramfs.cpio.gz

# The bzImage carries the kernel ELF compressed; find the payload by its
# magic number and decompress it.
extract_vmlinux() {
  local image=$1 magic tool offset i
  local magics=($'\xfd7zXZ' $'\x28\xb5\x2f\xfd' $'\x1f\x8b\x08') tools=(xz zstd gzip)
  for i in 0 1 2; do
    magic=${magics[i]}
    tool=${tools[i]}
    for offset in $(LC_ALL=C grep -obUaF -- "$magic" "$image" | head -5 | cut -d: -f1); do
      tail -c +$((offset + 1)) "$image" | "$tool" -dc >vmlinux 2>/dev/null || true
      if [[ "$(head -c 4 vmlinux | od -An -c | tr -d ' ')" == '177ELF' ]]; then
        return 0
      fi
    done
  done
  echo "build-guest: cannot find the compressed kernel inside $image" >&2
  return 1
}
extract_vmlinux boot/vmlinuz-*

# Install each file atomically: a concurrent reader sees old or new, never
# half a file.
mkdir -p "$out"
install_file() { cp "$1" "$out/.$2.tmp.$$" && mv -f "$out/.$2.tmp.$$" "$out/$2"; }
install_file boot/vmlinuz-* vmlinuz
install_file vmlinux vmlinux
install_file initramfs.cpio.gz initramfs.cpio.gz
echo "$kernel_pkg" >"$work/kernel-package" && install_file "$work/kernel-package" kernel-package
echo "$recipe" >"$work/recipe" && install_file "$work/recipe" recipe
echo "$out"
