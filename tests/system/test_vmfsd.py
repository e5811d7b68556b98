"""vmfsd as a process: flags and config file, config store, management socket,
clean shutdown, clear errors on bad configuration."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import bin_path, prog_path


def start(args, tmp_path, name="vmfsd"):
    log = open(tmp_path / f"{name}.log", "w")
    p = subprocess.Popen([bin_path("vmfsd")] + args, stdout=log, stderr=subprocess.STDOUT)
    return p


def wait_socket(sock, proc, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(sock):
            return
        if proc.poll() is not None:
            raise AssertionError(f"vmfsd exited early with {proc.returncode}")
        time.sleep(0.05)
    raise AssertionError("vmfsd socket did not appear")


def ctl(state, *args):
    return subprocess.run([bin_path("vmfsctl"), "--state-dir", str(state)] + list(args),
                          capture_output=True, text=True, timeout=30)


def stop(p):
    p.send_signal(signal.SIGTERM)
    return p.wait(timeout=20)


@pytest.fixture
def image(tmp_path):
    img = tmp_path / "vol.img"
    subprocess.run([bin_path("mkvmfs"), "-L", "ds1", "-S", "2G", str(img)], check=True,
                   capture_output=True)
    return img


def test_flags_status_volumes_and_clean_stop(tmp_path, image):
    st = tmp_path / "state"
    p = start(["--state-dir", str(st), "--volume", str(image)], tmp_path)
    wait_socket(st / "vmfsd.sock", p)
    r = ctl(st, "--json", "status")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["pid"] == p.pid and len(s["host_uuid"]) == 36 and s["volumes"] == 1
    r = ctl(st, "--json", "volumes")
    vols = json.loads(r.stdout)
    assert vols[0]["spec"] == str(image) and vols[0]["state"] == "mounted"
    assert vols[0]["ats"] == "ofd-lock" and vols[0]["size"] > 1 << 30
    r = ctl(st, "nonsense")
    assert r.returncode == 1 and "unknown command" in r.stderr
    assert stop(p) == 0
    assert not (st / "vmfsd.sock").exists()
    assert "stopped cleanly" in (tmp_path / "vmfsd.log").read_text()


def test_store_remembers_identity_and_volumes(tmp_path, image):
    st = tmp_path / "state"
    p = start(["--state-dir", str(st), "--volume", str(image)], tmp_path)
    wait_socket(st / "vmfsd.sock", p)
    first = json.loads(ctl(st, "--json", "status").stdout)["host_uuid"]
    assert stop(p) == 0
    # restart with no --volume: the store supplies it, and the same identity
    p = start(["--state-dir", str(st)], tmp_path, "second")
    wait_socket(st / "vmfsd.sock", p)
    s = json.loads(ctl(st, "--json", "status").stdout)
    assert s["host_uuid"] == first and s["volumes"] == 1
    assert json.loads(ctl(st, "--json", "volumes").stdout)[0]["spec"] == str(image)
    assert stop(p) == 0


def test_config_file_equals_flags(tmp_path, image):
    st = tmp_path / "state"
    cfg = tmp_path / "vmfsd.conf"
    cfg.write_text(f"# test config\nstate-dir = {st}\nvolume = {image}\nlog-level = debug\n"
                   f"host-uuid = 11111111-2222-3333-4444-555555555555\n")
    p = start(["--config", str(cfg)], tmp_path)
    wait_socket(st / "vmfsd.sock", p)
    s = json.loads(ctl(st, "--json", "status").stdout)
    assert s["host_uuid"] == "11111111-2222-3333-4444-555555555555"
    assert stop(p) == 0


@pytest.mark.parametrize("content,msg", [
    ("bogus = 1\n", "unknown option 'bogus'"),
    ("io-timeout = -3\n", "bad --io-timeout"),
    ("daemonize = yes\n", "takes no value"),
    ("volume\n", "needs a value"),
])
def test_bad_config_is_refused_clearly(tmp_path, content, msg):
    cfg = tmp_path / "bad.conf"
    cfg.write_text(f"state-dir = {tmp_path / 'st'}\n" + content)
    r = subprocess.run([bin_path("vmfsd"), "--config", str(cfg)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2
    assert f"{cfg}:2" in r.stderr and msg in r.stderr


def test_usage_errors(tmp_path):
    r = subprocess.run([bin_path("vmfsd")], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--state-dir is required" in r.stderr
    r = subprocess.run([bin_path("vmfsd"), "--no-such-flag"], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run([bin_path("vmfsd"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--volume" in r.stdout
    r = ctl(tmp_path / "nowhere", "status")
    assert r.returncode == 3 and "cannot reach vmfsd" in r.stderr


def test_hosts_and_locks(tmp_path, image):
    st = tmp_path / "state"
    p = start(["--state-dir", str(st), "--volume", str(image), "--io-timeout", "0.25"], tmp_path)
    wait_socket(st / "vmfsd.sock", p)
    other = "11111111-2222-3333-4444-555555555555"
    w = subprocess.Popen([prog_path("host_worker"), "--io-timeout-ms", "250", "--uuid", other,
                          "lock", str(image), "/vm1-flat.vmdk"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline().startswith("LOCKED")
        me = json.loads(ctl(st, "--json", "status").stdout)["host_uuid"]
        hosts = json.loads(ctl(st, "--json", "hosts").stdout)
        states = {h["uuid"]: h["state"] for h in hosts}
        assert states == {me: "self", other: "alive"}
        locks = json.loads(ctl(st, "--json", "locks").stdout)
        assert [(l["object"], l["mode"], l["owner"]) for l in locks] == \
            [("/vm1-flat.vmdk", "exclusive", other)]
        one = json.loads(ctl(st, "--json", "locks", "/vm1-flat.vmdk").stdout)
        assert one[0]["owner"] == other
        assert "exclusive" in ctl(st, "locks").stdout
        # vmfs-tools sees both live hosts (it prints UUIDs its own way)
        r = subprocess.run(["debugvmfs", str(image), "show_heartbeats"], capture_output=True,
                           text=True, timeout=60)
        assert r.stdout.count("Magic    : 0xabcdef02") == 2
        assert "11111111-33332222-4444-555555555555" in r.stdout
    finally:
        w.stdin.close()
        w.wait(timeout=30)
    assert json.loads(ctl(st, "--json", "locks").stdout) == []
    assert stop(p) == 0
    # both left the heartbeat region cleanly: nobody is live
    r = subprocess.run(["debugvmfs", str(image), "show_heartbeats"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "0xabcdef02" not in r.stdout


def test_unmountable_volume_is_reported_not_fatal(tmp_path):
    junk = tmp_path / "junk.img"
    with open(junk, "wb") as f:
        f.truncate(64 << 20)
    st = tmp_path / "state"
    p = start(["--state-dir", str(st), "--volume", str(junk)], tmp_path)
    wait_socket(st / "vmfsd.sock", p)
    vols = json.loads(ctl(st, "--json", "volumes").stdout)
    assert vols[0]["state"].startswith("error:")
    assert stop(p) == 0
