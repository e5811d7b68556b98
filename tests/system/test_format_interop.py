"""VMFS5 volumes made by our mkvmfs and filled by our library, read back by the
independent vmfs-tools 0.2.5 (debugvmfs, vmfs-fuse, fsck.vmfs), and the ESX-made
VMFS3 fixture read by our library.  Content is compared by MD5."""
import hashlib
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import SHARED, bin_path, prog_path

MiB = 1 << 20
GiB = 1 << 30
DEBUGVMFS = shutil.which("debugvmfs") or "/usr/sbin/debugvmfs"
FSCK = shutil.which("fsck.vmfs") or "/usr/sbin/fsck.vmfs"
VMFS_FUSE = shutil.which("vmfs-fuse") or "/usr/sbin/vmfs-fuse"


def run(args, timeout=120, check=True, **kw):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} rc={p.returncode}\nstdout={p.stdout[-2000:]!r}\nstderr={p.stderr[-2000:]!r}")
    return p


def util(devs, *cmd, check=True, flags=()):
    return run([prog_path("vmfs_util"), *flags, *map(str, devs), "--", *map(str, cmd)], check=check)


def md5(b):
    return hashlib.md5(b).hexdigest()


def stream_md5(args, timeout=300):
    """(length, md5) of a command's stdout, without holding it in memory."""
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    h, n = hashlib.md5(), 0
    for chunk in iter(lambda: p.stdout.read(4 * MiB), b""):
        h.update(chunk)
        n += len(chunk)
    assert p.wait(timeout=timeout) == 0, args
    return n, h.hexdigest()


class Sparse:
    """Expected content of a sparse file: size and (offset, bytes) pieces."""

    def __init__(self, size=0):
        self.size = size
        self.pieces = []

    def put(self, off, data):
        self.pieces.append((off, data))
        self.size = max(self.size, off + len(data))

    def md5(self):
        h = hashlib.md5()
        pos = 0
        zero = bytes(MiB)
        for off, data in sorted(self.pieces):
            while pos < off:
                n = min(MiB, off - pos)
                h.update(zero[:n])
                pos += n
            h.update(data[pos - off:])
            pos = max(pos, off + len(data))
        while pos < self.size:
            n = min(MiB, self.size - pos)
            h.update(zero[:n])
            pos += n
        return h.hexdigest()


def put(devs, tmp, path, off, data, exp):
    host = tmp / "piece.bin"
    host.write_bytes(data)
    util(devs, "put", host, path, off)
    exp.put(off, data)


def mkvmfs(*args, check=True):
    return run([bin_path("mkvmfs"), *map(str, args)], check=check)


def fill_volume(devs, tmp):
    """The interop tree: every addressing mode vmfs-tools can read."""
    files = {}
    rnd = os.urandom
    # resident (ZLA 4305): first bytes "hell" do not decode as an FD address
    e = Sparse(); put(devs, tmp, "/hello.txt", 0, b"hello, resident world\n", e); files["/hello.txt"] = e
    util(devs, "mkdir", "/sub")
    util(devs, "mkdir", "/sub/deeper")
    # sub-block (ZLA 2)
    e = Sparse(); put(devs, tmp, "/sub/small.bin", 0, rnd(5000), e); files["/sub/small.bin"] = e
    # direct file blocks (ZLA 1), with a hole in the middle
    e = Sparse(); put(devs, tmp, "/fb.bin", 0, rnd(3 * MiB + 17), e); files["/fb.bin"] = e
    e = Sparse(); put(devs, tmp, "/holes.bin", 100, rnd(4096), e)
    put(devs, tmp, "/holes.bin", 10 * MiB + 5, rnd(MiB), e); files["/holes.bin"] = e
    # single indirect (ZLA 3), sparse, 300 MiB
    e = Sparse(); put(devs, tmp, "/sub/deeper/pb.bin", 0, rnd(MiB), e)
    put(devs, tmp, "/sub/deeper/pb.bin", 300 * MiB, rnd(2 * MiB + 3), e); files["/sub/deeper/pb.bin"] = e
    # TBZ blocks (zeroedthick) with one block written
    util(devs, "fallocate", "/tbz.bin", 0, 6 * MiB, "tbz")
    e = Sparse(6 * MiB); put(devs, tmp, "/tbz.bin", 2 * MiB + 100, rnd(1000), e); files["/tbz.bin"] = e
    # eagerzeroed
    util(devs, "fallocate", "/eager.bin", 0, 2 * MiB, "zero")
    files["/eager.bin"] = Sparse(2 * MiB)
    # a file grown by truncate only (all hole)
    util(devs, "truncate", "/empty-sparse.bin", 50 * MiB)
    files["/empty-sparse.bin"] = Sparse(50 * MiB)
    # symlink, hard link, rename across directories, a directory grown past one sub-block
    util(devs, "symlink", "/vmfs/volumes/test/hello.txt", "/sub/link")
    util(devs, "link", "/fb.bin", "/sub/fb-hardlink")
    files["/sub/fb-hardlink"] = files["/fb.bin"]
    e = Sparse(); put(devs, tmp, "/moved-from.bin", 0, rnd(20000), e)
    util(devs, "rename", "/moved-from.bin", "/sub/deeper/moved.bin"); files["/sub/deeper/moved.bin"] = e
    util(devs, "mkdir", "/many")
    for i in range(70):
        e = Sparse(); put(devs, tmp, f"/many/f{i:03d}", 0, rnd(2000 + i), e); files[f"/many/f{i:03d}"] = e
    return files


