#!/usr/bin/env bash
# Builds the tapbeat appliance ISO from Debian's kernel package and static Go
# binaries. Run from the repository root (iso.mk does):
#   appliance/build.sh OUT_DIR TAPBEAT_BIN
# Needs: apt-get (download only: the kernel is never installed), dpkg-deb,
# depmod/modprobe (kmod), cpio, zstd, grub-mkrescue with grub-pc-bin and
# grub-efi-amd64-bin, xorriso, mtools, e2fsprogs (mke2fs for first-boot
# formatting), go. A downloaded kernel package is reused from OUT_DIR/deb,
# so later builds are offline.
set -euo pipefail

out=${1:?usage: build.sh OUT_DIR TAPBEAT_BIN}
tapbeat_bin=${2:?usage: build.sh OUT_DIR TAPBEAT_BIN}
here=$(cd "$(dirname "$0")" && pwd)
GO=${GO:-go}
VERSION=${VERSION:-dev}
KERNEL_PACKAGE=${KERNEL_PACKAGE:-linux-image-amd64}

die() { echo "build.sh: $*" >&2; exit 1; }
for c in apt-get apt-cache dpkg-deb depmod modprobe cpio zstd grub-mkrescue xorriso mformat mke2fs ldd; do
	command -v "$c" >/dev/null || die "$c not found: apt-get install -y grub-pc-bin grub-efi-amd64-bin grub-common xorriso mtools cpio zstd kmod e2fsprogs"
done
[[ -x $tapbeat_bin ]] || die "$tapbeat_bin is not an executable (run make build first)"
# The initramfs has no C library for it: the binary must be static.
if ldd "$tapbeat_bin" >/dev/null 2>&1; then
	die "$tapbeat_bin is dynamically linked: build it with CGO_ENABLED=0 (make iso does)"
fi

mkdir -p "$out/deb"
out=$(cd "$out" && pwd)

# 1. Kernel: resolve the metapackage to the versioned image package and
# download it once.
deb=$(ls "$out"/deb/linux-image-[0-9]*.deb 2>/dev/null | sort -V | tail -n1 || true)
if [[ -z $deb ]]; then
	pkg=$KERNEL_PACKAGE
	if [[ $pkg == linux-image-amd64 ]]; then
		pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
		[[ -n $pkg ]] || die "cannot resolve linux-image-amd64 (apt-get update?)"
	fi
	(cd "$out/deb" && apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || die "apt-get download $pkg failed"
	deb=$(ls "$out"/deb/linux-image-[0-9]*.deb | sort -V | tail -n1)
fi
kroot=$out/kernel
if [[ ! -f $kroot/.unpacked || $kroot/.unpacked -ot $deb ]]; then
	rm -rf "$kroot"
	dpkg-deb -x "$deb" "$kroot"
	touch "$kroot/.unpacked"
fi
kver=$(ls "$kroot/lib/modules" | head -n1)
[[ -n $kver ]] || die "no modules in $deb"
[[ -f $kroot/lib/modules/$kver/modules.dep ]] || depmod -b "$kroot" "$kver"

# 2. initramfs tree.
root=$out/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,run,tmp,data,etc,lib/modules}
CGO_ENABLED=0 $GO build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$root/init" ./appliance/cmd/tapbeat-init
cp "$tapbeat_bin" "$root/bin/tapbeat"
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
: >"$root/etc/resolv.conf"
printf 'root:x:0:0:root:/data:/bin/tapbeat\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

# Modules and their dependencies, in load order.
list=$root/lib/modules/load.list
: >"$list"
grep -v '^#' "$here/modules.txt" | while read -r m; do
	[[ -n $m ]] || continue
	modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null | while read -r kind path _; do
		[[ $kind == insmod ]] || continue
		rel=${path#*/lib/modules/$kver/}
		grep -qxF "$rel" "$list" && continue
		mkdir -p "$root/lib/modules/$(dirname "$rel")"
		cp "$kroot/lib/modules/$kver/$rel" "$root/lib/modules/$rel"
		echo "$rel" >>"$list"
	done
done
[[ -s $list ]] || die "no module resolved from modules.txt"
# The aliases of the carried modules, so the init skips drivers for absent
# PCI and virtio hardware.
sed 's#.*/##; s#\.ko$##; s#-#_#g' "$list" | sort -u >"$out/carried"
awk 'NR == FNR { keep[$1] = 1; next } $1 == "alias" && ($3 in keep)' \
	"$out/carried" "$kroot/lib/modules/$kver/modules.alias" >"$root/lib/modules/modules.alias"

# mke2fs for first-boot formatting: Debian's, with the libraries it links.
cp "$(command -v mke2fs)" "$root/sbin/mke2fs"
[[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$root/etc/"
ldd "$(command -v mke2fs)" | awk '/=>/ {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
	[[ -f $lib ]] || continue
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
# The dynamic loader's canonical path.
if [[ -f /lib64/ld-linux-x86-64.so.2 ]]; then
	mkdir -p "$root/lib64"
	cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
fi

# zstd: about as small as xz and several times faster to unpack, which is
# what a slow (or emulated) CPU spends its boot on.
(cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) | zstd -q -19 -T0 >"$out/initrd.img"

# 3. ISO.
iso=$out/iso
rm -rf "$iso"
mkdir -p "$iso/boot/grub"
cp "$kroot/boot/vmlinuz-$kver" "$iso/boot/vmlinuz"
cp "$out/initrd.img" "$iso/boot/initrd.img"
cp "$here/grub.cfg" "$iso/boot/grub/grub.cfg"
printf 'tapbeat %s\nkernel %s from %s\n' "$VERSION" "$kver" "$(basename "$deb")" >"$iso/VERSION"
grub-mkrescue --quiet --compress=xz --locales= --fonts= --themes= \
	-o "$out/tapbeat.iso" "$iso" -- -volid TAPBEAT 2>&1 | grep -v '^xorriso : UPDATE' >&2 || true
[[ -s $out/tapbeat.iso ]] || die "grub-mkrescue made no ISO"
echo "kernel $kver, initrd $(du -h "$out/initrd.img" | cut -f1), ISO $out/tapbeat.iso $(stat -c %s "$out/tapbeat.iso") bytes"
