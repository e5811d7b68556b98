"""Standard tools on a vmfs-fuse mount: cp -a, tar, rsync, dd oflag=direct,
qemu-img (raw and VMDK), fio verify jobs (psync and libaio).  Content is
checked byte for byte; the volume checks clean afterwards."""
import hashlib
import json
import os
import subprocess

import pytest

from test_fuse_helpers import Mount, mkvol, vmfsck_clean

MIB = 1 << 20


def run(*cmd, timeout=120, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd}: {r.stdout[-1500:]} {r.stderr[-1500:]}"
    return r.stdout


def tree_digest(root):
    """path -> (mode, size, mtime, sha256 or link target) for every entry."""
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                what = "->" + os.readlink(p)
            elif os.path.isdir(p):
                what = "dir"
            else:
                what = hashlib.sha256(open(p, "rb").read()).hexdigest()
            out[rel] = (st.st_mode, st.st_size if not os.path.isdir(p) else 0,
                        int(st.st_mtime) if not os.path.islink(p) else 0, what)
    return out


def make_tree(root):
    os.makedirs(os.path.join(root, "a", "b", "c"))
    for i in range(40):
        with open(os.path.join(root, "a", f"small{i}"), "wb") as f:
            f.write(os.urandom(i * 97))
    with open(os.path.join(root, "a", "b", "big"), "wb") as f:
        f.write(os.urandom(3 * MIB + 17))
    with open(os.path.join(root, "a", "b", "c", "sparse"), "wb") as f:
        f.seek(5 * MIB)
        f.write(b"end")
    os.symlink("b/big", os.path.join(root, "a", "link"))
    os.chmod(os.path.join(root, "a", "small3"), 0o600)
    os.utime(os.path.join(root, "a", "small5"), (1500000000, 1500000000))


@pytest.fixture(scope="module")
def vol(tmp_path_factory):
    d = tmp_path_factory.mktemp("fusetools")
    img = mkvol(d / "vol.img", "4G")
    src = d / "src"
    make_tree(str(src))
    m = Mount(img, d / "mnt")
    try:
        yield m, d, str(src)
    finally:
        rc = m.stop()
        assert rc == 0, m.logtext()
    vmfsck_clean(img)


def test_cp_a_round_trip(vol):
    m, d, src = vol
    run("cp", "-a", src, m.path("cp"))
    assert tree_digest(m.path("cp")) == tree_digest(src)
    run("cp", "-a", m.path("cp"), str(d / "back"))
    assert tree_digest(str(d / "back")) == tree_digest(src)


def test_tar_round_trip(vol):
    m, d, src = vol
    run("tar", "-C", src, "-cf", m.path("t.tar"), ".")
    os.mkdir(m.path("untar"))
    run("tar", "-C", m.path("untar"), "-xpf", m.path("t.tar"))
    assert tree_digest(m.path("untar")) == tree_digest(src)
    run("tar", "-C", m.path("untar"), "-cf", str(d / "again.tar"), ".")
    os.mkdir(d / "untar2")
    run("tar", "-C", str(d / "untar2"), "-xpf", str(d / "again.tar"))
    assert tree_digest(str(d / "untar2")) == tree_digest(src)


def test_rsync(vol):
    m, d, src = vol
    run("rsync", "-a", src + "/", m.path("rs") + "/")
    assert tree_digest(m.path("rs")) == tree_digest(src)
    # an incremental pass after a change moves only the change (rename-into-place)
    with open(os.path.join(src, "a", "small7"), "ab") as f:
        f.write(b"more")
    out = run("rsync", "-a", "--itemize-changes", src + "/", m.path("rs") + "/")
    assert "small7" in out and "small8" not in out
    assert tree_digest(m.path("rs")) == tree_digest(src)
    run("rsync", "-a", "--delete", m.path("rs") + "/", str(d / "rsback") + "/")
    assert tree_digest(str(d / "rsback")) == tree_digest(src)


def test_dd_oflag_direct(vol):
    m, d, src = vol
    data = d / "rand.bin"
    data.write_bytes(os.urandom(8 * MIB))
    run("dd", f"if={data}", f"of={m.path('dd.bin')}", "bs=1M", "oflag=direct", "status=none")
    run("dd", f"if={data}", f"of={m.path('dd.bin')}", "bs=4k", "oflag=direct", "conv=notrunc",
        "seek=100", "count=50", "skip=100", "status=none")
    run("dd", f"if={m.path('dd.bin')}", f"of={d / 'dd.back'}", "bs=64k", "iflag=direct",
        "status=none")
    assert (d / "dd.back").read_bytes() == data.read_bytes()


