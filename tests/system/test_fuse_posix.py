"""POSIX behaviour of a vmfs-fuse mount: file and directory operations, the
errors, sizes, times, permissions (root and an unprivileged user under
default_permissions), fallocate / SEEK_DATA / SEEK_HOLE, O_DIRECT, mmap,
xattrs, protected system files, ENOSPC and read-only mounts."""
import errno
import hashlib
import mmap
import os
import pathlib
import shutil
import tempfile
import stat
import subprocess
import time

import pytest

from conftest import bin_path
from test_fuse_helpers import (Mount, mkvol, vmfsck_clean, fallocate, renameat2, is_mounted,
                               FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
                               FALLOC_FL_ZERO_RANGE, RENAME_NOREPLACE, RENAME_EXCHANGE)

MIB = 1 << 20


@pytest.fixture(scope="module")
def vol():
    # under /tmp itself: pytest's base folder is 0700, and `nobody` must reach the mount
    d = pathlib.Path(tempfile.mkdtemp(prefix="vmfs-fuse-posix-", dir="/tmp"))
    os.chmod(d, 0o755)
    img = mkvol(d / "vol.img", "2G")
    m = Mount(img, d / "mnt", "allow_other")
    try:
        os.chmod(m.mnt, 0o777)
        yield m
    finally:
        rc = m.stop()
        assert rc == 0, m.logtext()
    vmfsck_clean(img)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def d(vol, request):
    p = vol.path(request.node.name[:60].replace("[", "_").replace("]", ""))
    os.mkdir(p)
    return p


def err(e, fn, *a, **kw):
    with pytest.raises(OSError) as ei:
        fn(*a, **kw)
    assert ei.value.errno == e, f"{fn.__name__}{a}: {ei.value}"


def test_files_read_write_sizes(d):
    p = os.path.join(d, "f")
    with open(p, "wb") as f:
        f.write(b"hello")
    assert open(p, "rb").read() == b"hello"
    with open(p, "ab") as f:
        f.write(b" world")
    assert open(p, "rb").read() == b"hello world"
    assert os.stat(p).st_size == 11
    # sparse write past EOF, then reads of the hole are zeros
    with open(p, "r+b") as f:
        f.seek(3 * MIB + 5)
        f.write(b"X")
    st = os.stat(p)
    assert st.st_size == 3 * MIB + 6
    data = open(p, "rb").read()
    assert data[:11] == b"hello world" and data[11:-1] == bytes(len(data) - 12) and data[-1:] == b"X"
    os.truncate(p, 4)
    assert open(p, "rb").read() == b"hell"
    os.truncate(p, 2 * MIB)
    assert open(p, "rb").read() == b"hell" + bytes(2 * MIB - 4)
    # big random file round trip
    blob = os.urandom(5 * MIB + 123)
    q = os.path.join(d, "big")
    with open(q, "wb") as f:
        f.write(blob)
    assert hashlib.sha256(open(q, "rb").read()).digest() == hashlib.sha256(blob).digest()
    assert os.stat(q).st_blocks * 512 >= len(blob)


