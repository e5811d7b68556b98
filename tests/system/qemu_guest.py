"""A QEMU guest (TCG) for the system tests and bench/guest: the Debian
kernel linux-image-amd64 depends on (booted as vmlinux through its PVH entry,
no decompressor under TCG), a busybox initramfs built here with the virtio
modules, an /init made of a shell body between a common prelude (modules
loaded, /dev/vda present, its size printed) and `poweroff -f`, optionally
fio with every library it links.  The guest reports on its serial console
with lines `GUEST: KEY=VALUE` (or `GUEST: KEY`).

No pytest here (bench/guest imports it too).  See ../shared/PEERS.md for
the measurements behind these choices."""
import gzip
import hashlib
import lzma
import os
import pathlib
import re
import shutil
import subprocess
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("VMFS_BUILD", ROOT / "build"))
CACHE = BUILD / "cache" / "kernel"
MODULES = ["virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
           "virtio_blk"]
LOAD_ORDER = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
              "virtio_pci", "virtio_blk"]


def missing():
    """Why no guest can run here (None when it can)."""
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 not installed (scripts/install-deps.sh installs qemu-system-x86)"
    if not os.path.exists("/bin/busybox"):
        return "/bin/busybox not installed (scripts/install-deps.sh installs busybox-static)"
    return None


