"""Several host processes on one shared volume, through the host layer
(heartbeat + guard + journal + on-disk locks under the filesystem)."""
import re
import signal
import subprocess
import time

import pytest

from conftest import bin_path, prog_path

IO_MS = "250"   # io_timeout 0.25 s: heartbeat timeout 2 s


def mkvol(tmp_path, size="4G"):
    img = tmp_path / "vol.img"
    subprocess.run([bin_path("mkvmfs"), "-S", size, str(img)], check=True,
                   capture_output=True)
    return img


def worker(*args, **kw):
    return subprocess.Popen([prog_path("host_worker"), "--io-timeout-ms", IO_MS] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def verify(img, lines):
    r = subprocess.run([prog_path("host_worker"), "verify", str(img)], input="".join(lines),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"OK (\d+) BAD (\d+)", r.stdout)
    return int(m.group(1))


def fsck_vmfs_clean(img):
    """Our vmfsck -n must exit 0, and fsck.vmfs (which always exits 0: parse
    its summary) must report nothing; the workers write no resident files,
    so there are no false positives to allow for."""
    r = subprocess.run([bin_path("vmfsck"), "-n", str(img)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = subprocess.run(["fsck.vmfs", str(img)], capture_output=True, text=True,
                         timeout=120).stdout
    for key in ("Unallocated blocks", "Lost blocks", "Undefined inodes",
                "Orphaned inodes", "Directory errors"):
        m = re.search(key + r"\s*:\s*(\d+)", out)
        assert m and m.group(1) == "0", f"fsck.vmfs: {key}: {out[-800:]}"


def live_hosts(img):
    r = subprocess.run([prog_path("host_worker"), "--io-timeout-ms", IO_MS, "hosts", str(img)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [l.split() for l in r.stdout.splitlines() if l.strip()]


@pytest.mark.parametrize("nhosts", [2, 4])
def test_hosts_work_at_once(tmp_path, nhosts):
    img = mkvol(tmp_path)
    procs = [worker("--tag", f"h{i}", "--seconds", "4", "work", str(img))
             for i in range(nhosts)]
    outs = [p.communicate(timeout=120) for p in procs]
    lines = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        lines += [l[5:] + "\n" for l in out.splitlines() if l.startswith("FILE ")]
    assert len(lines) >= 4 * nhosts
    assert verify(img, lines) == len(lines)
    fsck_vmfs_clean(img)
    # every host left cleanly: only our own probe is live
    assert [h[1] for h in live_hosts(img)] == ["self"]


def test_second_writer_gets_ebusy_naming_the_owner(tmp_path):
    img = mkvol(tmp_path, "2G")
    owner = "11111111-2222-3333-4444-555555555555"
    a = worker("--uuid", owner, "lock", str(img), "/disk-flat.vmdk", stdin=subprocess.PIPE)
    assert a.stdout.readline().startswith("LOCKED")
    b = worker("lock", str(img), "/disk-flat.vmdk", stdin=subprocess.DEVNULL)
    out, err = b.communicate(timeout=60)
    assert b.returncode == 16, err
    assert f"locked by host {owner}" in err
    a.stdin.close()
    assert a.wait(timeout=30) == 0
    # once released, the other host gets it
    c = worker("lock", str(img), "/disk-flat.vmdk", stdin=subprocess.DEVNULL)
    out, err = c.communicate(timeout=60)
    assert c.returncode == 0 and out.startswith("LOCKED"), err


def test_lock_of_killed_host_is_broken_after_hb_timeout(tmp_path):
    img = mkvol(tmp_path, "2G")
    a = worker("lock", str(img), "/disk-flat.vmdk", stdin=subprocess.PIPE)
    assert a.stdout.readline().startswith("LOCKED")
    a.send_signal(signal.SIGKILL)
    a.wait()
    b = worker("lockwait", str(img), "/disk-flat.vmdk", "20", stdin=subprocess.DEVNULL)
    out, err = b.communicate(timeout=60)
    assert b.returncode == 0, err
    waited = float(out.split()[-1])
    # dead only after the heartbeat timeout (8 x io_timeout = 2 s), not before
    assert 1.9 <= waited <= 10, out
    assert "reclaimed dead host in slot 0" in err or "replayed journal" in err


def test_kill9_in_the_middle_of_metadata_work(tmp_path):
    img = mkvol(tmp_path)
    a = worker("--tag", "a", "crashwork", str(img))
    b = worker("--tag", "b", "--seconds", "6", "work", str(img))
    time.sleep(1.5)
    a.send_signal(signal.SIGKILL)
    a_out, _ = a.communicate()
    b_out, b_err = b.communicate(timeout=120)
    assert b.returncode == 0, b_err
    # the survivor reclaimed the dead host (journal replayed, slot freed)
    assert "replayed journal of dead host in slot" in b_err
    lines = [l[5:] + "\n" for l in b_out.splitlines() if l.startswith("FILE ")]
    # files the dead host completed (fsync'd) are intact, unless b renamed
    # them (b only renames its own files) -- they are a's, so all must be there
    done = [l[5:] + "\n" for l in a_out.splitlines() if l.startswith("DONE ")]
    assert done, "the killed host completed no file before the kill"
    assert verify(img, lines + done) == len(lines) + len(done)
    fsck_vmfs_clean(img)
    assert [h[1] for h in live_hosts(img)] == ["self"]


def test_two_hosts_on_a_spanned_volume(tmp_path):
    """Extents given in the other order; the heartbeat region is on the first
    segment's extent, which each host's fencing guard must find."""
    e1, e2 = tmp_path / "e1.img", tmp_path / "e2.img"
    with open(e2, "wb") as f:
        f.truncate(1 << 30)
    subprocess.run([bin_path("mkvmfs"), "-q", "-S", "1G", str(e1), str(e2)], check=True,
                   capture_output=True)
    spec = f"{e2},{e1}"
    procs = [worker("--tag", f"s{i}", "--seconds", "3", "work", spec) for i in range(2)]
    lines = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        lines += [l[5:] + "\n" for l in out.splitlines() if l.startswith("FILE ")]
    assert lines
    assert verify(f"{e1},{e2}", lines) == len(lines)
    r = subprocess.run([bin_path("vmfsck"), "-n", str(e1), str(e2)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
