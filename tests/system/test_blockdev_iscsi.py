"""The block device layer against a real iSCSI target (tgt, started by the
test on 127.0.0.1): round trips, the SCSI-2 reservation ATS fallback under
contention from several processes, clear open errors."""
import struct
import subprocess

from conftest import prog_path
from test_blockdev_ats import run_counters


def run_rt(url, *extra):
    p = subprocess.run([prog_path("bdev_rt"), url, *extra], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    kv = dict(l.split("=", 1) for l in p.stdout.splitlines() if "=" in l)
    return p, kv


def counter_in(path, off=4096):
    with open(path, "rb") as f:
        f.seek(off)
        return struct.unpack("<Q", f.read(8))[0]


def test_iscsi_roundtrip(tgt_target):
    p, kv = run_rt(tgt_target.url)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "OK"
    assert kv["kind"] == "iscsi"
    assert int(kv["size"]) == 64 << 20
    assert kv["lbs"] == "512" and kv["pbs"] == "4096"   # tgt reports LBPPBE 3
    # stock tgt 1.0.85 has no COMPARE AND WRITE: the probe must pick the fallback
    assert kv["ats"] == "scsi-reserve"
    assert kv["discard"] == "1" and kv["discard_rt"] == "ok"
    assert kv["discard_nonzero_bytes"] == "0"   # LBPRZ: unmapped blocks read zeros
    assert kv["sync"] == "ok" and kv["async"] == "ok" and kv["ats_rt"] == "ok"


def test_iscsi_counter_two_processes(tgt_target):
    outs = run_counters(tgt_target.url, 2, 600)
    assert counter_in(tgt_target.backing) == 1200
    assert all("mode scsi-reserve" in o for o, _ in outs)


def test_iscsi_counter_four_processes_forced_fallback(tgt_target):
    procs = [subprocess.Popen([prog_path("bdev_counter"), tgt_target.url, "4096", "300", "fallback"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert counter_in(tgt_target.backing) == 1200
    assert all("mode scsi-reserve" in o for o, _ in outs)
    # the processes really contended for the sector
    assert sum(int(o.split()[3]) for o, _ in outs) > 0


def test_iscsi_fault_wrapper_over_lun(tgt_target):
    p, kv = run_rt("fault:" + tgt_target.url)
    assert p.returncode == 0, p.stderr
    assert kv["kind"] == "fault" and kv["ats"] == "scsi-reserve"


def test_iscsi_open_errors(tgt_target):
    bad = [
        ("iscsi://127.0.0.1", "22"),                                       # no target/lun
        (f"iscsi://127.0.0.1:{tgt_target.port}/iqn.2024-01.no:such/1", "2"),  # ENOENT
        (f"iscsi://127.0.0.1:{tgt_target.port}/{tgt_target.IQN}/7", "19"),  # ENODEV
    ]
    from conftest import free_tcp_port
    bad.append((f"iscsi://127.0.0.1:{free_tcp_port()}/{tgt_target.IQN}/1", "111"))  # ECONNREFUSED
    for url, err in bad:
        p, kv = run_rt(url)
        assert p.returncode == 1, url
        assert kv.get("open_error") == err, (url, p.stdout, p.stderr)


def test_iscsi_io_during_reservations(tgt_target):
    """While other initiators hold SCSI-2 reservations for their ATS, our sync
    and async reads/writes get RESERVATION CONFLICT and must retry it, not
    fail; the counter beside them stays exact."""
    counters = [subprocess.Popen([prog_path("bdev_counter"), tgt_target.url, "8192", "400"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    try:
        for _ in range(3):
            p, kv = run_rt(tgt_target.url)
            assert p.returncode == 0, p.stderr
            assert kv["sync"] == "ok" and kv["async"] == "ok" and kv["ats_rt"] == "ok"
    finally:
        outs = [c.communicate(timeout=120) for c in counters]
    for c, (_, err) in zip(counters, outs):
        assert c.returncode == 0, err
    assert counter_in(tgt_target.backing, 8192) == 800


def test_iscsi_threads_share_one_session(tgt_target):
    """Four threads doing sync I/O and ATS on one handle (one libiscsi
    context) while the main thread drives an async queue on it."""
    p = subprocess.run([prog_path("bdev_threads"), tgt_target.url, "4", "150"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "counter=600" in p.stdout
    assert int(p.stdout.split("async_ios=")[1]) > 0
    assert counter_in(tgt_target.backing, 16 * 512) == 600


def test_iscsi_killed_reservation_holder_does_not_wedge_lun(tgt_target):
    """A host that dies inside RESERVE..RELEASE loses its session and with it
    the reservation: the next host's ATS goes through (no 30 s -EBUSY)."""
    import signal
    import time
    for _ in range(3):
        victim = subprocess.Popen([prog_path("bdev_counter"), tgt_target.url, "4096", "1000000"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # deep inside its loop: almost always holding the reservation
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        before = counter_in(tgt_target.backing)
        t0 = time.time()
        p = subprocess.run([prog_path("bdev_counter"), tgt_target.url, "4096", "10"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert time.time() - t0 < 20
        assert counter_in(tgt_target.backing) == before + 10