def tbz_blocks_left():
    return 5  # /tbz.bin: 6 TBZ blocks, one written


def debugvmfs_ls(devs, path):
    p = run([DEBUGVMFS, *map(str, devs), "ls", path])
    return sorted(l for l in p.stdout.decode().splitlines() if l)


def our_ls(devs, path):
    p = util(devs, "ls", path, flags=("-r",))
    return sorted(l.split("\t")[0] for l in p.stdout.decode().splitlines() if l)


def parse_fsck(out):
    r = {}
    for key in ("Unallocated blocks", "Lost blocks", "Undefined inodes", "Orphaned inodes",
                "Directory errors"):
        m = re.search(rf"^{key}\s*:\s*(\d+)", out, re.M)
        assert m, f"fsck.vmfs output lacks {key}:\n{out}"
        r[key] = int(m.group(1))
    return r


def check_fsck(devs, resident_nonzero, tbz):
    out = run([FSCK, *map(str, devs)]).stdout.decode()
    r = parse_fsck(out)
    # documented false positives only (FORMAT.md §10.4)
    assert r["Lost blocks"] == tbz, out
    assert len(re.findall(r"^File Block 0x[0-9a-f]+ is lost", out, re.M)) == tbz, out
    assert r["Unallocated blocks"] == resident_nonzero, out
    assert r["Undefined inodes"] == 0 and r["Orphaned inodes"] == 0 and r["Directory errors"] == 0, out
    assert "multiple inodes" not in out, out
    out = run([DEBUGVMFS, *map(str, devs), "check_vol_bitmaps"]).stdout.decode()
    assert "Total errors: 0" in out, out


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("interop")
    img = tmp / "vol.img"
    out = mkvmfs("-L", "interop", "-S", "1100M", img).stdout.decode()
    assert re.search(r"Volume UUID: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{12}", out)
    files = fill_volume([img], tmp)
    return tmp, [img], files


def test_debugvmfs_lists_every_entry(filled):
    tmp, devs, files = filled
    for d in ("/", "/sub", "/sub/deeper", "/many"):
        assert debugvmfs_ls(devs, d) == our_ls(devs, d)
    assert "hello.txt" in debugvmfs_ls(devs, "/")
    assert len(debugvmfs_ls(devs, "/many")) == 72


def test_debugvmfs_cat_byte_identical(filled):
    tmp, devs, files = filled
    for path, exp in files.items():
        assert stream_md5([DEBUGVMFS, *map(str, devs), "cat", path]) == (exp.size, exp.md5()), path


