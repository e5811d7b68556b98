"""LUNs backed by disk files on a mounted VMFS datastore: vmfsd mounts the
volume as a cluster host, exports /vmfs/volumes/LABEL/FILE, holds the file's
on-disk lock while it does, and the bytes written over iSCSI are in the
datastore file afterwards (read back with vmfs-tools' debugvmfs).  Thin disks
take UNMAP and WRITE SAME with UNMAP: the blocks go back to the volume (and,
discarded, out of the sparse image), also while other sessions write."""
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from conftest import bin_path, prog_path

sys.path.insert(0, os.path.dirname(__file__))
from iscsi_cu_classify import classify  # noqa: E402
from test_iscsi_target import INI, Target, free_port, run  # noqa: E402

IQN = "iqn.2024-01.org.openvmfs.test:datastore"


def util(img, *cmd):
    subprocess.run([prog_path("vmfs_util"), str(img), "--", *map(str, cmd)], check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ds")
    img = tmp / "vol.img"
    subprocess.run([bin_path("mkvmfs"), "-L", "ds1", "-S", "1G", "-q", str(img)], check=True,
                   capture_output=True)
    util(img, "truncate", "/thin.raw", 64 << 20)              # sparse: holes
    util(img, "fallocate", "/thick.raw", 0, 64 << 20, "tbz")   # zeroedthick
    util(img, "truncate", "/thick.raw", 64 << 20)
    util(img, "truncate", "/cu.raw", 64 << 20)               # thin, for the conformance run
    util(img, "truncate", "/other.raw", 64 << 20)
    util(img, "truncate", "/fill.raw", 1 << 30)
    subprocess.run([bin_path("vmkfstools"), "--volume", str(img), "-c", "32M", "-d", "thin",
                    "/vm1.vmdk"], check=True, capture_output=True)
    t = Target(tmp, free_port())
    t.img = img
    t.start(["--volume", str(img), "--iscsi", t.portal,
             "--lun", f"{IQN},/vmfs/volumes/ds1/thin.raw",
             "--lun", f"{IQN},/vmfs/volumes/ds1/thick.raw",
             "--lun", f"{IQN},/vmfs/volumes/ds1/cu.raw",
             "--lun", f"{IQN},/vmfs/volumes/ds1/other.raw",
             "--lun", f"{IQN},/vmfs/volumes/ds1/fill.raw",
             "--lun", f"{IQN},/vmfs/volumes/ds1/vm1.vmdk"])
    yield t
    if t.proc.poll() is None:
        assert t.stop() == 0


def test_datastore_lun_conformance(ds, tmp_path):
    """The whole suite on a thin datastore disk: the provisioning tests
    (UNMAP, WRITE SAME with UNMAP, GET LBA STATUS) run and pass."""
    url = ds.url(IQN, 2)
    r = run(["iscsi-test-cu", "-d", "-t", "ALL", "-i", INI, url, url], timeout=600)
    (tmp_path / "cu-datastore.log").write_text(r.stdout + r.stderr)
    res = classify(r.stdout)
    fails = sorted(k for k, v in res.items() if v == "FAIL")
    npass = sum(1 for v in res.values() if v == "PASS")
    print(f"iscsi-test-cu thin datastore: {npass} pass, {len(fails)} fail")
    assert fails == [] and npass >= 203
    for name in ("Unmap.Simple", "Unmap.ZeroBlocks", "WriteSame16.Unmap", "WriteSame10.Unmap",
                 "GetLBAStatus.Simple", "GetLBAStatus.UnmapSingle"):
        assert res.get(name) == "PASS", (name, res.get(name))


def qio(url, *cmds):
    """qemu-io on an iscsi:// URL; a failed pattern check fails the command."""
    args = ["qemu-io", "-f", "raw"]
    for c in cmds:
        args += ["-c", c]
    r = run(args + [url], timeout=120)
    assert r.returncode == 0 and "failed" not in r.stdout + r.stderr, (cmds, r.stdout, r.stderr)
    return r.stdout


def queryfs(img, path):
    """vmkfstools -P (a read-only mount beside the running vmfsd)."""
    r = subprocess.run([bin_path("vmkfstools"), "--volume", str(img), "-P", path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def allocated(img, path):
    """(type, bytes of @path's allocated blocks) as vmkfstools -P reports them."""
    out = queryfs(img, path)
    m = re.search(re.escape(path) + r": type (\w+), provisioned \d+, allocated (\d+)", out)
    assert m, out
    return m.group(1), int(m.group(2))


def free_blocks(img):
    """(free file blocks, block size) of the volume."""
    m = re.search(r"file blocks \* (\d+)\), \d+ \((\d+) blocks\) avail", queryfs(img, "/"))
    assert m
    return int(m.group(2)), int(m.group(1))


def test_datastore_thin_unmap(ds):
    """UNMAP and WRITE SAME(UNMAP) on a thin disk free its blocks: the
    file's allocation drops by what was unmapped, the sparse image shrinks,
    the range reads zeros and GET LBA STATUS reports it deallocated."""
    thin, thick = ds.url(IQN, 0), ds.url(IQN, 1)
    assert "LBPME:1" in run(["iscsi-readcapacity16", "-i", INI, thin]).stdout
    assert "LBPME:0" in run(["iscsi-readcapacity16", "-i", INI, thick]).stdout
    # a VMDK descriptor serves its flat file, thin as the descriptor says
    rc = run(["iscsi-readcapacity16", "-i", INI, ds.url(IQN, 5)]).stdout
    assert "LBPME:1" in rc and "Total size:33554432" in rc, rc
    vpd = run(["iscsi-inq", "-i", INI, "-e", "1", "-c", "178", thin]).stdout
    assert "lbpu:1" in vpd and "lbpws:1" in vpd and "provisioning type:2" in vpd
    qio(thin, "write -P 0xab 0 24M")
    kind, before = allocated(ds.img, "/thin.raw")
    du_before = os.stat(ds.img).st_blocks * 512
    assert kind == "thin" and before >= 24 << 20
    # UNMAP of 8 MiB (qemu's discard), WRITE SAME(16) with UNMAP of 4 MiB
    qio(thin, "discard 4M 8M", "write -z -u 16M 4M")
    kind, after = allocated(ds.img, "/thin.raw")
    assert before - after == 12 << 20, (before, after)
    du_after = os.stat(ds.img).st_blocks * 512
    assert du_before - du_after >= 11 << 20, (du_before, du_after)   # discarded in the image
    qio(thin, "read -P 0 4M 8M", "read -P 0 16M 4M",
        "read -P 0xab 0 4M", "read -P 0xab 12M 4M", "read -P 0xab 20M 4M")
    # GET LBA STATUS (qemu-img map uses it on LBPME LUNs)
    m = json.loads(run(["qemu-img", "map", "-f", "raw", "--output=json", thin]).stdout)
    holes = [(e["start"], e["length"]) for e in m if not e["data"] and e["start"] < 24 << 20]
    assert (4 << 20, 8 << 20) in holes and (16 << 20, 4 << 20) in holes, m
    # the thick disk refuses UNMAP and keeps its blocks
    run(["qemu-io", "-f", "raw", "-c", "discard 0 8M", thick])
    assert allocated(ds.img, "/thick.raw")[1] == 64 << 20


def test_datastore_unmap_during_io(ds):
    """UNMAPs of a range while another session writes it, and another disk
    of the volume writing and checking its data meanwhile, on a volume
    filled up so that the blocks one frees are the ones the other takes;
    then one large UNMAP (many fs transactions) empties the filler."""
    a, b, fill = ds.url(IQN, 0), ds.url(IQN, 3), ds.url(IQN, 4)
    rounds = 8
    errors = []
    nfree, bsize = free_blocks(ds.img)
    keep = 40                        # the pool both disks allocate from
    assert nfree > keep
    step = 32 * bsize
    fill_len = (nfree - keep) * bsize
    qio(fill, *[f"write -P 0x77 {o} {min(step, fill_len - o)}" for o in range(0, fill_len, step)])
    assert free_blocks(ds.img)[0] <= keep

    def worker(url, cmds):
        try:
            qio(url, *cmds)
        except AssertionError as e:
            errors.append(str(e)[:2000])

    jobs = [(a, ["write -P 0x5a 32M 16M"] * rounds),
            (a, ["discard 32M 16M"] * rounds),
            (b, [c for _ in range(rounds) for c in
                 ("discard 0 16M", "write -P 0xc3 0 16M", "read -P 0xc3 0 16M")])]
    th = [threading.Thread(target=worker, args=j) for j in jobs]
    for t in th:
        t.start()
    for t in th:
        t.join()
    assert errors == []
    qio(b, "read -P 0xc3 0 16M")
    qio(a, "write -P 0x5a 32M 16M", "read -P 0x5a 32M 16M", "read -P 0xab 0 4M")
    qio(fill, f"discard 0 {fill_len}", f"read -P 0 0 {min(fill_len, 64 << 20)}")
    assert allocated(ds.img, "/fill.raw")[1] == 0
    assert free_blocks(ds.img)[0] == nfree - 32     # what a and b hold now


def test_datastore_unmap_waits_for_io(tmp_path):
    """The race itself, made certain: a write to disk A has looked up its
    extents and is held for a second (VMFSD_ISCSI_WRITE_DELAY_US) before its
    device I/O; an UNMAP of the same range comes in meanwhile, then disk B
    writes its data, and the volume has almost no free block left, so B gets
    the blocks A had.  The UNMAP must wait for the write: otherwise the
    write lands in B's blocks and B reads back A's bytes."""
    img = tmp_path / "race.img"
    subprocess.run([bin_path("mkvmfs"), "-L", "race", "-S", "300M", "-q", str(img)], check=True,
                   capture_output=True)
    util(img, "truncate", "/a.raw", 16 << 20)
    util(img, "truncate", "/b.raw", 16 << 20)
    util(img, "fallocate", "/a.raw", 0, 16 << 20, "zero")
    t = Target(tmp_path, free_port())
    t.start(["--volume", str(img), "--iscsi", t.portal])   # creates the journal area
    assert t.stop() == 0
    st = subprocess.run([prog_path("vmfs_util"), str(img), "--", "statfs"], capture_output=True,
                        text=True, check=True).stdout
    bsize = int(re.search(r"block_size (\d+)", st).group(1))
    nfree = int(re.search(r"free_blocks (\d+)", st).group(1))
    util(img, "fallocate", "/fill.raw", 0, (nfree - 2) * bsize, "tbz")   # 2 blocks stay free
    t.start(["--volume", str(img), "--iscsi", t.portal,
             "--lun", f"{IQN},/vmfs/volumes/race/a.raw,thin",   # allocated, thin by option
             "--lun", f"{IQN},/vmfs/volumes/race/b.raw"],
            env={"VMFSD_ISCSI_WRITE_DELAY_US": "1000000"})
    try:
        a, b = t.url(IQN, 0), t.url(IQN, 1)
        res = {}
        w = threading.Thread(target=lambda: res.update(
            r=run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 8M", a], timeout=120)))
        w.start()
        time.sleep(0.5)                      # the write is inside its delay now
        t0 = time.time()
        qio(a, "discard 0 16M")
        waited = time.time() - t0
        qio(b, "write -P 0xc3 0 16M")
        w.join()
        assert res["r"].returncode == 0, res["r"].stdout + res["r"].stderr
        qio(b, "read -P 0xc3 0 16M")         # none of A's bytes in B
        assert waited > 0.2, waited          # the UNMAP did wait for the write
    finally:
        assert t.stop() == 0
    r = subprocess.run([bin_path("vmfsck"), "-n", str(img)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_datastore_lun_ats_and_lock(ds, tmp_path):
    p = run([prog_path("bdev_rt"), ds.url(IQN, 1)])
    assert p.returncode == 0, p.stderr
    assert "ats=compare-and-write" in p.stdout
    # a second host mounting the same volume cannot export the same disk
    other = Target(tmp_path, free_port())
    r = subprocess.run([bin_path("vmfsd"), "--state-dir", str(tmp_path / "st2"), "--volume",
                        str(ds.img), "--iscsi", other.portal,
                        "--lun", f"{IQN},/vmfs/volumes/ds1/thick.raw"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "another host holds it" in r.stderr


def test_datastore_data_lands_in_file(ds, tmp_path):
    data = os.urandom(8 << 20)
    src = tmp_path / "src.raw"
    src.write_bytes(data)
    r = run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), ds.url(IQN, 0)])
    assert r.returncode == 0, r.stderr
    r = run(["iscsi-readcapacity16", "-i", INI, ds.url(IQN, 0)])
    assert "Total size:67108864" in r.stdout
    assert ds.stop() == 0
    # independent reader: vmfs-tools
    out = subprocess.run(["debugvmfs", str(ds.img), "cat", "/thin.raw"], capture_output=True,
                         timeout=60)
    assert out.stdout[:8 << 20] == data
    # the volume checks clean after all the UNMAPs
    r = subprocess.run([bin_path("vmfsck"), "-n", str(ds.img)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_datastore_lun_on_direct_extents(tmp_path):
    """vmfsd --direct on (its default on a shared block device): the LUN's
    reads and writes go through O_DIRECT extents (the volume bounces what
    is not aligned), data in and out byte-exact, in the datastore file after."""
    img = tmp_path / "vol.img"
    subprocess.run([bin_path("mkvmfs"), "-L", "dsd", "-S", "512M", "-q", str(img)], check=True,
                   capture_output=True)
    util(img, "truncate", "/d.raw", 16 << 20)
    t = Target(tmp_path, free_port())
    t.start(["--volume", str(img), "--direct", "on", "--iscsi", t.portal,
             "--lun", f"{IQN},/vmfs/volumes/dsd/d.raw"])
    data = os.urandom(8 << 20)
    (tmp_path / "in.raw").write_bytes(data)
    try:
        assert "O_DIRECT" in (tmp_path / "vmfsd.log").read_text()
        r = run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(tmp_path / "in.raw"),
                 t.url(IQN, 0)])
        assert r.returncode == 0, r.stderr
        r = run(["qemu-img", "convert", "-f", "raw", "-O", "raw", t.url(IQN, 0),
                 str(tmp_path / "out.raw")])
        assert r.returncode == 0, r.stderr
        out = (tmp_path / "out.raw").read_bytes()
        assert out[:8 << 20] == data and out[8 << 20:] == bytes(8 << 20)
    finally:
        assert t.stop() == 0
    got = subprocess.run([prog_path("vmfs_util"), "-r", str(img), "--", "read", "/d.raw", "0", str(8 << 20)],
                         capture_output=True, check=True).stdout
    assert got == data
