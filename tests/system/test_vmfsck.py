"""vmfsck: clean volumes stay silent (ours in every addressing mode, spanned, and
the ESX-made VMFS3 fixture with its 199 TBZ blocks); each injected fault is
found with -n (exit 4), repaired by -y (exit 1, one FIXED line per repair), gone
on a second run (exit 0), and fsck.vmfs then reports exactly what it reports on
the untouched volume (its documented false positives only)."""
import hashlib
import os
import re
import shutil
import subprocess

import pytest

from conftest import SHARED, bin_path, prog_path

MiB = 1 << 20
GiB = 1 << 30
LV = 0x1100000  # device offset of LV offset 0 (single extent)
FSCK_VMFS = shutil.which("fsck.vmfs") or "/usr/sbin/fsck.vmfs"
HBW = ("--hb-wait", "400", "--hb-timeout", "800")  # heartbeat watch and dead-host timeout, tests only


def run(args, timeout=60, check=False):
    p = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, text=True, errors="replace")
    if check and p.returncode:
        raise AssertionError(f"{args}: rc {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def vmfsck(*args, timeout=60):
    return run([bin_path("vmfsck"), *args], timeout=timeout)


def util(img, *cmd, flags=()):
    return run([prog_path("vmfs_util"), *flags, img, "--", *cmd], check=True, timeout=120)


def cat(img, path):
    p = subprocess.run([prog_path("vmfs_util"), "-r", str(img), "--", "cat", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def poke(img, *cmd):
    return run([prog_path("fsck_poke"), img, "--", *cmd], check=True).stdout


def fill(img, tmp):
    """Every addressing mode: resident, sub-block, direct FB, single and double
    indirect, holes, TBZ, eager-zeroed, symlink, hard link, subdirectories."""
    p = tmp / "piece"
    def put(path, size, off=0):
        p.write_bytes(os.urandom(size))
        util(img, "put", p, path, off)
    put("/resident.txt", 300)
    util(img, "mkdir", "/sub")
    util(img, "mkdir", "/sub/deeper")
    put("/sub/small.bin", 5000)
    put("/fb.bin", 3 * MiB + 17)
    put("/holes.bin", 4096, 100)
    put("/holes.bin", MiB, 10 * MiB + 5)
    put("/sub/deeper/pb.bin", MiB)
    put("/sub/deeper/pb.bin", 2 * MiB + 3, 300 * MiB)
    put("/dbl.bin", MiB + 5)
    put("/dbl.bin", 4097, 5 << 40)
    util(img, "fallocate", "/tbz.bin", 0, 6 * MiB, "tbz")
    put("/tbz.bin", 1000, 2 * MiB + 100)
    util(img, "fallocate", "/eager.bin", 0, 2 * MiB, "zero")
    util(img, "truncate", "/empty-sparse.bin", 50 * MiB)
    util(img, "symlink", "/vmfs/volumes/test/resident.txt", "/sub/link")
    util(img, "link", "/fb.bin", "/sub/fb-hardlink")
    util(img, "mkdir", "/many")
    for i in range(30):
        put(f"/many/f{i:02d}", 1500 + 100 * i)
    zlas = {util(img, "stat", f).stdout.split("zla ")[1].split()[0]
            for f in ("/resident.txt", "/sub/small.bin", "/fb.bin", "/sub/deeper/pb.bin", "/dbl.bin")}
    assert zlas == {"4305", "2", "1", "3", "4304"}


def fsck_vmfs(img):
    """fsck.vmfs always exits 0: its verdict is in the summary lines."""
    out = run([FSCK_VMFS, img], timeout=120).stdout
    r = {}
    for key in ("Unallocated blocks", "Lost blocks", "Undefined inodes", "Orphaned inodes",
                "Directory errors"):
        m = re.search(rf"^{key}\s*:\s*(\d+)", out, re.M)
        assert m, f"fsck.vmfs output lacks {key}:\n{out}"
        r[key] = int(m.group(1))
    r["multiple"] = "multiple inodes" in out
    return r


def copy(src, dst):
    run(["cp", "--sparse=always", src, dst], check=True)
    return dst


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vmfsck")
    img = tmp / "filled.img"
    run([bin_path("mkvmfs"), "-q", "-L", "fsck", "-S", "1100M", img], check=True)
    fill(img, tmp)
    return img, fsck_vmfs(img)


def assert_clean(p):
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout == "" and p.stderr == "", p.stdout + p.stderr


# ---- usage and operational errors ----------------------------------------------------

def test_help_and_usage_errors(tmp_path):
    p = vmfsck("--help")
    assert p.returncode == 0 and "Usage: vmfsck" in p.stdout and "-y" in p.stdout
    assert vmfsck().returncode == 16
    assert vmfsck("-n", "-y", "x").returncode == 16
    assert vmfsck("--bogus", "x").returncode == 16
    assert vmfsck("--hb-wait", "soon", "x").returncode == 16
    assert vmfsck("--hb-timeout", "-1", "x").returncode == 16
    p = vmfsck("-n", tmp_path / "missing.img")
    assert p.returncode == 8 and "cannot open" in p.stderr
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(4 * MiB))
    p = vmfsck("-n", junk)
    assert p.returncode == 8 and "vmfsck:" in p.stderr


# ---- clean volumes --------------------------------------------------------------------

def test_fresh_volume_is_clean(tmp_path):
    img = tmp_path / "fresh.img"
    run([bin_path("mkvmfs"), "-q", "-S", "600M", img], check=True)
    for mode in ("-n", None, "-y"):
        assert_clean(vmfsck(*([mode] if mode else []), img))
    p = vmfsck("-n", "-v", img)
    assert p.returncode == 0 and "directories" in p.stdout


def test_filled_volume_every_addressing_mode_is_clean(filled):
    img, _ = filled
    before = os.stat(img).st_mtime_ns
    assert_clean(vmfsck("-n", img))
    assert_clean(vmfsck(img))
    assert os.stat(img).st_mtime_ns == before  # nothing written without -y
    assert_clean(vmfsck("-y", img))


def test_spanned_volume_is_clean(tmp_path):
    a, b = tmp_path / "e0.img", tmp_path / "e1.img"
    run([bin_path("mkvmfs"), "-q", "-S", "530M", a, b], check=True)
    run([prog_path("vmfs_util"), a, b, "--", "fallocate", "/filler.bin", 0, 220 * MiB, "tbz"], check=True)
    (tmp_path / "p").write_bytes(os.urandom(3 * MiB))
    for off in (10 * MiB, 300 * MiB):
        run([prog_path("vmfs_util"), a, b, "--", "put", tmp_path / "p", "/span.bin", off], check=True)
    assert_clean(vmfsck("-n", b, a))  # extents in any order
    p = vmfsck("-n", a)
    assert p.returncode == 8 and "missing extents" in p.stderr
    # a fault on the second extent's segment, repaired through the LV
    run([prog_path("fsck_poke"), a, b, "--", "alloc-item", "fbb", str(400)], check=True)
    p = vmfsck("-n", a, b)
    assert p.returncode == 4 and "file block 400 " in p.stdout, p.stdout
    p = vmfsck("-y", b, a)
    assert p.returncode == 1 and "1 lost file block freed" in p.stdout, p.stdout
    assert_clean(vmfsck("-n", a, b))


def test_esx_vmfs3_fixture_is_clean(tmp_path):
    src = SHARED / "fixtures" / "vmfs3-esx.img.xz"
    assert src.exists(), f"fixture {src} is missing"
    img = tmp_path / "esx.img"
    with open(img, "wb") as f:
        xz = subprocess.Popen(["xz", "-dc", str(src)], stdout=subprocess.PIPE)
        subprocess.run(["cp", "--sparse=always", "/dev/stdin", str(img)], stdin=xz.stdout, check=True)
        assert xz.wait() == 0
    # fsck.vmfs sees 199 lost blocks here: TBZ pointers it does not understand
    assert fsck_vmfs(img)["Lost blocks"] == 199
    assert_clean(vmfsck("-n", img))
    p = vmfsck("-n", "-v", img)
    assert p.returncode == 0 and "lost" not in p.stdout, p.stdout
    # every one of them accounted for as in use
    assert "199 file blocks are to-be-zeroed (TBZ)" in p.stdout, p.stdout
    assert_clean(vmfsck("-y", img))
    # repairs work on ESX-made metadata too (VMFS3, 200 items per .fbb.sf cluster)
    poke(img, "alloc-item", "fbb", "1020")
    poke(img, "set-nlink", "/thin.vmdk", "3")
    p = vmfsck("-y", img)
    assert p.returncode == 1 and "1 lost file block freed" in p.stdout and "to 1" in p.stdout, p.stdout
    assert_clean(vmfsck("-n", img))
    assert fsck_vmfs(img)["Lost blocks"] == 199


# ---- injected faults: detect (-n: 4), repair (-y: 1), clean (0), fsck.vmfs agrees ---------

def check_fault(img, baseline, expect, fixed, wait=HBW):
    before = os.stat(img).st_mtime_ns
    p = vmfsck("-n", *wait, img)
    assert p.returncode == 4, p.stdout + p.stderr
    assert re.search(expect, p.stdout), p.stdout
    assert "nothing was changed" in p.stdout
    assert os.stat(img).st_mtime_ns == before
    p = vmfsck(*wait, img)  # default mode: report, say how to repair
    assert p.returncode == 4 and "vmfsck -y" in p.stdout, p.stdout
    p = vmfsck("-y", *wait, img)
    assert p.returncode == 1, p.stdout + p.stderr
    assert re.search(fixed, p.stdout), p.stdout
    assert "FIXED:" in p.stdout and "NOT FIXED" not in p.stdout
    assert_clean(vmfsck("-n", *wait, img))
    assert fsck_vmfs(img) == baseline
    return p.stdout


def test_fault_lost_file_block(filled, tmp_path):
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    poke(img, "alloc-item", "fbb", 1000)
    check_fault(img, base, r"file block 1000 \(0x0000fa01\) is allocated in \.fbb\.sf but used by no file",
                      r"1 lost file block freed")
    assert fsck_vmfs(img)["Lost blocks"] == base["Lost blocks"]


def test_fault_doubly_used_block(filled, tmp_path):
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    shared = poke(img, "get-ptr", "/fb.bin", "0").strip()
    own = poke(img, "get-ptr", "/eager.bin", "1").strip()
    poke(img, "set-ptr", "/eager.bin", "1", shared)
    assert fsck_vmfs(img)["multiple"]
    fb_md5 = hashlib.md5(cat(img, "/fb.bin")).hexdigest()
    check_fault(img, base, rf"block {shared} is used by file 0x[0-9a-f]{{8}} and by file 0x[0-9a-f]{{8}}",
                r"its own copy of block " + shared)
    assert poke(img, "get-ptr", "/fb.bin", "0").strip() == shared  # the first owner keeps it
    assert poke(img, "get-ptr", "/eager.bin", "1").strip() != shared
    assert hashlib.md5(cat(img, "/fb.bin")).hexdigest() == fb_md5
    assert own


def test_fault_cluster_free_count(filled, tmp_path):
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    poke(img, "free-count", "fbb", "0", "3")
    check_fault(img, base, r"\.fbb\.sf cluster 0: free count 3, but its bitmap has \d+ free",
                r"rewrote \.fbb\.sf cluster 0 header")


def test_fault_wrong_nlink(filled, tmp_path):
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    poke(img, "set-nlink", "/fb.bin", "7")
    check_fault(img, base, r"link count 7, but 2 names", r"set link count of 0x[0-9a-f]+ to 2")
    assert "nlink 2" in util(img, "stat", "/fb.bin").stdout


def test_fault_orphan_reattached(filled, tmp_path):
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    want = cat(img, "/sub/deeper/pb.bin")
    addr = poke(img, "fd", "/sub/deeper/pb.bin").split()[1]
    poke(img, "rm-entry", "/sub/deeper", "pb.bin")
    poke(img, "rm-entry", "/", "empty-sparse.bin")
    out = check_fault(img, base, rf"orphan: file {addr} ", rf"reattached orphan {addr} as /lost\+found/#")
    assert "created /lost+found" in out
    assert cat(img, f"/lost+found/#{int(addr, 16):08x}") == want


def test_fault_stale_heartbeat(filled, tmp_path):
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    poke(img, "hb-live", "17")
    out = check_fault(img, base, r"heartbeat slot 17: host .* stamp \d+ did not change in 400 ms: stale",
                      r"freed heartbeat slot 17")
    # freed only after standing still for the whole dead-host timeout
    assert "waiting 400 ms more: 1 silent heartbeat slot must stay unchanged" in out


def test_lock_naming_a_free_slot_is_not_damage(filled, tmp_path):
    """What a reclaim leaves behind: a lock record naming a slot that is now
    free (or has a newer generation).  The protocol treats it as free (the
    next acquirer takes it over), so vmfsck reports it only with -v."""
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    poke(img, "lock-excl", "/sub/small.bin", "33", "5")
    p = vmfsck("-n", *HBW, img)
    assert p.returncode == 0 and p.stdout == "", p.stdout + p.stderr
    p = vmfsck("-n", "-v", *HBW, img)
    assert p.returncode == 0 and re.search(r"lock of slot 33 names a free heartbeat slot: free by the "
                                           r"protocol", p.stdout), p.stdout


def test_fault_lock_of_dead_host_freed_with_its_slot(filled, tmp_path):
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    poke(img, "hb-live", "3")
    poke(img, "lock-excl", "/fb.bin", "3", "7")  # generation 7 = the slot's
    check_fault(img, base, r"exclusive lock of slot 3 is held by a dead host", r"freed heartbeat slot 3")
    # the slot is free now, so the record is free by the protocol
    p = vmfsck("-n", "-v", *HBW, img)
    assert p.returncode == 0 and "lock of slot 3 names a free heartbeat slot: free by the protocol" in p.stdout


def test_refuses_repair_while_another_host_is_live(filled, tmp_path):
    img, _ = filled
    img = copy(img, tmp_path / "t.img")
    host = subprocess.Popen([prog_path("cluster_host"), "join", str(img), "--volume", "--hold-ms", "20000",
                             "--io-timeout-ms", "100"], stdout=subprocess.PIPE, text=True)
    try:
        line = host.stdout.readline()
        assert "joined" in line, line
        p = vmfsck("-y", "--hb-wait", "1000", img)
        assert p.returncode == 8 and "is live on this volume" in p.stderr and "--force" in p.stderr, p.stderr
        p = vmfsck("-n", "-v", "--hb-wait", "1000", img)
        assert p.returncode == 0 and "live host" in p.stdout, p.stdout + p.stderr
        assert "warning" in p.stderr
    finally:
        host.kill()
        host.wait()
    # killed: its slot stays marked live and stops moving
    p = vmfsck("-y", *HBW, img)
    assert p.returncode == 1 and "freed heartbeat slot" in p.stdout, p.stdout + p.stderr
    assert_clean(vmfsck("-n", *HBW, img))


# ---- corrupt images: never a crash or a hang, exit 4 or 8 with a message ---------------------

def corrupt(img, off, n, rnd):
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(bytes(rnd.randrange(256) for _ in range(n)))


def expect_error(img, codes=(4, 8)):
    for mode in ("-n", "-y"):
        try:
            p = vmfsck(mode, *HBW, img, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"vmfsck {mode} hung")
        assert p.returncode >= 0, f"vmfsck {mode} died of signal {-p.returncode}"
        if mode == "-n":
            assert p.returncode in codes, p.stdout + p.stderr
            assert (p.stdout + p.stderr).strip()
        else:
            assert p.returncode in (1, 4, 8), p.stdout + p.stderr
    p = vmfsck("-n", *HBW, img)
    assert p.returncode in (0, 4, 8)


def offsets(img):
    fd = lambda path: int(poke(img, "fd", path).split()[3], 16)
    cl = lambda k: int(poke(img, "cluster", k, "0").split()[1], 16)
    root_blk = int(poke(img, "get-ptr", "/", "0").strip(), 16) >> 6
    return {
        "lvm_magic": (0x100000, 4), "fs_magic": (LV + 0x200000, 4),
        "fs_blocksize": (LV + 0x200000 + 0xA1, 8),
        "fbb_header": (LV + cl("fbb") + 0x200, 16), "fbb_bitmap": (LV + cl("fbb") + 0x210 + 40, 16),
        "sbc_bitmap": (LV + cl("sbc") + 0x210, 2), "fdc_header": (LV + cl("fdc"), 16),
        "fd_fields": (LV + fd("/fb.bin") + 0x200, 0x50), "fd_blocks": (LV + fd("/fb.bin") + 0x400, 16),
        "dir_fd": (LV + fd("/sub") + 0x200, 0x50), "dbl_fd": (LV + fd("/dbl.bin") + 0x400, 8),
        "dirent": (LV + root_blk * MiB + 9 * 140, 12),
    }


def test_corrupt_images_fail_cleanly(filled, tmp_path):
    img0, _ = filled
    import random
    rnd = random.Random(1234)
    offs = offsets(img0)
    for name, (off, n) in offs.items():
        img = copy(img0, tmp_path / "c.img")
        corrupt(img, off, n, rnd)
        expect_error(img, codes=(8,) if name in ("lvm_magic", "fs_magic") else (4, 8))
    # random bytes anywhere in the metadata: -n may find nothing (unused bytes), never crash
    for i in range(12):
        name = rnd.choice(sorted(offs))
        off, n = offs[name]
        img = copy(img0, tmp_path / "r.img")
        for _ in range(4):
            corrupt(img, off + rnd.randrange(max(n, 64)), rnd.randint(1, 8), rnd)
        for mode in ("-n", "-y"):
            p = vmfsck(mode, *HBW, img)
            assert p.returncode in (0, 1, 4, 8), (name, mode, p.returncode, p.stderr)
            if p.returncode in (4, 8):
                assert (p.stdout + p.stderr).strip()


def test_truncated_images(filled, tmp_path):
    img0, _ = filled
    for size in (0, 512 * 1024, 0x1100000 + 3 * MiB, 0x1100000 + 200 * MiB):
        img = copy(img0, tmp_path / "trunc.img")
        os.truncate(img, size)
        p = vmfsck("-n", img)
        assert p.returncode == 8, p.stdout + p.stderr
        assert "vmfsck:" in p.stderr and p.stderr.count("\n") <= 2


def test_io_errors_are_operational_errors(filled):
    """A device that fails the Nth I/O (blockdev fault wrapper): exit 8 with the
    reason, never a verdict about the volume built on a partial read."""
    img, _ = filled
    seen8 = 0
    for n in range(2, 90, 4):
        p = vmfsck("-n", f"fault:{img}?fail_nth={n}")
        assert p.returncode in (0, 8), (n, p.stdout, p.stderr)
        if p.returncode == 8:
            seen8 += 1
            assert "Input/output error" in p.stdout + p.stderr, (n, p.stdout, p.stderr)
    assert seen8 >= 3


def test_stale_heartbeat_journal_replayed_before_freeing(filled, tmp_path):
    """A host died after committing a transaction to its journal but before
    writing it in place: -y replays it (the sector lands), then frees the slot."""
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    util(img, "fallocate", "/journal.bin", 0, MiB, "zero")
    joff = int(util(img, "map", "/journal.bin").stdout.split()[3], 16)
    target = int(util(img, "map", "/fb.bin").stdout.split()[3], 16) + 512
    before = cat(img, "/fb.bin")
    poke(img, "journal-txn", hex(joff), hex(256 * 1024), hex(target))
    poke(img, "hb-live", "9", hex(joff), hex(256 * 1024))
    p = vmfsck("-n", *HBW, img)
    assert p.returncode == 4 and f"journal at LV {hex(joff)}" in p.stdout, p.stdout
    assert cat(img, "/fb.bin") == before
    p = vmfsck("-y", *HBW, img)
    assert p.returncode == 1 and "replayed 1 transaction" in p.stdout and "freed heartbeat slot 9" in p.stdout, \
        p.stdout + p.stderr
    after = cat(img, "/fb.bin")
    assert after[512:1024] == b"\x5a" * 512 and after[:512] == before[:512] and after[1024:] == before[1024:]
    assert_clean(vmfsck("-n", *HBW, img))


def test_fault_doubly_used_block_inside_a_pointer_block(filled, tmp_path):
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    shared = poke(img, "get-ptr", "/fb.bin", "1").strip()
    poke(img, "set-pbptr", "/sub/deeper/pb.bin", "0", "300", shared)
    out = check_fault(img, base, rf"block {shared} is used by file 0x[0-9a-f]{{8}} and by file",
                      r"its own copy of block " + shared)
    assert "1 lost file block freed" in out  # the block the pointer used to name
    new = poke(img, "get-pbptr", "/sub/deeper/pb.bin", "0", "300").strip()
    assert new != shared and poke(img, "get-ptr", "/fb.bin", "1").strip() == shared


def test_fault_invalid_pointer_cleared(filled, tmp_path):
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    old = poke(img, "get-pbptr", "/sub/deeper/pb.bin", "0", "0").strip()
    poke(img, "set-pbptr", "/sub/deeper/pb.bin", "0", "0", "0xdeadbee7")
    out = check_fault(img, base, r"pointer 0 of pointer block 0x[0-9a-f]{8} = 0xdeadbee7 is not a valid file block address",
                      r"cleared bad pointer 0xdeadbee7")
    assert "1 lost file block freed" in out and "set block count" in out
    assert poke(img, "get-pbptr", "/sub/deeper/pb.bin", "0", "0").strip() == "0x00000000"
    assert cat(img, "/sub/deeper/pb.bin")[:MiB] == bytes(MiB)  # a hole now
    assert old != "0x00000000"


def test_descriptor_in_a_free_cluster_found_from_its_entry(tmp_path):
    """.fdc.sf clusters whose valid header says "all free" are not read; a
    directory entry naming a descriptor there still gets it checked and kept."""
    img = tmp_path / "v.img"
    run([bin_path("mkvmfs"), "-q", "-S", "600M", img], check=True)
    (tmp_path / "x").write_bytes(os.urandom(9000))
    run([prog_path("vmfs_util"), "-n", img, "--", "put", tmp_path / "x", "/x.bin"], check=True)
    addr = int(poke(img, "fd", "/x.bin").split()[1], 16)
    index = (addr >> 6 & 0xFFFF) * 32 + (addr >> 22)  # 32 descriptors per cluster
    base = fsck_vmfs(img)
    poke(img, "free-item", "fdc", str(index))  # its cluster is now entirely free
    assert fsck_vmfs(img)["Unallocated blocks"] == base["Unallocated blocks"] + 1
    out = check_fault(img, base, rf"file 0x{addr:08x} is in use but free in \.fdc\.sf",
                      r"rewrote \.fdc\.sf cluster \d+ bitmap: 0 lost file descriptors freed, 1 marked in use")
    assert cat(img, "/x.bin") == (tmp_path / "x").read_bytes()
    assert "repair made; the volume is now clean" in out


def test_fault_orphan_directory_reattached_with_its_tree(filled, tmp_path):
    img, base = filled
    img = copy(img, tmp_path / "t.img")
    small = cat(img, "/sub/small.bin")
    addr = poke(img, "fd", "/sub").split()[1]
    poke(img, "rm-entry", "/", "sub")
    out = check_fault(img, base, rf"orphan: directory {addr} ", rf"reattached orphan {addr} as /lost\+found/#")
    assert "set link count of 0x00000004 to" in out  # the root lost the ".." of /sub
    moved = f"/lost+found/#{int(addr, 16):08x}"
    assert cat(img, moved + "/small.bin") == small
    assert "nlink 2" in util(img, "stat", "/fb.bin").stdout  # its hard link came along
    names = util(img, "ls", moved + "/..").stdout
    assert f"#{int(addr, 16):08x}" in names  # ".." now leads to lost+found
