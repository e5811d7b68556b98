"""Helpers for the vmfs-fuse system tests (no tests here).

Always our build/bin/vmfs-fuse (the bare name is Debian's read-only vmfs-tools
binary).  Every mount is unmounted with fusermount3 -u, and killed (then
lazily unmounted) if it does not go away: a test never leaves a hanging
mount behind."""
import ctypes
import ctypes.util
import os
import subprocess
import time

from conftest import bin_path

IO_MS = "250"   # io_timeout 0.25 s: heartbeat timeout 2 s, tests run in seconds


def mkvol(path, size="1G"):
    subprocess.run([bin_path("mkvmfs"), "-S", size, str(path)], check=True,
                   capture_output=True, timeout=60)
    return path


def is_mounted(mnt):
    mnt = os.path.realpath(str(mnt))
    with open("/proc/self/mounts") as f:
        return any(l.split()[1] == mnt for l in f)


class Mount:
    """vmfs-fuse -f over @img on @mnt; use as a context manager."""

    def __init__(self, img, mnt, opts="", io_ms=IO_MS, extra=()):
        self.img, self.mnt = str(img), str(mnt)
        os.makedirs(self.mnt, exist_ok=True)
        o = f"io_timeout={io_ms}" + ("," + opts if opts else "")
        self.log = open(self.mnt + ".log", "a+")
        self.proc = subprocess.Popen([bin_path("vmfs-fuse"), "-f", "-o", o, *extra,
                                      self.img, self.mnt],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise AssertionError("vmfs-fuse did not mount: " + self.logtext())
            time.sleep(0.05)

    def logtext(self):
        self.log.flush()
        with open(self.mnt + ".log") as f:
            return f.read()[-3000:]

    def path(self, *p):
        return os.path.join(self.mnt, *p)

    def kill(self):
        """SIGKILL the daemon (a crash) and drop the dead mount."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True, timeout=10)

    def stop(self, timeout=20):
        """Unmount; returns the daemon's exit status."""
        if self.proc.poll() is None and is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True, timeout=10)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True, timeout=10)
        self.log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def vmfsck_clean(img):
    r = subprocess.run([bin_path("vmfsck"), "-n", "-W", "500", str(img)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def fsck_vmfs_clean(img):
    """fsck.vmfs (vmfs-tools) always exits 0: parse its summary."""
    out = subprocess.run(["fsck.vmfs", str(img)], capture_output=True, text=True,
                         timeout=120).stdout
    for key in ("Unallocated blocks", "Lost blocks", "Undefined inodes",
                "Orphaned inodes", "Directory errors"):
        for m in __import__("re").finditer(key + r"\s*:\s*(\d+)", out):
            assert m.group(1) == "0", f"fsck.vmfs: {key}: {out[-800:]}"


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]
AT_FDCWD = -100
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 0x10
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def fallocate(fd, mode, off, length):
    if _libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def renameat2(src, dst, flags):
    if _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
