#!/usr/bin/env bash
# Build the test guest: the kernel from Debian's linux-image-*-amd64 package
# (downloaded, never installed) and a busybox initramfs whose /init mounts
# proc/sys/dev, prints QM-GUEST-READY and runs a shell on the console.
#
# The guest also runs the QEMU guest agent (qemu-ga from Debian's
# qemu-guest-agent, with the shared libraries it needs from their Debian
# packages) in the background, on a virtio-serial port named
# org.qemu.guest_agent.0 if there is one, else on the first serial port that
# is not the console; /bin/start-agent in the guest (re)starts it.
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
recipe=5 # bump when the guest's contents change

if [[ -s $out/vmlinux && -s $out/initramfs.cpio.gz && "$(cat "$out/recipe" 2>/dev/null)" == "$recipe" ]]; then
  echo "$out"
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb cpio gzip xz zstd readelf; do
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
# The agent's package and what it Depends on, recursively: the packages that
# can hold the shared libraries qemu-ga loads (dpkg-shlibdeps puts every
# library package into Depends). Pre-Depends are left out: here they only
# bring init-system-helpers and perl. Which of these packages the guest
# really gets is decided below from the ELF files themselves.
mapfile -t agent_pkgs < <(apt-cache depends --recurse --no-recommends \
  --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
  --no-pre-depends qemu-guest-agent 2>/dev/null | grep -v '^[ <]' | sort -u)
if [[ " ${agent_pkgs[*]} " != *" qemu-guest-agent "* ]]; then
  echo "build-guest: cannot resolve qemu-guest-agent (run apt-get update?)" >&2
  exit 1
fi
pkgs=("$kernel_pkg" busybox-static "${agent_pkgs[@]}")
echo "build-guest: downloading ${pkgs[*]}" >&2
if ! apt-get download -q "${pkgs[@]}" >&2; then
  if ((EUID == 0)); then
    apt-get update -q >&2
    apt-get download -q "${pkgs[@]}" >&2
  else
    echo "build-guest: apt-get download failed; run 'sudo apt-get update' and retry" >&2
    exit 1
  fi
fi

dpkg-deb --fsys-tarfile "${kernel_pkg}"_*.deb | tar -x --wildcards './boot/vmlinuz-*' './lib/modules/*'
dpkg-deb -x busybox-static_*.deb busybox
mkdir pkg
for pkg in "${agent_pkgs[@]}"; do
  dpkg-deb -x "$pkg"_*.deb "pkg/$pkg"
done

root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,etc,run}
cp busybox/bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"

