"""vmfsd's NFSv3 server against real clients: libnfs's tools (nfs-ls, nfs-cp,
nfs-cat), our libnfs-based procedure suite (tests/progs/nfs_client.c: every
NFSv3 procedure and its errors), qemu-img over nfs:// (in a private network
namespace, through rpcbind and through vmfsd's own portmapper), export rules
(allowlist refused at MOUNT, root squash, forged handles), `vmfsctl export`
changes without a restart, hostile RPCs over a raw socket, a vmfsd restart in
the middle of a copy, and a file locked by another host."""
import hashlib
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import VmfsdService, bin_path, prog_path

NFS3ERR_JUKEBOX = 10008
MNT3ERR_ACCES = 13
MNT3ERR_NOENT = 2


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def scratch(tmp_path):
    """Images on tmpfs when there is one: heartbeats must not stall behind a
    busy disk, and the copies stay quick."""
    if os.access("/dev/shm", os.W_OK):
        return pathlib.Path(tempfile.mkdtemp(prefix="vmfs-nfs-", dir="/dev/shm"))
    return tmp_path


class Server(VmfsdService):
    def __init__(self, d, port):
        super().__init__(d, port)
        self.d = d
        self.img = d / "ds.img"

    def url(self, path):
        return f"nfs://127.0.0.1{path}?nfsport={self.port}&mountport={self.port}"

    def start(self, args=()):
        super().start(["--io-timeout", "0.5"] + list(args), timeout=60)

    def client(self, *args, timeout=60):
        return subprocess.run([prog_path("nfs_client"), args[0], "127.0.0.1", str(self.port)]
                              + list(args[1:]), capture_output=True, text=True, timeout=timeout)


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                          timeout=timeout, **kw)


def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    d = scratch(tmp_path_factory.mktemp("nfs"))
    subprocess.run([bin_path("mkvmfs"), "-L", "nfsds", "-S", "2G", str(d / "ds.img")],
                   check=True, capture_output=True)
    s = Server(d, free_port())
    s.start(["--volume", str(s.img), "--nfs", f"127.0.0.1:{s.port}",
             "--export", "/",
             "--export", "/sq,root_squash",
             "--export", "/all,all_squash,anonuid=4242,anongid=4343",
             "--export", "/ro,ro",
             "--export", "/deny,clients=10.9.9.9;192.168.0.0/16"])
    for name in ("sq", "all", "ro", "deny", "data"):
        r = s.client("mkdir", "/", name)
        assert r.returncode == 0, r.stdout + r.stderr
    yield s
    assert s.stop() == 0
    assert "stopped cleanly" in (d / "vmfsd.log").read_text()
    # everything the NFS clients did left a consistent volume
    r = run([bin_path("vmfsck"), "-n", str(s.img)])
    assert r.returncode == 0, r.stdout + r.stderr
    if str(d).startswith("/dev/shm/"):
        shutil.rmtree(d, ignore_errors=True)


# ---- the procedures ---------------------------------------------------------------

def test_every_procedure_and_its_errors(srv):
    r = srv.client("procs", "/", timeout=120)
    assert r.returncode == 0 and "ALL OK" in r.stdout, r.stdout + r.stderr
    # one line per check; make sure the suite really ran them all
    assert r.stdout.count("\nok ") >= 70, r.stdout


