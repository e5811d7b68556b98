"""Cluster protocol with real processes: several cluster_host "hosts" on one
sparse image file (heartbeat region at 0x300000), io_timeout 0.25 s
(hb_interval 0.375 s, hb_timeout 2 s, fence at 1.75 s)."""
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import prog_path

HB_OFF = 0x300000
LOCK_OFF = 0x1000000
JTARGET_OFF = 0x1000400
DATA_OFF = 0x1000200
HB_TIMEOUT = 2.0


def host(*args):
    return [prog_path("cluster_host"), *map(str, args)]


def start(img, cmd, *args):
    return subprocess.Popen(host(cmd, img, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def events(out, name):
    """Lines 't=.. name k=v ..' as dicts (t in seconds)."""
    res = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == name:
            d = dict(p.split("=", 1) for p in parts if "=" in p)
            d["t"] = int(d["t"]) / 1e6
            res.append(d)
    return res


def fmt(tmp_path):
    """A formatted image; on tmpfs when there is one, so that a host's
    heartbeat does not queue behind other tests' fsyncs on a busy disk (with
    io_timeout 0.25 s a 1.75 s stall fences a host, as it should)."""
    d = tmp_path
    if os.access("/dev/shm", os.W_OK):
        d = pathlib.Path(tempfile.mkdtemp(prefix="vmfs-cluster-", dir="/dev/shm"))
        _shm_dirs.append(d)
    img = str(d / "lv.img")
    subprocess.run(host("format", img), check=True)
    return img


_shm_dirs = []


@pytest.fixture(autouse=True)
def _cleanup_shm():
    yield
    while _shm_dirs:
        shutil.rmtree(_shm_dirs.pop(), ignore_errors=True)


def slot(img, i):
    with open(img, "rb") as f:
        f.seek(HB_OFF + 512 * i)
        b = f.read(512)
    magic, pos, seq, stamp = struct.unpack_from("<IQQQ", b, 0)
    return magic, pos, seq, stamp, b[0x1C:0x2C]


def test_four_hosts_join_at_once_get_distinct_slots(tmp_path):
    img = fmt(tmp_path)
    ps = [start(img, "join", "--hold-ms", 800) for _ in range(4)]
    outs = [finish(p) for p in ps]
    joined = []
    for rc, out, err in outs:
        assert rc == 0, err
        (j,) = events(out, "joined")
        joined.append(j)
    assert sorted(int(j["slot"]) for j in joined) == [0, 1, 2, 3]
    assert len({j["uuid"] for j in joined}) == 4
    assert all(int(j["join_us"]) < 500000 for j in joined)   # well under a second
    for i in range(4):   # clean leave: free, generation 2, uuid cleared
        magic, pos, seq, _, uuid = slot(img, i)
        assert (magic, pos, seq, uuid) == (0xABCDEF01, HB_OFF + 512 * i, 2, bytes(16))
    assert slot(img, 4)[0:3] == (0xABCDEF01, HB_OFF + 512 * 4, 0)


def test_contended_lock_busy_names_owner(tmp_path):
    img = fmt(tmp_path)
    a = start(img, "hold", "--hold-ms", 1500)
    time.sleep(0.4)
    tries = [finish(start(img, "try")) for _ in range(3)]
    rc, out_a, err = finish(a)
    assert rc == 0, err
    (ja,) = events(out_a, "joined")
    (held,) = events(out_a, "holding")
    for rc, out, err in tries:
        assert rc == 0, err
        (t,) = events(out, "try")
        assert t["r"] == "-16"                       # EBUSY, never both
        assert t["owner"] == ja["uuid"]
        assert t["owner_slot"] == ja["slot"]
    (t,) = events(finish(start(img, "try"))[1], "try")
    assert t["r"] == "0"                             # released: free again
    assert int(held["token"]) == 2


def test_kill9_holder_is_reclaimed_journal_replayed(tmp_path):
    img = fmt(tmp_path)
    a = start(img, "hold", "--hold-ms", 60000, "--journal", 0, "--commit")
    # wait until A holds the lock and committed its journal transaction
    line = ""
    while "holding" not in line:
        line = a.stdout.readline()
        assert line, a.stderr.read()
    b = start(img, "hold", "--hold-ms", 200, "--journal", 1)
    c = start(img, "hold", "--hold-ms", 200, "--journal", 2)
    time.sleep(0.5)
    killed = time.monotonic()
    a.send_signal(signal.SIGKILL)
    a.wait()
    rb, out_b, err_b = finish(b)
    rc_, out_c, err_c = finish(c)
    assert rb == 0 and rc_ == 0, err_b + err_c
    reclaims = events(out_b, "reclaim") + events(out_c, "reclaim")
    assert len(reclaims) == 1                        # one reclaimer wins
    r = reclaims[0]
    assert r["slot"] == "0" and r["txns"] == "1" and r["sectors"] == "1" and r["r"] == "0"
    acq = sorted(events(out_b, "acquired") + events(out_c, "acquired"), key=lambda e: e["t"])
    assert len(acq) == 2
    assert [int(e["token"]) for e in acq] == [3, 4]  # token moves on every acquisition
    assert acq[0]["t"] >= r["t"]
    takeover = acq[0]["t"] - killed
    # B waits hb_timeout from when it first saw A's last stamp (<= one
    # hb_interval before the kill, more if A's renewal thread lagged)
    assert 1.0 <= takeover <= HB_TIMEOUT + 1.5, takeover
    with open(img, "rb") as f:
        f.seek(JTARGET_OFF)
        assert f.read(64).startswith(b"journaled by " + r["dead"].encode() + b" token 2")
    magic, _, seq, _, uuid = slot(img, 0)
    assert magic == 0xABCDEF01 and seq == 2 and uuid == bytes(16)


def stall_run(img, guard=True):
    """A holds the lock, then its device stalls 3 s per request: its next data
    write reaches the disk (or is refused there) about 6.3 s in.  B breaks A's
    lock after hb_timeout and works until ~4.2 s, so an unguarded late write of
    A would be the last thing in the sector.  An outside audit watches it."""
    audit = start(img, "audit", "--run-ms", 7500)
    a = start(img, "worker", "--run-ms", 5000, "--hold-ms", 4000, "--stall-at-ms", 300,
              "--stall-ms", 3000, *([] if guard else ["--no-guard"]))
    time.sleep(0.15)
    b = start(img, "worker", "--run-ms", 4000, "--hold-ms", 300)
    res = finish(a), finish(b), finish(audit)
    with open(img, "rb") as f:
        f.seek(DATA_OFF)
        rec = f.read(24)
    return res + ((struct.unpack_from("<Q", rec)[0], rec[8:24]),)


def uuid_bytes(s):
    """vmfs_uuid_str() back to the 16 on-disk bytes."""
    a, b, c, d = s.split("-")
    return struct.pack("<IIH", int(a, 16), int(b, 16), int(c, 16)) + bytes.fromhex(d)


def test_stalled_host_fences_before_its_lock_is_broken(tmp_path):
    img = fmt(tmp_path)
    (ra, out_a, err_a), (rb, out_b, err_b), (rau, out_au, _), (final_tok, final_host) = stall_run(img)
    assert rb == 0, err_b
    assert ra == 0, out_a + err_a
    assert "VIOLATION" not in out_a + out_b
    (stall,) = events(out_a, "stall")
    (fenced,) = [e for e in events(out_a, "hb_event") if e["ev"] == "fenced"]
    lost = [e for e in events(out_a, "hb_event") if e["ev"] == "lost"]
    (rec,) = events(out_b, "reclaim")
    acq_b = events(out_b, "acquired")
    # A stops I/O before B may break its lock, and says so
    assert "FENCED" in err_a
    assert stall["t"] < fenced["t"] < rec["t"] <= acq_b[0]["t"]
    assert fenced["t"] - stall["t"] <= 1.75 + 0.25        # S + hb_timeout - io_timeout, S <= stall
    assert len(lost) == 1 and lost[0]["t"] > rec["t"]
    assert any(e["r"] == "-5" for e in events(out_a, "write_failed"))   # refused: EIO
    assert events(out_a, "released")[0]["r"] == "-37"                   # ENOLCK: lock gone
    assert [e["ev"] for e in events(out_a, "hb_event")][-1] == "rejoined"
    # write-token check: tokens in the guarded sector never go backwards, and
    # the last record is B's last hold, not A's late write
    assert rau == 0, out_au
    (au,) = events(out_au, "audit")
    assert au["regressions"] == "0" and int(au["max_token"]) == int(acq_b[-1]["token"])
    assert len(acq_b) >= 3
    assert final_tok == int(acq_b[-1]["token"])
    assert final_host == uuid_bytes(events(out_b, "joined")[0]["uuid"])


def test_write_token_check_catches_an_unguarded_host(tmp_path):
    """The same run without the fence guard: A's delayed write lands after B
    took (and used) the lock, and the checks see it: so the test above can fail."""
    img = fmt(tmp_path)
    (ra, out_a, _), (rb, out_b, _), (rau, out_au, _), (final_tok, final_host) = \
        stall_run(img, guard=False)
    acq_b = events(out_b, "acquired")
    assert final_tok == 2 < int(acq_b[-1]["token"])      # A's stale token is on disk last
    assert final_host == uuid_bytes(events(out_a, "joined")[0]["uuid"])
    assert events(out_au, "REGRESSION") and rau == 3


def test_four_hosts_contend_exact_token_count(tmp_path):
    """4 hosts take one exclusive lock in turn for 2.5 s, each checking while it
    holds that nobody else writes the guarded sector.  Every acquisition moves
    the token by exactly one: final token = 1 + all acquisitions."""
    img = fmt(tmp_path)
    audit = start(img, "audit", "--run-ms", 3500)
    ws = [start(img, "worker", "--run-ms", 2500, "--hold-ms", 15) for _ in range(4)]
    res = [finish(w) for w in ws]
    rau, out_au, _ = finish(audit)
    total = 0
    for rc, out, err in res:
        assert rc == 0, out + err
        assert "VIOLATION" not in out
        (d,) = events(out, "done")
        assert int(d["acquisitions"]) > 0 and d["eio"] == "0"
        total += int(d["acquisitions"])
    with open(img, "rb") as f:
        f.seek(LOCK_OFF)
        rec = f.read(512)
    token, mode = struct.unpack_from("<QI", rec, 0x1C)
    assert mode == 0 and rec[0x28:0x38] == bytes(16)       # free at the end
    assert token == 1 + total
    assert rau == 0 and events(out_au, "audit")[0]["regressions"] == "0"