def test_create_excl_and_errors(d):
    p = os.path.join(d, "x")
    os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640))
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    err(errno.EEXIST, os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    err(errno.ENOENT, os.stat, os.path.join(d, "nope"))
    err(errno.ENOENT, os.open, os.path.join(d, "nope"), os.O_RDONLY)
    err(errno.ENOTDIR, os.stat, os.path.join(p, "sub"))
    err(errno.ENOTDIR, os.mkdir, os.path.join(p, "sub"))
    os.mkdir(os.path.join(d, "dir"))
    err(errno.EEXIST, os.mkdir, os.path.join(d, "dir"))
    err(errno.EISDIR, os.open, os.path.join(d, "dir"), os.O_WRONLY)
    err(errno.EISDIR, os.unlink, os.path.join(d, "dir"))
    err(errno.ENOTDIR, os.rmdir, p)
    open(os.path.join(d, "dir", "inner"), "w").close()
    err(errno.ENOTEMPTY, os.rmdir, os.path.join(d, "dir"))
    os.unlink(os.path.join(d, "dir", "inner"))
    os.rmdir(os.path.join(d, "dir"))
    err(errno.ENOENT, os.rmdir, os.path.join(d, "dir"))


def test_special_files_refused(d):
    err(errno.EPERM, os.mkfifo, os.path.join(d, "fifo"))
    err(errno.EPERM, os.mknod, os.path.join(d, "null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(d, "reg"), 0o640 | stat.S_IFREG)
    assert stat.S_ISREG(os.stat(os.path.join(d, "reg")).st_mode)


def test_name_limits(d):
    ok = "n" * 127
    open(os.path.join(d, ok), "w").close()
    assert ok in os.listdir(d)
    err(errno.ENAMETOOLONG, open, os.path.join(d, "n" * 128), "w")
    err(errno.ENAMETOOLONG, os.mkdir, os.path.join(d, "m" * 128))
    err(errno.ENAMETOOLONG, os.stat, os.path.join(d, "m" * 128))


def test_directories_and_readdir(d):
    names = {f"f{i:03d}" for i in range(150)}
    for n in names:
        open(os.path.join(d, n), "w").close()
    os.mkdir(os.path.join(d, "sub"))
    assert set(os.listdir(d)) == names | {"sub"}
    with os.scandir(d) as it:
        kinds = {e.name: e.is_dir() for e in it}
    assert kinds["sub"] and not kinds["f000"]
    # ls -l exercises readdirplus + getattr
    out = subprocess.run(["ls", "-la", d], capture_output=True, text=True, check=True).stdout
    assert " sub" in out and " f149" in out
    assert os.stat(os.path.join(d, "sub")).st_nlink >= 1
    for n in names:
        os.unlink(os.path.join(d, n))
    assert os.listdir(d) == ["sub"]


def test_rename(d):
    a, b, c = (os.path.join(d, n) for n in "abc")
    for p, t in ((a, b"A"), (b, b"B")):
        with open(p, "wb") as f:
            f.write(t)
    err(errno.EEXIST, renameat2, a, b, RENAME_NOREPLACE)
    renameat2(a, c, RENAME_NOREPLACE)
    assert open(c, "rb").read() == b"A" and not os.path.exists(a)
    os.rename(c, b)                      # replaces b
    assert open(b, "rb").read() == b"A" and sorted(os.listdir(d)) == ["b"]
    os.makedirs(os.path.join(d, "d1", "x"))
    os.mkdir(os.path.join(d, "d2"))
    os.rename(os.path.join(d, "d1", "x"), os.path.join(d, "d2", "y"))
    assert os.listdir(os.path.join(d, "d2")) == ["y"]
    open(os.path.join(d, "d2", "y", "f"), "w").close()
    err(errno.ENOTEMPTY, os.rename, os.path.join(d, "d1"), os.path.join(d, "d2", "y"))
    err(errno.ENOTDIR, os.rename, os.path.join(d, "d1"), b)
    err(errno.EISDIR, os.rename, b, os.path.join(d, "d1"))
    err(errno.EINVAL, os.rename, os.path.join(d, "d2"), os.path.join(d, "d2", "y", "z"))


def test_rename_exchange(d):
    """renameat2(RENAME_EXCHANGE): both names stay and swap objects (one fs transaction)."""
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    for p, t in ((a, b"A" * 5000), (b, b"B")):
        with open(p, "wb") as f:
            f.write(t)
    ia, ib = os.stat(a).st_ino, os.stat(b).st_ino
    fd = os.open(a, os.O_RDONLY)
    try:
        renameat2(a, b, RENAME_EXCHANGE)
        assert os.read(fd, 10) == b"AAAAAAAAAA"      # the open handle follows its object
    finally:
        os.close(fd)
    assert open(a, "rb").read() == b"B" and open(b, "rb").read() == b"A" * 5000
    assert (os.stat(a).st_ino, os.stat(b).st_ino) == (ib, ia)
    assert sorted(os.listdir(d)) == ["a", "b"]
    # a directory and a file in different directories: ".." and link counts follow
    sub, other = os.path.join(d, "sub"), os.path.join(d, "other")
    os.makedirs(os.path.join(sub, "dir", "deep"))
    os.mkdir(other)
    open(os.path.join(other, "file"), "w").close()
    renameat2(os.path.join(sub, "dir"), os.path.join(other, "file"), RENAME_EXCHANGE)
    assert os.path.isdir(os.path.join(other, "file", "deep"))
    assert os.path.isfile(os.path.join(sub, "dir"))
    assert os.stat(os.path.join(other, "file", "..")).st_ino == os.stat(other).st_ino
    assert os.stat(sub).st_nlink == 2 and os.stat(other).st_nlink == 3
    # errors: a missing side, a directory below itself, flags that exclude each other
    err(errno.ENOENT, renameat2, a, os.path.join(d, "none"), RENAME_EXCHANGE)
    err(errno.ENOENT, renameat2, os.path.join(d, "none"), a, RENAME_EXCHANGE)
    err(errno.EINVAL, renameat2, other, os.path.join(other, "file", "deep"), RENAME_EXCHANGE)
    err(errno.EINVAL, renameat2, a, b, RENAME_EXCHANGE | RENAME_NOREPLACE)
    assert open(a, "rb").read() == b"B"


def test_links_and_symlinks(d):
    p, q, s = (os.path.join(d, n) for n in ("p", "q", "s"))
    with open(p, "wb") as f:
        f.write(b"data")
    os.link(p, q)
    assert os.stat(p).st_nlink == 2 and os.stat(p).st_ino == os.stat(q).st_ino
    os.unlink(p)
    assert open(q, "rb").read() == b"data" and os.stat(q).st_nlink == 1
    os.symlink("/vmfs/volumes/ds/target", s)
    assert os.readlink(s) == "/vmfs/volumes/ds/target"
    assert stat.S_ISLNK(os.lstat(s).st_mode)
    os.symlink("q", os.path.join(d, "rel"))
    assert open(os.path.join(d, "rel"), "rb").read() == b"data"


def test_unlink_while_open(d):
    p = os.path.join(d, "open")
    with open(p, "wb") as f:
        f.write(b"still here")
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        assert not os.path.exists(p)
        assert os.pread(fd, 100, 0) == b"still here"
        os.pwrite(fd, b"S", 0)
        assert os.pread(fd, 100, 0) == b"Still here"
    finally:
        os.close(fd)
    deadline = time.time() + 5           # FUSE sends release after close returns
    while os.listdir(d) and time.time() < deadline:
        time.sleep(0.05)
    assert os.listdir(d) == []


def test_attrs_and_times(d):
    p = os.path.join(d, "t")
    open(p, "w").close()
    os.chmod(p, 0o4751)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o4751
    os.chown(p, 1234, 5678)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.utime(p, (1000000000, 1200000000))
    st = os.stat(p)
    assert (int(st.st_atime), int(st.st_mtime)) == (1000000000, 1200000000)
    before = int(time.time())
    os.utime(p)                          # UTIME_NOW
    st = os.stat(p)
    assert before - 1 <= st.st_mtime <= time.time() + 1
    os.utime(p, (1000000000, 1200000000))
    with open(p, "wb") as f:              # a write moves mtime (committed at close)
        f.write(b"x" * 4096)
    assert os.stat(p).st_mtime >= before - 1
    # times set explicitly after writing win (cp -p / tar)
    with open(p, "r+b") as f:
        f.write(b"y" * 4096)
        f.flush()
        os.utime(f.fileno(), (1000000000, 1100000000))
    assert int(os.stat(p).st_mtime) == 1100000000


def test_statfs(vol, d):
    s0 = os.statvfs(vol.mnt)
    assert s0.f_namemax == 127 and s0.f_bsize == MIB
    with open(os.path.join(d, "fill"), "wb") as f:
        f.write(os.urandom(4 * MIB))
    s1 = os.statvfs(vol.mnt)
    assert s0.f_bfree - s1.f_bfree == 4
    os.unlink(os.path.join(d, "fill"))
    assert os.statvfs(vol.mnt).f_bfree == s0.f_bfree


def test_fallocate_and_seek(vol, d):
    p = os.path.join(d, "fa")
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        free0 = os.statvfs(vol.mnt).f_bfree
        fallocate(fd, 0, 0, 4 * MIB)
        assert os.fstat(fd).st_size == 4 * MIB
        assert os.statvfs(vol.mnt).f_bfree == free0 - 4
        assert os.pread(fd, MIB, MIB) == bytes(MIB)
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 4 * MIB, 2 * MIB)
        assert os.fstat(fd).st_size == 4 * MIB
        assert os.statvfs(vol.mnt).f_bfree == free0 - 6
        # data in block 0 and 3 (TBZ blocks that were never written read as holes)
        os.pwrite(fd, b"a" * MIB, 0)
        os.pwrite(fd, b"d" * MIB, 3 * MIB)
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == MIB
        assert os.lseek(fd, MIB + 7, os.SEEK_DATA) == 3 * MIB
        assert os.lseek(fd, 3 * MIB, os.SEEK_HOLE) == 4 * MIB
        err(errno.ENXIO, os.lseek, fd, 4 * MIB, os.SEEK_DATA)
        # ZERO_RANGE and PUNCH_HOLE read back as zeros; punching the tail frees blocks
        fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 100, 1000)
        assert os.pread(fd, 1200, 0) == b"a" * 100 + bytes(1000) + b"a" * 100
        f_before = os.statvfs(vol.mnt).f_bfree
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 3 * MIB, MIB)
        assert os.fstat(fd).st_size == 4 * MIB
        assert os.pread(fd, MIB, 3 * MIB) == bytes(MIB)
        assert os.statvfs(vol.mnt).f_bfree > f_before
        err(errno.ENXIO, os.lseek, fd, MIB, os.SEEK_DATA)
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 10, 20)
        assert os.pread(fd, 40, 0) == b"a" * 10 + bytes(20) + b"a" * 10
        # a block in the middle of the file goes back to the volume too
        os.pwrite(fd, b"b" * MIB, MIB)
        os.fsync(fd)
        f_mid = os.statvfs(vol.mnt).f_bfree
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MIB - 5, MIB + 10)
        assert os.statvfs(vol.mnt).f_bfree == f_mid + 1
        assert os.pread(fd, MIB + 20, MIB - 10) == b"a" * 5 + bytes(MIB + 10) + bytes(5)
        assert os.fstat(fd).st_size == 4 * MIB
        err(errno.EOPNOTSUPP, fallocate, fd, FALLOC_FL_PUNCH_HOLE, 0, 10)
    finally:
        os.close(fd)


