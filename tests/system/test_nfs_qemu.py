"""A real QEMU guest (TCG) on a disk served by vmfsd's NFSv3 server: vmfsd
mounts a datastore and exports it; QEMU opens the flat file of a thin VMDK
on it with its own libnfs driver (virtio-blk in the guest); the guest writes
a host-made random pattern with O_DIRECT, reads it back (checksum), syncs
and powers off.  Then, vmfsd still serving, a second host of the cluster
(our vmfs-fuse, read-only, on the same image) reads exactly that pattern
at that offset and zeros elsewhere; after vmfsd stops, vmfsck -n is clean.

QEMU's nfs:// URLs take no port (7.2 accepts only uid, gid, tcp-syncnt,
readahead, page-cache, debug), so vmfsd runs in a private network
namespace on the standard ports with its own portmapper (--nfs-portmap)
and QEMU joins that namespace with nsenter.  QEMU mounts the directory of
the URL's path and opens the file in it, so the disk sits in a VM folder."""
import os
import shutil
import signal
import subprocess

import pytest

import qemu_guest as qg
from conftest import bin_path, prog_path
from test_fuse_helpers import Mount
from test_vhost import run, wait_path

MiB = 1 << 20
DISK = 48 * MiB


@pytest.mark.skipif(qg.missing() is not None, reason=str(qg.missing()))
def test_qemu_guest_on_vmfsd_nfs_export(tmp_path):
    for tool in ("unshare", "nsenter", "ip"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} not installed (scripts/install-deps.sh installs util-linux, iproute2)")
    vmlinux, mods = qg.kernel()
    img = str(tmp_path / "vol.img")
    run([bin_path("mkvmfs"), "-q", "-L", "nds", "-S", "600M", img])
    # QEMU mounts the URL's directory (it must not be the export's root)
    run([prog_path("vmfs_util"), img, "--", "mkdir", "/vm1"])
    run([bin_path("vmkfstools"), "--volume", img, "-c", f"{DISK >> 20}m", "-d", "thin", "/vm1/g.vmdk"])
    pattern = os.urandom(4 * MiB)
    off = 20 * MiB + 192 * 1024         # not block aligned: a partial first and last block
    body = qg.pattern_rw(off, len(pattern)) + 'sync && echo "GUEST: SYNCED"\n'
    initrd = qg.build_initramfs(tmp_path, mods, body, {"pattern": pattern})
    state = tmp_path / "state"
    log = open(tmp_path / "vmfsd.log", "w")
    # unshare execs sh, sh execs vmfsd: the pid is vmfsd's, its netns the new one
    d = subprocess.Popen(["unshare", "--net", "sh", "-c",
                          'ip link set lo up && exec "$0" "$@"', bin_path("vmfsd"),
                          "--state-dir", str(state), "--volume", img, "--io-timeout", "1",
                          "--nfs", "127.0.0.1:2049", "--nfs-portmap", "127.0.0.1:111", "--export", "/"],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_path(state / "vmfsd.sock", d, timeout=30)
        res = qg.boot(vmlinux, initrd,
                      ["-drive", "file=nfs://127.0.0.1/vm1/g-flat.vmdk,if=none,id=d0,format=raw,cache=none",
                       "-device", "virtio-blk-pci,drive=d0"],
                      prefix=["nsenter", f"--net=/proc/{d.pid}/ns/net"], log=tmp_path / "guest.log")
        qg.check_pattern(res, pattern, DISK // 512)
        assert "SYNCED" in res.lines, res.tail()
        # another host reads the datastore file while vmfsd still serves it
        assert d.poll() is None
        with Mount(img, tmp_path / "mnt", opts="ro") as m:
            with open(m.path("vm1", "g-flat.vmdk"), "rb") as f:
                got = f.read()
        assert len(got) == DISK
        assert got[off:off + len(pattern)] == pattern
        assert got[:off] == bytes(off) and got[off + len(pattern):] == bytes(DISK - off - len(pattern))
    finally:
        if d.poll() is None:
            d.send_signal(signal.SIGTERM)
        rc = d.wait(timeout=30)
        log.close()
    vlog = (tmp_path / "vmfsd.log").read_text()
    assert rc == 0 and "stopped cleanly" in vlog, vlog[-3000:]
    r = run([bin_path("vmfsck"), "-n", img], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"guest run {res.took:.1f} s")
