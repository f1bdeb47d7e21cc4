#!/bin/bash
# Build a bootable Debian 12 master disk image (raw, MBR, one ext4 partition, GRUB 2 in the MBR gap).
# The image boots to a probe unit that prints hostname, machine-id and SSH host key fingerprint on
# ttyS0 and powers off. Usage: build_master.sh OUTPUT.raw   (runs as root; writes only OUTPUT and
# a temporary directory).
#
# Nothing here attaches or mounts the disk image: the root file system is built in a directory,
# written into the partition by `mkfs.ext4 -d`, and GRUB's boot code is made by grub-mkimage and
# written into the MBR and the gap after it. So no loop device can be left busy (another process's
# private mount namespace can hold a copy of any mount made here and keep its device open), and
# grub-install's probing of loop partitions (which needs udevadm to find a partition's start) is
# not needed. The only mounts are /dev, /proc and /sys inside the chroot for the kernel's
# installation; unmounting them is waited for (bounded) and the build fails with the reason.
set -euo pipefail
OUT=$1
MIRROR=${RESEAL_TEST_MIRROR:-http://deb.debian.org/debian}
MASTER_MAC=52:54:00:aa:bb:01
DISK_SIZE=2G
PART_START=2048                  # sectors; GRUB's core.img goes in sectors 1..PART_START-1
GRUB_LIB=/usr/lib/grub/i386-pc
WORK=$(mktemp -d /tmp/reseal-master.XXXXXX)
R=$WORK/root
CHROOT_MOUNTS=(dev/pts dev proc sys)

# umount PATH, retried for up to 30 s while the file system is busy; then fail with the reason.
release_mount() {
    local path=$1 tries=0 why=""
    while mountpoint -q "$path"; do
        why=$(umount "$path" 2>&1) && return 0
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then
            echo "build_master: cannot unmount $path after 30 s: $why" >&2
            return 1
        fi
        sleep 0.5
    done
}

cleanup() {
    set +e
    local ok=1
    for m in "${CHROOT_MOUNTS[@]}"; do
        release_mount "$R/$m" || ok=0
    done
    if [ "$ok" = 1 ]; then
        rm -rf --one-file-system "$WORK"
    else
        echo "build_master: left $WORK in place (a mount below it is still busy)" >&2
    fi
}
trap cleanup EXIT

mkdir "$R"
debootstrap --variant=minbase --include=systemd-sysv,openssh-server,dbus,udev,kmod \
    bookworm "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || { tail -30 "$WORK/debootstrap.log"; exit 1; }

# A small initramfs: only what a QEMU virtio disk needs.
mkdir -p "$R/etc/initramfs-tools/conf.d"
echo 'MODULES=list' > "$R/etc/initramfs-tools/conf.d/reseal-small.conf"
printf 'virtio_pci\nvirtio_blk\next4\n' >> "$R/etc/initramfs-tools/modules"
mount --bind /dev "$R/dev"; mount -t devpts devpts "$R/dev/pts"
mount -t proc proc "$R/proc"; mount -t sysfs sysfs "$R/sys"
DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -q --no-install-recommends \
    linux-image-amd64 >"$WORK/kernel.log" 2>&1 || { tail -30 "$WORK/kernel.log"; exit 1; }
chroot "$R" apt-get clean
for m in "${CHROOT_MOUNTS[@]}"; do release_mount "$R/$m"; done

KERNEL=$(cd "$R/boot" && ls vmlinuz-* | head -1)
INITRD=$(cd "$R/boot" && ls initrd.img-* | head -1)
UUID=$(cat /proc/sys/kernel/random/uuid)

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
echo "GRUB_CMDLINE_LINUX=\"root=UUID=$UUID console=ttyS0,115200 no_timer_check\"" > "$R/etc/default/grub"

# GRUB 2 for BIOS, as grub-install lays it out: the modules in /boot/grub/i386-pc, boot.img's
# code in the MBR, core.img in the sectors after it. core.img finds /boot/grub on partition 1
# of the disk the BIOS booted from ("(,msdos1)"), by position, not by UUID.
mkdir -p "$R/boot/grub/i386-pc"
cp "$GRUB_LIB"/*.mod "$GRUB_LIB"/*.lst "$R/boot/grub/i386-pc/"
grub-mkimage -O i386-pc -o "$WORK/core.img" -p '(,msdos1)/boot/grub' biosdisk part_msdos ext2
cat > "$R/boot/grub/grub.cfg" <<CFG
set timeout=0
set default=0
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root $UUID
menuentry 'Debian GNU/Linux' {
    linux /boot/$KERNEL root=UUID=$UUID ro console=ttyS0,115200 no_timer_check quiet loglevel=3 systemd.show_status=false
    initrd /boot/$INITRD
}
CFG

truncate -s "$DISK_SIZE" "$WORK/disk.raw"
echo "label: dos
start=$PART_START, type=83, bootable" | sfdisk -q "$WORK/disk.raw"
read -r PART_SECTORS < <(sfdisk -J "$WORK/disk.raw" | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["size"])')
mkfs.ext4 -q -F -L master-root -U "$UUID" -d "$R" -E offset=$((PART_START * 512)) \
    "$WORK/disk.raw" "$((PART_SECTORS / 2))k"

CORE_SECTORS=$(( ($(stat -c %s "$WORK/core.img") + 511) / 512 ))
if [ "$CORE_SECTORS" -ge "$PART_START" ]; then
    echo "build_master: core.img needs $CORE_SECTORS sectors; the gap has $((PART_START - 1))" >&2
    exit 1
fi
# boot.img: code only (the first 440 bytes), the partition table stays. Its drive check (a short
# jmp at 0x66) becomes two NOPs, as grub-bios-setup does for a hard disk.
if [ "$(od -An -tx1 -j 102 -N 1 "$GRUB_LIB/boot.img" | tr -d ' ')" != eb ]; then
    echo "build_master: $GRUB_LIB/boot.img has no drive-check jump at 0x66 (unknown GRUB version)" >&2
    exit 1
fi
dd if="$GRUB_LIB/boot.img" of="$WORK/disk.raw" bs=440 count=1 conv=notrunc status=none
printf '\x90\x90' | dd of="$WORK/disk.raw" bs=1 seek=102 conv=notrunc status=none
dd if="$WORK/core.img" of="$WORK/disk.raw" bs=512 seek=1 conv=notrunc status=none

e2fsck -fn "$WORK/disk.raw?offset=$((PART_START * 512))" >"$WORK/fsck.log" 2>&1 || {
    cat "$WORK/fsck.log"; exit 1; }
mv "$WORK/disk.raw" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
