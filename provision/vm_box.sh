#!/bin/sh
# Pack fedsim's site image (provision/vm_image.sh) as a self-contained Vagrant box for libvirt:
# a BIOS-bootable disk (an MBR, a FAT partition with syslinux, the kernel and the initrd, then
# the image's ext4 root), the key root logs in with, and a Vagrantfile that points at both by
# paths inside the box. Nothing outside the box is needed to boot it, so libvirt's qemu (which
# cannot read a private home directory) boots it wherever Vagrant unpacks it.
#
#   provision/vm_box.sh IMAGE_DIR OUT.box
#
# No root and no loop mount: mkfs.vfat -C, mtools and `syslinux --install` work on image files.
# Needs syslinux, syslinux-common, mtools, dosfstools, fdisk (sfdisk) and qemu-utils.
set -eu
image=$1
out=$2
work=$(mktemp -d "${out}.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The boot partition: 64 MiB of FAT holding the loader, its config, the kernel and the initrd.
boot_mib=64
mkfs.vfat -C -n FEDSIMBOOT "$work/boot.vfat" $((boot_mib * 1024)) >/dev/null
cat > "$work/syslinux.cfg" <<'CFG'
DEFAULT fedsim
PROMPT 0
TIMEOUT 0
LABEL fedsim
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=fedsimroot rw console=ttyS0 quiet
CFG
mcopy -i "$work/boot.vfat" "$image/vmlinuz" "$image/initrd.img" "$work/syslinux.cfg" ::/
syslinux --install "$work/boot.vfat"

# The disk: 1 MiB for the MBR, the boot partition (active), then the root file system as built.
root_bytes=$(stat -c %s "$image/base.raw")
root_mib=$(( (root_bytes + 1048575) / 1048576 ))
truncate -s $(( (1 + boot_mib + root_mib) * 1048576 )) "$work/disk.raw"
sfdisk --quiet "$work/disk.raw" <<PARTS
label: dos
start=2048, size=$((boot_mib * 2048)), type=c, bootable
start=$(( (1 + boot_mib) * 2048 )), size=$((root_mib * 2048)), type=83
PARTS
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/boot.vfat" of="$work/disk.raw" bs=1M seek=1 conv=notrunc status=none
dd if="$image/base.raw" of="$work/disk.raw" bs=1M seek=$((1 + boot_mib)) conv=notrunc,sparse status=none

mkdir "$work/box"
qemu-img convert -O qcow2 "$work/disk.raw" "$work/box/box.img"
cp "$image/id_ed25519" "$work/box/id_ed25519"
chmod 600 "$work/box/id_ed25519"
gib=$(( (1 + boot_mib + root_mib + 1023) / 1024 ))
printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$gib" > "$work/box/metadata.json"
cat > "$work/box/Vagrantfile" <<'VF'
# fedsim's site image as a libvirt box: a bootable disk, root logs in with the key in this box
# (the image has no sudo and no vagrant user). Each VM makes its own SSH host key at first boot
# and prints it on its serial console, where fedsim reads it: nothing is trusted on first use.
Vagrant.configure("2") do |config|
  config.ssh.username = "root"
  config.ssh.private_key_path = File.expand_path("id_ed25519", __dir__)
  config.ssh.insert_key = false
  config.ssh.sudo_command = "%c"
  config.vm.boot_timeout = 600
  config.vm.provider :libvirt do |lv|
    lv.graphics_type = "none"
  end
end
VF
tar czf "$out.partial" -C "$work/box" metadata.json Vagrantfile id_ed25519 box.img
mv "$out.partial" "$out"
echo "$out"