# The agent and what it loads, found the way the dynamic loader finds it:
# the interpreter by its path, each NEEDED soname in the loader's system
# search path (there is no ld.so.cache in the guest), recursively. Each file
# comes from the first agent package that has it; none having it is an error.
libdirs=(/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib /usr/lib)
declare -A from=() # guest path -> package
# add_file PKG PATH: copy PATH from package PKG into the guest, following
# symbolic links (within the package); $added is the file at the end.
add_file() {
  local pkg=$1 path=$2 target
  from[$path]=$pkg
  mkdir -p "$root${path%/*}"
  cp -P "pkg/$pkg$path" "$root$path"
  added=$path
  if [[ -L pkg/$pkg$path ]]; then
    target=$(readlink "pkg/$pkg$path")
    [[ $target == /* ]] || target=${path%/*}/$target
    add_file "$pkg" "$target"
  fi
}
# find_file PATH...: "PKG PATH" for the first PATH that an agent package has.
find_file() {
  local path pkg
  for path; do
    for pkg in "${agent_pkgs[@]}"; do
      if [[ -e pkg/$pkg$path || -L pkg/$pkg$path ]]; then
        echo "$pkg $path"
        return 0
      fi
    done
  done
  return 1
}
add_file qemu-guest-agent /usr/sbin/qemu-ga
queue=("$added")
while ((${#queue[@]})); do
  elf=${queue[0]}
  queue=("${queue[@]:1}")
  wants=()
  interp=$(readelf -lW "$root$elf" | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')
  [[ -z $interp ]] || wants+=("$interp")
  mapfile -t -O ${#wants[@]} wants < <(readelf -dW "$root$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
  for want in "${wants[@]}"; do
    if [[ $want == /* ]]; then
      paths=("$want")
    else
      paths=()
      for dir in "${libdirs[@]}"; do paths+=("$dir/$want"); done
    fi
    if ! found=$(find_file "${paths[@]}"); then
      echo "build-guest: $elf needs $want, which no package in qemu-guest-agent's dependencies (${agent_pkgs[*]}) has" >&2
      exit 1
    fi
    read -r pkg path <<<"$found"
    [[ -z ${from[$path]:-} ]] || continue
    add_file "$pkg" "$path"
    queue+=("$added")
  done
done
echo "build-guest: qemu-ga with files from: $(printf '%s\n' "${from[@]}" | sort -u | tr '\n' ' ')" >&2

# The kernel modules of the virtio-serial channel (the virtio console driver
# and the PCI transport of QEMU's virtio-serial device), with the modules
# they depend on first, less those built in; decompressed so that busybox's
# insmod loads them whatever the package's compression. The package has no
# modules.dep (depmod makes it on install): dependencies come from each
# module's .modinfo.
kver=$(basename lib/modules/*)
moddir=lib/modules/$kver
declare -A modfile=() builtin=() seen=() # by module name ('-' read as '_')
while read -r file; do
  name=${file##*/}
  name=${name%%.ko*}
  modfile[${name//-/_}]=$file
done < <(cd "$moddir" && find kernel -name '*.ko*')
while read -r file; do
  name=${file##*/}
  name=${name%%.ko*}
  builtin[${name//-/_}]=1
done <"$moddir/modules.builtin"
modules=() # "NAME PATH" in the guest, in load order
add_module() {
  local name=${1//-/_} file ko dep
  [[ -z ${seen[$name]:-} && -z ${builtin[$name]:-} ]] || return 0
  seen[$name]=1
  file=${modfile[$name]:-}
  if [[ -z $file ]]; then
    echo "build-guest: kernel module $name is neither in $kernel_pkg nor built in" >&2
    exit 1
  fi
  ko=/lib/modules/$kver/${file%%.ko*}.ko
  mkdir -p "$root${ko%/*}"
  case $file in
    *.ko) cp "$moddir/$file" "$root$ko" ;;
    *.ko.xz) xz -dc "$moddir/$file" >"$root$ko" ;;
    *.ko.zst) zstd -dcq "$moddir/$file" >"$root$ko" ;;
    *.ko.gz) gzip -dc "$moddir/$file" >"$root$ko" ;;
    *)
      echo "build-guest: cannot decompress kernel module $file" >&2
      exit 1
      ;;
  esac
  for dep in $(readelf -p .modinfo "$root$ko" | sed -n 's/^ *\[ *[0-9a-f]*\] *depends=//p' | tr , ' '); do
    add_module "$dep"
  done
  modules+=("$name $ko")
}
add_module virtio_console
add_module virtio_pci
printf '%s\n' "${modules[@]}" >"$root/etc/agent-modules"
echo "build-guest: modules for virtio-serial: ${modules[*]%% *}" >&2

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
# The serial port the agent may use goes raw before the host is told the
# guest is up: else the kernel echoes what the host sends it until qemu-ga
# has opened it and set it raw.
start-agent --raw-serial
echo "QM-GUEST-READY"
# The guest agent, in the background and silent (it logs to /tmp/qemu-ga.log).
start-agent &
# A shell with the console as its controlling terminal; if it ever exits,
# power off rather than panic.
setsid cttyhack sh
poweroff -f
INIT

cat >"$root/bin/start-agent" <<'AGENT'
#!/bin/sh
# start-agent: (re)start the QEMU guest agent, as a daemon, on the first
# channel found: a virtio-serial port named org.qemu.guest_agent.0, else the
# first serial port that exists and is not a console. Prints nothing: this
# script and the agent log to /tmp/qemu-ga.log. Exits non-zero when no agent
# was started.
# start-agent --raw-serial: only set that serial port raw, without echo.
# (Builtins where it can: every command started is slow under TCG.)
log=/tmp/qemu-ga.log
exec </dev/null >>"$log" 2>&1

# serial_port: the first serial port that exists (not "uart:unknown" in
# lines like "1: uart:16550A port:000002F8 irq:3 ...") and is not a console.
serial_port() {
  local cmdline consoles arg n uart rest
  read -r cmdline </proc/cmdline
  consoles=
  for arg in $cmdline; do
    case $arg in
    console=*) consoles="$consoles ${arg#console=}" ;;
    esac
  done
  port=
  while read -r n uart rest; do
    n=${n%:}
    case $n in '' | *[!0-9]*) continue ;; esac
    [ "$uart" != uart:unknown ] || continue
    case "$consoles " in *" ttyS$n "* | *" ttyS$n,"*) continue ;; esac
    port=/dev/ttyS$n
    return 0
  done </proc/tty/driver/serial
  return 1
}