def test_our_library_reads_back(filled):
    tmp, devs, files = filled
    for path, exp in files.items():
        got = stream_md5([prog_path("vmfs_util"), "-r", *map(str, devs), "--", "cat", path])
        assert got == (exp.size, exp.md5()), path
    st = dict(l.split(" ", 1) for l in util(devs, "stat", "/hello.txt").stdout.decode().splitlines())
    assert st["zla"] == "4305"
    modes = {p: dict(l.split(" ", 1) for l in util(devs, "stat", p).stdout.decode().splitlines())["zla"]
             for p in ("/sub/small.bin", "/fb.bin", "/sub/deeper/pb.bin", "/many", "/sub")}
    assert modes == {"/sub/small.bin": "2", "/fb.bin": "1", "/sub/deeper/pb.bin": "3",
                     "/many": "1", "/sub": "2"}
    st = dict(l.split(" ", 1) for l in util(devs, "stat", "/fb.bin").stdout.decode().splitlines())
    assert st["nlink"] == "2"
    assert util(devs, "readlink", "/sub/link").stdout.decode().strip() == "/vmfs/volumes/test/hello.txt"
    mp = util(devs, "map", "/tbz.bin").stdout.decode().split("\n")
    assert [l.split()[2] for l in mp if l] == ["tbz", "alloc", "tbz"]


def test_fsck_vmfs_only_documented_false_positives(filled):
    tmp, devs, files = filled
    check_fsck(devs, resident_nonzero=1, tbz=tbz_blocks_left())


class FuseMount:
    def __init__(self, devs, mnt):
        self.devs, self.mnt = devs, mnt

    def __enter__(self):
        if not os.path.exists("/dev/fuse"):
            pytest.skip("no /dev/fuse")
        self.mnt.mkdir(exist_ok=True)
        run([VMFS_FUSE, *map(str, self.devs), str(self.mnt)], timeout=30)
        for _ in range(50):
            if os.path.ismount(self.mnt):
                break
            time.sleep(0.1)
        return self.mnt

    def __exit__(self, *a):
        um = ["fusermount3", "-u"] if shutil.which("fusermount3") else ["fusermount", "-u"]
        subprocess.run(um + [str(self.mnt)], stderr=subprocess.DEVNULL)


def file_md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def test_vmfs_fuse_mount(filled):
    tmp, devs, files = filled
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    mnt = tmp / "mnt"
    mnt.mkdir(exist_ok=True)
    run([VMFS_FUSE, *map(str, devs), str(mnt)], timeout=30)
    try:
        for _ in range(50):
            if os.path.ismount(mnt):
                break
            time.sleep(0.1)
        assert sorted(os.listdir(mnt / "sub")) == [n for n in our_ls(devs, "/sub") if n not in (".", "..")]
        assert len(os.listdir(mnt / "many")) == 70
        for path, exp in files.items():
            with open(str(mnt) + path, "rb") as f:
                h = hashlib.md5()
                for chunk in iter(lambda: f.read(4 * MiB), b""):
                    h.update(chunk)
            assert h.hexdigest() == exp.md5(), path
            assert os.stat(str(mnt) + path).st_size == exp.size
        assert os.readlink(mnt / "sub" / "link") == "/vmfs/volumes/test/hello.txt"
        assert os.stat(mnt / "fb.bin").st_nlink == 2
        st = os.statvfs(mnt)
        free = dict(l.split() for l in util(devs, "statfs").stdout.decode().splitlines())
        assert st.f_bfree * st.f_frsize == int(free["free_blocks"]) * MiB
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], stderr=subprocess.DEVNULL) if shutil.which("fusermount3") \
            else subprocess.run(["fusermount", "-u", str(mnt)], stderr=subprocess.DEVNULL)


def test_unlink_everything_restores_free_counts(tmp_path):
    img = tmp_path / "v.img"
    mkvmfs("-S", "1100M", img)
    before = util([img], "statfs").stdout
    files = fill_volume([img], tmp_path)
    assert util([img], "statfs").stdout != before
    for p in sorted(files, key=len, reverse=True):
        util([img], "unlink", p)
    util([img], "unlink", "/sub/link")
    for d in ("/sub/deeper", "/sub", "/many"):
        util([img], "rmdir", d)
    assert util([img], "statfs").stdout == before
    check_fsck([img], resident_nonzero=0, tbz=0)
    assert debugvmfs_ls([img], "/") == sorted([".", "..", ".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf",
                                               ".vh.sf", ".pb2.sf", ".sdd.sf"])


