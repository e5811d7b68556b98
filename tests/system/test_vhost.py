"""vhost-user-blk back-end (hypervisor-io/) driven by our own front-end
(tests/progs/vhost_fe): data round trips checked byte for byte against the
backing file / the datastore file, malformed requests and out-of-range
addresses refused with the right status, queue stop/restart, a killed and
restarted back-end reconnected, vmfsd exports under the cluster lock (a
second host is refused), thin-disk allocation matching what was written."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import bin_path, fs_read, loop_device, prog_path, run, vmfsck_clean, wait_path

MiB = 1 << 20


def fe(sock, *args, check=True, timeout=90, queues=1):
    opts = [a for a in args if a == "-P"]          # packed rings
    args = [a for a in args if a != "-P"]
    return run([prog_path("vhost_fe"), "-q", queues, *opts, sock, *args], check=check, timeout=timeout)


def wait_line(p, want, timeout=30):
    """Read @p's stdout until a line equal to @want (the front-end is busy)."""
    import select
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        if r:
            line = p.stdout.readline()
            if line.strip() == want:
                return
            if not line:
                break
    raise AssertionError(f"no '{want}' from the front-end")


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


class Serve:
    """vhost_serve over a plain file."""

    def __init__(self, sock, img, *opts):
        self.sock = str(sock)
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.p = subprocess.Popen([prog_path("vhost_serve"), *opts, self.sock, str(img)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_path(self.sock, self.p)

    def stop(self, sig=signal.SIGTERM):
        stop(self.p, sig)
        return self.p.stderr.read()


@pytest.fixture
def raw(tmp_path):
    img = tmp_path / "raw.img"
    with open(img, "wb") as f:
        f.write(os.urandom(MiB))
        f.truncate(32 * MiB)
    return img


def test_info_roundtrip_and_backing_file_content(tmp_path, raw):
    s = Serve(tmp_path / "s.sock", raw, "-q", "2", "-d")
    try:
        info = dict(l.split(" ", 1) for l in fe(s.sock, "info").stdout.splitlines())
        assert int(info["capacity"]) == 32 * MiB // 512
        assert info["num_queues"] == "2" and info["blk_size"] == "512" and info["ro"] == "0"
        assert int(info["seg_max"]) >= 126 and info["get_id_status"] == "0"
        out = fe(s.sock, "verify", 11, 600, 24, 16 * MiB, tmp_path / "model.bin", queues=2).stdout
        assert "0 failures" in out
        # single requests of odd sizes through files
        data = os.urandom(3 * MiB + 4096)
        (tmp_path / "in.bin").write_bytes(data)
        fe(s.sock, "write", 20 * MiB + 512, tmp_path / "in.bin")
        fe(s.sock, "read", 20 * MiB + 512, len(data), tmp_path / "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == data
        assert "status 0" in fe(s.sock, "zeroes", 20 * MiB + 512, 64 * 1024).stdout
        assert "status 0" in fe(s.sock, "discard", 30 * MiB, MiB).stdout
        fe(s.sock, "flush")
        # discards and write zeroes mixed with writes and reads on both queues
        out = fe(s.sock, "churn", 3, 400, 16, 4 * MiB, tmp_path / "churn.bin", queues=2).stdout
        assert "0 failures" in out
    finally:
        s.stop()
    disk = raw.read_bytes()
    assert disk[:4 * MiB] == (tmp_path / "churn.bin").read_bytes()
    assert disk[4 * MiB:16 * MiB] == (tmp_path / "model.bin").read_bytes()[4 * MiB:]
    assert disk[20 * MiB + 512:20 * MiB + 512 + 65536] == bytes(65536)
    assert disk[20 * MiB + 512 + 65536:20 * MiB + 512 + len(data)] == data[65536:]
    assert disk[30 * MiB:31 * MiB] == bytes(MiB)
    assert len(disk) == 32 * MiB


def test_packed_virtqueues(tmp_path, raw):
    """VIRTIO_F_RING_PACKED: the same data checks over packed rings (2 queues,
    a 16-entry ring so positions wrap often), queue stop and restart."""
    s = Serve(tmp_path / "s.sock", raw, "-q", "2", "-d")
    try:
        info = dict(l.split(" ", 1) for l in fe(s.sock, "-P", "info").stdout.splitlines())
        assert int(info["features"], 16) & 1 << 34
        assert "0 failures" in fe(s.sock, "-P", "verify", 5, 300, 24, 8 * MiB, queues=2).stdout
        assert "0 failures" in fe(s.sock, "-P", "restart", 6).stdout
        out = run([prog_path("vhost_fe"), "-P", "-q", 2, "-n", 16, s.sock, "churn", 4, 1500, 10,
                   4 * MiB, tmp_path / "churn.bin"]).stdout
        assert "0 failures" in out
    finally:
        s.stop()
    assert raw.read_bytes()[:4 * MiB] == (tmp_path / "churn.bin").read_bytes()


def test_malformed_requests_get_the_right_status(tmp_path, raw):
    before = raw.read_bytes()
    s = Serve(tmp_path / "s.sock", raw)
    try:
        out = fe(s.sock, "malformed").stdout
    finally:
        err = s.stop()
    assert "malformed: 0 unexpected" in out
    assert "bad descriptor chain" in err
    # only the two deliberate writes landed: 4 KiB of 0x5a at 0, nothing else
    after = raw.read_bytes()
    assert after[:4096] == b"\x5a" * 4096
    assert after[4096:] == before[4096:]


def test_readonly_export_refuses_writes(tmp_path, raw):
    before = raw.read_bytes()
    s = Serve(tmp_path / "s.sock", raw, "-r")
    try:
        assert "ro 1" in fe(s.sock, "info").stdout
        (tmp_path / "in.bin").write_bytes(b"x" * 4096)
        p = fe(s.sock, "write", 0, tmp_path / "in.bin", check=False)
        assert p.returncode == 1 and "status 1" in p.stderr
        fe(s.sock, "read", 0, 8192, tmp_path / "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == before[:8192]
    finally:
        s.stop()
    assert raw.read_bytes() == before


def test_queue_stop_and_restart(tmp_path, raw):
    s = Serve(tmp_path / "s.sock", raw)
    try:
        assert "0 failures" in fe(s.sock, "restart", 5).stdout
    finally:
        s.stop()


def test_backend_killed_and_restarted_front_end_reconnects(tmp_path, raw):
    sock = tmp_path / "s.sock"
    s = Serve(sock, raw, "-q", "2")
    p = subprocess.Popen([prog_path("vhost_fe"), "-q", "2", str(sock), "reconnect", "9", "4"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_line(p, "running")
        time.sleep(0.5)
        s.stop(signal.SIGKILL)
        time.sleep(0.3)
        s = Serve(sock, raw, "-q", "2")
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        s.stop()
    assert p.returncode == 0, out + err
    m = re.search(r"(\d+) writes, (\d+) reconnects, 0 failures", out)
    assert m and int(m.group(2)) >= 1 and int(m.group(1)) > 0, out


def proc_cpu_ticks(pid):
    """utime + stime of process @pid (every thread), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    return int(st[11]) + int(st[12])


def test_idle_export_uses_no_cpu_after_busy_polling(tmp_path, raw):
    """Adaptive polling stops: with the longest window (-p 1000 us) and the
    front-end still connected, a back-end that just served a second of
    requests at QD8 (async path, completions polled) and at QD1 (inline
    path) uses ~no CPU once the requests stop.  A queue thread left spinning
    would burn up to 2 s of CPU here."""
    s = Serve(tmp_path / "s.sock", raw, "-d", "-p", "1000")
    hz = os.sysconf("SC_CLK_TCK")
    try:
        for qd in (8, 1):
            p = subprocess.Popen([prog_path("vhost_fe"), s.sock, "bench", "randread", "4096", str(qd), "1",
                                  "0", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wait_line(p, "idle")
            time.sleep(0.2)
            c0 = proc_cpu_ticks(s.p.pid)
            time.sleep(2)
            used = (proc_cpu_ticks(s.p.pid) - c0) / hz
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0 and "awake" in out, out + err
            assert used < 0.1, f"QD{qd}: back-end used {used:.2f} s of CPU in 2 s of idleness"
    finally:
        s.stop()


def test_poll_window_option(tmp_path, raw):
    """vhost_serve -p 0 (polling off) and the longest window serve the same
    requests; a window beyond the limit is refused."""
    for opt in ("0", "1000"):
        s = Serve(tmp_path / f"p{opt}.sock", raw, "-d", "-p", opt)
        try:
            assert "0 failures" in fe(s.sock, "verify", 5, 200, 8, 4 * MiB).stdout
        finally:
            s.stop()
    p = subprocess.run([prog_path("vhost_serve"), "-p", "1001", str(tmp_path / "x.sock"), str(raw)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert p.returncode == 1 and "Invalid argument" in p.stderr


def test_direct_alignment_follows_the_device_sector(tmp_path):
    """A block device with 4096-byte logical sectors (a 4Kn LUN, here a loop
    device) takes O_DIRECT only for 4096-aligned buffers: requests whose
    buffers are only 512-aligned must go the buffered way, not fail."""
    backing = tmp_path / "4k.img"
    with open(backing, "wb") as f:
        f.truncate(64 * MiB)
    with loop_device(backing, 4096) as dev:
        with open(f"/sys/block/{os.path.basename(dev)}/queue/logical_block_size") as f:
            assert f.read().strip() == "4096"
        s = Serve(tmp_path / "4k.sock", dev, "-d")
        try:
            # verify: random writes 4K..128K at 512-byte offsets, some buffers not 4 KiB aligned
            assert "0 failures" in fe(s.sock, "verify", 3, 300, 16, 8 * MiB).stdout
            assert "errors=0" in fe(s.sock, "bench", "randread", 4096, 8, 0.3).stdout
        finally:
            s.stop()


# ---- through vmfsd on a datastore ------------------------------------------------------

def mkvol(tmp_path):
    img = tmp_path / "v.img"
    img.write_bytes(b"")
    run([bin_path("mkvmfs"), "-q", "-S", "1200M", "-L", "vh", img])
    return str(img)


class Vmfsd:
    def __init__(self, tmp_path, img, name, *args):
        self.state = tmp_path / name
        self.log = open(tmp_path / f"{name}.log", "a")
        self.p = subprocess.Popen([bin_path("vmfsd"), "--state-dir", str(self.state), "--volume", img,
                                   "--io-timeout", "1", *args], stdout=self.log, stderr=subprocess.STDOUT)
        wait_path(self.state / "vmfsd.sock", self.p)

    def ctl(self, *args, check=True):
        return run([bin_path("vmfsctl"), "-d", self.state, *args], check=check)

    def async_requests(self, sock):
        """Requests of export @sock served on its async queue (libaio)."""
        for line in self.ctl("vdisk", "list").stdout.splitlines():
            if line.startswith(sock + "\t"):
                return int(re.search(r"\(async (\d+)\)", line).group(1))
        raise AssertionError(f"{sock} not listed")

    def stop(self):
        stop(self.p)
        self.log.close()


def check_async(v, sock, direct):
    """--direct on: the extents bypass the page cache and reads/writes of
    allocated blocks go through libaio into guest memory; off: all through
    the worker threads."""
    n = v.async_requests(sock)
    assert (n > 0) if direct == "on" else (n == 0), (direct, n)


def tmap(img, path):
    out = run([bin_path("vmkfstools"), "--volume", img, "-t0", path]).stdout
    s = re.search(r"allocated (\d+), written (\d+)", out)
    return int(s.group(1)), int(s.group(2))


DIRECT = pytest.mark.parametrize("direct", ["off", "on"])


@DIRECT
def test_vmfsd_exports_thin_disk_under_cluster_lock(tmp_path, direct):
    img = mkvol(tmp_path)
    run([bin_path("vmkfstools"), "--volume", img, "-c", "64m", "-d", "thin", "/d.vmdk"])
    assert tmap(img, "/d.vmdk") == (0, 0)
    sock = str(tmp_path / "vd.sock")
    a = Vmfsd(tmp_path, img, "a", "--direct", direct,
              "--vhost-user-blk", f"{sock},/vmfs/volumes/vh/d.vmdk,num-queues=2")
    b = None
    try:
        wait_path(sock, a.p)
        lst = a.ctl("vdisk", "list").stdout
        assert sock in lst and "67108864 bytes" in lst and "2 queue(s)" in lst
        info = dict(l.split(" ", 1) for l in fe(sock, "info").stdout.splitlines())
        assert int(info["capacity"]) == 64 * MiB // 512 and info["serial"].startswith("vmfs-")
        # random writes over the first 12 MiB (2 queues), read back, compare
        out = fe(sock, "verify", 21, 300, 16, 12 * MiB, tmp_path / "model.bin", queues=2).stdout
        assert "0 failures" in out
        # a second host: the disk is locked, the export is refused
        b = Vmfsd(tmp_path, img, "b")
        p = b.ctl("vdisk", "export", "/d.vmdk", str(tmp_path / "vd2.sock"), check=False)
        assert p.returncode == 1 and "locked by the host in heartbeat slot" in p.stderr
        assert not os.path.exists(tmp_path / "vd2.sock")
        # write zeroes on an allocated range, then read back zeros
        assert "status 0" in fe(sock, "zeroes", 4 * MiB, 256 * 1024).stdout
        fe(sock, "flush")
        check_async(a, sock, direct)
    finally:
        if b:
            b.stop()
        a.stop()
    # the back-end's messages name their export (its log context outlives the
    # request that created it)
    fe_lines = [l for l in (tmp_path / "a.log").read_text().splitlines() if "front-end" in l]
    assert fe_lines and all(f"vhost {sock}: front-end" in l for l in fe_lines), fe_lines
    model = bytearray((tmp_path / "model.bin").read_bytes())
    model[4 * MiB:4 * MiB + 256 * 1024] = bytes(256 * 1024)
    assert fs_read(img, "/d-flat.vmdk", 0, 12 * MiB) == bytes(model)
    assert fs_read(img, "/d-flat.vmdk", 12 * MiB, 4 * MiB) == bytes(4 * MiB)
    # thin: exactly the 1 MiB blocks the writes touched are allocated (all 12)
    touched = sum(1 for i in range(12) if any(model[i * MiB:(i + 1) * MiB]) or i == 4)
    assert tmap(img, "/d.vmdk") == (touched * MiB, touched * MiB)


def test_vmfsd_restart_remembers_export_and_front_end_reconnects(tmp_path):
    img = mkvol(tmp_path)
    run([bin_path("vmkfstools"), "--volume", img, "-c", "32m", "-d", "zeroedthick", "/z.vmdk"])
    sock = str(tmp_path / "vz.sock")
    # a bad poll-us in the flags: logged clearly, nothing exported, the host runs
    a = Vmfsd(tmp_path, img, "a", "--vhost-user-blk", f"{sock},/z.vmdk,poll-us=fast")
    try:
        assert "no vhost-user-blk exports" in a.ctl("vdisk", "list").stdout
        assert "poll-us must be 0..1000" in (tmp_path / "a.log").read_text()
        p = a.ctl("vdisk", "export", "/z.vmdk", sock, "num-queues=0", check=False)
        assert p.returncode == 1 and "num-queues must be 1..16" in p.stderr
        for bad in ("poll-us=", "poll-us=-1", "poll-us=1001", "poll-us=5us", "poll-us=+5"):
            p = a.ctl("vdisk", "export", "/z.vmdk", sock, f"num-queues=2,{bad}", check=False)
            assert p.returncode == 1 and "poll-us must be 0..1000" in p.stderr, (bad, p.stderr)
        assert not os.path.exists(sock)
        a.ctl("vdisk", "export", "/z.vmdk", sock, "num-queues=2,poll-us=64")
        wait_path(sock, a.p)
        lst = a.ctl("vdisk", "list").stdout
        assert "2 queue(s)" in lst and "poll-us 64" in lst, lst
        p = subprocess.Popen([prog_path("vhost_fe"), sock, "reconnect", "4", "6"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_line(p, "running")
        time.sleep(0.5)
        a.stop()                         # clean stop: lock released, socket gone
        a = Vmfsd(tmp_path, img, "a")    # no flags: the store has the export
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, out + err
        assert re.search(r"[1-9]\d* reconnects, 0 failures", out), out
        assert "poll-us 64" in a.ctl("vdisk", "list").stdout   # remembered with its options
        assert a.ctl("vdisk", "unexport", sock).stdout.strip() == "unexported"
        assert "no vhost-user-blk exports" in a.ctl("vdisk", "list").stdout
    finally:
        a.stop()


@DIRECT
def test_vmfsd_thin_disk_discard_frees_blocks(tmp_path, direct):
    """DISCARD and WRITE_ZEROES+UNMAP free a thin disk's blocks (whole 1 MiB
    blocks; partial ones are zeroed and kept), WRITE_ZEROES alone keeps them,
    and all of it races safely with I/O on the other queue."""
    img = mkvol(tmp_path)
    for d in ("t", "c"):
        run([bin_path("vmkfstools"), "--volume", img, "-c", "32m", "-d", "thin", f"/{d}.vmdk"])
    run([bin_path("vmkfstools"), "--volume", img, "-c", "8m", "-d", "eagerzeroedthick", "/e.vmdk"])
    socks = {d: str(tmp_path / f"{d}.sock") for d in ("t", "c", "e")}
    a = Vmfsd(tmp_path, img, "a", "--direct", direct,
              "--vhost-user-blk", f"{socks['t']},/t.vmdk,num-queues=2",
              "--vhost-user-blk", f"{socks['c']},/c.vmdk,num-queues=2",
              "--vhost-user-blk", f"{socks['e']},/e.vmdk")
    data = os.urandom(8 * MiB)
    (tmp_path / "in.bin").write_bytes(data)
    try:
        for sk in socks.values():
            wait_path(sk, a.p)
        info = dict(l.split(" ", 1) for l in fe(socks["t"], "info").stdout.splitlines())
        assert info["write_zeroes_may_unmap"] == "1"
        assert info["discard_sector_alignment"] == str(MiB // 512)   # the guest trims whole blocks
        einfo = dict(l.split(" ", 1) for l in fe(socks["e"], "info").stdout.splitlines())
        assert einfo["write_zeroes_may_unmap"] == "0"
        fe(socks["t"], "write", 0, tmp_path / "in.bin")
        fe(socks["e"], "write", 0, tmp_path / "in.bin")
        for op, off, ln in (("discard", 2 * MiB, 3 * MiB),          # frees blocks 2-4
                            ("discard", 6 * MiB + MiB // 2, MiB // 2),   # half a block: zeroed, kept
                            ("zeroes-unmap", 7 * MiB, MiB),           # frees block 7
                            ("zeroes", 0, MiB)):                      # zeroed, kept
            assert "status 0" in fe(socks["t"], op, off, ln).stdout
        assert "status 0" in fe(socks["e"], "discard", 2 * MiB, 3 * MiB).stdout
        fe(socks["t"], "read", 0, 8 * MiB, tmp_path / "out.bin")
        # a new thin disk: discards and write zeroes racing with writes and
        # reads on two queues; the front-end models which blocks stay allocated
        out = fe(socks["c"], "churn", 9, 600, 24, 24 * MiB, tmp_path / "churn.bin", MiB,
                 queues=2).stdout
        assert "0 failures" in out
        churn_blocks = int(re.search(r"allocated (\d+) blocks", out).group(1))
        # packed rings through vmfsd (worker threads) on the thick disk: it
        # keeps its blocks whatever is discarded
        out = fe(socks["e"], "-P", "churn", 10, 300, 16, 8 * MiB, tmp_path / "echurn.bin").stdout
        assert "0 failures" in out
        fe(socks["t"], "flush")
        for d in ("c", "e"):    # t: every request spans a hole or allocates
            check_async(a, socks[d], direct)
    finally:
        a.stop()
    want = bytearray(data)
    for off, ln in ((2 * MiB, 3 * MiB), (6 * MiB + MiB // 2, MiB // 2), (7 * MiB, MiB), (0, MiB)):
        want[off:off + ln] = bytes(ln)
    assert (tmp_path / "out.bin").read_bytes() == bytes(want)
    assert fs_read(img, "/t-flat.vmdk", 0, 8 * MiB) == bytes(want)
    # 8 blocks written, 2-4 and 7 freed
    assert tmap(img, "/t.vmdk")[0] == 4 * MiB
    # the thick disk keeps its blocks (its discarded range reads zeros: the image is a file)
    assert tmap(img, "/e.vmdk")[0] == 8 * MiB
    assert fs_read(img, "/e-flat.vmdk", 0, 8 * MiB) == (tmp_path / "echurn.bin").read_bytes()
    assert fs_read(img, "/c-flat.vmdk", 0, 24 * MiB) == (tmp_path / "churn.bin").read_bytes()
    assert 0 < churn_blocks < 24 and tmap(img, "/c.vmdk")[0] == churn_blocks * MiB
    vmfsck_clean(img)


def test_vmfsd_fully_written_thin_disk_stays_thin(tmp_path):
    """A thin disk with no hole left looks thick in its block map; its VMDK
    descriptor (ddb.thinProvisioned) still makes vmfsd treat it as thin, so a
    DISCARD after a restart frees blocks."""
    img = mkvol(tmp_path)
    run([bin_path("vmkfstools"), "--volume", img, "-c", "4m", "-d", "thin", "/f.vmdk"])
    sock = str(tmp_path / "f.sock")
    (tmp_path / "in.bin").write_bytes(os.urandom(4 * MiB))
    for name in ("a", "b"):
        v = Vmfsd(tmp_path, img, name, "--vhost-user-blk", f"{sock},/f.vmdk")
        try:
            wait_path(sock, v.p)
            info = dict(l.split(" ", 1) for l in fe(sock, "info").stdout.splitlines())
            assert info["write_zeroes_may_unmap"] == "1", name
            if name == "a":
                fe(sock, "write", 0, tmp_path / "in.bin")
                fe(sock, "flush")
            else:
                assert tmap(img, "/f.vmdk")[0] == 4 * MiB        # no hole when exported
                assert "status 0" in fe(sock, "discard", MiB, MiB).stdout
                fe(sock, "flush")
        finally:
            v.stop()
    assert tmap(img, "/f.vmdk")[0] == 3 * MiB
    assert fs_read(img, "/f-flat.vmdk", MiB, MiB) == bytes(MiB)
    vmfsck_clean(img)



def test_vmfsd_export_waits_for_a_held_disk(tmp_path):
    """An export whose disk another live host holds is not dropped: it waits
    (`vdisk list` says so, with the holder), is retried every second, and
    serves as soon as the holder lets the disk go; it can be unexported
    while it waits."""
    img = mkvol(tmp_path)
    for d in ("d", "e"):
        run([bin_path("vmkfstools"), "--volume", img, "-c", "8m", "-d", "thin", f"/{d}.vmdk"])
    sa, sb, sc = (str(tmp_path / f"{n}.sock") for n in ("a", "b", "c"))
    a = Vmfsd(tmp_path, img, "a", "--vhost-user-blk", f"{sa},/d.vmdk", "--vhost-user-blk", f"{sc},/e.vmdk")
    b = None
    try:
        wait_path(sa, a.p)
        b = Vmfsd(tmp_path, img, "b", "--vhost-user-blk", f"{sb},/d.vmdk", "--vhost-user-blk", f"{sc}2,/e.vmdk")
        lst = b.ctl("vdisk", "list").stdout
        line = [l for l in lst.splitlines() if l.startswith(sb + "\t")]
        assert line and "waiting" in line[0] and "locked by the host in heartbeat slot" in line[0], lst
        js = json.loads(b.ctl("--json", "vdisk", "list").stdout)
        assert {e["socket"] for e in js if "waiting" in e} == {sb, sc + "2"}, js
        assert not os.path.exists(sb)
        # one of them is unexported while it waits: it is never served, even once free
        assert b.ctl("vdisk", "unexport", "/e.vmdk").stdout.strip() == "unexported"
        assert a.ctl("vdisk", "unexport", sa).stdout.strip() == "unexported"   # A lets /d go
        assert a.ctl("vdisk", "unexport", sc).stdout.strip() == "unexported"   # and /e
        wait_path(sb, b.p, timeout=10)
        info = dict(l.split(" ", 1) for l in fe(sb, "info").stdout.splitlines())
        assert int(info["capacity"]) == 8 * MiB // 512
        time.sleep(1.5)                          # a retry round after /e became free
        lst = b.ctl("vdisk", "list").stdout
        assert "waiting" not in lst and sc not in lst and not os.path.exists(sc + "2"), lst
        assert "retrying every 1 s" in (tmp_path / "b.log").read_text()
    finally:
        if b:
            b.stop()
        a.stop()
