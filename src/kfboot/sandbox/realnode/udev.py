"""A stand-in for systemd-udevd's device database, for a real node whose Ceph is real (``--real-ceph``).

This machine runs no udevd, and ceph-volume needs one: ceph/ceph v20.2.4
``src/ceph-volume/ceph_volume/util/disk.py`` ``UdevData`` reads ``/run/udev/data/b<major>:<minor>`` of every
block device it lists and raises ``No udev data could be retrieved for /sys/block/loop0`` when the file is
missing (measured: Rook's OSD prepare Job stopped there). Rook mounts the node's ``/run/udev`` into its OSD,
OSD prepare and cleanup pods (rook/rook v1.20.6 ``pkg/operator/ceph/cluster/osd/provision_spec.go``,
``spec.go``, ``cluster/cleanup.go``: hostPath ``/run/udev``).

The stand-in is a loop in the node's namespace holder (its ``/run`` is the node's private tmpfs, never the
host's): every 2 s, one file per ``/sys/block`` device holding what udev's ``blkid`` builtin imports for a
block device (``IMPORT{builtin}="blkid"`` in systemd's ``rules.d/60-persistent-storage.rules``), which
``blkid -p -o udev`` prints in the same ``ID_FS_*`` / ``ID_PART_TABLE_*`` keys, as ``E:`` lines; and
``V:1``, the database version udevd writes (systemd ``src/libsystemd/sd-device/device-private.c``
``device_update_db``). So a disk with a file system reads as one (``ID_FS_TYPE=ext4``) to lsblk, udevadm
and ceph-volume in Rook's pods, and an empty disk reads as empty. Not written: symlinks (``S:``), tags and
the properties of other rules (no ``DM_*``: this kernel has no device-mapper).
"""

from __future__ import annotations

#: seconds between two refreshes (a loop device attached by a test is in the database within this)
INTERVAL = 2

#: the holder's loop (POSIX sh; each file replaced whole, so a reader never sees half of one)
REFRESH_LOOP = rf"""mkdir -p /run/udev/data
while :; do
  for d in /sys/block/*; do
    [ -r "$d/dev" ] || continue
    f="/run/udev/data/b$(cat "$d/dev")"
    {{ blkid -p -o udev "/dev/${{d##*/}}" 2>/dev/null | sed 's/^/E:/'; echo V:1; }} > "$f.new" && mv -f "$f.new" "$f"
  done
  sleep {INTERVAL}
done
"""