def test_libnfs_tools_copy_in_and_out(srv, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(24 << 20) + b"tail")
    r = run(["nfs-cp", str(src), srv.url("/data/big.bin")])
    assert r.returncode == 0, r.stdout + r.stderr
    back = tmp_path / "back.bin"
    r = run(["nfs-cp", srv.url("/data/big.bin"), str(back)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert md5(src) == md5(back)
    small = tmp_path / "hello.txt"
    small.write_text("hello over NFS\n")
    assert run(["nfs-cp", str(small), srv.url("/data/hello.txt")]).returncode == 0
    r = run(["nfs-cat", srv.url("/data/hello.txt")])
    assert r.returncode == 0 and r.stdout == "hello over NFS\n", r.stdout + r.stderr
    r = run(["nfs-ls", srv.url("/data")])
    assert r.returncode == 0, r.stderr
    names = {line.split()[-1]: line.split() for line in r.stdout.splitlines() if line.strip()}
    assert names["big.bin"][4] == str((24 << 20) + 4) and names["hello.txt"][4] == "15", r.stdout
    # the key file that signs handles is not visible
    r = run(["nfs-ls", srv.url("/")])
    assert r.returncode == 0 and ".vmfsd-nfs.key" not in r.stdout and "data" in r.stdout


def run_together(*cmds):
    """Start every command at once; each must succeed.  Their outputs."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in cmds]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    return outs


def test_concurrent_calls_on_one_connection(srv, tmp_path):
    """Calls of one connection run in parallel and are answered in any order
    (RPC matches replies by xid): nfs-cp sends its READs (rtmax 512 KiB) two
    at a time, nfs_client pipeline keeps 16 WRITEs and then 80 READs and
    metadata calls in flight on one connection, while another client changes
    metadata in a loop; every reply and both checksums must be right."""
    src = tmp_path / "conc.bin"
    src.write_bytes(os.urandom(32 << 20))
    client = [prog_path("nfs_client")]
    where = ["127.0.0.1", str(srv.port), "/"]
    outs = run_together(["nfs-cp", str(src), srv.url("/data/conc.bin")],
                        client + ["meta"] + where + ["meta1"],
                        client + ["pipeline"] + where + ["pipe.bin"])
    assert "ALL OK" in outs[1] and "ALL OK" in outs[2], outs
    assert "16 WRITEs" in outs[2] and "54 READs (data checked)" in outs[2], outs[2]
    back = tmp_path / "conc.back"
    outs = run_together(["nfs-cp", srv.url("/data/conc.bin"), str(back)],
                        client + ["meta"] + where + ["meta2"])
    assert "ALL OK" in outs[1], outs[1]
    assert md5(src) == md5(back)


def test_forged_and_altered_handles(srv):
    r = srv.client("forge", "/")
    assert r.returncode == 0 and "ALL OK" in r.stdout, r.stdout + r.stderr


# ---- export rules -------------------------------------------------------------------

def test_client_not_on_allowlist_is_refused_at_mount(srv):
    r = srv.client("mnt", "/deny")
    assert r.returncode == 0 and f"mnt {MNT3ERR_ACCES}" in r.stdout, r.stdout + r.stderr
    r = run(["nfs-ls", srv.url("/deny")])
    assert r.returncode != 0
    assert "refused to client 127.0.0.1" in (srv.d / "vmfsd.log").read_text()
    # a subdirectory of a refused export is refused too
    assert f"mnt {MNT3ERR_ACCES}" in srv.client("mnt", "/deny/x").stdout
    assert "mnt 0" in srv.client("mnt", "/data").stdout


def test_root_squash_maps_uid_0(srv):
    r = srv.client("owner", "/", "rootfile")
    assert r.returncode == 0 and "uid 0 gid 0" in r.stdout, r.stdout + r.stderr
    r = srv.client("owner", "/sq", "squashed")
    assert r.returncode == 0 and "uid 65534 gid 65534" in r.stdout, r.stdout + r.stderr
    r = srv.client("owner", "/all", "anon")
    assert r.returncode == 0 and "uid 4242 gid 4343" in r.stdout, r.stdout + r.stderr


def test_read_only_export(srv, tmp_path):
    f = tmp_path / "x"
    f.write_text("x")
    r = run(["nfs-cp", str(f), srv.url("/ro/x")])
    assert r.returncode != 0 and "ROFS" in r.stdout + r.stderr, r.stdout + r.stderr


def test_vmfsctl_export_add_list_remove_without_restart(srv, tmp_path):
    r = srv.ctl("export", "list")
    assert r.returncode == 0 and "/sq,root_squash" in r.stdout, r.stdout + r.stderr
    assert "mnt 0" in srv.client("mnt", "/data").stdout
    r = srv.ctl("export", "add", "/data,clients=10.1.2.3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"mnt {MNT3ERR_ACCES}" in srv.client("mnt", "/data").stdout
    r = srv.ctl("export", "add", "/data,clients=127.0.0.0/8,ro")
    assert r.returncode == 0
    assert "mnt 0" in srv.client("mnt", "/data").stdout
    r = srv.ctl("--json", "export", "list")
    assert '"path": "/data"' in r.stdout and '"ro": true' in r.stdout, r.stdout
    r = srv.ctl("export", "add", "/data,bogus")
    assert r.returncode == 1 and "unknown export option" in r.stdout + r.stderr
    r = srv.ctl("export", "add", "relative")
    assert r.returncode == 1
    assert srv.ctl("export", "remove", "/data").returncode == 0
    # "/" still covers /data
    assert "mnt 0" in srv.client("mnt", "/data").stdout
    assert srv.ctl("export", "remove", "/deny").returncode == 0
    assert "mnt 0" in srv.client("mnt", "/deny").stdout
    assert srv.ctl("export", "remove", "/nope").returncode == 1
    assert srv.ctl("export", "add", "/deny,clients=10.9.9.9;192.168.0.0/16").returncode == 0
    assert srv.ctl("export", "add", "/data").returncode == 0


# ---- hostile RPCs -----------------------------------------------------------------------

def rpc_call(xid, prog, vers, proc, args=b"", rpcvers=2, cred=None):
    if cred is None:
        body = struct.pack(">I", 0) + struct.pack(">I", 4) + b"test" + struct.pack(">III", 0, 0, 0)
        cred = struct.pack(">II", 1, len(body)) + body
    return (struct.pack(">IIIIII", xid, 0, rpcvers, prog, vers, proc) + cred +
            struct.pack(">II", 0, 0) + args)


def send_record(s, payload, last=True):
    s.sendall(struct.pack(">I", (0x80000000 if last else 0) | len(payload)) + payload)


def recv_record(s):
    data = b""
    while True:
        hdr = b""
        while len(hdr) < 4:
            c = s.recv(4 - len(hdr))
            assert c, "connection closed"
            hdr += c
        m = struct.unpack(">I", hdr)[0]
        n = m & 0x7FFFFFFF
        while n:
            c = s.recv(n)
            assert c
            data += c
            n -= len(c)
        if m & 0x80000000:
            return data


def test_malformed_rpcs_get_the_right_errors_and_the_server_lives(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    # RPC version 3 -> MSG_DENIED RPC_MISMATCH 2..2
    send_record(s, rpc_call(1, 100003, 3, 0, rpcvers=3))
    assert struct.unpack(">IIIIII", recv_record(s)) == (1, 1, 1, 0, 2, 2)
    # unknown program -> PROG_UNAVAIL
    send_record(s, rpc_call(2, 100099, 1, 0))
    assert struct.unpack(">IIIIII", recv_record(s)) == (2, 1, 0, 0, 0, 1)
    # NFS v2 -> PROG_MISMATCH 3..3
    send_record(s, rpc_call(3, 100003, 2, 0))
    assert struct.unpack(">IIIIIIII", recv_record(s)) == (3, 1, 0, 0, 0, 2, 3, 3)
    # procedure 22 -> PROC_UNAVAIL
    send_record(s, rpc_call(4, 100003, 3, 22))
    assert struct.unpack(">IIIIII", recv_record(s)) == (4, 1, 0, 0, 0, 3)
    # GETATTR with a truncated handle -> GARBAGE_ARGS
    send_record(s, rpc_call(5, 100003, 3, 1, struct.pack(">I", 48) + b"abc"))
    assert struct.unpack(">IIIIII", recv_record(s)) == (5, 1, 0, 0, 0, 4)
    # handle length over 64 -> GARBAGE_ARGS
    send_record(s, rpc_call(6, 100003, 3, 1, struct.pack(">I", 1000) + b"x" * 1000))
    assert struct.unpack(">IIIIII", recv_record(s)) == (6, 1, 0, 0, 0, 4)
    # AUTH_SYS body that does not parse -> AUTH_ERROR AUTH_BADCRED
    send_record(s, rpc_call(7, 100003, 3, 1, cred=struct.pack(">II", 1, 8) + b"\xff" * 8))
    assert struct.unpack(">IIIII", recv_record(s)) == (7, 1, 1, 1, 1)
    # unknown flavour -> AUTH_ERROR AUTH_REJECTEDCRED
    send_record(s, rpc_call(8, 100003, 3, 1, cred=struct.pack(">II", 6, 0)))
    assert struct.unpack(">IIIII", recv_record(s)) == (8, 1, 1, 1, 2)
    # AUTH_NONE on a non-NULL NFS procedure -> AUTH_ERROR AUTH_TOOWEAK
    send_record(s, rpc_call(9, 100003, 3, 1, cred=struct.pack(">II", 0, 0)))
    assert struct.unpack(">IIIII", recv_record(s)) == (9, 1, 1, 1, 5)
    # WRITE whose data length disagrees with the record -> GARBAGE_ARGS
    send_record(s, rpc_call(10, 100003, 3, 7, struct.pack(">I", 48) + b"\0" * 48 +
                            struct.pack(">QII", 0, 100, 0) + struct.pack(">I", 100) + b"x" * 10))
    assert struct.unpack(">IIIIII", recv_record(s)) == (10, 1, 0, 0, 0, 4)
    # a call split into two fragments is reassembled (NULL)
    c = rpc_call(11, 100003, 3, 0)
    send_record(s, c[:10], last=False)
    send_record(s, c[10:])
    assert struct.unpack(">IIIIII", recv_record(s)) == (11, 1, 0, 0, 0, 0)
    # a record over the limit (2 MiB) is drained and answered GARBAGE_ARGS
    big = rpc_call(12, 100003, 3, 7) + b"\0" * (2 << 20)
    send_record(s, big)
    assert struct.unpack(">IIIIII", recv_record(s)) == (12, 1, 0, 0, 0, 4)
    # a reply (not a call) is ignored; the connection still serves
    send_record(s, struct.pack(">II", 13, 1) + b"\0" * 20)
    send_record(s, rpc_call(14, 100005, 3, 0))
    assert struct.unpack(">IIIIII", recv_record(s)) == (14, 1, 0, 0, 0, 0)
    s.close()
    # garbage bytes then a hang-up: others are still served
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"\x80\x00\x00\x08garbage!\x00\x00")
    s.close()
    r = run(["nfs-ls", srv.url("/")])
    assert r.returncode == 0 and "data" in r.stdout


# ---- cluster locks --------------------------------------------------------------------------

def test_file_locked_by_another_host_refuses_writes(srv):
    out = srv.client("mkdir", "/", "lockdir").stdout
    assert "mkdir 0" in out or "mkdir 17" in out, out    # made, or NFS3ERR_EXIST (module-wide server)
    w = subprocess.Popen([prog_path("host_worker"), "--io-timeout-ms", "500", "lock",
                          str(srv.img), "/lockdir/vm.vmdk"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = w.stdout.readline()
        assert line.startswith("LOCKED"), line + w.stderr.read()
        r = srv.client("write", "/lockdir", "vm.vmdk")
        assert f"write {NFS3ERR_JUKEBOX}" in r.stdout, r.stdout + r.stderr
        assert "holds its lock" in (srv.d / "vmfsd.log").read_text()
    finally:
        w.stdin.close()
        w.wait(timeout=30)
    # once the other host let go, the write goes through
    deadline = time.time() + 10
    while True:
        r = srv.client("write", "/lockdir", "vm.vmdk")
        if "write 0" in r.stdout or time.time() > deadline:
            break
        time.sleep(0.2)
    assert "write 0" in r.stdout, r.stdout + r.stderr
    # and vmfsd now holds it: the other host cannot take it until vmfsd is idle
    r = subprocess.run([prog_path("host_worker"), "--io-timeout-ms", "500", "lockwait",
                        str(srv.img), "/lockdir/vm.vmdk", "10"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "LOCKED after" in r.stdout, r.stdout + r.stderr


# ---- restart in the middle of a copy ------------------------------------------------------

def test_restart_in_the_middle_of_a_copy(tmp_path):
    d = scratch(tmp_path)
    subprocess.run([bin_path("mkvmfs"), "-S", "2G", str(d / "ds.img")], check=True,
                   capture_output=True)
    s = Server(d, free_port())
    s.start(["--volume", str(s.img), "--nfs", f"127.0.0.1:{s.port}", "--export", "/"])
    try:
        assert "mkdir 0" in s.client("mkdir", "/", "d").stdout
        v1 = s.client("verf", "/d", "probe").stdout.split()
        assert v1[0] == "verf" and s.client("verf", "/d", "probe").stdout.split() == v1
        src = tmp_path / "src.bin"
        # big enough that an unloaded machine is still copying when vmfsd stops
        src.write_bytes(os.urandom(384 << 20))
        cp = subprocess.Popen(["nfs-cp", str(src), s.url("/d/copy.bin")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.2)
        assert cp.poll() is None, "copy finished before the restart: make it bigger"
        assert s.stop() == 0
        time.sleep(0.5)
        s.start([])          # from the store: same volume, listener and exports
        out, _ = cp.communicate(timeout=120)
        assert cp.returncode == 0, out
        # a new server instance, a new write verifier (clients re-send UNSTABLE data)
        v2 = s.client("verf", "/d", "probe").stdout.split()
        assert v2[0] == "verf" and v2[1] != v1[1], (v1, v2)
        back = tmp_path / "back.bin"
        r = run(["nfs-cp", s.url("/d/copy.bin"), str(back)])
        assert r.returncode == 0, r.stdout + r.stderr
        assert md5(src) == md5(back)
        # handles survive restarts: the suite's handles from before still resolve
        assert "mnt 0" in s.client("mnt", "/d").stdout
    finally:
        if s.proc.poll() is None:
            s.stop()
        if str(d).startswith("/dev/shm/"):
            shutil.rmtree(d, ignore_errors=True)


# ---- qemu-img over nfs:// in a private network namespace ------------------------------------

NS_SCRIPT = r'''
set -e
D=$1; MODE=$2
ip link set lo up
mount -t tmpfs tmpfs /run
if [ "$MODE" = rpcbind ]; then
    rpcbind -f -w & RPCB=$!
    for i in $(seq 400); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.05; done
    rpcinfo -p 127.0.0.1 >/dev/null
    PM=""
else
    RPCB=""
    PM="--nfs-portmap 127.0.0.1:111"
fi
"$VMFSD" --state-dir "$D/state-$MODE" --volume "$D/ds.img" --nfs 127.0.0.1:2049 $PM \
    --export / --log-file "$D/vmfsd-$MODE.log" & V=$!
cleanup() {
    kill -TERM $V 2>/dev/null; wait $V || true
    [ -n "$RPCB" ] && kill -TERM $RPCB 2>/dev/null; true
}
trap cleanup EXIT
for i in $(seq 1200); do [ -S "$D/state-$MODE/vmfsd.sock" ] && break; sleep 0.05; done
[ -S "$D/state-$MODE/vmfsd.sock" ] || { echo "vmfsd did not start"; exit 3; }
rpcinfo -p 127.0.0.1 | grep -E '100003|100005' || true
"$NFS_CLIENT" mkdir 127.0.0.1 2049 / vm-$MODE >/dev/null
U=nfs://127.0.0.1/vm-$MODE
qemu-img create -f qcow2 $U/disk.qcow2 1G
qemu-img info $U/disk.qcow2
qemu-img convert -f raw -O qcow2 "$D/raw.img" $U/conv.qcow2
qemu-img convert -f qcow2 -O raw $U/conv.qcow2 "$D/back-$MODE.raw"
qemu-img create -f raw $U/bench.raw 64M
qemu-img bench -f raw -w -d 32 -s 4096 -c 2000 $U/bench.raw
'''


@pytest.mark.parametrize("mode", ["rpcbind", "portmap"])
def test_qemu_img_over_nfs(tmp_path, mode):
    for tool in ("qemu-img", "unshare", "ip", "rpcbind", "rpcinfo"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} not installed (scripts/install-deps.sh installs it)")
    d = scratch(tmp_path)
    try:
        subprocess.run([bin_path("mkvmfs"), "-S", "2G", str(d / "ds.img")], check=True,
                       capture_output=True)
        raw = os.urandom(8 << 20)
        (d / "raw.img").write_bytes(raw)
        script = d / "ns.sh"
        script.write_text(NS_SCRIPT)
        env = dict(os.environ, VMFSD=bin_path("vmfsd"), NFS_CLIENT=prog_path("nfs_client"))
        r = subprocess.run(["unshare", "--net", "--mount", "sh", str(script), str(d), mode],
                           capture_output=True, text=True, timeout=180, env=env)
        log = (d / f"vmfsd-{mode}.log").read_text() if (d / f"vmfsd-{mode}.log").exists() else ""
        assert r.returncode == 0, r.stdout + r.stderr + log
        assert "file format: qcow2" in r.stdout and "virtual size: 1 GiB" in r.stdout, r.stdout
        assert "Run completed" in r.stdout, r.stdout
        assert (d / f"back-{mode}.raw").read_bytes() == raw
        if mode == "rpcbind":
            assert "registered NFS v3 and MOUNT v3" in log, log
            assert "100003" in r.stdout and "100005" in r.stdout, r.stdout
        assert "stopped cleanly" in log
    finally:
        if str(d).startswith("/dev/shm/"):
            shutil.rmtree(d, ignore_errors=True)
