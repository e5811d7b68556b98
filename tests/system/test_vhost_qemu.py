"""A real QEMU guest (TCG) on our vhost-user-blk back-end: vmfsd exports a
thin datastore disk; a Debian kernel with a busybox initramfs built here sees
the disk with the right size, writes a host-made random pattern with
O_DIRECT, reads it back (checksum), keeps rewriting a MiB while vmfsd is
stopped and started again (QEMU's chardev reconnect=1 finds the restarted
back-end, no write fails), discards a range, flushes, runs fio in verify
mode on another range (4K random writes, QD8, crc32c), powers off.
On the host the datastore file holds exactly that content and the thin
disk's allocated blocks are exactly those the guest wrote."""
import gzip
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from conftest import BUILD, bin_path
from test_vhost import MiB, Vmfsd, mkvol, run, tmap, wait_path

CACHE = BUILD / "cache" / "kernel"
LOOP_OFF = 32 << 20   # the guest rewrites 1 MiB here while vmfsd restarts
MODULES = ["virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
           "virtio_blk"]
LOAD_ORDER = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
              "virtio_pci", "virtio_blk"]


def kernel():
    """vmlinux (PVH entry: no decompressor under TCG) and the modules dir,
    from the linux-image package linux-image-amd64 depends on (apt-get
    download needs no install); cached in build/cache/kernel."""
    vmlinux = CACHE / "vmlinux"
    root = CACHE / "root"
    if not vmlinux.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        debs = list(CACHE.glob("linux-image-*.deb"))
        if not debs:
            dep = run(["apt-cache", "depends", "linux-image-amd64"]).stdout
            m = re.search(r"Depends: (linux-image-\S+)", dep)
            assert m, dep
            run(["apt-get", "download", m.group(1)], timeout=600, cwd=CACHE)
            debs = list(CACHE.glob("linux-image-*.deb"))
        shutil.rmtree(root, ignore_errors=True)
        run(["dpkg", "-x", debs[0], root], timeout=300)
        vmlinuz = next((root / "boot").glob("vmlinuz-*")).read_bytes()
        at = vmlinuz.find(b"\xfd7zXZ\x00")
        assert at >= 0, "no xz payload in vmlinuz"
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        tmp = CACHE / "vmlinux.tmp"
        tmp.write_bytes(d.decompress(vmlinuz[at:]))
        tmp.rename(vmlinux)
    mods = next((root / "lib" / "modules").iterdir())
    return vmlinux, mods


INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in %(mods)s; do insmod /lib/modules/$m.ko || echo "GUEST: insmod $m failed"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "GUEST: SIZE=$(cat /sys/block/vda/size)"
echo "GUEST: PATTERN=$(sha256sum /pattern | cut -d' ' -f1)"
dd if=/pattern of=/dev/vda bs=64k seek=%(seek)d oflag=direct conv=fsync 2>/dev/null && echo "GUEST: WROTE"
dd if=/dev/vda of=/back bs=64k skip=%(seek)d count=%(count)d iflag=direct 2>/dev/null
echo "GUEST: READBACK=$(sha256sum /back | cut -d' ' -f1)"
echo "GUEST: LOOP-START"
n=0; ok=0; while [ $n -lt 40 ]; do
  dd if=/pattern of=/dev/vda bs=64k count=16 seek=%(lseek)d oflag=direct conv=fsync 2>/dev/null && ok=$((ok+1))
  n=$((n+1)); sleep 0.1
done
echo "GUEST: LOOPS=$ok/$n"
blkdiscard -o %(doff)d -l %(dlen)d /dev/vda && echo "GUEST: DISCARDED"
sync; blockdev --flushbufs /dev/vda && echo "GUEST: FLUSHED"
if [ -x /usr/bin/fio ]; then
  /usr/bin/fio --name=v --filename=/dev/vda --offset=%(foff)d --size=%(fsize)d --direct=1 --ioengine=libaio \
      --iodepth=8 --rw=randwrite --bs=4k --verify=crc32c --verify_fatal=1 --do_verify=1 \
      --output=/fio.out >/dev/null 2>&1
  echo "GUEST: FIO_RC=$?"
  echo "GUEST: FIO_VERIFY_ERRORS=$(grep -ci 'verify.*\(fail\|bad\|error\)' /fio.out)"
  grep -E 'IOPS|err=' /fio.out | sed 's/^/GUEST: fio: /'