def test_o_direct_and_mmap(d):
    p = os.path.join(d, "direct")
    blob = os.urandom(2 * MIB)
    with open(p, "wb") as f:
        f.write(bytes(2 * MIB))           # allocate
    fd = os.open(p, os.O_RDWR | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, 2 * MIB)      # page-aligned
        buf[:] = blob
        assert os.pwrite(fd, buf, 0) == 2 * MIB
        rb = mmap.mmap(-1, 4096)
        assert os.preadv(fd, [rb], MIB) == 4096
        assert bytes(rb) == blob[MIB:MIB + 4096]
    finally:
        os.close(fd)
    with open(p, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        assert m[:] == blob
        m.close()
    # O_DIRECT write of fresh blocks (the allocating path) and reading back buffered
    q = os.path.join(d, "direct2")
    fd = os.open(q, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o644)
    try:
        assert os.pwrite(fd, buf, 0) == 2 * MIB
    finally:
        os.close(fd)
    assert open(q, "rb").read() == blob


def test_xattrs_not_supported(d):
    p = os.path.join(d, "x")
    open(p, "w").close()
    err(errno.EOPNOTSUPP, os.setxattr, p, "user.a", b"1")
    err(errno.EOPNOTSUPP, os.getxattr, p, "user.a")
    err(errno.EOPNOTSUPP, os.listxattr, p)
    err(errno.EOPNOTSUPP, os.removexattr, p, "user.a")


SYS = [".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf", ".vh.sf", ".pb2.sf", ".sdd.sf", ".jbc.sf"]


def test_system_files_protected(vol):
    present = [n for n in SYS if os.path.exists(vol.path(n))]
    assert {".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf", ".vh.sf", ".jbc.sf"} <= set(present)
    for n in present:
        p = vol.path(n)
        size = os.stat(p).st_size
        err(errno.EPERM, os.unlink, p)
        err(errno.EPERM, os.rename, p, vol.path("stolen"))
        err(errno.EPERM, os.chmod, p, 0o777)
        if not os.path.isdir(p):
            err(errno.EPERM, os.open, p, os.O_WRONLY)
            err(errno.EPERM, os.truncate, p, 0)
        assert os.stat(p).st_size == size
    open(vol.path("victim"), "w").close()
    err(errno.EPERM, os.rename, vol.path("victim"), vol.path(".fbb.sf"))
    os.unlink(vol.path("victim"))


def run_as_nobody(*cmd):
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           *cmd], capture_output=True, text=True, timeout=30)