def test_spanned_two_extents(tmp_path):
    a, b = tmp_path / "ext0.img", tmp_path / "ext1.img"
    out = mkvmfs("-L", "span", "-S", "530M", a, b).stdout.decode()
    assert "on 2 extents" in out
    devs = [a, b]
    # the first extent holds segment 0 (LV blocks 0..255): a TBZ filler pushes
    # the next allocations across the extent boundary
    util(devs, "fallocate", "/filler.bin", 0, 220 * MiB, "tbz")
    e = Sparse()
    for off in (0, 4 * MiB + 5, 8 * MiB + 7, 12 * MiB + 1):  # LV placement is sequential
        put(devs, tmp_path, "/span.bin", off, os.urandom(3 * MiB + 11), e)
    m = util(devs, "map", "/span.bin").stdout.decode()
    allocs = [(int(l.split()[3], 16), int(l.split()[1])) for l in m.splitlines() if l.split()[2] == "alloc"]
    assert any(lv + n > 256 * MiB for lv, n in allocs)  # data on the second extent
    with FuseMount([b, a], tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt)) == sorted(n for n in our_ls(devs, "/") if n not in (".", ".."))
        assert file_md5(mnt / "span.bin") == e.md5()
        assert os.stat(mnt / "filler.bin").st_size == 220 * MiB
    for order in ([a, b], [b, a]):
        got = run([DEBUGVMFS, *map(str, order), "cat", "/span.bin"]).stdout
        assert md5(got) == e.md5()
        assert md5(util(order, "cat", "/span.bin", flags=("-r",)).stdout) == e.md5()
    assert any(lv < 256 * MiB for lv, n in allocs)  # and on the first
    check_fsck(devs, resident_nonzero=0, tbz=220)
    # fsck.vmfs refuses a missing extent; so do we
    assert "Missing" in run([FSCK, str(a)], check=False).stdout.decode() + \
        run([FSCK, str(a)], check=False).stderr.decode()
    p = util([a], "ls", "/", check=False)
    assert p.returncode == 1 and b"missing extents" in p.stderr


def test_double_indirect_with_our_library(tmp_path):
    img = tmp_path / "dbl.img"
    mkvmfs("-S", "1100M", img)
    before = util([img], "statfs").stdout
    pieces = [(0, os.urandom(MiB + 5)), (300 * GiB, os.urandom(2 * MiB)), (5 << 40, os.urandom(4097))]
    for off, data in pieces:
        (tmp_path / "p").write_bytes(data)
        util([img], "put", tmp_path / "p", "/dbl.bin", off)
    st = dict(l.split(" ", 1) for l in util([img], "stat", "/dbl.bin").stdout.decode().splitlines())
    assert st["zla"] == "4304" and int(st["size"]) == (5 << 40) + 4097 and st["blk_count"] == "5"
    for off, data in pieces:
        got = util([img], "read", "/dbl.bin", off - 7 if off else 0, len(data) + 14).stdout
        exp = (bytes(7) if off else b"") + data + bytes(14 if not off else 7)
        assert got[:len(exp)] == exp[:len(got)] and len(got) >= len(data)
    # shrink: double -> single -> direct -> resident; blocks and PBs are freed
    util([img], "truncate", "/dbl.bin", 200 * GiB)
    assert "zla 3" in util([img], "stat", "/dbl.bin").stdout.decode()
    util([img], "truncate", "/dbl.bin", 100 * MiB)
    assert "zla 1" in util([img], "stat", "/dbl.bin").stdout.decode()
    util([img], "truncate", "/dbl.bin", 1000)
    assert "zla 4305" in util([img], "stat", "/dbl.bin").stdout.decode()
    assert util([img], "cat", "/dbl.bin").stdout == pieces[0][1][:1000]
    util([img], "unlink", "/dbl.bin")
    assert util([img], "statfs").stdout == before


