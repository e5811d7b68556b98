"""vmfsd --direct auto|on|off.  With `on` (set here in the config file) the
image file is opened with O_DIRECT (seen in /proc/PID/fdinfo, in `vmfsctl
volumes` and in the mount log line) and the data paths still return exactly
what was written: NFS writes and reads at unaligned offsets and lengths
(libnfs), a thin disk exported as vhost-user-blk driven by our front-end; both
checked afterwards on the image by another process, and vmfsck finds the
volume clean.  `auto` keeps the page cache for image files; a bad mode is
refused with exit status 2 and a message naming the allowed values."""
import json
import os
import random
import re

from conftest import (VmfsdService, bin_path, free_tcp_port, fs_read, loop_device, prog_path,
                      run, vmfsck_clean, wait_path)

MiB = 1 << 20


def mkvol(tmp_path):
    img = tmp_path / "v.img"
    img.write_bytes(b"")
    run([bin_path("mkvmfs"), "-q", "-S", "1200M", "-L", "dio", img])
    return img


def image_fd_flags(pid, img):
    """open(2) flags of every descriptor process @pid holds on @img."""
    flags = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != str(img):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags += [int(l.split()[1], 8) for l in f if l.startswith("flags:")]
        except OSError:
            pass
    assert flags, f"vmfsd holds no descriptor on {img}"
    return flags


def volumes(s):
    r = s.ctl("volumes")
    rj = s.ctl("--json", "volumes")
    assert r.returncode == 0 and rj.returncode == 0, r.stderr + rj.stderr
    return r.stdout, json.loads(rj.stdout)


def mount_line(tmp_path):
    lines = [l for l in (tmp_path / "vmfsd.log").read_text().splitlines() if "mounted (VMFS" in l]
    assert len(lines) == 1, lines
    return lines[0]


def start(tmp_path, img, *args):
    s = VmfsdService(tmp_path, free_tcp_port())
    s.start(["--volume", img, "--nfs", f"127.0.0.1:{s.port}", "--export", "/", *args], timeout=30)
    return s


def nfs_client(s, *args):
    return run([prog_path("nfs_client"), args[0], "127.0.0.1", s.port, "/", *args[1:]], timeout=60)


def test_direct_on_nfs_and_vhost_data_exact(tmp_path):
    img = mkvol(tmp_path)
    run([bin_path("vmkfstools"), "--volume", img, "-c", "16m", "-d", "thin", "/d.vmdk"])
    cfg = tmp_path / "vmfsd.conf"
    cfg.write_text("# O_DIRECT even on an image file\ndirect = on\n")
    sock = str(tmp_path / "vd.sock")
    s = start(tmp_path, img, "--config", cfg, "--vhost-user-blk", f"{sock},/d.vmdk,num-queues=2")
    rng = random.Random(5)
    span = 3 * MiB + 777
    model = bytearray(span)
    try:
        # (1) O_DIRECT: on the descriptors themselves, in the list, in the log
        assert all(f & os.O_DIRECT for f in image_fd_flags(s.proc.pid, img))
        text, js = volumes(s)
        assert text.splitlines()[0].split()[3] == "IO"
        assert text.splitlines()[1].split()[3] == "O_DIRECT"
        assert js[0]["direct"] is True and js[0]["io"] == "O_DIRECT" and js[0]["state"] == "mounted"
        assert mount_line(tmp_path).endswith(", O_DIRECT")

        # (2) NFS: unaligned, overlapping writes, one past the end of the
        # previous ones (the file grows), then reads of the whole and of pieces
        writes = [(0, 1), (1, 510), (511, 4097), (4095, 2), (65537, 131071), (MiB - 3, 9)]
        writes += [(rng.randrange(span - 1), 0) for _ in range(14)]
        writes = [(o, n or rng.randint(1, min(300000, span - o))) for o, n in writes]
        writes.append((span - 4099, 4099))
        args = []
        for i, (off, n) in enumerate(writes):
            data = rng.randbytes(n)
            model[off:off + n] = data
            (tmp_path / f"w{i}").write_bytes(data)
            args += [off, tmp_path / f"w{i}"]
        assert "mkdir 0" in nfs_client(s, "mkdir", "data").stdout
        out = nfs_client(s, "pwrite", "data/u.bin", *args).stdout
        assert out.count("ok pwrite") == len(writes) and "ALL OK" in out
        run(["nfs-cp", f"nfs://127.0.0.1/data/u.bin?nfsport={s.port}&mountport={s.port}",
             tmp_path / "back.bin"])
        assert (tmp_path / "back.bin").read_bytes() == bytes(model)
        reads = [(1, 1), (509, 4099), (4095, 65539), (MiB - 1, 3), (span - 513, 513)]
        args = []
        for i, (off, n) in enumerate(reads):
            args += [off, n, tmp_path / f"r{i}"]
        assert "ALL OK" in nfs_client(s, "pread", "data/u.bin", *args).stdout
        for i, (off, n) in enumerate(reads):
            assert (tmp_path / f"r{i}").read_bytes() == bytes(model[off:off + n]), (off, n)

        # (3) vhost-user-blk: random writes on 2 queues, each read back
        wait_path(sock, s.proc)
        out = run([prog_path("vhost_fe"), "-q", 2, sock, "verify", 9, 300, 16, 8 * MiB,
                   tmp_path / "model.bin"], timeout=90).stdout
        assert "0 failures" in out
    finally:
        assert s.stop() == 0
    # another process reads the image: what the clients wrote is on disk
    assert fs_read(img, "/data/u.bin", 0, span + 1) == bytes(model)
    assert fs_read(img, "/d-flat.vmdk", 0, 8 * MiB) == (tmp_path / "model.bin").read_bytes()
    vmfsck_clean(img)


