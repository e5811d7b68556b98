"""A real QEMU guest (TCG) on our vhost-user-blk back-end: vmfsd exports a
thin datastore disk; a Debian kernel with a busybox initramfs built here sees
the disk with the right size, writes a host-made random pattern with
O_DIRECT, reads it back (checksum), keeps rewriting a MiB while vmfsd is
stopped and started again, or killed (SIGKILL) with requests in flight
and started again (QEMU's chardev reconnect=1 finds the restarted
back-end, which resubmits what was in flight from the INFLIGHT_SHMFD
buffer; no write fails), with split and with packed rings, discards a
range, flushes, runs fio in verify mode on another range (4K random writes,
QD8, crc32c), powers off.
On the host the datastore file holds exactly that content and the thin
disk's allocated blocks are exactly those the guest wrote and did not
discard."""
import os
import random
import re
import signal
import struct
import shutil
import time

import pytest

import qemu_guest as qg
from conftest import bin_path
from test_vhost import MiB, Vmfsd, mkvol, run, tmap, wait_path

LOOP_OFF = 32 << 20   # the guest rewrites 1 MiB here while vmfsd restarts

BODY = r"""%(bg_start)s
echo "GUEST: LOOP-START"
n=0; ok=0; while [ $n -lt 40 ]; do
  dd if=/pattern of=/dev/vda bs=64k count=16 seek=%(lseek)d oflag=direct conv=fsync 2>/dev/null && ok=$((ok+1))
  n=$((n+1)); sleep 0.1
done
echo "GUEST: LOOPS=$ok/$n"
%(bg_stop)s
blkdiscard -o %(doff)d -l %(dlen)d /dev/vda && echo "GUEST: DISCARDED"
sync; blockdev --flushbufs /dev/vda && echo "GUEST: FLUSHED"
/usr/bin/fio --name=v --filename=/dev/vda --offset=%(foff)d --size=%(fsize)d --direct=1 --ioengine=libaio \
    --iodepth=8 --rw=randwrite --bs=4k --verify=crc32c --verify_fatal=1 --do_verify=1 \
    --output=/fio.out >/dev/null 2>&1
echo "GUEST: FIO_RC=$?"
echo "GUEST: FIO_VERIFY_ERRORS=$(grep -ci 'verify.*\(fail\|bad\|error\)' /fio.out)"
grep -E 'IOPS|err=' /fio.out | sed 's/^/GUEST: fio: /'
"""


def inflight_marked(pid, ring):
    """Requests vmfsd (process @pid, one queue) has marked in flight in the
    inflight buffer it maps (layouts of vhost-user.rst: split 16-byte header
    and entries, packed 32-byte ones; `inflight` is an entry's first byte)."""
    with open(f"/proc/{pid}/maps") as f:
        spans = [l.split()[0] for l in f if "memfd:vhost-inflight" in l]
    if not spans:
        return 0
    lo, hi = (int(x, 16) for x in spans[0].split("-"))
    with open(f"/proc/{pid}/mem", "rb") as m:
        m.seek(lo)
        buf = m.read(hi - lo)
    num, sz = struct.unpack_from("<H", buf, 10)[0], 32 if ring == "packed" else 16
    if ring == "packed":
        fh, ofh, ui, oui = struct.unpack_from("<4H", buf, 12)
        if (fh, ui, buf[20]) != (ofh, oui, buf[21]):
            return 0   # stopped inside a pop or a completion: not this time
    return sum(buf[sz + sz * i] == 1 for i in range(num))


def kill_with_requests_in_flight(p, ring, tries=500):
    """SIGKILL @p at a moment when requests are in flight: stop it
    (SIGSTOP, every thread), look at its inflight buffer, kill it if
    something is marked, else let it run a little and look again.
    Returns the number of requests marked when it was killed."""
    for _ in range(tries):
        os.kill(p.pid, signal.SIGSTOP)
        for _ in range(1000):
            tasks = os.listdir(f"/proc/{p.pid}/task")
            states = []
            for t in tasks:
                try:
                    with open(f"/proc/{p.pid}/task/{t}/stat") as f:
                        states.append(f.read().rsplit(")", 1)[1].split()[0])
                except FileNotFoundError:
                    pass
            if all(st in "tT" for st in states):
                break
            time.sleep(0.001)
        n = inflight_marked(p.pid, ring)
        if n:
            p.kill()
            p.wait()
            return n
        os.kill(p.pid, signal.SIGCONT)
        time.sleep(random.uniform(0.002, 0.02))
    raise AssertionError(f"no request in flight in vmfsd in {tries} looks")


