#!/bin/bash
# Build a bootable Debian 12 master disk image (raw, MBR, one ext4 partition, GRUB 2 in the MBR gap).
# The image boots to a probe unit that prints hostname, machine-id and SSH host key fingerprint on
# ttyS0 and powers off. Usage: build_master.sh OUTPUT.raw   (runs as root; writes only OUTPUT and
# a temporary directory).
set -euo pipefail
OUT=$1
MIRROR=${RESEAL_TEST_MIRROR:-http://deb.debian.org/debian}
MASTER_MAC=52:54:00:aa:bb:01
WORK=$(mktemp -d /tmp/reseal-master.XXXXXX)
LOOP=""
cleanup() {
    set +e
    for m in dev/pts dev proc sys; do umount "$WORK/mnt/$m" 2>/dev/null; done
    umount "$WORK/mnt" 2>/dev/null
    [ -n "$LOOP" ] && { partx -d "$LOOP" 2>/dev/null; losetup -d "$LOOP"; }
    rm -rf "$WORK"
}
trap cleanup EXIT

truncate -s 2G "$WORK/disk.raw"
echo 'label: dos
start=2048, type=83, bootable' | sfdisk -q "$WORK/disk.raw"
LOOP=$(losetup --show -f "$WORK/disk.raw")
partx -a "$LOOP"
mkfs.ext4 -q -L master-root "${LOOP}p1"
UUID=$(blkid -s UUID -o value "${LOOP}p1")
mkdir "$WORK/mnt"
mount "${LOOP}p1" "$WORK/mnt"
R=$WORK/mnt

debootstrap --variant=minbase --include=systemd-sysv,openssh-server,dbus,udev,kmod \
    bookworm "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || { tail -30 "$WORK/debootstrap.log"; exit 1; }

# A small initramfs: only what a QEMU virtio disk needs.
mkdir -p "$R/etc/initramfs-tools/conf.d"
echo 'MODULES=list' > "$R/etc/initramfs-tools/conf.d/reseal-small.conf"
printf 'virtio_pci\nvirtio_blk\next4\n' >> "$R/etc/initramfs-tools/modules"
mount --bind /dev "$R/dev"; mount -t devpts devpts "$R/dev/pts"
mount -t proc proc "$R/proc"; mount -t sysfs sysfs "$R/sys"
# python3: the domain tests' first-boot program (a zipapp) runs on the guest's own python3
DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -q --no-install-recommends \
    linux-image-amd64 python3 >"$WORK/kernel.log" 2>&1 || { tail -30 "$WORK/kernel.log"; exit 1; }
chroot "$R" apt-get clean
for m in dev/pts dev proc sys; do umount "$R/$m"; done

KERNEL=$(cd "$R/boot" && ls vmlinuz-* | head -1)
INITRD=$(cd "$R/boot" && ls initrd.img-* | head -1)

echo master > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tmaster.lab.example master\n::1\tlocalhost ip6-localhost\n' > "$R/etc/hosts"
echo master.lab.example > "$R/etc/mailname"
echo "UUID=$UUID / ext4 errors=remount-ro 0 1" > "$R/etc/fstab"
mkdir -p "$R/etc/udev/rules.d" "$R/etc/systemd/network"
echo "SUBSYSTEM==\"net\", ACTION==\"add\", ATTR{address}==\"$MASTER_MAC\", NAME=\"eth0\"" \
    > "$R/etc/udev/rules.d/70-persistent-net.rules"
printf '[Match]\nMACAddress=%s\n\n[Network]\nDHCP=yes\n' "$MASTER_MAC" > "$R/etc/systemd/network/20-lan.network"

cat > "$R/usr/local/sbin/reseal-probe" <<'PROBE'
#!/bin/sh
exec > /dev/ttyS0 2>&1
echo "RESEAL-PROBE hostname=$(cat /proc/sys/kernel/hostname)"
echo "RESEAL-PROBE machine-id=$(cat /etc/machine-id)"
echo "RESEAL-PROBE dbus-id=$(cat /var/lib/dbus/machine-id 2>/dev/null)"
echo "RESEAL-PROBE ssh-ed25519=$(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2)"
echo "RESEAL-PROBE root-uuid=$(findmnt -no UUID /)"
echo "RESEAL-PROBE done"
systemctl --no-block poweroff
PROBE
chmod 0755 "$R/usr/local/sbin/reseal-probe"
cat > "$R/etc/systemd/system/reseal-probe.service" <<'UNIT'
[Unit]
Description=Print the identity of this machine on the serial console
After=local-fs.target systemd-machine-id-commit.service systemd-hostnamed.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/reseal-probe
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/reseal-probe.service "$R/etc/systemd/system/multi-user.target.wants/reseal-probe.service"
# Nothing else on the console: the probe lines are the output the test reads.
ln -sf /dev/null "$R/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$R/etc/systemd/system/getty@tty1.service"

mkdir -p "$R/etc/default"
echo "GRUB_CMDLINE_LINUX=\"root=UUID=$UUID console=ttyS0,115200\"" > "$R/etc/default/grub"
grub-install --target=i386-pc --boot-directory="$R/boot" --modules="part_msdos ext2" "$LOOP" \
    >"$WORK/grub.log" 2>&1 || { cat "$WORK/grub.log"; exit 1; }
cat > "$R/boot/grub/grub.cfg" <<CFG
set timeout=0
set default=0
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $UUID
menuentry 'Debian GNU/Linux' {
    linux /boot/$KERNEL root=UUID=$UUID ro console=ttyS0,115200 quiet loglevel=3 systemd.show_status=false
    initrd /boot/$INITRD
}
CFG
sync
umount "$R"
partx -d "$LOOP"; losetup -d "$LOOP"; LOOP=""
mv "$WORK/disk.raw" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
