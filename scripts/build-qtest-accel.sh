#!/usr/bin/env bash
# Build QEMU's qtest accelerator module (accel-qtest-x86_64.so) for the
# installed Debian qemu-system-x86. Debian builds that module but deletes it
# from the package, so `-accel qtest` says "invalid accelerator qtest". This
# script rebuilds just that module from Debian's own source package (the
# version that matches the installed binary, Debian's patches applied) with
# the pkgversion string Debian uses, so its build stamp matches the installed
# QEMU. QEMU loads it from $QEMU_MODULE_DIR, which it searches before its own
# module directory, so the packaged modules still load:
#
#   QEMU_MODULE_DIR=$(scripts/build-qtest-accel.sh) qemu-system-x86_64 -accel qtest ...
#
# Outputs, in OUTDIR (default target/qtest-accel/<binary version, with
# characters other than [A-Za-z0-9+.~-] replaced by '_'>):
#   accel-qtest-x86_64.so  the module
#   built-for              package, version, recipe and module stamp it was
#                          built for
#
# Needs root for apt (uses sudo when not root): enables deb-src in a file of
# its own under /etc/apt/sources.list.d/ (running `apt-get update` only then)
# and installs the build dependencies it lacks. QEMU's source is unpacked and
# built under target/ and removed afterwards; only the module is kept.
#
# Cached: prints OUTDIR (on stdout, nothing else) and does nothing else when
# the module is already built for the installed version. Rebuilds when the
# installed qemu-system-x86 version changes.
# Usage: scripts/build-qtest-accel.sh [OUTDIR]    (or QM_QTEST_ACCEL_DIR=OUTDIR)
# shellcheck disable=SC2016 # '$(FIELD)' in apt-get indextargets formats
set -eEuo pipefail
trap 'echo "build-qtest-accel: error: unexpected failure (line $LINENO: $BASH_COMMAND)" >&2' ERR

top=$(cd "$(dirname "$0")/.." && pwd)
recipe=1 # bump when the build recipe changes
pkg='qemu-system-x86'
module=accel-qtest-x86_64.so

die() {
  echo "build-qtest-accel: error: $*" >&2
  exit 1
}
log() { echo "build-qtest-accel: $*" >&2; }

binver=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) || binver=
[[ -n $binver ]] || die "$pkg is not installed (scripts/install-deps.sh installs it)"
safe_ver=$(printf '%s' "$binver" | tr -c '[:alnum:]+.~-' '_')
out=${1:-${QM_QTEST_ACCEL_DIR:-$top/target/qtest-accel/$safe_ver}}
out=$(realpath -m -- "$out")

is_built() {
  [[ -s $out/$module ]] &&
    grep -qxF "version=$binver" "$out/built-for" 2>/dev/null &&
    grep -qxF "recipe=$recipe" "$out/built-for"
}
if is_built; then
  echo "$out"
  exit 0
fi

# One build at a time per output directory; a waiting run then finds the
# module built.
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if is_built; then
  echo "$out"
  exit 0
fi

srcpkg=$(dpkg-query -W -f='${source:Package}' "$pkg")
srcver=$(dpkg-query -W -f='${source:Version}' "$pkg") # the version without a +bN binNMU suffix
pkgversion="Debian $binver"                             # debian/rules: PKGVERSION = Debian ${DEB_VERSION}
# (Pipelines read their input to the end: with pipefail, a reader that quits
# early could fail them through SIGPIPE.)
qemu=$(dpkg -L "$pkg" | awk '/\/bin\/qemu-system-x86_64$/ && !n++')
[[ -n $qemu ]] || die "$pkg ships no qemu-system-x86_64"
# A module from the same build to compare the stamp with (Debian ships them
# in qemu-system-common, which has the same version).
ref_module=
for p in "$pkg" qemu-system-common; do
  [[ "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null)" == "$binver" ]] || continue
  ref_module=$(dpkg -L "$p" | awk '/\/qemu\/accel-tcg-x86_64\.so$/ && !n++')
  [[ -n $ref_module ]] && break
done
[[ -n $ref_module && -f $ref_module ]] ||
  die "found no installed accel-tcg-x86_64.so of version $binver to compare the build stamp with"
log "building $module for $pkg $binver (source $srcpkg $srcver)"

# The installed binary must carry the pkgversion the module is stamped with.
qemu_version=$("$qemu" --version) || die "$qemu --version failed"
qemu_version=${qemu_version%%$'\n'*}
[[ $qemu_version == *"($pkgversion)" ]] ||
  die "$qemu reports '$qemu_version', expected pkgversion '$pkgversion'"

sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 || die "need root (or sudo) for apt-get"
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

# --- QEMU's Debian source package, via deb-src --------------------------------
have_source() {
  apt-cache showsrc --only-source "$srcpkg" 2>/dev/null | grep -xF "Version: $srcver" >/dev/null
}

