#!/bin/sh
# Build fedsim's site image into DIR: a Debian bookworm root file system (kernel, systemd-networkd,
# openssh-server, iproute2 with netem for link conditions), as a raw ext4 disk for direct kernel
# boot, plus the kernel, the initrd and an SSH key made for fedsim. No passwords: root logs in
# with that key only. Each VM makes its own SSH host key at first boot and prints its public
# half on the serial console, so fedsim can pin it without trusting anything on first use.
#
#   provision/vm_image.sh DIR [MIRROR]
#
# Needs root, mmdebstrap and e2fsprogs (mkfs.ext4 -d: no loop mount). `fedsim vm image` runs
# this script with DIR in its cache, keyed by the script's own hash.
set -eu
dir=$1
mirror=${2:-}
mkdir -p "$dir"
rm -rf "$dir/rootfs" "$dir/base.raw"
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C fedsim-vm -f "$dir/id_ed25519"
pub=$(cat "$dir/id_ed25519.pub")
# The unit that makes this VM's host keys at first boot and announces the public key.
cat > "$dir/fedsim-hostkeys.service" <<'UNIT'
[Unit]
Description=fedsim: this VM's own SSH host keys, announced on the serial console
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'ssh-keygen -A && echo "FEDSIM-HOSTKEY $(cat /etc/ssh/ssh_host_ed25519_key.pub)" > /dev/ttyS0'

[Install]
WantedBy=multi-user.target
UNIT

mmdebstrap --variant=minbase --mode=root --quiet \
  --include=systemd-sysv,udev,kmod,openssh-server,linux-image-cloud-amd64,initramfs-tools,iproute2,netbase,iputils-ping,netcat-openbsd,python3 \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook='echo fedsim > "$1/etc/hostname"' \
  --customize-hook='rm -f "$1/etc/resolv.conf" && : > "$1/etc/resolv.conf"' \
  --customize-hook='printf "127.0.0.1 localhost\n127.0.1.1 fedsim\n" > "$1/etc/hosts"' \
  --customize-hook='printf "LABEL=fedsimroot / ext4 rw,errors=remount-ro 0 0\n" > "$1/etc/fstab"' \
  --customize-hook='mkdir -p "$1/etc/systemd/network" && printf "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n" > "$1/etc/systemd/network/10-dhcp.network"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service systemd-networkd-wait-online.service serial-getty@ttyS0.service getty@tty1.service' \
  --customize-hook="mkdir -p \"\$1/root/.ssh\" && echo '$pub' > \"\$1/root/.ssh/authorized_keys\" && chmod 700 \"\$1/root/.ssh\" && chmod 600 \"\$1/root/.ssh/authorized_keys\"" \
  --customize-hook='printf "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\nAllowTcpForwarding remote\n" > "$1/etc/ssh/sshd_config.d/fedsim.conf"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook="cp \"$dir/fedsim-hostkeys.service\" \"\$1/etc/systemd/system/\"" \
  --customize-hook='chroot "$1" systemctl enable fedsim-hostkeys.service' \
  --customize-hook='echo sch_netem > "$1/etc/modules-load.d/fedsim.conf"' \
  --customize-hook="cp \"\$1\"/boot/vmlinuz-* \"$dir/vmlinuz\" && cp \"\$1\"/boot/initrd.img-* \"$dir/initrd.img\"" \
  bookworm "$dir/rootfs" $mirror
mkfs.ext4 -q -F -L fedsimroot -d "$dir/rootfs" "$dir/base.raw" 1G
rm -rf "$dir/rootfs" "$dir/fedsim-hostkeys.service"
echo "$dir"