fi
echo "GUEST: DONE"
poweroff -f
"""


def add_fio(root):
    """/usr/bin/fio and every library ldd names (Debian's fio links ~60)."""
    (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy("/usr/bin/fio", root / "usr" / "bin" / "fio")
    out = subprocess.run(["ldd", "/usr/bin/fio"], stdout=subprocess.PIPE, text=True, check=True).stdout
    for lib in re.findall(r"(/\S+\.so[^\s]*)", out):
        dst = root / lib.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(lib), dst)
    for d in ("lib64", "tmp"):
        (root / d).mkdir(exist_ok=True)


def build_initramfs(tmp_path, mods, pattern, seek, doff, dlen, fio_range=None):
    root = tmp_path / "initrd"
    for d in ("bin", "proc", "sys", "dev", "lib/modules"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    if fio_range:
        add_fio(root)
    for m in MODULES:
        src = next(mods.rglob(m + ".ko"))
        shutil.copy(src, root / "lib" / "modules" / (m + ".ko"))
    (root / "pattern").write_bytes(pattern)
    init = root / "init"
    foff, fsize = fio_range or (0, 0)
    init.write_text(INIT % dict(mods=" ".join(LOAD_ORDER), seek=seek // 65536,
                                count=len(pattern) // 65536, doff=doff, dlen=dlen, foff=foff, fsize=fsize,
                                lseek=LOOP_OFF // 65536))
    init.chmod(0o755)
    out = tmp_path / "initrd.cpio.gz"
    files = subprocess.run("find .", shell=True, cwd=root, stdout=subprocess.PIPE, check=True).stdout
    cpio = subprocess.run(["/bin/busybox", "cpio", "-o", "-H", "newc"], cwd=root, input=files,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    out.write_bytes(gzip.compress(cpio, 1))
    return out


@pytest.mark.skipif(not shutil.which("qemu-system-x86_64") or not os.path.exists("/bin/busybox"),
                    reason="needs qemu-system-x86 and busybox-static (scripts/install-deps.sh)")
def test_qemu_guest_on_vmfsd_vhost_user_blk(tmp_path):
    vmlinux, mods = kernel()
    img = mkvol(tmp_path)
    run([bin_path("vmkfstools"), "--volume", img, "-c", "48m", "-d", "thin", "/g.vmdk"])
    pattern = os.urandom(4 * MiB)
    seek, doff, dlen = 8 * MiB, 9 * MiB, MiB           # discard the 2nd MiB of the pattern
    fio_range = (24 * MiB, 4 * MiB) if shutil.which("fio") else None
    initrd = build_initramfs(tmp_path, mods, pattern, seek, doff, dlen, fio_range)
    sock = str(tmp_path / "g.sock")
    d = Vmfsd(tmp_path, img, "h", "--vhost-user-blk", f"{sock},/g.vmdk")
    try:
        wait_path(sock, d.p)
        t0 = time.time()
        mem = "768" if fio_range else "256"
        q = subprocess.Popen(["qemu-system-x86_64", "-accel", "tcg", "-m", mem, "-smp", "1", "-nographic",
                              "-no-reboot", "-nodefaults", "-serial", "stdio",
                              "-object", f"memory-backend-memfd,id=mem,size={mem}M,share=on",
                              "-numa", "node,memdev=mem", "-kernel", str(vmlinux), "-initrd", str(initrd),
                              "-append", "console=ttyS0 panic=-1 quiet",
                              "-chardev", f"socket,id=vub,path={sock},reconnect=1",
                              "-device", "vhost-user-blk-pci,chardev=vub,num-queues=1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watchdog = threading.Timer(150, q.kill)
        watchdog.start()
        out, restarted = [], False
        try:
            for line in q.stdout:
                out.append(line)
                if "GUEST: LOOP-START" in line and not restarted:
                    # the guest keeps writing: stop vmfsd cleanly and start it
                    # again (the store has the export); QEMU reconnects
                    d.stop()
                    d = Vmfsd(tmp_path, img, "h")
                    restarted = True
            q.wait(timeout=30)
        finally:
            watchdog.cancel()
            if q.poll() is None:
                q.kill()
                q.wait()
        took = time.time() - t0
        log = "".join(out)
        (tmp_path / "guest.log").write_text(log)
        lines = dict(l.split("GUEST: ", 1)[1].strip().split("=", 1) if "=" in l else (l.split("GUEST: ", 1)[1].strip(), "")
                     for l in log.splitlines() if "GUEST: " in l)
        assert "DONE" in lines, log[-3000:]
        assert int(lines["SIZE"]) == 48 * MiB // 512
        want = hashlib.sha256(pattern).hexdigest()
        assert lines["PATTERN"] == want
        assert "WROTE" in lines, log[-3000:]
        assert lines["READBACK"] == want
        assert restarted and lines.get("LOOPS") == "40/40", log[-3000:]
        assert "DISCARDED" in lines and "FLUSHED" in lines, log[-3000:]
        if fio_range:   # fio in the guest, verify mode: no verify errors
            assert lines.get("FIO_RC") == "0" and lines.get("FIO_VERIFY_ERRORS") == "0", log[-3000:]
        lst = d.ctl("vdisk", "list").stdout
        assert "errors 0" in lst, lst
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
    fio_end = fio_range[0] + fio_range[1] if fio_range else seek + len(pattern)
    gap_end = fio_range[0] if fio_range else LOOP_OFF
    assert got[seek + len(pattern):gap_end] == bytes(gap_end - seek - len(pattern))
    assert got[fio_end:LOOP_OFF] == bytes(LOOP_OFF - fio_end)
    assert got[LOOP_OFF:LOOP_OFF + MiB] == pattern[:MiB]
    assert got[LOOP_OFF + MiB:] == bytes(47 * MiB - LOOP_OFF)
    assert got[seek:doff] == pattern[:doff - seek]
    assert got[doff + dlen:seek + len(pattern)] == pattern[doff + dlen - seek:]
    assert got[doff:doff + dlen] == bytes(dlen)
    # thin: the four 1 MiB blocks under the pattern, the loop's one (and fio's
    # 4), nothing else
    nblk = 5 + (fio_range[1] // MiB if fio_range else 0)
    assert tmap(img, "/g.vmdk") == (nblk * MiB, nblk * MiB)
    print(f"guest run {took:.1f} s")
