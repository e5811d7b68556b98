"""The cluster protocol with the hosts on one LUN of a real tgt iSCSI target
(libiscsi; stock tgt has no COMPARE AND WRITE, so every ATS goes through the
block layer's SCSI-2 RESERVE/RELEASE fallback).  io_timeout 0.5 s."""
import signal
import struct
import subprocess

from conftest import prog_path
from test_cluster_protocol import JTARGET_OFF, LOCK_OFF, events, finish

IO = ["--io-timeout-ms", "500"]


def start(url, cmd, *args):
    return subprocess.Popen([prog_path("cluster_host"), cmd, url, *map(str, args), *IO],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fmt(tgt):
    # format through the backing file before any initiator logs in
    subprocess.run([prog_path("cluster_host"), "format", str(tgt.backing)], check=True)


def test_iscsi_three_hosts_contend_exact_token_count(tgt_target):
    fmt(tgt_target)
    ws = [start(tgt_target.url, "worker", "--run-ms", 2500, "--hold-ms", 15) for _ in range(3)]
    total = 0
    slots = set()
    for w in ws:
        rc, out, err = finish(w, timeout=120)
        assert rc == 0, out + err
        assert "VIOLATION" not in out
        slots.add(events(out, "joined")[0]["slot"])
        (d,) = events(out, "done")
        assert int(d["acquisitions"]) > 0 and d["eio"] == "0"
        total += int(d["acquisitions"])
    assert len(slots) == 3
    with open(tgt_target.backing, "rb") as f:
        f.seek(LOCK_OFF)
        rec = f.read(512)
    token, mode = struct.unpack_from("<QI", rec, 0x1C)
    assert mode == 0 and token == 1 + total


def test_iscsi_kill9_holder_reclaimed_journal_replayed(tgt_target):
    fmt(tgt_target)
    url = tgt_target.url
    a = start(url, "hold", "--hold-ms", 60000, "--journal", 0, "--commit")
    line = ""
    while "holding" not in line:
        line = a.stdout.readline()
        assert line, a.stderr.read()
    b = start(url, "hold", "--hold-ms", 100, "--journal", 1)
    try:
        import time
        time.sleep(0.8)
        a.send_signal(signal.SIGKILL)
        a.wait()
        rb, out_b, err_b = finish(b, timeout=120)
    finally:
        if b.poll() is None:
            b.kill()
    assert rb == 0, out_b + err_b
    (r,) = events(out_b, "reclaim")
    assert r["slot"] == "0" and r["txns"] == "1" and r["r"] == "0"
    (acq,) = events(out_b, "acquired")
    assert int(acq["token"]) == 3 and acq["t"] >= r["t"]
    with open(tgt_target.backing, "rb") as f:
        f.seek(JTARGET_OFF)
        assert f.read(64).startswith(b"journaled by " + r["dead"].encode() + b" token 2")
