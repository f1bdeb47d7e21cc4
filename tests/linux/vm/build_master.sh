#!/bin/bash
# Build a bootable Debian 12 master disk image (raw, MBR: an ext4 root and a swap partition, GRUB 2
# in the MBR gap). Its initrd names the swap for resume (RESUME=UUID=), ifupdown brings up eth0 by
# DHCP (a persistent-net rule names the master's MAC eth0), and it carries a random seed. The image
# boots to a probe unit that prints hostname, machine-id, SSH host key fingerprint, root and swap
# UUIDs, its IPv4 address and MAC, and the kernel's time to userspace on ttyS0, and powers off. Usage: build_master.sh OUTPUT.raw   (runs as root; writes only OUTPUT and
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
SWAP_SECTORS=131072              # 64 MiB of swap at the end of the disk
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
debootstrap --variant=minbase \
    --include=systemd-sysv,openssh-server,dbus,udev,kmod,ifupdown,isc-dhcp-client,iproute2 \
    bookworm "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || { tail -30 "$WORK/debootstrap.log"; exit 1; }

UUID=$(cat /proc/sys/kernel/random/uuid)
SWAP_UUID=$(cat /proc/sys/kernel/random/uuid)
# A small initramfs: only what a QEMU virtio disk needs; it resumes from the swap (by UUID).
mkdir -p "$R/etc/initramfs-tools/conf.d"
echo 'MODULES=list' > "$R/etc/initramfs-tools/conf.d/reseal-small.conf"
echo "RESUME=UUID=$SWAP_UUID" > "$R/etc/initramfs-tools/conf.d/resume"
printf 'virtio_pci\nvirtio_blk\next4\n' >> "$R/etc/initramfs-tools/modules"
mount --bind /dev "$R/dev"; mount -t devpts devpts "$R/dev/pts"
mount -t proc proc "$R/proc"; mount -t sysfs sysfs "$R/sys"
# python3: the domain tests' first-boot program (a zipapp) runs on the guest's own python3
DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -q --no-install-recommends \
    linux-image-amd64 python3 >"$WORK/kernel.log" 2>&1 || { tail -30 "$WORK/kernel.log"; exit 1; }
chroot "$R" apt-get clean
for m in "${CHROOT_MOUNTS[@]}"; do release_mount "$R/$m"; done

KERNEL=$(cd "$R/boot" && ls vmlinuz-* | head -1)
INITRD=$(cd "$R/boot" && ls initrd.img-* | head -1)

echo master > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tmaster.lab.example master\n::1\tlocalhost ip6-localhost\n' > "$R/etc/hosts"
echo master.lab.example > "$R/etc/mailname"
printf 'UUID=%s / ext4 errors=remount-ro 0 1\nUUID=%s none swap sw 0 0\n' "$UUID" "$SWAP_UUID" \
    > "$R/etc/fstab"
printf 'auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n' \
    > "$R/etc/network/interfaces"
head -c 512 /dev/urandom > "$R/var/lib/systemd/random-seed"
chmod 0600 "$R/var/lib/systemd/random-seed"
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
echo "RESEAL-PROBE swap-uuid=$(lsblk -no UUID "$(awk 'NR==2 {print $1}' /proc/swaps)" 2>/dev/null)"
echo "RESEAL-PROBE userspace-us=$(systemctl show -P UserspaceTimestampMonotonic)"
for n in $(seq 60); do  # DHCP on the new MAC: up to 60 s
    ADDR=$(ip -4 -o addr show scope global | awk '{print $2 ":" $4; exit}')
    [ -n "$ADDR" ] && break
    sleep 1
done
echo "RESEAL-PROBE ipv4=$ADDR"
echo "RESEAL-PROBE mac=$(cat /sys/class/net/${ADDR%%:*}/address 2>/dev/null)"
echo "RESEAL-PROBE done"
systemctl --no-block poweroff
PROBE
chmod 0755 "$R/usr/local/sbin/reseal-probe"
cat > "$R/etc/systemd/system/reseal-probe.service" <<'UNIT'
[Unit]
Description=Print the identity of this machine on the serial console
After=local-fs.target swap.target systemd-machine-id-commit.service systemd-hostnamed.service
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
DISK_SECTORS=$(( $(stat -c %s "$WORK/disk.raw") / 512 ))
echo "label: dos
start=$PART_START, size=$((DISK_SECTORS - PART_START - SWAP_SECTORS)), type=83, bootable
start=$((DISK_SECTORS - SWAP_SECTORS)), size=$SWAP_SECTORS, type=82" | sfdisk -q "$WORK/disk.raw"
read -r PART_SECTORS < <(sfdisk -J "$WORK/disk.raw" | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["size"])')
mkfs.ext4 -q -F -L master-root -U "$UUID" -d "$R" -E offset=$((PART_START * 512)) \
    "$WORK/disk.raw" "$((PART_SECTORS / 2))k"
truncate -s $((SWAP_SECTORS * 512)) "$WORK/swap.raw"
mkswap -q -U "$SWAP_UUID" -L master-swap "$WORK/swap.raw" >/dev/null
dd if="$WORK/swap.raw" of="$WORK/disk.raw" bs=512 seek=$((DISK_SECTORS - SWAP_SECTORS)) \
    conv=notrunc,sparse status=none

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
