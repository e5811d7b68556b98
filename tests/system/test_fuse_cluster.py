"""Two vmfs-fuse mounts of one volume (two hosts): the write lock (EBUSY on
the second host, naming the first), close-to-open consistency both ways,
clean unmounts, then vmfsck / fsck.vmfs and vmfs-tools' own read-only
vmfs-fuse read what we wrote.  And a mount killed with SIGKILL in the middle
of writing: the next mount replays its journal, fsync'd data is intact and
the volume checks clean."""
import errno
import hashlib
import mmap
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import prog_path
from test_fuse_helpers import Mount, mkvol, vmfsck_clean, fsck_vmfs_clean, is_mounted

MIB = 1 << 20
UUID_A = "aaaaaaaa-1111-2222-3333-444444444444"
VMFS_TOOLS_FUSE = "/usr/sbin/vmfs-fuse"   # Debian's read-only vmfs-tools mount


def sha(data):
    return hashlib.sha256(data).hexdigest()


def read_with_vmfs_tools(img, mnt, names):
    """Mount with vmfs-tools' vmfs-fuse (FUSE 2, read-only), return sha256 of
    each file, unmount."""
    if not os.path.exists(VMFS_TOOLS_FUSE):
        pytest.fail(f"{VMFS_TOOLS_FUSE} missing (vmfs-tools is in scripts/install-deps.sh)")
    os.makedirs(mnt, exist_ok=True)
    p = subprocess.Popen([VMFS_TOOLS_FUSE, "-f", str(img), str(mnt)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while not is_mounted(mnt):
            assert p.poll() is None and time.time() < deadline, "vmfs-tools vmfs-fuse failed"
            time.sleep(0.05)
        return {n: sha(open(os.path.join(mnt, n), "rb").read()) for n in names}
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, timeout=10)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, timeout=10)


def test_two_hosts_lock_and_close_to_open(tmp_path):
    img = mkvol(tmp_path / "vol.img", "2G")
    a = Mount(img, tmp_path / "a", f"uuid={UUID_A}")
    try:
        b = Mount(img, tmp_path / "b")
        try:
            pa, pb = a.path("shared.bin"), b.path("shared.bin")
            v1 = os.urandom(3 * MIB)
            with open(pa, "wb") as f:
                f.write(v1)
            # B reads it (and now has it in its page cache)
            assert sha(open(pb, "rb").read()) == sha(v1)
            # A holds it open for writing: B cannot open it for writing
            fa = open(pa, "r+b")
            try:
                with pytest.raises(OSError) as ei:
                    open(pb, "r+b")
                assert ei.value.errno == errno.EBUSY
                assert re.search(f"locked by host {UUID_A}", b.logtext()), b.logtext()
                # while B's open for writing waits out its 1 s retry, B's other
                # requests are served at once (a worker in a slow request does
                # not hold up the rest: fuse/loop.c's watchdog adds a reader)
                fd, buf = os.open(pb, os.O_RDONLY | os.O_DIRECT), mmap.mmap(-1, 4096)
                try:
                    for i in range(30):   # one request at a time: B is down to one reader
                        os.preadv(fd, [buf], 4096 * i)
                    slow = threading.Thread(target=lambda: pytest.raises(OSError, open, pb, "r+b"))
                    slow.start()
                    time.sleep(0.2)
                    t0 = time.monotonic()
                    assert os.preadv(fd, [buf], 0) == 4096 and buf[:16] == v1[:16]
                    quick = time.monotonic() - t0
                    assert slow.is_alive(), "the slow open ended before the read: no overlap"
                    slow.join()
                finally:
                    os.close(fd)
                assert quick < 0.5, f"a read waited {quick:.2f} s behind a slow open"
                with pytest.raises(OSError) as ei:
                    open(pb, "ab")
                assert ei.value.errno == errno.EBUSY
                # readers are fine meanwhile
                assert sha(open(pb, "rb").read()) == sha(v1)
                # A overwrites in place (same size) and appends, then closes
                v2 = os.urandom(3 * MIB)
                fa.seek(0)
                fa.write(v2)
                fa.write(b"tail" * 1000)
            finally:
                fa.close()
            want = v2 + b"tail" * 1000
            # B's next open sees exactly what A wrote and closed (no stale pages)
            assert sha(open(pb, "rb").read()) == sha(want)
            assert os.stat(pb).st_size == len(want)
            # the lock went with A's close: now B writes and A reads
            v3 = os.urandom(MIB + 5)
            with open(pb, "r+b") as f:
                f.write(v3)
            assert open(pa, "rb").read(len(v3)) == v3
            with pytest.raises(OSError) as ei:
                # and A is the one that gets EBUSY while B holds it
                fb = open(pb, "r+b")
                try:
                    open(pa, "r+b")
                finally:
                    fb.close()
            assert ei.value.errno == errno.EBUSY
            # fsync on one host is visible to the other's next open too
            with open(pa, "r+b") as f:
                f.write(b"SYNCED")
                f.flush()
                os.fsync(f.fileno())
                assert open(pb, "rb").read(6) == b"SYNCED"
            # namespace changes cross over as well
            os.mkdir(a.path("dir"))
            with open(a.path("dir", "new.txt"), "wb") as f:
                f.write(b"from A")
            deadline = time.time() + 5
            while not os.path.exists(b.path("dir", "new.txt")) and time.time() < deadline:
                time.sleep(0.1)
            assert open(b.path("dir", "new.txt"), "rb").read() == b"from A"
            os.rename(b.path("dir", "new.txt"), b.path("dir", "renamed.txt"))
            deadline = time.time() + 5
            while os.path.exists(a.path("dir", "new.txt")) and time.time() < deadline:
                time.sleep(0.1)
            assert sorted(os.listdir(a.path("dir"))) == ["renamed.txt"]
            final = {"shared.bin": sha(open(pa, "rb").read()),
                     "dir/renamed.txt": sha(b"from A")}
        finally:
            assert b.stop() == 0, b.logtext()
    finally:
        assert a.stop() == 0, a.logtext()
    vmfsck_clean(img)
    fsck_vmfs_clean(img)
    assert read_with_vmfs_tools(img, tmp_path / "vt", list(final)) == final