# shellcheck source=/dev/null
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
suite_re="^${codename:-.*}(-|\$)"
# deb-src entries for this release: configured, and with their index downloaded.
src_configured() {
  apt-get indextargets --no-release-info --format '$(RELEASE)' 'Identifier: Sources' |
    grep -E "$suite_re" >/dev/null
}
src_downloaded() {
  apt-get indextargets --format '$(RELEASE)' 'Identifier: Sources' | grep -E "$suite_re" >/dev/null
}

# Write deb-src entries mirroring the Debian deb entries of this release
# (same URIs, suites, components and Signed-By), to files of our own.
srclist=/etc/apt/sources.list.d/qemu-machine-deb-src
enable_deb_src() {
  local tmp=$1 entry file n origin
  local -A origins=() seen=()
  # The Release files, when present, tell which entries are Debian's.
  while read -r entry origin; do
    origins[$entry]=$origin
  done < <(apt-get indextargets --format '$(SOURCESENTRY) $(ORIGIN)' 'Identifier: Packages')
  : >"$tmp.sources"
  : >"$tmp.list"
  while read -r entry release; do
    [[ $release =~ $suite_re ]] || continue
    origin=${origins[$entry]:-}
    [[ -z $origin || $origin == Debian ]] || continue
    [[ -z ${seen[$entry]:-} ]] || continue
    seen[$entry]=1
    file=${entry%:*} n=${entry##*:}
    if [[ $file == *.sources ]]; then
      [[ ! -s $tmp.sources ]] || echo >>"$tmp.sources"
      # Stanza n (paragraphs without fields do not count), Types: deb-src.
      awk -v n="$n" '
        /^[[:space:]]*$/ { if (fields) i++; fields = 0; next }
        /^#/ { next }
        { if (!fields) { fields = 1; k = i + 1 } }
        k == n && fields {
          if (tolower($0) ~ /^types:/) print "Types: deb-src"; else print
        }
      ' "$file" >>"$tmp.sources"
    else
      sed -n "${n}p" "$file" | sed -E 's/^[[:space:]]*deb[[:space:]]/deb-src /' >>"$tmp.list"
    fi
  done < <(apt-get indextargets --no-release-info --format '$(SOURCESENTRY) $(RELEASE)' \
    'Identifier: Packages' 'Target-Of: deb')
  [[ -s $tmp.sources || -s $tmp.list ]] ||
    die "found no Debian '$codename' deb entries in the apt sources to derive deb-src from"
  local ext
  for ext in sources list; do
    if [[ -s $tmp.$ext ]]; then
      log "enabling deb-src in $srclist.$ext:"
      sed 's/^/  /' "$tmp.$ext" >&2
      "${sudo[@]}" install -m 644 "$tmp.$ext" "$srclist.$ext"
    fi
  done
}

mkdir -p "$top/target"
work=$(mktemp -d "$top/target/qtest-accel-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
buildlog=$work/build.log
fail_with_log() {
  echo "build-qtest-accel: error: $* (last lines of the log follow)" >&2
  tail -n 40 "$buildlog" >&2
  exit 1
}

if ! have_source; then
  if ! src_configured; then
    enable_deb_src "$work/deb-src"
    need_update=1
  elif ! src_downloaded; then
    need_update=1
  else
    need_update=0
  fi
  if ((need_update)); then
    log "apt-get update (for the deb-src indexes)"
    "${sudo[@]}" apt-get update -q >&2 || log "apt-get update reported errors; going on"
  fi
  have_source || die "apt knows no source package $srcpkg $srcver (the version of the" \
    "installed $pkg). If the archive has moved on, upgrade QEMU first:" \
    "'apt-get update && apt-get install --only-upgrade $pkg', then rerun"
fi

# --- build dependencies ------------------------------------------------------
build_deps=(dpkg-dev make gcc python3 pkg-config binutils meson ninja-build
  libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev)
missing=()
for dep in "${build_deps[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$dep" 2>/dev/null)" == "install ok installed" ]] ||
    missing+=("$dep")
done
if ((${#missing[@]})); then
  log "installing build dependencies: ${missing[*]}"
  "${sudo[@]}" apt-get install -y -q --no-install-recommends --no-upgrade "${missing[@]}" >&2 ||
    die "could not install ${missing[*]} (apt-get update, then retry?)"
fi

# --- fetch, configure, build -------------------------------------------------
cd "$work"
log "apt-get source $srcpkg=$srcver"
apt-get source -q --only-source "$srcpkg=$srcver" >"$buildlog" 2>&1 ||
  fail_with_log "apt-get source $srcpkg=$srcver failed"
src=$(find . -mindepth 1 -maxdepth 1 -type d -name "$srcpkg-*" -print -quit)
[[ -n $src && -x $src/configure ]] || fail_with_log "no unpacked source tree"
src=$work/${src#./}

# The stamp hashes QEMU's VERSION, the pkgversion and configure; make sure
# Debian still passes the pkgversion this script assumes.
grep -qE '^PKGVERSION = Debian \$\{DEB_VERSION\}$' "$src/debian/rules" ||
  die "debian/rules of $srcpkg $srcver no longer sets 'PKGVERSION = Debian \${DEB_VERSION}';" \
    "update this script to match"

# Debian's common configure options (debian/rules), then only what the module
# needs.
log "configuring (x86_64-softmmu, modules) with pkgversion '$pkgversion'"
mkdir "$work/build"
cd "$work/build"
extra_cflags=$(dpkg-buildflags --get CFLAGS) extra_cppflags=$(dpkg-buildflags --get CPPFLAGS)
extra_ldflags=$(dpkg-buildflags --get LDFLAGS)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
"$src/configure" \
  --with-pkgversion="$pkgversion" \
  --extra-cflags="$extra_cflags $extra_cppflags" \
  --extra-ldflags="$extra_ldflags -Wl,--as-needed" \
  --prefix=/usr \
  --sysconfdir=/etc \
  --libdir="/usr/lib/$multiarch" \
  --libexecdir=/usr/lib/qemu \
  --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu \
  --localstatedir=/var \
  --disable-install-blobs \
  --disable-strip \
  --with-git-submodules=ignore \
  --disable-xen \
  --enable-modules \
  --enable-module-upgrades \
  --target-list=x86_64-softmmu \
  --without-default-features \
  --enable-tcg \
  --enable-kvm \
  --enable-fdt=system \
  --disable-docs \
  --disable-tools \
  --disable-user \
  >>"$buildlog" 2>&1 || fail_with_log "configure failed"
log "ninja $module"
ninja "$module" >>"$buildlog" 2>&1 || fail_with_log "ninja $module failed"

# --- check -------------------------------------------------------------------
stamp_of() { nm -D --defined-only "$1" | awk '$3 ~ /^qemu_stamp_/ && !n++ { print $3 }'; }
built_stamp=$(stamp_of "$work/build/$module")
ref_stamp=$(stamp_of "$ref_module")
log "stamp of the built module: ${built_stamp:-none}"
log "stamp of $ref_module: ${ref_stamp:-none}"
[[ -n $built_stamp && -n $ref_stamp ]] || die "cannot read the qemu_stamp_* symbols (nm -D)"
[[ $built_stamp == "$ref_stamp" ]] ||
  die "the built module's stamp differs from the installed modules': QEMU would" \
    "refuse it. The pkgversion ('$pkgversion') or Debian's configure options" \
    "must have changed; update this script to match debian/rules"

# A real qtest session on the installed QEMU with the module: two clock
# steps of 1000 ns each answer OK with the virtual clock 1000 ns apart.
qtest_check() {
  local dir=$1 err=$work/qtest.err reply1='' reply2='' pid to from
  rm -f "$work/qtest.in" "$work/qtest.out"
  mkfifo "$work/qtest.in" "$work/qtest.out"
  QEMU_MODULE_DIR=$dir "$qemu" -machine pc -accel qtest -qtest stdio -qtest-log none \
    -display none -nodefaults <"$work/qtest.in" >"$work/qtest.out" 2>"$err" &
  pid=$!
  exec {to}>"$work/qtest.in" {from}<"$work/qtest.out"
  trap '' PIPE # if QEMU is gone, a write fails rather than kill this script
  {
    printf 'clock_step 1000\n' >&"$to" &&
      IFS= read -r -t 30 reply1 <&"$from" &&
      printf 'clock_step 1000\n' >&"$to" &&
      IFS= read -r -t 30 reply2 <&"$from"
  } 2>/dev/null || true
  trap - PIPE
  exec {to}>&- {from}<&-
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  log "qtest: clock_step 1000 -> '$reply1', clock_step 1000 -> '$reply2'"
  if [[ $reply1 =~ ^OK\ ([0-9]+)$ && $reply2 == "OK $((BASH_REMATCH[1] + 1000))" ]]; then
    return 0
  fi
  echo "build-qtest-accel: error: with QEMU_MODULE_DIR=$dir, '$qemu -accel qtest'" \
    "did not answer 'OK <ns>' to clock_step (module not loaded or not matching); QEMU said:" >&2
  sed 's/^/  /' "$err" >&2
  exit 1
}

# --- install -----------------------------------------------------------------
# Each file atomically: a concurrent reader sees old or new, never half a
# file. built-for last, after the check: it marks the module good.
install_file() { cp "$1" "$out/.$2.tmp.$$" && mv -f "$out/.$2.tmp.$$" "$out/$2"; }
install_file "$work/build/$module" "$module"
qtest_check "$out"
printf 'package=%s\nversion=%s\nrecipe=%s\nstamp=%s\n' \
  "$pkg" "$binver" "$recipe" "$built_stamp" >"$work/built-for"
install_file "$work/built-for" built-for
log "built $out/$module"
echo "$out"
