"""The multi-host workload on one LUN of a real tgt target, through libiscsi:
tgt 1.0.85 has no COMPARE AND WRITE, so every heartbeat and lock goes through
the block layer's SCSI-2 RESERVE/RELEASE fallback."""
import subprocess

from conftest import TgtTarget, bin_path, prog_path


def test_two_hosts_on_a_tgt_lun(tmp_path):
    t = TgtTarget(tmp_path, size=1536 << 20)
    try:
        r = subprocess.run([bin_path("mkvmfs"), "-q", "--force", t.url], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        procs = [subprocess.Popen([prog_path("host_worker"), "--io-timeout-ms", "500",
                                   "--tag", f"t{i}", "--seconds", "4", "work", t.url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
        lines = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            lines += [l[5:] + "\n" for l in out.splitlines() if l.startswith("FILE ")]
        assert len(lines) >= 4
        r = subprocess.run([prog_path("host_worker"), "verify", t.url], input="".join(lines),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and f"OK {len(lines)} BAD 0" in r.stdout, r.stdout + r.stderr
        r = subprocess.run([bin_path("vmfsck"), "-n", t.url], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        t.stop()
    # the LUN's backing file is the same volume: vmfs-tools reads it too
    r = subprocess.run(["debugvmfs", str(t.backing), "ls", "/shared"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and ("t0-" in r.stdout or "t1-" in r.stdout), r.stdout + r.stderr