def test_sigkill_mid_write_then_recovery(tmp_path):
    img = mkvol(tmp_path / "vol.img", "2G")
    m = Mount(img, tmp_path / "m")
    writer = None
    try:
        synced = os.urandom(2 * MIB + 100)
        with open(m.path("synced.bin"), "wb") as f:
            f.write(synced)
            f.flush()
            os.fsync(f.fileno())
        # a writer appending and creating files (allocating: journalled
        # transactions in flight) when the mount dies
        script = ("import os,sys\n"
                  "d=sys.argv[1]; i=0\n"
                  "while True:\n"
                  "  p=os.path.join(d,'w%d'%(i%20)); i+=1\n"
                  "  with open(p,'ab') as f: f.write(os.urandom(300000))\n"
                  "  if i%3==0: os.unlink(p)\n")
        werr = open(tmp_path / "writer.err", "w+")
        writer = subprocess.Popen(["python3", "-c", script, m.mnt],
                                  stdout=subprocess.DEVNULL, stderr=werr)
        time.sleep(1.5)
        werr.seek(0)
        assert writer.poll() is None, "the writer died early: " + werr.read() + m.logtext()
        m.kill()
    finally:
        if writer:
            writer.kill()
            writer.wait(timeout=10)
        m.stop()
    # the next host finds the dead one's heartbeat, reclaims it and replays its journal
    with Mount(img, tmp_path / "m2") as m2:
        deadline = time.time() + 30
        while not re.search(r"replayed journal of dead host|reclaimed dead host", m2.logtext()):
            assert time.time() < deadline, "no reclaim: " + m2.logtext()
            time.sleep(0.2)
        assert open(m2.path("synced.bin"), "rb").read() == synced
        names = os.listdir(m2.mnt)
        assert any(n.startswith("w") for n in names)
        for n in names:
            if n.startswith("w"):
                open(m2.path(n), "rb").read()   # every file is readable
        with open(m2.path("after.bin"), "wb") as f:
            f.write(b"volume is writable again")
    vmfsck_clean(img)
    fsck_vmfs_clean(img)


def live_hosts(img):
    r = subprocess.run([prog_path("host_worker"), "--io-timeout-ms", "250", "hosts", str(img)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [l.split() for l in r.stdout.splitlines() if l.strip()]


@pytest.mark.parametrize("how", ["sigterm", "fusermount"])
def test_clean_unmount_releases_locks_and_leaves(tmp_path, how):
    img = mkvol(tmp_path / "vol.img", "1G")
    m = Mount(img, tmp_path / "m")
    try:
        f = open(m.path("held.bin"), "wb")     # file lock held at unmount time
        f.write(b"x" * 5000)
        f.flush()
        f.write(b"z" * 3000)                  # an append not yet committed to the FD
        f.flush()
        if how == "sigterm":
            m.proc.terminate()
            assert m.proc.wait(timeout=20) == 0, m.logtext()
        else:
            f.close()
            subprocess.run(["fusermount3", "-u", m.mnt], check=True, timeout=10)
            assert m.proc.wait(timeout=20) == 0, m.logtext()
        assert not is_mounted(m.mnt)
        try:
            f.close()
        except OSError:
            pass
    finally:
        m.stop()
    # heartbeat left: only the probe itself is live; the file lock is free at once
    assert [h[1] for h in live_hosts(img)] == ["self"]
    with Mount(img, tmp_path / "m2") as m2:
        assert open(m2.path("held.bin"), "rb").read() == b"x" * 5000 + b"z" * 3000
        t0 = time.time()
        with open(m2.path("held.bin"), "r+b") as f:
            f.write(b"y")
        assert time.time() - t0 < 1.0
    vmfsck_clean(img)