def test_permissions_unprivileged_user(d):
    os.chmod(d, 0o755)
    priv = os.path.join(d, "private")
    with open(priv, "w") as f:
        f.write("secret")
    os.chmod(priv, 0o600)
    pub = os.path.join(d, "public")
    with open(pub, "w") as f:
        f.write("hello")
    os.chmod(pub, 0o644)
    r = run_as_nobody("cat", pub)
    assert r.returncode == 0 and r.stdout == "hello", r.stderr
    r = run_as_nobody("cat", priv)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = run_as_nobody("touch", os.path.join(d, "new"))
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = run_as_nobody("sh", "-c", f"echo x >> {pub}")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    # a directory nobody owns: create, write, chmod its own file; root's file stays root's
    own = os.path.join(d, "nobodys")
    os.mkdir(own)
    os.chown(own, 65534, 65534)
    r = run_as_nobody("sh", "-c", f"echo mine > {own}/f && chmod 600 {own}/f && cat {own}/f")
    assert r.returncode == 0 and r.stdout == "mine\n", r.stderr
    st = os.stat(os.path.join(own, "f"))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o600)
    r = run_as_nobody("chmod", "777", pub)
    assert r.returncode != 0 and "not permitted" in r.stderr


def test_enospc_nothing_half_written(tmp_path):
    img = mkvol(tmp_path / "small.img", "300M")
    with Mount(img, tmp_path / "m") as m:
        p = m.path("f")
        with open(p, "wb") as f:
            f.write(b"k" * MIB)
        free = os.statvfs(m.mnt).f_bfree
        fd = os.open(p, os.O_RDWR)
        try:
            err(errno.ENOSPC, fallocate, fd, 0, MIB, (free + 10) * MIB)
            assert os.fstat(fd).st_size == MIB
            assert os.statvfs(m.mnt).f_bfree == free       # nothing leaked
            fallocate(fd, 0, MIB, free * MIB)               # exactly full
            assert os.statvfs(m.mnt).f_bfree == 0
            size = os.fstat(fd).st_size
            err(errno.ENOSPC, os.pwrite, fd, b"z" * MIB, size)
            assert os.fstat(fd).st_size == size
            assert os.pread(fd, MIB, 0) == b"k" * MIB
        finally:
            os.close(fd)
        os.unlink(p)
        assert os.statvfs(m.mnt).f_bfree >= free + 1
    vmfsck_clean(img)


