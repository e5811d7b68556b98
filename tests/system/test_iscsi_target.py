"""vmfsd's iSCSI target against real initiators: libiscsi's conformance suite
(iscsi-test-cu, thin and thick LUNs, two sessions for the multipath tests),
the libiscsi tools, qemu-img, CHAP one-way and mutual, initiator ACLs, our own
block layer (COMPARE AND WRITE as ATS), LUN changes through vmfsctl without a
restart, and hostile PDUs over a raw socket."""
import hashlib
import os
import socket
import struct
import subprocess
import sys

import pytest

from conftest import VmfsdService, bin_path, prog_path

sys.path.insert(0, os.path.dirname(__file__))
from iscsi_cu_classify import classify  # noqa: E402

INI = "iqn.2024-01.org.openvmfs.test:initiator"
T_THIN = "iqn.2024-01.org.openvmfs.test:thin"
T_THICK = "iqn.2024-01.org.openvmfs.test:thick"
T_CHAP = "iqn.2024-01.org.openvmfs.test:chap"
T_MUTUAL = "iqn.2024-01.org.openvmfs.test:mutual"
T_ACL = "iqn.2024-01.org.openvmfs.test:acl"
ALLOWED = "iqn.2024-01.org.openvmfs.test:allowed"

# iscsi-test-cu floors (honest counts: skips are not passes).  Thin LUNs run
# every provisioning test; thick LUNs skip the 14 that need LBPME.
CU_MIN_PASS = {"thin": 203, "thick": 194}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Target(VmfsdService):
    def __init__(self, tmp, port):
        super().__init__(tmp, port)
        self.portal = f"127.0.0.1:{port}"

    def url(self, iqn, lun=0, cred=""):
        return f"iscsi://{cred}{self.portal}/{iqn}/{lun}"


def sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("iscsi")
    t = Target(tmp, free_port())
    t.files = {n: sparse(tmp / f"{n}.img", 1 << 30) for n in ("thin", "thick")}
    for n in ("small1", "chap", "mutual", "acl"):
        t.files[n] = sparse(tmp / f"{n}.img", 64 << 20)
    t.start(["--iscsi", t.portal,
             "--lun", f"{T_THIN},file:{t.files['thin']},thin",
             "--lun", f"{T_THIN},file:{t.files['small1']},thin",
             "--lun", f"{T_THICK},file:{t.files['thick']}",
             "--lun", f"{T_CHAP},file:{t.files['chap']},chap=alice:alicesecret12",
             "--lun", f"{T_MUTUAL},file:{t.files['mutual']},chap=bob:bobsecret1234,"
                      f"mutual=tgt:targetsecret99",
             "--lun", f"{T_ACL},file:{t.files['acl']},initiators={ALLOWED}"])
    yield t
    assert t.stop() == 0
    assert "stopped cleanly" in (tmp / "vmfsd.log").read_text()


def run(cmd, env=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                          timeout=timeout, env=e)


# ---- conformance suite -----------------------------------------------------------

@pytest.mark.parametrize("kind", ["thin", "thick"])
def test_iscsi_test_cu_all(target, kind, tmp_path):
    iqn = T_THIN if kind == "thin" else T_THICK
    url = target.url(iqn)
    r = run(["iscsi-test-cu", "-d", "-t", "ALL", "-i", INI, url, url], timeout=600)
    (tmp_path / f"cu-{kind}.log").write_text(r.stdout + r.stderr)
    res = classify(r.stdout)
    fails = sorted(k for k, v in res.items() if v == "FAIL")
    npass = sum(1 for v in res.values() if v == "PASS")
    nskip = sum(1 for v in res.values() if v == "SKIP")
    print(f"iscsi-test-cu {kind}: {len(res)} tests, {npass} pass, {len(fails)} fail, {nskip} skip")
    assert len(res) == 230
    assert fails == []
    assert npass >= CU_MIN_PASS[kind]


# ---- libiscsi tools, qemu-img --------------------------------------------------------

