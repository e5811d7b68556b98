"""Corrupt and truncated images: our tools fail with a message and exit code 1,
never crash (signal) or hang (timeout)."""
import os
import random
import subprocess

import pytest

from conftest import bin_path, prog_path

MiB = 1 << 20
LV = 0x1100000  # device offset of LV offset 0


def util(img, *cmd, timeout=30):
    return subprocess.run([prog_path("vmfs_util"), "-r", str(img), "--", *map(str, cmd)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def field(img, path, key):
    out = util(img, "stat", path).stdout.decode()
    return dict(l.split(" ", 1) for l in out.splitlines())[key]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corrupt")
    img = tmp / "vol.img"
    subprocess.run([bin_path("mkvmfs"), "-q", "-S", "300M", str(img)], check=True, stdout=subprocess.DEVNULL)
    w = lambda *c: subprocess.run([prog_path("vmfs_util"), str(img), "--", *map(str, c)], check=True)
    p = tmp / "p"
    p.write_bytes(os.urandom(3 * MiB))
    w("mkdir", "/dir")
    w("put", p, "/dir/fb.bin")
    p.write_bytes(os.urandom(5000))
    w("put", p, "/dir/sb.bin")
    w("put", p, "/big.bin", 300 * MiB)
    w("symlink", "/x/y", "/dir/ln")
    # regions (device offsets) worth corrupting
    regions = {
        "lvm": 0x100000,
        "fsdesc": LV + 0x200000,
        "fdc": LV + 4 * MiB,
        "fds": LV + 4 * MiB + 0x18000,
        "user_fds": LV + 4 * MiB + 0x18000 + 32 * 2048,
    }
    root_blk = 4 + 3  # .fdc.sf is 3 blocks at 1 MiB from block 4, the root dir follows
    regions["rootdir"] = LV + root_blk * MiB
    regions["fbb"] = LV + (root_blk + 1) * MiB
    regions["pbc"] = LV + (root_blk + 2) * MiB
    regions["sbc"] = LV + (root_blk + 5) * MiB
    return img, regions


def check_clean(img):
    for cmd in (("ls", "/"), ("ls", "/dir"), ("cat", "/dir/fb.bin"), ("cat", "/dir/sb.bin"),
                ("read", "/big.bin", 300 * MiB, 4096), ("stat", "/dir/ln"), ("statfs",)):
        try:
            p = util(img, *cmd)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{cmd} hung")
        assert p.returncode in (0, 1), f"{cmd}: rc {p.returncode} stderr {p.stderr[-500:]!r}"
        if p.returncode == 1:
            assert p.stderr.strip(), f"{cmd} failed silently"


def test_random_bytes_in_metadata(base):
    img, regions = base
    rng = random.Random(1234)
    with open(img, "r+b") as f:
        for name, off in regions.items():
            for _ in range(12):
                pos = off + rng.randrange(0, 0x10000 if name not in ("lvm", "fsdesc") else 1024)
                n = rng.randrange(1, 64)
                f.seek(pos)
                orig = f.read(n)
                f.seek(pos)
                f.write(bytes(rng.randrange(256) for _ in range(n)))
                f.flush()
                check_clean(img)
                f.seek(pos)
                f.write(orig)
                f.flush()
    assert util(img, "ls", "/dir").returncode == 0  # restored


def test_targeted_corruptions_give_clear_errors(base):
    img, regions = base
    cases = [
        (0x100000, b"\0\0\0\0", "no VMFS LVM header"),
        (0x100004, b"\x07\0\0\0", "unsupported LVM version"),
        (LV + 0x200000, b"\0\0\0\0", "no VMFS filesystem"),
        (LV + 0x200000 + 0xA1, b"\x00\x00\x00\x00\x01\x00\x00\x00", "unsupported file block size"),
        (LV + 4 * MiB, b"\0\0\0\0", "bad resource header"),
        (LV + 4 * MiB + 0x18000 + 0x200, b"\x44\0\0\0", "differs from its address"),
    ]
    with open(img, "r+b") as f:
        for off, data, msg in cases:
            f.seek(off)
            orig = f.read(len(data))
            f.seek(off)
            f.write(data)
            f.flush()
            p = util(img, "ls", "/")
            assert p.returncode == 1 and msg in p.stderr.decode(), (msg, p.stderr)
            f.seek(off)
            f.write(orig)
            f.flush()
    assert util(img, "ls", "/").returncode == 0


def test_truncated_images(base, tmp_path):
    img, _ = base
    for size in (0, 4096, 0x100000 + 512, 0x1100000, 0x1100000 + 5 * MiB, 0x1100000 + 20 * MiB,
                 0x1100000 + 200 * MiB):
        t = tmp_path / "t.img"
        with open(img, "rb") as src, open(t, "wb") as dst:
            left = size
            while left:
                chunk = src.read(min(left, 4 * MiB))
                if not chunk:
                    break
                if chunk.count(0) == len(chunk):
                    dst.seek(len(chunk), 1)
                else:
                    dst.write(chunk)
                left -= len(chunk)
            dst.truncate(size)
        p = util(t, "ls", "/")
        assert p.returncode == 1, size
        assert p.stderr.strip()
