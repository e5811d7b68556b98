"""mkvmfs command line: options, refusals, exit codes, big sparse volumes."""
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import bin_path, prog_path

DEBUGVMFS = shutil.which("debugvmfs") or "/usr/sbin/debugvmfs"
SYSTEM = sorted([".", "..", ".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf", ".vh.sf", ".pb2.sf", ".sdd.sf"])


def mk(*args, timeout=60):
    return subprocess.run([bin_path("mkvmfs"), *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def show_fs(img):
    # "show" with no argument prints the FS descriptor; it exits 1 even then
    return subprocess.run([DEBUGVMFS, str(img), "show"], stdout=subprocess.PIPE, text=True,
                          timeout=60).stdout


def ls(img):
    out = subprocess.run([DEBUGVMFS, str(img), "ls", "/"], stdout=subprocess.PIPE, text=True,
                         timeout=60, check=True).stdout
    return sorted(l for l in out.splitlines() if l)


def test_help_and_usage_errors(tmp_path):
    p = mk("--help")
    assert p.returncode == 0 and "Usage: mkvmfs" in p.stdout and "--force" in p.stdout
    p = mk()
    assert p.returncode == 2 and "no device" in p.stderr
    p = mk(tmp_path / "missing.img")
    assert p.returncode == 2 and "-S SIZE" in p.stderr
    assert not (tmp_path / "missing.img").exists()
    p = mk("-S", "12X", tmp_path / "x.img")
    assert p.returncode == 2 and "bad size" in p.stderr
    p = mk("--uuid", "nope", "-S", "1G", tmp_path / "x.img")
    assert p.returncode == 2 and "bad UUID" in p.stderr
    p = mk("--bogus")
    assert p.returncode == 2


def test_too_small_fails_cleanly(tmp_path):
    img = tmp_path / "small.img"
    p = mk("-S", "100M", img)
    assert p.returncode == 1 and "too small" in p.stderr
    assert not img.exists()  # nothing half-made left behind


def test_label_uuid_summary(tmp_path):
    img = tmp_path / "v.img"
    p = mk("-L", "my datastore", "-S", "2G", "--uuid", "5e1f0a11-0badcafe-1234-001122334455", img)
    assert p.returncode == 0, p.stderr
    assert "Volume UUID: 5e1f0a11-0badcafe-1234-001122334455" in p.stdout
    assert "(1879048192 bytes)" in p.stdout, p.stdout  # 2 GiB - 17 MiB, in whole 256 MiB segments
    out = show_fs(img)
    assert "5e1f0a11-0badcafe-1234-001122334455" in out
    assert "my datastore" in out
    assert re.search(r"Block size: 1 MiB", out)
    assert ls(img) == SYSTEM


def test_refuses_existing_volume_without_force(tmp_path):
    img = tmp_path / "v.img"
    assert mk("-S", "1100M", img).returncode == 0
    piece = tmp_path / "p"
    piece.write_bytes(b"x" * 5000)
    subprocess.run([prog_path("vmfs_util"), str(img), "--", "put", str(piece), "/keep.bin"], check=True)
    p = mk(img)
    assert p.returncode == 1 and "already holds a VMFS volume" in p.stderr and "--force" in p.stderr
    assert "keep.bin" in ls(img)
    p = mk("--force", "-q", img)
    assert p.returncode == 0, p.stderr
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{12}\n", p.stdout)
    assert ls(img) == SYSTEM  # old FDs and directory entries are gone
    out = subprocess.run(["fsck.vmfs", str(img)], stdout=subprocess.PIPE, text=True, timeout=60).stdout
    assert "Inodes         : 8" in out and "Lost blocks        : 0" in out


def test_existing_non_vmfs_file_is_formatted(tmp_path):
    img = tmp_path / "plain.img"
    with open(img, "wb") as f:
        f.truncate(600 << 20)
        f.seek(0x1100000 + (4 << 20) + 0x18000 + 5 * 2048)
        f.write(os.urandom(8192))  # garbage where FDs will live
    p = mk(img)
    assert p.returncode == 0, p.stderr
    assert ls(img) == SYSTEM


def _bigfs_dir():
    for d in ("/dev/shm", tempfile.gettempdir()):
        try:
            with tempfile.NamedTemporaryFile(dir=d) as f:
                f.truncate(64 << 40)
            return d
        except OSError:
            continue
    return None


def test_64tib_sparse_fast():
    d = _bigfs_dir()
    if not d:
        pytest.skip("no filesystem here holds a 64 TiB sparse file (ext4 stops at 16 TiB)")
    tmp = tempfile.mkdtemp(dir=d)
    img = os.path.join(tmp, "big.img")
    try:
        t = time.monotonic()
        p = mk("-S", "64T", img)
        dt = time.monotonic() - t
        assert p.returncode == 0, p.stderr
        assert "64.0 TiB" in p.stdout
        assert dt < 10, f"mkvmfs 64 TiB took {dt:.2f}s"
        assert os.stat(img).st_blocks * 512 < 256 << 20  # only metadata written
        assert ls(img) == SYSTEM
        st = subprocess.run([prog_path("vmfs_util"), "-r", img, "--", "statfs"], stdout=subprocess.PIPE,
                            text=True, check=True, timeout=120).stdout
        assert "total_blocks 67108608" in st
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_spanned_four_extents(tmp_path):
    exts = [tmp_path / f"e{i}.img" for i in range(4)]
    p = mk("-S", "300M", *exts)
    assert p.returncode == 0, p.stderr
    assert "on 4 extents" in p.stdout and "1.0 GiB" in p.stdout
    out = subprocess.run([DEBUGVMFS, *map(str, reversed(exts)), "ls", "/"], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    assert sorted(l for l in out.splitlines() if l) == SYSTEM
    # our library refuses a wrong mix of extents
    other = tmp_path / "other.img"
    assert mk("-S", "300M", other).returncode == 0
    p = subprocess.run([prog_path("vmfs_util"), str(exts[0]), str(other), "--", "ls", "/"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 1 and "not part of the LVM" in p.stderr