def test_read_only_mount(tmp_path):
    img = mkvol(tmp_path / "ro.img", "1G")
    with Mount(img, tmp_path / "m") as m:
        with open(m.path("keep"), "wb") as f:
            f.write(b"ro data")
    with Mount(img, tmp_path / "m", "ro") as m:
        assert open(m.path("keep"), "rb").read() == b"ro data"
        err(errno.EROFS, open, m.path("keep"), "r+b")
        err(errno.EROFS, open, m.path("new"), "w")
        err(errno.EROFS, os.mkdir, m.path("d"))
        err(errno.EROFS, os.unlink, m.path("keep"))
        err(errno.EROFS, os.chmod, m.path("keep"), 0o600)
    vmfsck_clean(img)


def test_sequential_appends_preallocate_and_trim(vol, d):
    """Appends past the first MiB allocate ahead (one transaction per 8 MiB);
    while the file is open its size is what was written, reads stop there,
    and on close the FD is trimmed back: no block leaks."""
    p = os.path.join(d, "seq")
    free0 = os.statvfs(vol.mnt).f_bfree
    chunk = os.urandom(256 * 1024 + 3)
    with open(p, "wb") as f:
        for i in range(13):
            f.write(chunk)
            f.flush()
            assert os.fstat(f.fileno()).st_size == (i + 1) * len(chunk)
            with open(p, "rb") as r:
                assert len(r.read()) == (i + 1) * len(chunk)
    size = 13 * len(chunk)
    assert os.stat(p).st_size == size
    assert open(p, "rb").read() == chunk * 13
    used = free0 - os.statvfs(vol.mnt).f_bfree
    assert used == (size + MIB - 1) // MIB, used
    os.unlink(p)
    assert os.statvfs(vol.mnt).f_bfree == free0


