"""Several processes increment one counter sector with test-and-set."""
import struct
import subprocess

from conftest import prog_path


def run_counters(url, nproc, n, off=4096):
    procs = [subprocess.Popen([prog_path("bdev_counter"), url, str(off), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(nproc)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    return outs


def read_counter(path, off=4096):
    with open(path, "rb") as f:
        f.seek(off)
        return struct.unpack("<Q", f.read(8))[0]


def test_two_processes_no_lost_update(tmp_path):
    img = tmp_path / "shared.img"
    img.write_bytes(b"\0" * (1 << 20))
    run_counters(str(img), 2, 3000)
    assert read_counter(img) == 6000


def test_four_processes_no_lost_update(tmp_path):
    img = tmp_path / "shared.img"
    img.write_bytes(b"\0" * (1 << 20))
    outs = run_counters(str(img), 4, 1500)
    assert read_counter(img) == 6000
    assert all("mode ofd-lock" in o for o, _ in outs)


def test_file_roundtrip(tmp_path):
    img = tmp_path / "rt.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    p = subprocess.run([prog_path("bdev_rt"), str(img)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "kind=file" in p.stdout and "ats=ofd-lock" in p.stdout
    assert "discard_nonzero_bytes=0" in p.stdout


def test_fault_url_counter(tmp_path):
    """The fault wrapper as a URL passes ATS through to the OFD lock: still exact."""
    img = tmp_path / "shared.img"
    img.write_bytes(b"\0" * (1 << 20))
    run_counters("fault:" + str(img), 2, 1000)
    assert read_counter(img) == 2000


def test_threads_share_one_handle(tmp_path):
    """Threads doing sync I/O and ATS on one file handle beside an async queue."""
    img = tmp_path / "t.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    for url in (str(img), "fault:" + str(img)):
        p = subprocess.run([prog_path("bdev_threads"), url, "4", "300"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "counter=1200" in p.stdout