def test_direct_auto_keeps_page_cache_for_image_files(tmp_path):
    img = mkvol(tmp_path)
    s = start(tmp_path, img, "--direct", "auto")
    try:
        assert not any(f & os.O_DIRECT for f in image_fd_flags(s.proc.pid, img))
        text, js = volumes(s)
        assert "page cache" in text.splitlines()[1] and "O_DIRECT" not in text
        assert js[0]["direct"] is False and js[0]["io"] == "page cache"
    finally:
        assert s.stop() == 0
    assert mount_line(tmp_path).endswith(", page cache")


def test_bad_direct_mode_is_refused(tmp_path):
    img = mkvol(tmp_path)
    base = [bin_path("vmfsd"), "--state-dir", tmp_path / "st", "--volume", img]
    p = run(base + ["--direct", "maybe"], check=False, timeout=10)
    assert p.returncode == 2
    assert "bad --direct 'maybe' (auto, on, off)" in p.stderr
    cfg = tmp_path / "bad.conf"
    cfg.write_text("direct = sometimes\n")
    p = run(base + ["--config", cfg], check=False, timeout=10)
    assert p.returncode == 2
    assert f"{cfg}:1: bad --direct 'sometimes' (auto, on, off)" in p.stderr
    assert not (tmp_path / "st").exists()


def opens_direct(argv, dev, tmp_path):
    """Run @argv under strace: the open(2) calls of @dev, and whether each
    asked for O_DIRECT."""
    log = tmp_path / "strace.log"
    run(["strace", "-f", "-e", "trace=openat", "-o", log, *argv])
    opens = [l for l in log.read_text().splitlines() if f'"{dev}"' in l and "= -1" not in l]
    assert opens, f"{argv[0]} never opened {dev}"
    return ["O_DIRECT" in l for l in opens]


def test_block_device_gets_o_direct_by_default(tmp_path):
    """A loop device stands for a shared LUN: with no --direct flag vmfsd,
    vmkfstools and vmfsck open it with O_DIRECT (another host's writes would
    not be in this host's page cache), and vhost-user-blk exports then move
    guest data by libaio straight to the device."""
    backing = tmp_path / "lun.img"
    with open(backing, "wb") as f:
        f.truncate(1200 * MiB)
    with loop_device(backing) as dev:
        run([bin_path("mkvmfs"), "-q", "-L", "lun", dev])
        assert all(opens_direct([bin_path("vmkfstools"), "--volume", dev, "-c", "16m", "-d", "thin",
                                 "/d.vmdk"], dev, tmp_path))
        sock = str(tmp_path / "d.sock")
        s = start(tmp_path, dev, "--vhost-user-blk", f"{sock},/d.vmdk,num-queues=2")
        try:
            assert all(f & os.O_DIRECT for f in image_fd_flags(s.proc.pid, dev))
            text, js = volumes(s)
            assert js[0]["direct"] is True and "O_DIRECT" in text
            wait_path(sock, s.proc)
            out = run([prog_path("vhost_fe"), "-q", 2, sock, "verify", 11, 300, 16, 8 * MiB,
                       tmp_path / "model.bin"], timeout=90).stdout
            assert "0 failures" in out
            lst = s.ctl("vdisk", "list").stdout
            assert int(re.search(r"\(async (\d+)\)", lst).group(1)) > 0, lst
        finally:
            assert s.stop() == 0
        assert mount_line(tmp_path).endswith(", O_DIRECT")
        assert fs_read(dev, "/d-flat.vmdk", 0, 8 * MiB) == (tmp_path / "model.bin").read_bytes()
        assert all(opens_direct([bin_path("vmfsck"), "-n", dev], dev, tmp_path))