def _run(args, timeout=300, cwd=None):
    p = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, cwd=cwd)
    if p.returncode:
        raise RuntimeError(f"{args}: rc={p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def kernel():
    """vmlinux and the modules dir, from the linux-image package
    linux-image-amd64 depends on (apt-get download needs no install);
    cached in build/cache/kernel."""
    vmlinux = CACHE / "vmlinux"
    root = CACHE / "root"
    if not vmlinux.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        debs = list(CACHE.glob("linux-image-*.deb"))
        if not debs:
            dep = _run(["apt-cache", "depends", "linux-image-amd64"]).stdout
            m = re.search(r"Depends: (linux-image-\S+)", dep)
            if not m:
                raise RuntimeError("no linux-image package behind linux-image-amd64: " + dep)
            _run(["apt-get", "download", m.group(1)], timeout=600, cwd=CACHE)
            debs = list(CACHE.glob("linux-image-*.deb"))
        shutil.rmtree(root, ignore_errors=True)
        _run(["dpkg", "-x", debs[0], root])
        vmlinuz = next((root / "boot").glob("vmlinuz-*")).read_bytes()
        at = vmlinuz.find(b"\xfd7zXZ\x00")
        if at < 0:
            raise RuntimeError("no xz payload in vmlinuz")
        tmp = CACHE / "vmlinux.tmp"
        tmp.write_bytes(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(vmlinuz[at:]))
        tmp.rename(vmlinux)
    mods = next((root / "lib" / "modules").iterdir())
    return vmlinux, mods


PRELUDE = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in %s; do insmod /lib/modules/$m.ko || echo "GUEST: insmod $m failed"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "GUEST: SIZE=$(cat /sys/block/vda/size)"
"""

EPILOGUE = r"""echo "GUEST: DONE"
poweroff -f
"""


def pattern_rw(offset, length):
    """Shell for /init: write /pattern to /dev/vda at @offset with O_DIRECT
    (fsync'd), read @length bytes back with O_DIRECT, print both checksums.
    @offset and @length are multiples of 64 KiB."""
    assert offset % 65536 == 0 and length % 65536 == 0
    return (f'echo "GUEST: PATTERN=$(sha256sum /pattern | cut -d\' \' -f1)"\n'
            f'dd if=/pattern of=/dev/vda bs=64k seek={offset // 65536} oflag=direct conv=fsync 2>/dev/null'
            f' && echo "GUEST: WROTE"\n'
            f'dd if=/dev/vda of=/back bs=64k skip={offset // 65536} count={length // 65536} iflag=direct'
            f' 2>/dev/null\n'
            f'echo "GUEST: READBACK=$(sha256sum /back | cut -d\' \' -f1)"\n'
            f'rm -f /back\n')


def add_fio(root):
    """/usr/bin/fio and every library ldd names (Debian's fio links ~60)."""
    (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy("/usr/bin/fio", root / "usr" / "bin" / "fio")
    out = _run(["ldd", "/usr/bin/fio"]).stdout
    for lib in re.findall(r"(/\S+\.so[^\s]*)", out):
        dst = root / lib.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(lib), dst)
    for d in ("lib64", "tmp"):
        (root / d).mkdir(exist_ok=True)


def build_initramfs(workdir, mods, body, files=None, fio=False):
    """workdir/initrd.cpio(.gz): busybox, the virtio modules, @files
    ({name: bytes} at /), fio if asked, and /init = prelude + @body +
    poweroff.  With fio the archive stays uncompressed (~80 MB): the guest
    unpacks it without a TCG-emulated gunzip."""
    workdir = pathlib.Path(workdir)
    root = workdir / "initrd"
    shutil.rmtree(root, ignore_errors=True)
    for d in ("bin", "proc", "sys", "dev", "lib/modules"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    if fio:
        add_fio(root)
    for m in MODULES:
        shutil.copy(next(mods.rglob(m + ".ko")), root / "lib" / "modules" / (m + ".ko"))
    for name, data in (files or {}).items():
        (root / name).write_bytes(data)
    init = root / "init"
    init.write_text(PRELUDE % " ".join(LOAD_ORDER) + body + EPILOGUE)
    init.chmod(0o755)
    names = subprocess.run(["find", "."], cwd=root, stdout=subprocess.PIPE, check=True).stdout
    cpio = subprocess.run(["/bin/busybox", "cpio", "-o", "-H", "newc"], cwd=root, input=names,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    shutil.rmtree(root)
    out = workdir / ("initrd.cpio" if fio else "initrd.cpio.gz")
    out.write_bytes(cpio if fio else gzip.compress(cpio, 1))
    return out


class Result:
    def __init__(self, log, took, rc):
        self.log, self.took, self.rc = log, took, rc
        self.lines = {}
        for line in log.splitlines():
            if "GUEST: " not in line:
                continue
            k, _, v = line.split("GUEST: ", 1)[1].strip().partition("=")
            self.lines[k] = v

    def tail(self):
        return self.log[-3000:]


def boot(vmlinux, initrd, disk_args, mem=256, memfd=False, timeout=150, on_line=None, log=None,
         prefix=()):
    """Run the guest to its poweroff (or kill it after @timeout s).
    @disk_args: QEMU arguments for /dev/vda.  @memfd: guest RAM in a shared
    memfd (vhost-user).  @on_line(line) sees each console line as it comes.
    @prefix: argv in front of qemu (e.g. nsenter into a network namespace).
    The console goes to @log too when given."""
    argv = [*prefix, "qemu-system-x86_64", "-accel", "tcg", "-m", str(mem), "-smp", "1",
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"]
    if memfd:
        argv += ["-object", f"memory-backend-memfd,id=mem,size={mem}M,share=on",
                 "-numa", "node,memdev=mem"]
    argv += ["-kernel", str(vmlinux), "-initrd", str(initrd),
             "-append", "console=ttyS0 panic=-1 quiet", *disk_args]
    t0 = time.time()
    q = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         errors="replace")
    watchdog = threading.Timer(timeout, q.kill)
    watchdog.start()
    out = []
    try:
        for line in q.stdout:
            out.append(line)
            if on_line:
                on_line(line)
        q.wait(timeout=30)
    finally:
        watchdog.cancel()
        if q.poll() is None:
            q.kill()
            q.wait()
    r = Result("".join(out), time.time() - t0, q.returncode)
    if log:
        pathlib.Path(log).write_text(r.log)
    return r


def check_pattern(r, pattern, sectors):
    """The guest saw a disk of @sectors 512-byte sectors, got /pattern
    intact, wrote it and read back the same bytes."""
    assert "DONE" in r.lines, r.tail()
    assert int(r.lines["SIZE"]) == sectors, r.tail()
    want = hashlib.sha256(pattern).hexdigest()
    assert r.lines["PATTERN"] == want, r.tail()
    assert "WROTE" in r.lines, r.tail()
    assert r.lines["READBACK"] == want, r.tail()
