#!/bin/sh
# The main job: make a VMFS5 datastore on a sparse file, start vmfsd on it as
# a host of the cluster, and show how to reach it.  Grows with the project.
set -e
cd "$(dirname "$0")/.."
B=$(pwd)/build
D=${DEMO_DIR:-/tmp/openvmfs-demo}
IMG=$D/datastore.img
ST=$D/state

if [ -f "$D/vmfsd.pid" ] && kill -0 "$(cat "$D/vmfsd.pid")" 2>/dev/null; then
	echo "== stopping the previous demo daemon"
	kill "$(cat "$D/vmfsd.pid")"; sleep 1
fi
rm -rf "$D"; mkdir -p "$D"

echo "== mkvmfs: a 64 GiB VMFS5 datastore on a sparse file"
"$B/bin/mkvmfs" -L demo-ds -S 64G "$IMG"
echo "   on disk: $(du -h "$IMG" | cut -f1) of 64 GiB"

echo "== a directory, a small file and a 1 GiB lazily-zeroed disk, written through the library"
printf 'hello from OpenVMFS\n' > "$D/hello.txt"
"$B/tests/progs/vmfs_util" "$IMG" -- mkdir /vm1 >/dev/null
"$B/tests/progs/vmfs_util" "$IMG" -- put "$D/hello.txt" /vm1/hello.txt >/dev/null
"$B/tests/progs/vmfs_util" "$IMG" -- fallocate /vm1/vm1-flat.vmdk 0 1073741824 tbz >/dev/null

ISCSI_PORT=${DEMO_ISCSI_PORT:-13260}
NFS_PORT=${DEMO_NFS_PORT:-12049}
IQN=iqn.2026-11.org.openvmfs.demo:vm1
echo "== vmfsd: mount it as a cluster host (heartbeat, journal, on-disk locks) and serve"
echo "   the disk over iSCSI and the datastore over NFSv3 on 127.0.0.1"
"$B/bin/vmfsd" --state-dir "$ST" --volume "$IMG" --daemonize \
	--pidfile "$D/vmfsd.pid" --log-file "$D/vmfsd.log" \
	--iscsi 127.0.0.1:$ISCSI_PORT --lun "$IQN,/vmfs/volumes/demo-ds/vm1/vm1-flat.vmdk" \
	--nfs 127.0.0.1:$NFS_PORT --export /
for _ in $(seq 50); do [ -S "$ST/vmfsd.sock" ] && break; sleep 0.1; done
"$B/bin/vmfsctl" --state-dir "$ST" status
echo
"$B/bin/vmfsctl" --state-dir "$ST" volumes
echo
"$B/bin/vmfsctl" --state-dir "$ST" hosts
echo
"$B/bin/vmfsctl" --state-dir "$ST" locks

echo
echo "== an iSCSI initiator sees the disk as a LUN (libiscsi's tools)"
iscsi-ls -s iscsi://127.0.0.1:$ISCSI_PORT 2>&1 | sed 's/^/   /' || true
echo "== an NFS client lists the datastore (libnfs's tools)"
nfs-ls "nfs://127.0.0.1/vm1?nfsport=$NFS_PORT&mountport=$NFS_PORT" 2>&1 | sed 's/^/   /' || true

echo
echo "== the independent reader vmfs-tools sees the same volume"
debugvmfs "$IMG" ls -l /vm1 2>/dev/null || true
debugvmfs "$IMG" show_heartbeats 2>/dev/null | sed -n 1,6p || true

cat <<EOT

== vmfsd is running (pid $(cat "$D/vmfsd.pid"), log $D/vmfsd.log). Reach it with:
   $B/bin/vmfsctl --state-dir $ST status|volumes|hosts|locks [--json]
   iSCSI:  iscsi://127.0.0.1:$ISCSI_PORT/$IQN/0   (e.g. qemu-img info, iscsi-inq)
   NFSv3:  nfs://127.0.0.1/vm1?nfsport=$NFS_PORT&mountport=$NFS_PORT   (nfs-ls, nfs-cp, qemu-img)
   admin mount (another host): $B/bin/vmfs-fuse $IMG /mnt
   stop it with: kill \$(cat $D/vmfsd.pid)
EOT
