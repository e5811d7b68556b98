"""Shared fixtures for the system tests: paths into the build, scratch dirs."""
import contextlib
import os
import pathlib
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("VMFS_BUILD", ROOT / "build"))
BIN = BUILD / "bin"
PROGS = BUILD / "tests" / "progs"
SHARED = pathlib.Path(os.environ.get("VMFS_SHARED", ROOT.parent / "shared"))


def bin_path(name):
    p = BIN / name
    if not p.exists():
        pytest.fail(f"{p} not built")
    return str(p)


def run(args, check=True, timeout=120, **kw):
    """Run a command (arguments may be paths or numbers); output as text.
    With @check, a non-zero exit fails with the ends of stdout and stderr."""
    p = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} rc={p.returncode}\nstdout={p.stdout[-3000:]}\nstderr={p.stderr[-3000:]}")
    return p


def prog_path(name):
    p = PROGS / name
    if not p.exists():
        pytest.fail(f"{p} not built")
    return str(p)


def wait_path(path, proc, timeout=15):
    """Wait until @path exists; fail at once if process @proc exits first."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}")
        if time.time() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


def fs_read(img, path, off, length):
    """@length bytes of file @path at @off in the datastore image @img, read by
    another process (vmfs_util, read-only mount), as bytes."""
    p = subprocess.run([prog_path("vmfs_util"), "-r", str(img), "--", "read", path, str(off),
                        str(length)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


@contextlib.contextmanager
def loop_device(backing, sector_size=None):
    """A loop device over the file @backing (a stand-in for a LUN); detached
    on exit.  Skips, saying why, on a kernel without loop devices."""
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("no /dev/loop-control: this kernel has no loop devices")
    extra = ["--sector-size", str(sector_size)] if sector_size else []
    dev = run(["losetup", "--find", "--show", *extra, backing]).stdout.strip()
    assert dev.startswith("/dev/loop"), dev
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def vmfsck_clean(img):
    r = run([bin_path("vmfsck"), "-n", img], check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


# ---- a private tgt iSCSI target (blockdev tests; usable by any layer) --------
import shutil
import socket


def free_tcp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TgtTarget:
    """tgtd -f on 127.0.0.1:<free port> with its own control port; one target,
    LUN 1 over a sparse file, thin-provisioned (UNMAP punches holes).
    tgtd ignores SIGTERM: stop() deletes the target, asks the daemon to exit
    (`tgtadm --op delete --mode system`) and kill -9s it if still alive."""

    IQN = "iqn.2024-01.org.openvmfs.test:lun"

    def __init__(self, workdir, size=64 << 20):
        for tool in ("tgtd", "tgtadm"):
            if not shutil.which(tool):
                pytest.fail(f"{tool} not installed (scripts/install-deps.sh installs tgt)")
        self.dir = pathlib.Path(workdir)
        self.backing = self.dir / "lun1.img"
        with open(self.backing, "wb") as f:
            f.truncate(size)
        self.port = free_tcp_port()
        self.cport = 1000 + os.getpid() % 30000  # tgtd accepts -C up to 32767
        while os.path.exists(f"/var/run/tgtd/socket.{self.cport}"):
            self.cport += 1
        self.log = open(self.dir / "tgtd.log", "w")
        self.proc = subprocess.Popen(
            ["tgtd", "-f", "-C", str(self.cport), "--iscsi", f"portal=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 10
            while self.adm("--mode", "sys", "--op", "show", check=False).returncode:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise AssertionError("tgtd did not start: " +
                                         (self.dir / "tgtd.log").read_text()[-2000:])
                time.sleep(0.05)
            self.adm("--mode", "target", "--op", "new", "--tid", "1", "--targetname", self.IQN)
            self.adm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1",
                     "--backing-store", str(self.backing))
            self.adm("--mode", "logicalunit", "--op", "update", "--tid", "1", "--lun", "1",
                     "--params", "thin_provisioning=1")
            self.adm("--mode", "target", "--op", "bind", "--tid", "1",
                     "--initiator-address", "127.0.0.1")
        except BaseException:
            self.stop()
            raise
        self.url = f"iscsi://127.0.0.1:{self.port}/{self.IQN}/1"

    def adm(self, *args, check=True):
        r = subprocess.run(["tgtadm", "-C", str(self.cport), "--lld", "iscsi", *args],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=20)
        if check and r.returncode:
            raise AssertionError(f"tgtadm {' '.join(args)}: {r.stdout}")
        return r

    def stop(self):
        if self.proc.poll() is None:
            self.adm("--mode", "target", "--op", "delete", "--tid", "1", "--force", check=False)
            subprocess.run(["tgtadm", "-C", str(self.cport), "--op", "delete", "--mode", "system"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        for suffix in ("", ".lock"):  # tgtd leaves its control socket behind
            try:
                os.unlink(f"/var/run/tgtd/socket.{self.cport}{suffix}")
            except OSError:
                pass


@pytest.fixture
def tgt_target(tmp_path):
    t = TgtTarget(tmp_path)
    yield t
    t.stop()


# ---- vmfsd serving a network protocol (iSCSI / NFS tests) ----------------------
import signal


class VmfsdService:
    """vmfsd with its state in @tmp/state and its log in @tmp/vmfsd.log; start()
    returns once it accepts connections on 127.0.0.1:@port and its management
    socket exists."""

    def __init__(self, tmp, port):
        self.tmp, self.port = tmp, port
        self.state = tmp / "state"
        self.proc = None

    def start(self, args, env=None, timeout=10):
        self.log = open(self.tmp / "vmfsd.log", "a")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([bin_path("vmfsd"), "--state-dir", str(self.state)] + list(args),
                                     stdout=self.log, stderr=subprocess.STDOUT, env=e)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("vmfsd exited: " + (self.tmp / "vmfsd.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                if (self.state / "vmfsd.sock").exists():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("vmfsd did not start listening")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.log.close()
        return rc

    def ctl(self, *args):
        return subprocess.run([bin_path("vmfsctl"), "--state-dir", str(self.state)] + list(args),
                              capture_output=True, text=True, timeout=30)