def test_command_line(tmp_path):
    exe = bin_path("vmfs-fuse")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "io_timeout=MS" in r.stdout
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "OpenVMFS" in r.stdout
    r = subprocess.run([exe], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "DEVICE and MOUNTPOINT" in r.stderr
    r = subprocess.run([exe, "-o", "io_timeout=x", "a", "b"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "bad io_timeout" in r.stderr
    os.mkdir(tmp_path / "m")
    r = subprocess.run([exe, str(tmp_path / "missing.img"), str(tmp_path / "m")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "cannot mount" in r.stderr
    # background mode: the parent returns once mounted, the daemon keeps serving
    img = mkvol(tmp_path / "bg.img", "1G")
    r = subprocess.run([exe, "-o", "io_timeout=250", str(img), str(tmp_path / "m")],
                       capture_output=True, text=True, timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        assert is_mounted(tmp_path / "m")
        with open(tmp_path / "m" / "bg.txt", "w") as f:
            f.write("background")
    finally:
        subprocess.run(["fusermount3", "-u", str(tmp_path / "m")], capture_output=True,
                       timeout=10)
        deadline = time.time() + 10
        while is_mounted(tmp_path / "m") and time.time() < deadline:
            time.sleep(0.05)
        if is_mounted(tmp_path / "m"):
            subprocess.run(["fusermount3", "-uz", str(tmp_path / "m")], timeout=10)
    # the detached daemon exits after the unmount
    deadline = time.time() + 15
    while subprocess.run(["pgrep", "-f", f"vmfs-fuse -o io_timeout=250 {img}"],
                         capture_output=True).returncode == 0:
        assert time.time() < deadline, "background vmfs-fuse did not exit"
        time.sleep(0.1)
    with Mount(img, tmp_path / "m") as m:
        assert open(m.path("bg.txt")).read() == "background"
