"""A real QEMU guest (TCG) on a LUN of vmfsd's iSCSI target: vmfsd mounts a
datastore and serves a thin VMDK on it as LUN 0; QEMU attaches the LUN with
its own libiscsi initiator (virtio-blk in the guest); the guest writes a
host-made random pattern with O_DIRECT, reads it back (checksum), syncs and
powers off.  Then, vmfsd stopped, the datastore file read through our
vmfs-fuse holds exactly that pattern at that offset and zeros elsewhere, and
vmfsck -n finds the volume clean."""
import os

import pytest

import qemu_guest as qg
from conftest import bin_path
from test_fuse_helpers import Mount
from test_iscsi_target import Target, free_port, run

MiB = 1 << 20
IQN = "iqn.2024-01.org.openvmfs.test:guest"
DISK = 48 * MiB


@pytest.mark.skipif(qg.missing() is not None, reason=str(qg.missing()))
def test_qemu_guest_on_vmfsd_iscsi_lun(tmp_path):
    vmlinux, mods = qg.kernel()
    img = tmp_path / "vol.img"
    r = run([bin_path("mkvmfs"), "-q", "-L", "gds", "-S", "600M", str(img)])
    assert r.returncode == 0, r.stderr
    r = run([bin_path("vmkfstools"), "--volume", str(img), "-c", f"{DISK >> 20}m", "-d", "thin", "/g.vmdk"])
    assert r.returncode == 0, r.stderr
    pattern = os.urandom(4 * MiB)
    off = 12 * MiB + 64 * 1024          # not block aligned: a partial first and last block
    body = qg.pattern_rw(off, len(pattern)) + 'sync && echo "GUEST: SYNCED"\n'
    initrd = qg.build_initramfs(tmp_path, mods, body, {"pattern": pattern})
    t = Target(tmp_path, free_port())
    t.start(["--volume", str(img), "--io-timeout", "1", "--iscsi", t.portal,
             "--lun", f"{IQN},/vmfs/volumes/gds/g.vmdk"])
    try:
        res = qg.boot(vmlinux, initrd,
                      ["-drive", f"file={t.url(IQN, 0)},if=none,id=d0,format=raw,cache=none",
                       "-device", "virtio-blk-pci,drive=d0"],
                      log=tmp_path / "guest.log")
        qg.check_pattern(res, pattern, DISK // 512)
        assert "SYNCED" in res.lines, res.tail()
    finally:
        rc = t.stop()
    assert rc == 0
    assert "stopped cleanly" in (tmp_path / "vmfsd.log").read_text()
    with Mount(img, tmp_path / "mnt", opts="ro") as m:
        with open(m.path("g-flat.vmdk"), "rb") as f:
            got = f.read()
    assert len(got) == DISK
    assert got[off:off + len(pattern)] == pattern
    assert got[:off] == bytes(off) and got[off + len(pattern):] == bytes(DISK - off - len(pattern))
    r = run([bin_path("vmfsck"), "-n", str(img)])
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"guest run {res.took:.1f} s")