def test_esx_vmfs3_fixture(tmp_path):
    src = SHARED / "fixtures" / "vmfs3-esx.img.xz"
    if not src.exists():
        pytest.skip(f"{src} missing")
    img = tmp_path / "esx.img"
    with open(img, "wb") as f:
        xz = subprocess.Popen(["xz", "-dc", str(src)], stdout=subprocess.PIPE)
        subprocess.run(["cp", "--sparse=always", "/dev/stdin", str(img)], stdin=xz.stdout, check=True)
        xz.wait()
    assert debugvmfs_ls([img], "/") == our_ls([img], "/")
    names = [n for n in our_ls([img], "/") if not n.startswith(".")]
    assert len(names) == 8
    info = util([img], "info", flags=("-r",)).stdout.decode()
    assert "lvm_major 3" in info and "label toto" in info and "subblock_size 65536" in info
    for n in names:
        ours = stream_md5([prog_path("vmfs_util"), "-r", str(img), "--", "cat", "/" + n])
        theirs = stream_md5([DEBUGVMFS, str(img), "cat", "/" + n])
        assert ours == theirs, n
    m = util([img], "map", "/zeroedthick-flat.vmdk", flags=("-r",)).stdout.decode()
    assert "tbz" in m


def test_write_into_esx_vmfs3_volume(tmp_path):
    """Our library writes into the ESX-made VMFS3 volume (64 KiB sub-blocks,
    200 items per FBB cluster); vmfs-tools reads it back and fsck.vmfs still
    reports exactly the fixture's 199 TBZ blocks."""
    src = SHARED / "fixtures" / "vmfs3-esx.img.xz"
    if not src.exists():
        pytest.skip(f"{src} missing")
    img = tmp_path / "esx.img"
    with open(img, "wb") as f:
        xz = subprocess.Popen(["xz", "-dc", str(src)], stdout=subprocess.PIPE)
        subprocess.run(["cp", "--sparse=always", "/dev/stdin", str(img)], stdin=xz.stdout, check=True)
        xz.wait()
    devs = [img]
    util(devs, "mkdir", "/ours")
    e1 = Sparse(); put(devs, tmp_path, "/ours/sb.bin", 0, os.urandom(40000), e1)
    e2 = Sparse(); put(devs, tmp_path, "/ours/fb.bin", 0, os.urandom(3 * MiB + 1), e2)
    # grow ESX's 393-byte descriptor (one 64 KiB sub-block) past a sub-block
    orig = bytearray(run([DEBUGVMFS, str(img), "cat", "/thin.vmdk"]).stdout)
    assert len(orig) == 393
    patch = os.urandom(70000)
    put(devs, tmp_path, "/thin.vmdk", 300, patch, Sparse())
    orig[300:] = patch
    thin = Sparse(); thin.put(0, bytes(orig))
    assert "zla 2" in util(devs, "stat", "/ours/sb.bin").stdout.decode()
    assert "zla 1" in util(devs, "stat", "/thin.vmdk").stdout.decode()
    for path, exp in (("/ours/sb.bin", e1), ("/ours/fb.bin", e2), ("/thin.vmdk", thin)):
        assert md5(run([DEBUGVMFS, str(img), "cat", path]).stdout) == exp.md5(), path
    out = run([FSCK, str(img)]).stdout.decode()
    r = parse_fsck(out)
    assert r["Lost blocks"] == 199 and r["Unallocated blocks"] == 0, out
    assert r["Orphaned inodes"] == 0 and r["Undefined inodes"] == 0 and r["Directory errors"] == 0, out
    assert "Total errors: 0" in run([DEBUGVMFS, str(img), "check_vol_bitmaps"]).stdout.decode()


def test_discard_returns_space_to_sparse_image(tmp_path):
    img = tmp_path / "d.img"
    mkvmfs("-S", "1100M", img)
    base = os.stat(img).st_blocks
    e = Sparse(); put([img], tmp_path, "/big.bin", 0, os.urandom(40 * MiB), e)
    assert os.stat(img).st_blocks - base >= 40 * MiB // 512
    util([img], "truncate", "/big.bin", 10 * MiB + 3, flags=("-D",))
    assert abs((os.stat(img).st_blocks - base) * 512 - 11 * MiB) <= 2 * MiB
    util([img], "unlink", "/big.bin", flags=("-D",))
    assert (os.stat(img).st_blocks - base) * 512 <= MiB
    check_fsck([img], resident_nonzero=0, tbz=0)