def test_qemu_img_raw_and_vmdk(vol):
    m, d, src = vol
    raw = m.path("disk.raw")
    run("qemu-img", "create", "-f", "raw", raw, "64M")
    with open(raw, "r+b") as f:
        f.seek(10 * MIB)
        f.write(b"bootsector" * 100)
    info = json.loads(run("qemu-img", "info", "--output=json", raw))
    assert info["format"] == "raw" and info["virtual-size"] == 64 * MIB
    vmdk = m.path("disk.vmdk")
    run("qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, vmdk)
    info = json.loads(run("qemu-img", "info", "--output=json", vmdk))
    assert info["format"] == "vmdk" and info["virtual-size"] == 64 * MIB
    run("qemu-img", "create", "-f", "vmdk", "-o", "subformat=monolithicFlat",
        m.path("flat.vmdk"), "32M")
    info = json.loads(run("qemu-img", "info", "--output=json", m.path("flat.vmdk")))
    assert info["format"] == "vmdk" and info["virtual-size"] == 32 * MIB
    assert os.path.getsize(m.path("flat-flat.vmdk")) == 32 * MIB
    back = str(d / "back.raw")
    run("qemu-img", "convert", "-f", "vmdk", "-O", "raw", vmdk, back)
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", raw, back)
    run("qemu-img", "convert", "-f", "vmdk", "-O", "raw", "-t", "none", vmdk, m.path("b2.raw"))
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", raw, m.path("b2.raw"))


@pytest.mark.parametrize("engine,extra", [
    ("psync", ["--direct=0"]),
    ("psync", ["--direct=1"]),
    ("libaio", ["--direct=1", "--iodepth=16"]),
])
def test_fio_verify(vol, engine, extra):
    m, d, src = vol
    name = f"fio-{engine}-{extra[0][-1]}"
    # no --runtime: a time limit hit during the write phase would skip the verify
    out = run("fio", "--name=v", "--verify_state_save=0", f"--filename={m.path(name)}", "--size=16M",
              f"--ioengine={engine}", *extra, "--rw=randwrite", "--bsrange=4k-64k",
              "--verify=crc32c", "--verify_fatal=1", "--do_verify=1",
              "--output-format=json", timeout=90)
    j = json.loads(out[out.index("{"):])
    job = j["jobs"][0]
    assert job["error"] == 0
    assert job["write"]["io_bytes"] > 0 and job["read"]["io_bytes"] > 0
    # a second pass reads back what the first wrote (verify_only)
    out = run("fio", "--name=v", "--verify_state_save=0", f"--filename={m.path(name)}", "--size=16M",
              f"--ioengine={engine}", *extra, "--rw=randwrite", "--bsrange=4k-64k",
              "--verify=crc32c", "--verify_fatal=1", "--verify_only",
              "--output-format=json", timeout=90)
    assert json.loads(out[out.index("{"):])["jobs"][0]["error"] == 0


def test_extents_opened_o_direct(tmp_path):
    """-o direct (the default for block devices): every buffer the daemon hands
    the device must be aligned; unaligned and sub-sector writes must still work."""
    img = mkvol(tmp_path / "vol.img", "1G")
    with Mount(img, tmp_path / "m", "direct") as m:
        assert "O_DIRECT" in m.logtext()
        p = m.path("odd")
        with open(p, "wb") as f:
            f.write(b"hello")
        for i in range(50):
            with open(p, "ab") as f:
                f.write(bytes([65 + i % 26]) * (i * 37 + 1))
        want = b"hello" + b"".join(bytes([65 + i % 26]) * (i * 37 + 1) for i in range(50))
        assert open(p, "rb").read() == want
        for extra in (["--direct=0", "--bsrange=512-64k"],
                      ["--direct=1", "--ioengine=libaio", "--iodepth=8", "--bs=4k"]):
            out = run("fio", "--name=v", "--verify_state_save=0", f"--filename={m.path('f' + extra[0][-1])}", "--size=8M",
                      "--rw=randwrite", *extra, "--verify=crc32c", "--verify_fatal=1",
                      "--output-format=json", timeout=90)
            assert json.loads(out[out.index("{"):])["jobs"][0]["error"] == 0
    vmfsck_clean(img)


def test_fio_concurrent_jobs_verify(vol):
    """Four writers on disjoint ranges of one file (the daemon's threads race
    on in-place writes, first writes into holes and preallocation) and a
    mixed QD16 read/write job: every block verifies."""
    m, d, src = vol
    out = run("fio", "--name=v", "--verify_state_save=0", f"--filename={m.path('conc')}", "--size=6M", "--numjobs=4",
              "--offset_increment=6M", "--rw=randwrite", "--bsrange=4k-128k", "--ioengine=psync",
              "--verify=crc32c", "--verify_fatal=1", "--group_reporting",
              "--output-format=json", timeout=120)
    assert json.loads(out[out.index("{"):])["jobs"][0]["error"] == 0
    out = run("fio", "--name=v", "--verify_state_save=0", f"--filename={m.path('mixed')}", "--size=24M", "--rw=randrw",
              "--bsrange=4k-256k", "--ioengine=libaio", "--iodepth=16", "--direct=1",
              "--verify=crc32c", "--verify_fatal=1", "--output-format=json", timeout=120)
    assert json.loads(out[out.index("{"):])["jobs"][0]["error"] == 0
