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

echo "== vmfsd: mount it as a cluster host (heartbeat, journal, on-disk locks)"
"$B/bin/vmfsd" --state-dir "$ST" --volume "$IMG" --daemonize \
	--pidfile "$D/vmfsd.pid" --log-file "$D/vmfsd.log"
for _ in $(seq 50); do [ -S "$ST/vmfsd.sock" ] && break; sleep 0.1; done
"$B/bin/vmfsctl" --state-dir "$ST" status
echo
"$B/bin/vmfsctl" --state-dir "$ST" volumes
echo
"$B/bin/vmfsctl" --state-dir "$ST" hosts

echo
echo "== the independent reader vmfs-tools sees the same volume"
debugvmfs "$IMG" ls -l /vm1 2>/dev/null || true
debugvmfs "$IMG" show_heartbeats 2>/dev/null | sed -n 1,6p || true

cat <<EOT

== vmfsd is running (pid $(cat "$D/vmfsd.pid"), log $D/vmfsd.log). Reach it with:
   $B/bin/vmfsctl --state-dir $ST status|volumes|hosts|locks [--json]
   stop it with: kill \$(cat $D/vmfsd.pid)
EOT