def test_libiscsi_tools(target):
    r = run(["iscsi-ls", "-i", INI, f"iscsi://{target.portal}"])
    assert r.returncode == 0, r.stderr
    assert f"Target:{T_THIN} Portal:{target.portal},1" in r.stdout
    assert f"Target:{T_CHAP} Portal:{target.portal},1" in r.stdout
    # the ACL target is not shown to an initiator it does not allow
    assert T_ACL not in r.stdout
    # -s logs in to every target (the CHAP ones refuse us, so rc != 0)
    r = run(["iscsi-ls", "-i", INI, "-s", f"iscsi://{target.portal}"])
    thin = r.stdout.split(f"Target:{T_THIN}")[1].split("Target:")[0]
    assert "Lun:0" in thin and "Lun:1" in thin and "Size:63M" in thin, r.stdout
    r = run(["iscsi-inq", "-i", INI, target.url(T_THIN)])
    assert r.returncode == 0, r.stderr
    assert "Vendor:OpenVMFS" in r.stdout and "Product:VIRTUAL-DISK" in r.stdout
    r = run(["iscsi-inq", "-i", INI, "-e", "1", "-c", "131", target.url(T_THIN)])
    assert r.returncode == 0 and "NAA" in r.stdout.upper(), r.stdout
    r = run(["iscsi-readcapacity16", "-i", INI, target.url(T_THIN)])
    assert r.returncode == 0, r.stderr
    assert "RETURNED LOGICAL BLOCK ADDRESS:2097151" in r.stdout
    assert "LBPME:1" in r.stdout
    r = run(["iscsi-readcapacity16", "-i", INI, target.url(T_THICK)])
    assert "LBPME:0" in r.stdout


def test_qemu_img_info_convert(target, tmp_path):
    src = tmp_path / "src.raw"
    data = os.urandom(8 << 20)
    src.write_bytes(data)
    url = target.url(T_THIN, 1)
    r = run(["qemu-img", "info", url])
    assert r.returncode == 0, r.stderr
    assert "virtual size: 64 MiB" in r.stdout
    r = run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), url])
    assert r.returncode == 0, r.stderr
    with open(target.files["small1"], "rb") as f:
        assert hashlib.sha256(f.read(8 << 20)).digest() == hashlib.sha256(data).digest()
    back = tmp_path / "back.raw"
    r = run(["qemu-img", "convert", "-f", "raw", "-O", "raw", url, str(back)])
    assert r.returncode == 0, r.stderr
    with open(back, "rb") as f:
        assert f.read(8 << 20) == data
    r = run(["qemu-img", "bench", "-f", "raw", "-c", "2000", "-d", "8", url])
    assert r.returncode == 0 and "Run completed" in r.stdout, r.stderr


# ---- CHAP and ACL ----------------------------------------------------------------------

def test_chap_one_way(target):
    ok = run(["iscsi-inq", "-i", INI, target.url(T_CHAP, cred="alice%alicesecret12@")])
    assert ok.returncode == 0 and "OpenVMFS" in ok.stdout, ok.stderr
    bad = run(["iscsi-inq", "-i", INI, target.url(T_CHAP, cred="alice%wrongsecret1@")])
    assert bad.returncode != 0
    missing = run(["iscsi-inq", "-i", INI, target.url(T_CHAP)])
    assert missing.returncode != 0
    wrong_user = run(["iscsi-inq", "-i", INI, target.url(T_CHAP, cred="mallory%alicesecret12@")])
    assert wrong_user.returncode != 0
    assert "CHAP response wrong" in (target.tmp / "vmfsd.log").read_text()


