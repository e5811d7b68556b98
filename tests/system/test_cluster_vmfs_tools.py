"""Our heartbeats on a real VMFS5 volume (mkvmfs), as vmfs-tools sees them:
`debugvmfs show_heartbeats` lists exactly our live hosts, with our UUIDs."""
import re
import shutil
import subprocess
import time

import pytest

from conftest import bin_path, prog_path


def show_heartbeats(img):
    p = subprocess.run(["debugvmfs", img, "show_heartbeats"], capture_output=True, text=True,
                       timeout=30)
    # debugvmfs exits with the number of live slots it printed
    out = p.stdout
    assert p.returncode == out.count("Heartbeat ID"), (p.returncode, out, p.stderr)
    return re.findall(r"Heartbeat ID (0x[0-9a-f]+):.*?Magic\s*: (0x[0-9a-f]+).*?UUID\s*: (\S+)",
                      out, re.S)


@pytest.mark.skipif(not shutil.which("debugvmfs"), reason="vmfs-tools not installed")
def test_debugvmfs_lists_our_live_hosts(tmp_path):
    img = str(tmp_path / "vol.img")
    subprocess.run([bin_path("mkvmfs"), "-q", "-S", "300M", img], check=True, capture_output=True)
    assert show_heartbeats(img) == []
    ps = [subprocess.Popen([prog_path("cluster_host"), "join", img, "--volume", "--hold-ms", "2500"],
                           stdout=subprocess.PIPE, text=True) for _ in range(3)]
    joined = []
    for p in ps:
        line = p.stdout.readline()
        m = re.search(r"joined slot=(\d+) gen=1 uuid=(\S+)", line)
        assert m, line
        joined.append((int(m.group(1)), m.group(2)))
    time.sleep(0.5)   # a renewal or so
    seen = show_heartbeats(img)
    for p in ps:
        p.communicate(timeout=30)
        assert p.returncode == 0
    assert sorted(seen) == sorted((hex(0x300000 + 512 * s), "0xabcdef02", u) for s, u in joined)
    assert show_heartbeats(img) == []    # clean leave: nothing live
