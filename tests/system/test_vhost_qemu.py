"""A real QEMU guest (TCG) on our vhost-user-blk back-end: vmfsd exports a
thin datastore disk; a Debian kernel with a busybox initramfs built here sees
the disk with the right size, writes a host-made random pattern with
O_DIRECT, reads it back (checksum), keeps rewriting a MiB while vmfsd is
stopped and started again (QEMU's chardev reconnect=1 finds the restarted
back-end, no write fails), discards a range, flushes, runs fio in verify
mode on another range (4K random writes, QD8, crc32c), powers off.
On the host the datastore file holds exactly that content and the thin
disk's allocated blocks are exactly those the guest wrote and did not
discard."""
import os
import shutil

import pytest

import qemu_guest as qg
from conftest import bin_path
from test_vhost import MiB, Vmfsd, mkvol, run, tmap, wait_path

LOOP_OFF = 32 << 20   # the guest rewrites 1 MiB here while vmfsd restarts

BODY = r"""echo "GUEST: LOOP-START"
n=0; ok=0; while [ $n -lt 40 ]; do
  dd if=/pattern of=/dev/vda bs=64k count=16 seek=%(lseek)d oflag=direct conv=fsync 2>/dev/null && ok=$((ok+1))
  n=$((n+1)); sleep 0.1
done
echo "GUEST: LOOPS=$ok/$n"
blkdiscard -o %(doff)d -l %(dlen)d /dev/vda && echo "GUEST: DISCARDED"
sync; blockdev --flushbufs /dev/vda && echo "GUEST: FLUSHED"
/usr/bin/fio --name=v --filename=/dev/vda --offset=%(foff)d --size=%(fsize)d --direct=1 --ioengine=libaio \
    --iodepth=8 --rw=randwrite --bs=4k --verify=crc32c --verify_fatal=1 --do_verify=1 \
    --output=/fio.out >/dev/null 2>&1
echo "GUEST: FIO_RC=$?"
echo "GUEST: FIO_VERIFY_ERRORS=$(grep -ci 'verify.*\(fail\|bad\|error\)' /fio.out)"
grep -E 'IOPS|err=' /fio.out | sed 's/^/GUEST: fio: /'
"""


@pytest.mark.skipif(qg.missing() is not None, reason=str(qg.missing()))
def test_qemu_guest_on_vmfsd_vhost_user_blk(tmp_path):
    vmlinux, mods = qg.kernel()
    img = mkvol(tmp_path)
    run([bin_path("vmkfstools"), "--volume", img, "-c", "48m", "-d", "thin", "/g.vmdk"])
    pattern = os.urandom(4 * MiB)
    seek, doff, dlen = 8 * MiB, 9 * MiB, MiB           # discard the 2nd MiB of the pattern
    if not shutil.which("fio"):
        pytest.fail("fio not installed (scripts/install-deps.sh installs it)")
    foff, fsize = 24 * MiB, 4 * MiB                     # fio's verify range
    body = qg.pattern_rw(seek, len(pattern)) + BODY % dict(lseek=LOOP_OFF // 65536, doff=doff, dlen=dlen,
                                                          foff=foff, fsize=fsize)
    initrd = qg.build_initramfs(tmp_path, mods, body, {"pattern": pattern}, fio=True)
    sock = str(tmp_path / "g.sock")
    # O_DIRECT extents, as on a shared LUN: reads and writes of allocated
    # blocks go by libaio straight between guest memory and the image
    d = Vmfsd(tmp_path, img, "h", "--direct", "on", "--vhost-user-blk", f"{sock},/g.vmdk")
    restarted = []

    def on_line(line):
        # the guest keeps writing: stop vmfsd cleanly and start it again
        # (the store has the export); QEMU reconnects
        nonlocal d
        if "GUEST: LOOP-START" in line and not restarted:
            d.stop()
            d = Vmfsd(tmp_path, img, "h", "--direct", "on")
            restarted.append(True)

    try:
        wait_path(sock, d.p)
        r = qg.boot(vmlinux, initrd, ["-chardev", f"socket,id=vub,path={sock},reconnect=1",
                                      "-device", "vhost-user-blk-pci,chardev=vub,num-queues=1"],
                    mem=768, memfd=True, on_line=on_line, log=tmp_path / "guest.log")
        qg.check_pattern(r, pattern, 48 * MiB // 512)
        assert restarted and r.lines.get("LOOPS") == "40/40", r.tail()
        assert "DISCARDED" in r.lines and "FLUSHED" in r.lines, r.tail()
        # fio in the guest, verify mode: no verify errors
        assert r.lines.get("FIO_RC") == "0" and r.lines.get("FIO_VERIFY_ERRORS") == "0", r.tail()
        lst = d.ctl("vdisk", "list").stdout
        assert "errors 0" in lst, lst
        assert d.async_requests(sock) > 0, lst
    finally:
        d.stop()
    # the datastore file holds exactly what the guest wrote; the discarded MiB
    # reads as zeros (the volume is a file: discard punches a hole in it)
    from test_fuse_helpers import Mount   # read it the way an admin would
    with Mount(img, tmp_path / "mnt") as m:
        with open(m.path("g-flat.vmdk"), "rb") as f:
            got = f.read()
    assert len(got) == 48 * MiB
    assert got[:seek] == bytes(seek)
    assert got[seek + len(pattern):foff] == bytes(foff - seek - len(pattern))
    assert got[foff + fsize:LOOP_OFF] == bytes(LOOP_OFF - foff - fsize)
    assert got[LOOP_OFF:LOOP_OFF + MiB] == pattern[:MiB]
    assert got[LOOP_OFF + MiB:] == bytes(47 * MiB - LOOP_OFF)
    assert got[seek:doff] == pattern[:doff - seek]
    assert got[doff + dlen:seek + len(pattern)] == pattern[doff + dlen - seek:]
    assert got[doff:doff + dlen] == bytes(dlen)
    # thin: the four 1 MiB blocks under the pattern less the discarded one
    # (DISCARD frees it), the loop's one and fio's 4, nothing else
    nblk = 4 - dlen // MiB + 1 + fsize // MiB
    assert tmap(img, "/g.vmdk") == (nblk * MiB, nblk * MiB)
    print(f"guest run {r.took:.1f} s")