def test_chap_mutual(target):
    url = target.url(T_MUTUAL, cred="bob%bobsecret1234@")
    good = {"LIBISCSI_CHAP_TARGET_USERNAME": "tgt", "LIBISCSI_CHAP_TARGET_PASSWORD": "targetsecret99"}
    r = run(["iscsi-inq", "-i", INI, url], env=good)
    assert r.returncode == 0 and "OpenVMFS" in r.stdout, r.stderr
    # the initiator checks the target's answer: a wrong target secret fails
    bad = {"LIBISCSI_CHAP_TARGET_USERNAME": "tgt", "LIBISCSI_CHAP_TARGET_PASSWORD": "notthesecret"}
    r = run(["iscsi-inq", "-i", INI, url], env=bad)
    assert r.returncode != 0
    # and the target still checks the initiator
    r = run(["iscsi-inq", "-i", INI, target.url(T_MUTUAL, cred="bob%nopenopenope@")], env=good)
    assert r.returncode != 0


def test_acl(target):
    r = run(["iscsi-inq", "-i", ALLOWED, target.url(T_ACL)])
    assert r.returncode == 0, r.stderr
    r = run(["iscsi-inq", "-i", INI, target.url(T_ACL)])
    assert r.returncode != 0
    assert "not in the target's ACL" in (target.tmp / "vmfsd.log").read_text()


# ---- our block layer: ATS through COMPARE AND WRITE ---------------------------------------