if [ "$1" = --raw-serial ]; then
  if serial_port; then stty -F "$port" raw -echo; fi
  exit 0
fi

# An agent already running lets go of its port first (SIGKILL after 1 s;
# after 2 s, go on anyway).
if killall qemu-ga 2>/dev/null; then
  i=0
  while [ $i -lt 100 ] && pidof qemu-ga >/dev/null; do
    i=$((i + 1))
    [ $i -ne 50 ] || killall -9 qemu-ga
    usleep 20000
  done
fi

port=
virtio=
for dev in /sys/bus/pci/devices/*; do
  read -r vendor <"$dev/vendor" || continue
  read -r device <"$dev/device" || continue
  case $vendor:$device in
  0x1af4:0x1003 | 0x1af4:0x1043) virtio=1 ;; # virtio console: transitional, modern
  esac
done
if [ -n "$virtio" ]; then
  # Load the modules it needs, in dependency order, keeping the kernel's
  # messages about the device off the console; then wait for the port
  # (busybox has no udev: find it through sysfs).
  read -r level rest </proc/sys/kernel/printk
  echo 1 >/proc/sys/kernel/printk
  while read -r name ko; do
    [ -d "/sys/module/$name" ] || insmod "$ko"
  done </etc/agent-modules
  echo "$level" >/proc/sys/kernel/printk
  i=0
  while [ -z "$port" ] && [ $i -lt 250 ]; do
    for file in /sys/class/virtio-ports/*/name; do
      read -r name <"$file" 2>/dev/null || continue
      [ "$name" = org.qemu.guest_agent.0 ] || continue
      dir=${file%/name}
      [ ! -c "/dev/${dir##*/}" ] || port=/dev/${dir##*/}
    done
    [ -n "$port" ] || usleep 20000
    i=$((i + 1))
  done
  method='virtio-serial'
fi
if [ -z "$port" ]; then
  if ! serial_port; then
    echo "start-agent: no virtio-serial port org.qemu.guest_agent.0 and no free serial port"
    exit 1
  fi
  # qemu-ga sets the port raw only after opening it.
  stty -F "$port" raw -echo
  method='isa-serial'
fi
echo "start-agent: qemu-ga on $port ($method)"
exec qemu-ga --daemon --method="$method" --path="$port" --logfile="$log" \
  --pidfile=/run/qemu-ga.pid --statedir=/run
AGENT

# qemu-ga's guest-shutdown runs /sbin/shutdown, which busybox lacks.
cat >"$root/sbin/shutdown" <<'SHUTDOWN'
#!/bin/sh
# What qemu-ga's guest-shutdown runs: "shutdown -h -P|-H|-r +0 MESSAGE".
# Done at once with busybox's poweroff, halt or reboot.
action=poweroff
for arg; do
  case $arg in
  -P) action=poweroff ;;
  -H) action=halt ;;
  -r) action=reboot ;;
  esac
done
exec "$action" -f
SHUTDOWN
chmod 755 "$root/init" "$root/bin/start-agent" "$root/sbin/shutdown"
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
