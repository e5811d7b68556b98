"""The nfs:// backend against a real NFSv3 server (nfs-ganesha + rpcbind).

Hermetic: rpcbind, ganesha and the client run inside one private network and
mount namespace (`unshare --net --mount`) with its own loopback (plus a
10.254.254.1/32 alias on that private lo, without which ganesha cannot resolve
127.0.0.1) and a private tmpfs on /run (rpcbind's socket and lock file), so
nothing listens in the host's namespace and nothing is left behind: the
namespaces die with the script."""
import shutil
import struct
import subprocess

import pytest

from conftest import prog_path

SCRIPT = r'''
set -e
T=$1; shift
ip link set lo up
ip addr add 10.254.254.1/32 dev lo
mount -t tmpfs tmpfs /run
mkdir -p "$T/export" "$T/recov"
cat > "$T/ganesha.conf" <<EOC
NFS_CORE_PARAM {
    Bind_addr = 127.0.0.1; Protocols = 3; NFS_Port = 2049; MNT_Port = 20048;
    NLM_Port = 32803; Rquota_Port = 875; Enable_NLM = false; Enable_RQUOTA = false;
    Enable_UDP = false;
}
NFS_KRB5 { Active_krb5 = false; }
NFSV4 { Graceless = true; RecoveryBackend = fs; RecoveryRoot = $T/recov; }
EXPORT_DEFAULTS { SecType = sys; }
EXPORT {
    Export_Id = 1; Path = $T/export; Pseudo = /export; Protocols = 3; Transports = TCP;
    Access_Type = RW; Squash = No_Root_Squash; SecType = sys;
    CLIENT { Clients = 127.0.0.1; Access_Type = RW; }
    FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
EOC
rpcbind -f -w & RPCB=$!
GAN=
cleanup() {
    [ -n "$GAN" ] && kill -TERM $GAN 2>/dev/null
    kill -TERM $RPCB 2>/dev/null
    [ -n "$GAN" ] && { timeout 10 sh -c "while kill -0 $GAN 2>/dev/null; do sleep 0.1; done" || kill -9 $GAN; }
    timeout 10 sh -c "while kill -0 $RPCB 2>/dev/null; do sleep 0.1; done" || kill -9 $RPCB
}
trap cleanup EXIT
for i in $(seq 100); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.05; done
ganesha.nfsd -F -f "$T/ganesha.conf" -L "$T/ganesha.log" -p "$T/ganesha.pid" -N NIV_EVENT & GAN=$!
for i in $(seq 200); do
    rpcinfo -p 127.0.0.1 2>/dev/null | grep -q 'tcp   2049' && break
    kill -0 $GAN 2>/dev/null || { echo "ganesha died"; exit 3; }
    sleep 0.05
done
rpcinfo -p 127.0.0.1 | grep -q 'tcp   2049' || { echo "ganesha not ready"; exit 3; }
"$@"
'''


def in_nfs_ns(tmp_path, cmd, timeout=120):
    for tool in ("ganesha.nfsd", "rpcbind", "rpcinfo", "unshare", "ip"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} not installed (scripts/install-deps.sh installs it)")
    script = tmp_path / "nfs-ns.sh"
    script.write_text(SCRIPT)
    return subprocess.run(["unshare", "--net", "--mount", "sh", str(script), str(tmp_path), *cmd],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


def pattern(tag, length):
    """tests/progs/bdev_rt.c fill(): u64 (tag * golden) ^ i at every 8 bytes."""
    m = (tag * 0x9E3779B97F4A7C15) & (2**64 - 1)
    return b"".join(struct.pack("<Q", m ^ i) for i in range(0, length, 8))


def test_nfs_roundtrip_and_no_ats(tmp_path):
    (tmp_path / "export").mkdir()
    img = tmp_path / "export" / "disk.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    url = f"nfs://127.0.0.1{tmp_path}/export/disk.img"
    r = in_nfs_ns(tmp_path, [
        "sh", "-c",
        f'{prog_path("bdev_rt")} {url} && echo RT_DONE; '
        # ATS is refused, not faked: the counter program must fail
        f'{prog_path("bdev_counter")} {url} 4096 10; echo "counter_rc=$?"'])
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "RT_DONE" in out, out + r.stderr
    kv = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
    assert kv["kind"] == "nfs" and kv["ats"] == "none"
    assert kv["sync"] == "ok" and kv["async"] == "ok"
    assert kv["ats_rt"] == "unsupported" and kv["discard_rt"] == "unsupported"
    assert kv["counter_rc"] == "1"
    assert "Operation not supported" in r.stderr
    # the async writes went through the server into the exported file
    base = (16 << 20) - (4 << 20)
    with open(img, "rb") as f:
        f.seek(base)
        assert f.read(64 * 4096) == pattern(2, 64 * 4096)


def test_nfs_open_errors(tmp_path):
    r = in_nfs_ns(tmp_path, ["sh", "-c",
                             f'{prog_path("bdev_rt")} nfs://127.0.0.1{tmp_path}/export/missing.img; '
                             f'{prog_path("bdev_rt")} nfs://127.0.0.1/not/exported.img; '
                             f'{prog_path("bdev_rt")} nfs://127.0.0.1:1/x/y.img; true'])
    assert r.returncode == 0, r.stdout + r.stderr
    errs = [l.split("=")[1] for l in r.stdout.splitlines() if l.startswith("open_error=")]
    assert errs[0] == "2"             # ENOENT: file not in the export
    assert errs[1:] == ["13", "113"]  # EACCES: not exported; EHOSTUNREACH: bad address