def test_blockdev_gets_compare_and_write(target):
    url = target.url(T_THIN, 1)
    p = run([prog_path("bdev_rt"), url])
    kv = dict(l.split("=", 1) for l in p.stdout.splitlines() if "=" in l)
    assert p.returncode == 0, p.stderr
    assert kv["ats"] == "compare-and-write"
    assert kv["ats_rt"] == "ok" and kv["discard_rt"] == "ok"
    # four processes, four sessions: no lost update
    procs = [subprocess.Popen([prog_path("bdev_counter"), url, str(16 << 20), "250"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [pr.communicate(timeout=120) for pr in procs]
    assert all(pr.returncode == 0 for pr in procs), outs
    assert all("mode compare-and-write" in o for o, _ in outs)
    with open(target.files["small1"], "rb") as f:
        f.seek(16 << 20)
        assert struct.unpack("<Q", f.read(8))[0] == 1000


# ---- management: add and remove LUNs while running ---------------------------------------

def test_vmfsctl_target_add_remove(target, tmp_path):
    img = sparse(tmp_path / "extra.img", 32 << 20)
    iqn = "iqn.2024-01.org.openvmfs.test:extra"
    r = target.ctl("target", "add", f"{iqn},file:{img},thin")
    assert r.returncode == 0 and "added LUN 0" in r.stdout, r.stderr
    r = run(["iscsi-readcapacity16", "-i", INI, target.url(iqn)])
    assert r.returncode == 0 and "Total size:33554432" in r.stdout, r.stdout
    r = target.ctl("--json", "target", "list")
    assert r.returncode == 0 and iqn in r.stdout and '"thin": true' in r.stdout
    r = target.ctl("target", "add", f"{iqn},file:/nonexistent/x.img")
    assert r.returncode == 1 and "cannot open" in r.stderr
    r = target.ctl("target", "remove", iqn)
    assert r.returncode == 0, r.stderr
    r = run(["iscsi-inq", "-i", INI, target.url(iqn)])
    assert r.returncode != 0
    r = target.ctl("target", "remove", iqn)
    assert r.returncode == 1 and "no target" in r.stderr


def test_store_remembers_luns(tmp_path):
    t = Target(tmp_path, free_port())
    img = sparse(tmp_path / "d.img", 16 << 20)
    t.start(["--iscsi", t.portal, "--lun", f"{T_THIN},file:{img}"])
    extra = sparse(tmp_path / "e.img", 8 << 20)
    assert t.ctl("target", "add", f"{T_THIN},file:{extra}").returncode == 0
    ident = run(["iscsi-inq", "-i", INI, "-e", "1", "-c", "128", t.url(T_THIN, 1)]).stdout
    assert t.stop() == 0
    t.start([])   # no flags: portal and both LUNs come from the store
    r = run(["iscsi-readcapacity16", "-i", INI, t.url(T_THIN, 1)])
    assert r.returncode == 0 and "Total size:8388608" in r.stdout, r.stdout
    assert run(["iscsi-inq", "-i", INI, "-e", "1", "-c", "128", t.url(T_THIN, 1)]).stdout == ident
    assert t.stop() == 0


def test_bad_lun_spec_is_refused(tmp_path):
    r = subprocess.run([bin_path("vmfsd"), "--state-dir", str(tmp_path / "s"), "--iscsi",
                        f"127.0.0.1:{free_port()}", "--lun", "NotAnIqn,file:/x"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "bad target name" in r.stderr


# ---- hostile PDUs over a raw socket --------------------------------------------------------

def bhs(op, flags, dsl=0, lun=0, itt=0, rest=b""):
    h = bytes([op, flags, 0, 0, 0]) + struct.pack(">I", dsl)[1:] + struct.pack(">Q", lun) + \
        struct.pack(">I", itt)
    h += rest
    return h.ljust(48, b"\0")


def recv_pdu(s):
    h = b""
    while len(h) < 48:
        c = s.recv(48 - len(h))
        if not c:
            return None, None
        h += c
    dsl = int.from_bytes(h[5:8], "big")
    need = (dsl + 3) & ~3
    d = b""
    while len(d) < need:
        c = s.recv(need - len(d))
        if not c:
            return None, None
        d += c
    return h, d[:dsl]


def login(s, iqn):
    text = b"".join(x.encode() + b"\0" for x in (
        f"InitiatorName={INI}", "SessionType=Normal", f"TargetName={iqn}", "AuthMethod=None"))
    # CSG 0 -> NSG 3 with T; ISID, CmdSN 1
    rest = b"\x00\x00" + struct.pack(">I", 0) + b"\x00\x00\x00\x00" + struct.pack(">II", 1, 0)
    h = bytes([0x43, 0x83, 0, 0, 0]) + struct.pack(">I", len(text))[1:] + \
        b"\x40\x00\x00\x01\x02\x03\x00\x00" + struct.pack(">I", 1)
    h = (h + struct.pack(">H", 0) + b"\0\0" + struct.pack(">II", 1, 0)).ljust(48, b"\0")
    del rest
    s.sendall(h + text + b"\0" * (((len(text) + 3) & ~3) - len(text)))
    rh, rd = recv_pdu(s)
    assert rh is not None and rh[0] & 0x3f == 0x23
    assert rh[36] == 0 and rh[1] & 0x80 and rh[1] & 3 == 3, (rh[36], rh[37])
    return rh


def alive(target):
    r = run(["iscsi-inq", "-i", INI, target.url(T_THIN)])
    return r.returncode == 0


def test_hostile_pdus(target):
    # 1. garbage before login: the connection is dropped
    s = socket.create_connection(("127.0.0.1", target.port))
    s.sendall(b"\xff" * 48)
    s.settimeout(5)
    assert s.recv(100) == b""
    s.close()
    # 2. a data segment longer than anything we accept: dropped
    s = socket.create_connection(("127.0.0.1", target.port))
    s.sendall(bhs(0x43, 0x83, dsl=0xffffff))
    s.settimeout(5)
    assert s.recv(100) == b""
    s.close()
    # 3. in full feature phase: unknown opcode -> Reject, the session lives on
    s = socket.create_connection(("127.0.0.1", target.port))
    s.settimeout(5)
    rh = login(s, T_THIN)
    statsn = struct.unpack(">I", rh[24:28])[0]
    s.sendall(bhs(0x1c, 0x80, itt=7))
    rh, rd = recv_pdu(s)
    assert rh[0] & 0x3f == 0x3f and rh[2] == 0x05      # Reject, command not supported
    assert rd[:1] == b"\x1c"                           # carries the bad header
    # a NOP-Out ping still works and echoes its data
    ping = bhs(0x40, 0x80, dsl=4, itt=9, rest=b"") 
    ping = ping[:20] + b"\xff\xff\xff\xff" + struct.pack(">II", 1, statsn + 2) + ping[32:]
    s.sendall(ping + b"abcd")
    rh, rd = recv_pdu(s)
    assert rh[0] & 0x3f == 0x20 and rd == b"abcd"
    # a SCSI command with an AHS that lies about its length: Reject
    bad = bytearray(bhs(0x01, 0xc0, itt=11))
    bad[4] = 1                         # 4 bytes of AHS
    bad[20:24] = struct.pack(">I", 512)
    bad[24:28] = struct.pack(">I", 2)
    s.sendall(bytes(bad) + b"\x00\x40\x01\x00")
    rh, rd = recv_pdu(s)
    assert rh[0] & 0x3f == 0x3f
    # writes whose data never comes may not pin unbounded memory: after
    # 64 MiB of announced write data the target answers TASK SET FULL
    sn = 2
    for i in range(5):
        w = bytearray(bhs(0x01, 0xa1, itt=100 + i))
        w[20:24] = struct.pack(">I", 16 << 20)
        w[24:28] = struct.pack(">I", sn)
        sn += 1
        w[32:42] = bytes([0x2a, 0, 0, 0, 0, 0, 0x80, 0, 0, 0])   # WRITE(10), 32768 blocks
        s.sendall(bytes(w))
        rh, rd = recv_pdu(s)
        if i < 4:
            assert rh[0] & 0x3f == 0x31, rh[:4]                   # R2T
        else:
            assert rh[0] & 0x3f == 0x21 and rh[3] == 0x28          # TASK SET FULL
    # Data-Out for a task that does not exist is ignored; then a header
    # claiming 16 MiB of data kills this connection only
    s.sendall(bhs(0x05, 0x80, dsl=0, itt=0x1234))
    s.sendall(bhs(0x01, 0x80, dsl=0xfffff0, itt=12))
    assert s.recv(100) == b""
    s.close()
    # 4. a connection that never logs in does not block others
    idle = socket.create_connection(("127.0.0.1", target.port))
    assert alive(target)
    idle.close()
    assert target.proc.poll() is None


# ---- digests over a raw socket ------------------------------------------------------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC_T = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = (c >> 8) ^ _CRC_T[(c ^ b) & 0xFF]
    return (c ^ 0xFFFFFFFF).to_bytes(4, "little")


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            return None
        b += c
    return b


def test_digests_raw(target):
    s = socket.create_connection(("127.0.0.1", target.port))
    s.settimeout(5)
    text = b"".join(x.encode() + b"\0" for x in (
        f"InitiatorName={INI}", "SessionType=Normal", f"TargetName={T_THIN}",
        "AuthMethod=None", "HeaderDigest=CRC32C", "DataDigest=CRC32C"))
    h = bytes([0x43, 0x83, 0, 0, 0]) + struct.pack(">I", len(text))[1:] + \
        b"\x40\x00\x00\x01\x02\x04\x00\x00" + struct.pack(">I", 1)
    h = (h + b"\0\0\0\0" + struct.pack(">II", 1, 0)).ljust(48, b"\0")
    s.sendall(h + text + b"\0" * (((len(text) + 3) & ~3) - len(text)))
    rh, rd = recv_pdu(s)              # login response: no digests yet
    assert rh[36] == 0 and rh[1] & 3 == 3
    assert b"HeaderDigest=CRC32C" in rd and b"DataDigest=CRC32C" in rd
    statsn = struct.unpack(">I", rh[24:28])[0]

    def nop(data, itt, cmdsn, corrupt=False):
        b = bytearray(bhs(0x00, 0x80, dsl=len(data), itt=itt))
        b[20:24] = b"\xff\xff\xff\xff"
        b[24:28] = struct.pack(">I", cmdsn)
        b[28:32] = struct.pack(">I", statsn + 1)
        pad = data + b"\0" * ((-len(data)) % 4)
        dd = crc32c(pad)
        if corrupt:
            dd = bytes([dd[0] ^ 1]) + dd[1:]
        return bytes(b) + crc32c(bytes(b)) + pad + dd

    def read_pdu():
        h = recv_exact(s, 48)
        assert h is not None
        assert recv_exact(s, 4) == crc32c(h)          # header digest
        dsl = int.from_bytes(h[5:8], "big")
        if not dsl:
            return h, b""
        d = recv_exact(s, (dsl + 3) & ~3)
        assert recv_exact(s, 4) == crc32c(d)          # data digest over data + pad
        return h, d[:dsl]

    s.sendall(nop(b"hello", 21, 1))
    h, d = read_pdu()
    assert h[0] & 0x3f == 0x20 and d == b"hello"
    # a bad data digest: Reject (reason 2), the session stays
    s.sendall(nop(b"world!", 22, 2, corrupt=True))
    h, d = read_pdu()
    assert h[0] & 0x3f == 0x3f and h[2] == 0x02
    s.sendall(nop(b"again", 23, 2))
    h, d = read_pdu()
    assert h[0] & 0x3f == 0x20 and d == b"again"
    # a bad header digest: the stream cannot be trusted, the connection goes
    bad = bytearray(nop(b"x", 24, 3))
    bad[48] ^= 0xff
    s.sendall(bytes(bad))
    assert s.recv(100) == b""
    s.close()


def test_many_luns_and_config_file(tmp_path):
    t = Target(tmp_path, free_port())
    iqn = "iqn.2024-01.org.openvmfs.test:many"
    imgs = [sparse(tmp_path / f"l{i}.img", 1 << 20) for i in range(40)]
    cfg = tmp_path / "vmfsd.conf"
    cfg.write_text(f"iscsi = {t.portal}\n" +
                   "".join(f"lun = {iqn},file:{p}\n" for p in imgs[:20]))
    t.start(["--config", str(cfg)])
    for p in imgs[20:]:
        r = t.ctl("target", "add", f"{iqn},file:{p}")
        assert r.returncode == 0, r.stderr
    r = run(["iscsi-ls", "-i", INI, "-s", f"iscsi://{t.portal}"])
    luns = [l for l in r.stdout.splitlines() if l.strip().startswith("Lun:")]
    assert len(luns) == 40, r.stdout
    r = run(["iscsi-readcapacity16", "-i", INI, t.url(iqn, 39)])
    assert r.returncode == 0 and "Total size:1048576" in r.stdout
    assert t.ctl("target", "remove", iqn, "39").returncode == 0
    r = run(["iscsi-readcapacity16", "-i", INI, t.url(iqn, 39)])
    assert r.returncode != 0
    assert t.stop() == 0


def test_offloaded_reads(tmp_path):
    """Reads from slow LUNs run in the worker pool; force that path."""
    t = Target(tmp_path, free_port())
    img = sparse(tmp_path / "r.img", 256 << 20)
    data = os.urandom(32 << 20)
    with open(img, "r+b") as f:
        f.write(data)
    t.start(["--iscsi", t.portal, "--lun", f"{T_THIN},file:{img},thin"],
            env={"VMFSD_ISCSI_READ_OFFLOAD": "always"})
    url = t.url(T_THIN)
    back = tmp_path / "back.raw"
    r = run(["qemu-img", "convert", "-f", "raw", "-O", "raw", url, str(back)])
    assert r.returncode == 0, r.stderr
    with open(back, "rb") as f:
        assert f.read(32 << 20) == data
    r = run(["iscsi-test-cu", "-d", "-t", "ALL.Read10,ALL.Read16,ALL.iSCSIResiduals,"
             "ALL.Verify16,ALL.CompareAndWrite", "-i", INI, url], timeout=300)
    res = classify(r.stdout)
    assert res and all(v != "FAIL" for v in res.values()), r.stdout[-3000:]
    assert t.stop() == 0
