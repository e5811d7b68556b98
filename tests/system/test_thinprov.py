"""Provisioning, reclaim and the vmkfstools disk tool on real volume images:
each disk type created and read back, random writes against a reference
model, exact allocated-block counts, TBZ flags cleared only where written,
reclaim reaching the backing file (st_blocks shrinks) and a tgt LUN,
qemu-img reading our descriptors, the ESX fixture's four disk types, and
power-cut tests of first writes (thinprov_crash)."""
import hashlib
import os
import random
import re
import shutil
import subprocess

import pytest

from conftest import SHARED, TgtTarget, bin_path, prog_path, run

MiB = 1 << 20


def vkt(vol, *args, check=True):
    return run([bin_path("vmkfstools"), "--volume", vol, *args], check=check)


def util(vol, *cmd, check=True):
    return run([prog_path("vmfs_util"), "-n", vol, "--", *cmd], check=check)


def util_bytes(vol, *cmd):
    p = subprocess.run([prog_path("vmfs_util"), "-r", *str(vol).split(","), "--", *map(str, cmd)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def mkvol(tmp_path, size="1200M", name="v.img"):
    img = tmp_path / name
    with open(img, "wb") as f:
        f.truncate(0)
    run([bin_path("mkvmfs"), "-q", "-S", size, "-L", "tp", img])
    return str(img)


def tmap(vol, path):
    """-t0 -> list of (off, len, state) and the summary dict."""
    out = vkt(vol, "-t0", path).stdout
    ext = []
    for m in re.finditer(r"\[\s*(\d+):\s*(\d+)\] --> \[(VMFS --|VMFS Z-|NOMP --)", out):
        ext.append((int(m.group(1)), int(m.group(2)),
                    {"VMFS --": "alloc", "VMFS Z-": "tbz", "NOMP --": "hole"}[m.group(3)]))
    s = re.search(r"type (\S+), provisioned (\d+), allocated (\d+), written (\d+), to-be-zeroed (\d+)", out)
    assert s, out
    return ext, dict(type=s.group(1), provisioned=int(s.group(2)), allocated=int(s.group(3)),
                     written=int(s.group(4)), tbz=int(s.group(5)))


def stat_fs(vol, path):
    out = util(vol, "stat", path).stdout
    return dict(l.split(" ", 1) for l in out.splitlines())


def fsck_clean(vol):
    p = run([bin_path("vmfsck"), "-n", *vol.split(",")], check=False)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.fixture
def vol(tmp_path):
    v = mkvol(tmp_path)
    yield v
    fsck_clean(v)   # every operation of every test leaves a consistent volume


@pytest.mark.parametrize("dtype", ["thin", "zeroedthick", "eagerzeroedthick"])
def test_create_each_type_reads_zeros_and_counts(vol, dtype):
    size = 40 * MiB
    vkt(vol, "-c", "40m", "-d", dtype, "/d.vmdk")
    desc = util_bytes(vol, "cat", "/d.vmdk").decode()
    assert 'createType="vmfs"' in desc
    assert 'RW 81920 VMFS "d-flat.vmdk"' in desc
    assert ('ddb.thinProvisioned = "1"' in desc) == (dtype == "thin")
    for key in ("ddb.adapterType", "ddb.geometry.cylinders", "ddb.geometry.heads",
                "ddb.geometry.sectors", "ddb.uuid", "ddb.longContentID", "ddb.virtualHWVersion"):
        assert key in desc
    data = util_bytes(vol, "cat", "/d-flat.vmdk")
    assert len(data) == size and data.count(0) == size
    ext, s = tmap(vol, "/d.vmdk")
    assert s["type"] == dtype and s["provisioned"] == size
    want = {"thin": (0, 0, 0), "zeroedthick": (size, 0, size), "eagerzeroedthick": (size, size, 0)}[dtype]
    assert (s["allocated"], s["written"], s["tbz"]) == want
    st = stat_fs(vol, "/d-flat.vmdk")
    assert int(st["blk_count"]) * MiB == s["allocated"]
    assert int(st["tbz"]) * MiB == s["tbz"]


@pytest.mark.parametrize("dtype", ["thin", "zeroedthick", "eagerzeroedthick"])
def test_random_writes_match_model_and_tbz_cleared_only_where_written(vol, tmp_path, dtype):
    size = 32 * MiB
    vkt(vol, "-c", "32m", "-d", dtype, "/r.vmdk")
    rnd = random.Random(hash(dtype) & 0xffff)
    model = bytearray(size)
    touched = set()
    for i in range(12):
        off = rnd.randrange(0, size - 1)
        ln = min(rnd.choice([1, 511, 4096, 70000, MiB, 2 * MiB + 3]), size - off)
        data = bytes(rnd.getrandbits(8) | 1 for _ in range(ln)) if ln < 100000 else os.urandom(ln)
        f = tmp_path / "piece"
        f.write_bytes(data)
        util(vol, "put", f, "/r-flat.vmdk", off)
        model[off:off + ln] = data
        touched.update(range(off // MiB, (off + ln - 1) // MiB + 1))
    got = util_bytes(vol, "cat", "/r-flat.vmdk")
    assert hashlib.md5(got).hexdigest() == hashlib.md5(model).hexdigest()
    ext, s = tmap(vol, "/r.vmdk")
    blocks = {}
    for off, ln, state in ext:
        for b in range(off // MiB, (off + ln + MiB - 1) // MiB):
            blocks[b] = state
    n = size // MiB
    if dtype == "thin":
        assert {b for b in range(n) if blocks[b] != "hole"} == touched
        assert s["allocated"] == len(touched) * MiB == s["written"]
    elif dtype == "zeroedthick":
        assert {b for b in range(n) if blocks[b] == "alloc"} == touched
        assert {b for b in range(n) if blocks[b] == "tbz"} == set(range(n)) - touched
        assert s["allocated"] == size and s["written"] == len(touched) * MiB
    else:
        assert all(blocks[b] == "alloc" for b in range(n)) and s["written"] == size


def test_inflate_eagerzero_extend_keep_content_and_type(vol, tmp_path):
    piece = os.urandom(300000)
    (tmp_path / "p").write_bytes(piece)
    vkt(vol, "-c", "16m", "-d", "thin", "/t.vmdk")
    util(vol, "put", tmp_path / "p", "/t-flat.vmdk", 5 * MiB + 7)
    vkt(vol, "-j", "/t.vmdk")
    _, s = tmap(vol, "/t.vmdk")
    assert s["type"] == "eagerzeroedthick" and s["written"] == 16 * MiB
    assert 'thinProvisioned' not in util_bytes(vol, "cat", "/t.vmdk").decode()
    data = util_bytes(vol, "cat", "/t-flat.vmdk")
    assert data[5 * MiB + 7:5 * MiB + 7 + len(piece)] == piece
    assert data.count(0) == 16 * MiB - len(piece) + piece.count(0)

    vkt(vol, "-c", "8m", "-d", "zeroedthick", "/z.vmdk")
    util(vol, "put", tmp_path / "p", "/z-flat.vmdk", 0)
    vkt(vol, "-X", "12m", "/z.vmdk")
    _, s = tmap(vol, "/z.vmdk")
    assert s["type"] == "zeroedthick" and s["provisioned"] == 12 * MiB and s["tbz"] == 11 * MiB
    assert "RW 24576 VMFS" in util_bytes(vol, "cat", "/z.vmdk").decode()
    vkt(vol, "-k", "/z.vmdk")
    _, s = tmap(vol, "/z.vmdk")
    assert s["type"] == "eagerzeroedthick" and s["tbz"] == 0 and s["written"] == 12 * MiB
    data = util_bytes(vol, "cat", "/z-flat.vmdk")
    assert data[:len(piece)] == piece and data[len(piece):].count(0) == 12 * MiB - len(piece)

    vkt(vol, "-c", "4m", "-d", "thin", "/x.vmdk")
    vkt(vol, "-X", "9m", "/x.vmdk")
    _, s = tmap(vol, "/x.vmdk")
    assert s["type"] == "thin" and s["provisioned"] == 9 * MiB and s["allocated"] == 0
    p = vkt(vol, "-X", "2m", "/x.vmdk", check=False)
    assert p.returncode == 1 and "refused" in p.stderr


def test_clone_sparse_and_rename_and_delete(vol, tmp_path):
    piece = os.urandom(2 * MiB)
    (tmp_path / "p").write_bytes(piece)
    vkt(vol, "-c", "64m", "-d", "eagerzeroedthick", "/src.vmdk")
    util(vol, "put", tmp_path / "p", "/src-flat.vmdk", 10 * MiB)
    vkt(vol, "-i", "/src.vmdk", "/dst.vmdk", "-d", "thin")
    _, s = tmap(vol, "/dst.vmdk")
    assert s["type"] == "thin" and s["allocated"] == 2 * MiB     # zero blocks stay holes
    a = util_bytes(vol, "cat", "/src-flat.vmdk")
    b = util_bytes(vol, "cat", "/dst-flat.vmdk")
    assert a == b
    vkt(vol, "-i", "/src.vmdk", "/dz.vmdk", "-d", "zeroedthick")
    _, s = tmap(vol, "/dz.vmdk")
    assert s["type"] == "zeroedthick" and s["written"] == 2 * MiB and s["tbz"] == 62 * MiB
    assert util_bytes(vol, "cat", "/dz-flat.vmdk") == a
    # existing target, missing source
    p = vkt(vol, "-i", "/src.vmdk", "/dst.vmdk", check=False)
    assert p.returncode == 1 and "exists" in p.stderr
    p = vkt(vol, "-i", "/nope.vmdk", "/n2.vmdk", check=False)
    assert p.returncode == 1 and "No such file" in p.stderr
    # rename: both files, descriptor updated
    vkt(vol, "-E", "/dst.vmdk", "/moved.vmdk")
    names = util(vol, "ls", "/").stdout
    assert "moved.vmdk" in names and "moved-flat.vmdk" in names and "dst" not in names
    assert 'VMFS "moved-flat.vmdk"' in util_bytes(vol, "cat", "/moved.vmdk").decode()
    assert util_bytes(vol, "cat", "/moved-flat.vmdk") == a
    # delete frees the blocks in the volume and in the backing file
    free0 = int(re.search(r"\((\d+) blocks\) avail", vkt(vol, "-P").stdout).group(1))
    blocks0 = os.stat(vol).st_blocks
    p = vkt(vol, "-U", "/src.vmdk")
    assert re.search(r"67108864 bytes freed, 67108864 bytes discarded", p.stdout), p.stdout
    free1 = int(re.search(r"\((\d+) blocks\) avail", vkt(vol, "-P").stdout).group(1))
    assert free1 == free0 + 64
    assert (blocks0 - os.stat(vol).st_blocks) * 512 >= 64 * MiB
    assert "src" not in util(vol, "ls", "/").stdout


def test_punchzero_frees_zero_blocks_and_backing_file_shrinks(vol, tmp_path):
    vkt(vol, "-c", "32m", "-d", "eagerzeroedthick", "/k.vmdk")
    piece = os.urandom(MiB)
    (tmp_path / "p").write_bytes(piece)
    for b in (3, 17, 20):
        util(vol, "put", tmp_path / "p", "/k-flat.vmdk", b * MiB)
    before = util_bytes(vol, "cat", "/k-flat.vmdk")
    blocks0 = os.stat(vol).st_blocks
    vkt(vol, "-K", "/k.vmdk")
    ext, s = tmap(vol, "/k.vmdk")
    assert s["type"] == "thin" and s["allocated"] == 3 * MiB == s["written"]
    assert {o // MiB for o, l, st in ext if st == "alloc" for o in range(o, o + l, MiB)} == {3, 17, 20}
    assert util_bytes(vol, "cat", "/k-flat.vmdk") == before
    assert (blocks0 - os.stat(vol).st_blocks) * 512 >= 29 * MiB
    assert 'ddb.thinProvisioned = "1"' in util_bytes(vol, "cat", "/k.vmdk").decode()


def test_datastore_reclaim_and_info(vol, tmp_path):
    # blocks written behind the fs's back into free space come back as holes
    vkt(vol, "-c", "8m", "-d", "eagerzeroedthick", "/e.vmdk")
    vkt(vol, "-U", "/e.vmdk")
    with open(vol, "r+b") as f:
        f.seek(900 * MiB)
        f.write(os.urandom(4 * MiB))
        f.flush()
        os.fsync(f.fileno())
    b0 = os.stat(vol).st_blocks
    p = vkt(vol, "-y")
    assert "discarded on the device" in p.stdout
    assert (b0 - os.stat(vol).st_blocks) * 512 >= 4 * MiB
    # -P / -Ph: capacity, provisioned vs allocated vs written
    vkt(vol, "-c", "10m", "-d", "thin", "/a.vmdk")
    vkt(vol, "-c", "10m", "-d", "zeroedthick", "/b.vmdk")
    out = vkt(vol, "-P", "/b.vmdk").stdout
    assert re.search(r"Capacity \d+ \(\d+ file blocks \* 1048576\), \d+ \(\d+ blocks\) avail", out)
    assert "type zeroedthick, provisioned 10485760, allocated 10485760, written 0" in out
    out = vkt(vol, "-Ph").stdout
    assert re.search(r"Capacity [\d.]+G", out) and "Provisioned" in out


def test_errors_and_usage(vol):
    for bad in ("0", "12q", "-5m", "1.5g", "100"):
        p = run([bin_path("vmkfstools"), "--volume", vol, "-c", bad, "/e.vmdk"], check=False)
        assert p.returncode == 2 and "invalid size" in p.stderr, (bad, p.stderr)
    p = run([bin_path("vmkfstools"), "--volume", vol, "-c", "1t", "-d", "fat", "/e.vmdk"], check=False)
    assert p.returncode == 2 and "unknown disk format" in p.stderr
    vkt(vol, "-c", "1m", "/e.vmdk")
    p = vkt(vol, "-c", "1m", "/e.vmdk", check=False)
    assert p.returncode == 1 and "File exists" in p.stderr
    p = vkt(vol, "-U", "/missing.vmdk", check=False)
    assert p.returncode == 1 and "No such file" in p.stderr
    p = run([bin_path("vmkfstools"), "--help"])
    assert "-c, --createvirtualdisk" in p.stdout
    p = run([bin_path("vmkfstools"), "--volume", vol, "-c", "64k", "-v", "/small.vmdk"])
    assert "Creating disk: 100% done." in p.stderr


def test_qemu_img_reads_our_descriptors(vol, tmp_path):
    if not shutil.which("qemu-img"):
        pytest.fail("qemu-img not installed (scripts/install-deps.sh installs qemu-utils)")
    piece = os.urandom(3 * MiB + 5)
    (tmp_path / "p").write_bytes(piece)
    vkt(vol, "-c", "24m", "-d", "thin", "/q.vmdk")
    util(vol, "put", tmp_path / "p", "/q-flat.vmdk", 7 * MiB)
    out = tmp_path / "x"
    out.mkdir()
    (out / "q.vmdk").write_bytes(util_bytes(vol, "cat", "/q.vmdk"))
    (out / "q-flat.vmdk").write_bytes(util_bytes(vol, "cat", "/q-flat.vmdk"))
    info = run(["qemu-img", "info", "--output=human", out / "q.vmdk"]).stdout
    assert re.search(r"file format: vmdk", info)
    assert re.search(r"virtual size: .*\(25165824 bytes\)", info), info
    run(["qemu-img", "convert", "-f", "vmdk", "-O", "raw", out / "q.vmdk", out / "q.raw"])
    raw = (out / "q.raw").read_bytes()
    assert len(raw) == 24 * MiB and raw[7 * MiB:7 * MiB + len(piece)] == piece
    assert raw.count(0) == 24 * MiB - len(piece) + piece.count(0)


@pytest.fixture(scope="module")
def esx(tmp_path_factory):
    src = SHARED / "fixtures" / "vmfs3-esx.img.xz"
    if not src.exists():
        pytest.fail(f"{src} missing")
    img = tmp_path_factory.mktemp("esx") / "esx.img"
    xz = subprocess.Popen(["xz", "-dc", str(src)], stdout=subprocess.PIPE)
    subprocess.run(["cp", "--sparse=always", "/dev/stdin", str(img)], stdin=xz.stdout, check=True)
    xz.wait()
    os.chmod(img, 0o444)   # info commands must not need write access
    return str(img)


@pytest.mark.parametrize("disk,want", [("thin", "thin"), ("zeroedthick", "zeroedthick"),
                                       ("eagerzeroedthick", "eagerzeroedthick"),
                                       ("thick", "eagerzeroedthick")])
def test_esx_fixture_disk_types(esx, disk, want):
    ext, s = tmap(esx, f"/{disk}.vmdk")
    assert s["type"] == want and s["provisioned"] == 200 * MiB
    if disk == "zeroedthick":
        assert s["tbz"] == 199 * MiB and s["written"] == MiB
    if disk == "thin":
        assert s["allocated"] == MiB
    out = vkt(esx, "-P", f"/{disk}.vmdk").stdout
    assert f"type {want}," in out and "VMFS-3" in out


@pytest.fixture
def tgt_vmfs(tmp_path):
    t = TgtTarget(tmp_path, size=300 * MiB)
    try:
        run([bin_path("mkvmfs"), "-q", "-L", "lun", t.backing])
        yield t
    finally:
        t.stop()


def test_iscsi_unmap_reaches_tgt_lun(tgt_vmfs):
    """A volume on a thin tgt LUN (thin_provisioning=1: UNMAP punches holes in
    its backing file): deleting a disk and punch-zero send UNMAP, and the
    LUN's backing file gives the space back."""
    url = tgt_vmfs.url
    vkt(url, "-c", "16m", "-d", "eagerzeroedthick", "/u.vmdk")
    b0 = os.stat(tgt_vmfs.backing).st_blocks
    p = vkt(url, "-U", "/u.vmdk")
    assert "16777216 bytes discarded" in p.stdout, p.stdout
    assert (b0 - os.stat(tgt_vmfs.backing).st_blocks) * 512 >= 15 * MiB
    vkt(url, "-c", "8m", "-d", "eagerzeroedthick", "/k.vmdk")
    b0 = os.stat(tgt_vmfs.backing).st_blocks
    vkt(url, "-K", "/k.vmdk")
    assert (b0 - os.stat(tgt_vmfs.backing).st_blocks) * 512 >= 7 * MiB


CRASH_RUNS = int(os.environ.get("VMFS_CRASH_RUNS", "100"))


@pytest.mark.parametrize("kind", ["tbz", "thin"])
@pytest.mark.parametrize("path,journal", [("tp", "journal"), ("tp", "none"), ("conv", "journal"),
                                          ("del", "journal"), ("pz", "journal")])
def test_power_cut_first_writes_thinprov_path(kind, path, journal):
    """tp: first writes through thinprov_pwrite; conv: inflate/eager-zero of the
    whole disk; del: unlink with reclaim (the disk is gone or intact, never
    discarded while still referenced); pz: punch-zero in place, two blocks per
    transaction (content unchanged, bitmap and block map agree: no double
    free, no leak, no discard of a block still referenced).  100 cut points
    for tp with the journal (the host configuration), 50 for the others."""
    runs = CRASH_RUNS if (path, journal) == ("tp", "journal") else max(CRASH_RUNS // 2, 20)
    p = run([prog_path("thinprov_crash"), kind, path, journal, runs], check=False, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"runs={runs} exposed=0" in p.stdout


@pytest.mark.parametrize("kind", ["tbz", "thin"])
def test_power_cut_first_writes_fs_path(kind):
    p = run([prog_path("thinprov_crash"), kind, "fs", "journal", 200], check=False, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


def test_hosts_allocate_from_clusters_of_their_own(tmp_path):
    """Three hosts on one volume write thin disks, 1 MiB per write: first one
    host after the other, then all at the same time.  Every disk gets
    contiguous LV blocks (at most 2 extents) and no FBB resource cluster (512
    blocks) holds blocks of two hosts' disks: each host starts in a cluster
    chosen by its heartbeat slot and keeps to it."""
    img = mkvol(tmp_path, size="2200M")
    procs = [subprocess.Popen([prog_path("thinprov_hostwrite"), img, f"h{i}-", "40"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    ext = {i: [] for i in range(3)}

    def collect(i, k):
        while True:
            line = procs[i].stdout.readline()
            assert line, procs[i].stderr.read()
            if line.startswith("DONE "):
                return
            f = line.split()
            assert f[0] == "EXT" and int(f[1]) == k, line
            ext[i].append((k, int(f[2]), int(f[3]), int(f[4])))

    try:
        slots = []
        for p in procs:   # every host is mounted before any writes
            line = p.stdout.readline()
            assert line.startswith("SLOT "), p.stderr.read()
            slots.append(int(line.split()[1]))
        assert len(set(slots)) == 3, slots
        for i, p in enumerate(procs):   # one after the other
            p.stdin.write("go\n")
            p.stdin.flush()
            collect(i, 1)
        for p in procs:                 # all at once
            p.stdin.write("go\n")
            p.stdin.flush()
        for i in range(3):
            collect(i, 2)
        for p in procs:
            p.stdin.close()
            assert p.wait(timeout=60) == 0, p.stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    clusters = []
    for i in range(3):
        for k in (1, 2):
            e = [x for x in ext[i] if x[0] == k]
            assert sum(x[2] for x in e) == 40 * MiB and len(e) <= 2, (slots[i], e)
        clusters.append({b // MiB // 512 for _, _, l, lv in ext[i] for b in range(lv, lv + l, MiB)})
    for i in range(3):
        for j in range(i):
            assert not clusters[i] & clusters[j], (slots, clusters)
    fsck_clean(img)


def test_through_a_fuse_mount(tmp_path):
    """Plain paths on our vmfs-fuse mount: POSIX calls only (fallocate, SEEK_DATA);
    the types made that way are what --volume sees afterwards, and qemu-img
    reads the descriptor on the mount."""
    from test_fuse_helpers import Mount
    img = mkvol(tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    K = bin_path("vmkfstools")
    piece = os.urandom(MiB)
    with Mount(img, str(mnt)):
        for t in ("thin", "zeroedthick", "eagerzeroedthick"):
            run([K, "-c", "12m", "-d", t, mnt / f"{t}.vmdk"])
        st = {t: os.stat(mnt / f"{t}-flat.vmdk") for t in ("thin", "zeroedthick", "eagerzeroedthick")}
        assert st["thin"].st_blocks == 0 and st["zeroedthick"].st_blocks * 512 == 12 * MiB
        out = run([K, "-t0", mnt / "thin.vmdk"]).stdout
        assert "[           0:    12582912] --> [NOMP" in out
        for t in ("thin", "zeroedthick", "eagerzeroedthick"):
            out = run([K, "-t0", mnt / f"{t}.vmdk"]).stdout
            assert f"Disk: type {t}, provisioned 12582912," in out, out
        with open(mnt / "thin-flat.vmdk", "r+b") as f:
            f.seek(5 * MiB)
            f.write(piece)
        run([K, "-i", mnt / "thin.vmdk", mnt / "copy.vmdk", "-d", "thin"])
        assert (mnt / "copy-flat.vmdk").read_bytes() == (mnt / "thin-flat.vmdk").read_bytes()
        assert os.stat(mnt / "copy-flat.vmdk").st_blocks * 512 == MiB
        info = run(["qemu-img", "info", mnt / "copy.vmdk"]).stdout
        assert "file format: vmdk" in info and "12 MiB" in info
        run(["qemu-img", "convert", "-O", "raw", mnt / "copy.vmdk", tmp_path / "c.raw"])
        assert (tmp_path / "c.raw").read_bytes()[5 * MiB:6 * MiB] == piece
        out = run([K, "-P", mnt]).stdout
        m = re.search(r"Provisioned (\d+), allocated (\d+) in 8 files", out)
        assert m and 48 * MiB <= int(m.group(1)) < 49 * MiB, out
        assert 25 * MiB <= int(m.group(2)) < 27 * MiB, out
        run([K, "-E", mnt / "copy.vmdk", mnt / "moved.vmdk"])
        run([K, "-U", mnt / "moved.vmdk"])
        assert not (mnt / "moved-flat.vmdk").exists() and not (mnt / "copy.vmdk").exists()
        p = run([K, "-y", mnt], check=False)
        assert p.returncode == 2 and "needs --volume" in p.stderr
    for t in ("thin", "zeroedthick", "eagerzeroedthick"):
        _, s = tmap(img, f"/{t}.vmdk")
        assert s["type"] == t


def test_disk_lock_held_by_another_host(tmp_path):
    """--volume joins the cluster: a disk that a vmfs-fuse host has open for
    writing is refused (its slot named); once closed, the change goes through
    and the other host sees it."""
    from test_fuse_helpers import Mount
    img = mkvol(tmp_path)
    mnt = tmp_path / "mnt"
    vkt(img, "-c", "10m", "-d", "thin", "/a.vmdk")
    with Mount(img, str(mnt)):
        with open(mnt / "a-flat.vmdk", "r+b") as f:
            f.write(b"x")
            f.flush()
            p = vkt(img, "-X", "20m", "/a.vmdk", check=False)
            assert p.returncode == 1 and "is locked by the host in heartbeat slot" in p.stderr
        vkt(img, "-X", "20m", "/a.vmdk")
        assert os.stat(mnt / "a-flat.vmdk").st_size == 20 * MiB


def test_spanned_volume_reclaim_reaches_every_extent(tmp_path):
    a, b = tmp_path / "e0.img", tmp_path / "e1.img"
    run([bin_path("mkvmfs"), "-q", "-S", "300M", a, b])
    vol = f"{a},{b}"
    out = vkt(vol, "-P").stdout
    assert "spanning 2 partitions" in out and f"\t{a}\n\t{b}\n" in out
    vkt(vol, "-c", "400m", "-d", "eagerzeroedthick", "/big.vmdk")
    used = [os.stat(p).st_blocks for p in (a, b)]
    assert all(u * 512 > 100 * MiB for u in used)
    vkt(vol, "-X", "420m", "/big.vmdk")
    desc = util_bytes(vol, "cat", "/big.vmdk").decode()
    assert 'RW 860160 VMFS "big-flat.vmdk"' in desc and 'ddb.geometry.cylinders = "53"' in desc
    _, s = tmap(vol, "/big.vmdk")
    assert s["type"] == "eagerzeroedthick" and s["written"] == 420 * MiB
    vkt(vol, "-U", "/big.vmdk")
    fsck_clean(vol)
    for p, u in zip((a, b), used):
        assert (u - os.stat(p).st_blocks) * 512 > 100 * MiB