@pytest.mark.skipif(qg.missing() is not None, reason=str(qg.missing()))
@pytest.mark.parametrize("ring,kill", [("split", False), ("packed", False), ("packed", True), ("split", True)])
def test_qemu_guest_on_vmfsd_vhost_user_blk(tmp_path, ring, kill):
    """@ring packed: QEMU cannot give the restarted back-end a packed ring's
    positions (SET_VRING_BASE repeats the ones of the first start): it finds
    them in the inflight buffer (INFLIGHT_SHMFD) that QEMU kept.  @kill:
    vmfsd is killed (SIGKILL) while the guest writes, not stopped: what was
    in flight is resubmitted from the inflight buffer."""
    vmlinux, mods = qg.kernel()
    img = mkvol(tmp_path)
    run([bin_path("vmkfstools"), "--volume", img, "-c", "48m", "-d", "thin", "/g.vmdk"])
    pattern = os.urandom(4 * MiB)
    seek, doff, dlen = 8 * MiB, 9 * MiB, MiB           # discard the 2nd MiB of the pattern
    if not shutil.which("fio"):
        pytest.fail("fio not installed (scripts/install-deps.sh installs it)")
    foff, fsize = 24 * MiB, 4 * MiB                     # fio's verify range
    # killed: 1 MiB reads at QD16 keep requests in flight in the back-end meanwhile
    bg = dict(bg_start="/usr/bin/fio --name=bg --filename=/dev/vda --rw=read --bs=1M --iodepth=16 "
                       "--ioengine=libaio --direct=1 --time_based --runtime=120 --output=/bg.out "
                       ">/dev/null 2>&1 & BG=$!", bg_stop="kill $BG; wait $BG") if kill else dict(bg_start="", bg_stop="")
    body = qg.pattern_rw(seek, len(pattern)) + BODY % dict(lseek=LOOP_OFF // 65536, doff=doff, dlen=dlen,
                                                          foff=foff, fsize=fsize, **bg)
    initrd = qg.build_initramfs(tmp_path, mods, body, {"pattern": pattern}, fio=True)
    sock = str(tmp_path / "g.sock")
    # O_DIRECT extents, as on a shared LUN: reads and writes of allocated
    # blocks go by libaio straight between guest memory and the image
    d = Vmfsd(tmp_path, img, "h", "--direct", "on", "--vhost-user-blk", f"{sock},/g.vmdk")
    restarted, seen = [], []

    def on_line(line):
        # the guest keeps writing: stop vmfsd cleanly and start it again
        # (the store has the export); QEMU reconnects
        nonlocal d
        if "GUEST: LOOP-START" in line and not restarted:
            if kill:
                seen.append(kill_with_requests_in_flight(d.p, ring))
            d.stop()
            d = Vmfsd(tmp_path, img, "h", "--direct", "on")
            if kill:
                # the killed instance's heartbeat slot keeps its file lock
                # until the new one reclaims it as a dead host's: the
                # remembered export waits, retried every second, and serves
                # once the lock is ours
                end, lst = time.time() + 40, ""
                while time.time() < end:
                    # (check=False: the killed instance's management socket
                    # file is there before the new one listens on it)
                    lst = d.ctl("vdisk", "list", check=False).stdout
                    if any(l.startswith(sock + "\t") and "waiting" not in l for l in lst.splitlines()):
                        break
                    time.sleep(0.5)
                else:
                    raise AssertionError(f"the export did not come back: {lst}")
            restarted.append(True)

    try:
        wait_path(sock, d.p)
        r = qg.boot(vmlinux, initrd, ["-chardev", f"socket,id=vub,path={sock},reconnect=1",
                                      "-device", "vhost-user-blk-pci,chardev=vub,num-queues=1"
                                      + (",packed=on" if ring == "packed" else "")],
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
    resub = sum(map(int, re.findall(r"inflight region: resubmitting (\d+) request",
                                    (tmp_path / "h.log").read_text())))
    print(f"{ring} ring, vmfsd {'killed with ' + str(seen[0]) + ' request(s) in flight' if kill else 'stopped'}: "
          f"requests resubmitted from the inflight buffer after the restart: {resub}")
    if kill and ring == "packed":   # killed between operations (see inflight_marked)
        assert seen[0] >= 1 and resub == seen[0], (seen, resub)
    elif kill:
        # split: a kill between the used index and the clearing of the mark
        # (a few stores) cannot be told from the region alone; the restart
        # then finishes that completion and resubmits one fewer
        assert seen[0] >= 1 and max(1, seen[0] - 1) <= resub <= seen[0], (seen, resub)
    else:
        assert resub == 0   # a clean stop completes everything first
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
