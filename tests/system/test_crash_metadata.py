"""Crash consistency of the whole metadata path (fs transactions -> journal ->
in place) on the fault-injection device: a workload of creates, overwrites
through every addressing mode, renames and unlinks is cut at many points (a
power cut keeps what was flushed plus a random subset of later writes, and
may tear one multi-sector write).  The same host UUID then mounts again,
which replays the journal; every file the workload had synced must be there
with its content, every synced removal must have happened, and vmfsck must
find the volume clean."""
import os
import random
import subprocess
import tempfile

import pytest

from conftest import bin_path, prog_path

UUID = "33333333-4444-5555-6666-777777777777"
CUTS = 200


OPS = 20


def sparse_copy(src, dst):
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)


@pytest.fixture(scope="module")
def base():
    # tmpfs: the workload flushes after every operation; on tmpfs a flush is
    # cheap, so 200 cuts fit in a couple of minutes.
    root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="vmfs-crash-", dir=root) as d:
        img = os.path.join(d, "base.img")
        subprocess.run([bin_path("mkvmfs"), "-q", "-S", "1G", img], check=True,
                       capture_output=True)
        # a first mount creates the journal area, so each run starts from there
        r = subprocess.run([prog_path("host_worker"), "hosts", img], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        probe = os.path.join(d, "probe.img")
        sparse_copy(img, probe)
        r = subprocess.run([prog_path("crash_workload"), "--uuid", UUID, "--ops", str(OPS),
                            f"fault:{probe}?seed=1"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and r.stdout.count("SYNC") == OPS, r.stderr
        yield d, img


def durable_state(out):
    """The FILE/GONE lines of the last completed sync, minus the paths the
    operation in flight at the cut may have touched."""
    lines = out.splitlines()
    syncs = [i for i, l in enumerate(lines) if l == "SYNC"]
    if not syncs:
        return []
    last = syncs[-1]
    prev = syncs[-2] if len(syncs) > 1 else -1
    block = [l for l in lines[prev + 1:last] if l.startswith(("FILE ", "GONE "))]
    inflight = set()
    for l in lines[last + 1:]:
        if l.startswith("BEGIN "):
            inflight.update(l.split()[1:])
    return [l for l in block if l.split()[1] not in inflight]


def test_metadata_workload_cut_at_random_points(base):
    d, baseimg = base
    rnd = random.Random(4242)
    img = os.path.join(d, "c.img")
    checked = synced_files = 0
    for i in range(CUTS):
        sparse_copy(baseimg, img)
        # the workload does roughly 1500-2000 I/Os: cut anywhere in it
        cut = rnd.randrange(40, 2200)
        url = f"fault:{img}?cut_after={cut}&seed={i + 1}&tear={i % 2}"
        w = subprocess.run([prog_path("crash_workload"), "--uuid", UUID, "--seed", str(i + 1),
                            "--ops", str(OPS), url], capture_output=True, text=True, timeout=120)
        assert w.returncode == 0, f"cut {cut}: {w.stderr}"
        state = durable_state(w.stdout)
        c = subprocess.run([prog_path("crash_workload"), "--uuid", UUID, "--check", img],
                           input="\n".join(state) + "\n", capture_output=True, text=True,
                           timeout=120)
        assert c.returncode == 0, f"cut {cut} seed {i + 1}: {c.stdout}{c.stderr}"
        f = subprocess.run([bin_path("vmfsck"), "-n", img], capture_output=True, text=True,
                           timeout=120)
        assert f.returncode == 0, f"cut {cut} seed {i + 1}: {f.stdout}{f.stderr}"
        checked += 1
        synced_files += sum(1 for l in state if l.startswith("FILE "))
    assert checked == CUTS
    # the cuts land inside the workload, not only before or after it
    assert synced_files > CUTS
