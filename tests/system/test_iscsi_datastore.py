"""LUNs backed by disk files on a mounted VMFS datastore: vmfsd mounts the
volume as a cluster host, exports /vmfs/volumes/LABEL/FILE, holds the file's
on-disk lock while it does, and the bytes written over iSCSI are in the
datastore file afterwards (read back with vmfs-tools' debugvmfs)."""
import os
import subprocess
import sys

import pytest

from conftest import bin_path, prog_path

sys.path.insert(0, os.path.dirname(__file__))
from iscsi_cu_classify import classify  # noqa: E402
from test_iscsi_target import INI, Target, free_port, run  # noqa: E402

IQN = "iqn.2024-01.org.openvmfs.test:datastore"


def util(img, *cmd):
    subprocess.run([prog_path("vmfs_util"), str(img), "--", *map(str, cmd)], check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ds")
    img = tmp / "vol.img"
    subprocess.run([bin_path("mkvmfs"), "-L", "ds1", "-S", "1G", "-q", str(img)], check=True,
                   capture_output=True)
    util(img, "truncate", "/thin.raw", 64 << 20)              # sparse: holes
    util(img, "fallocate", "/thick.raw", 0, 64 << 20, "tbz")   # zeroedthick
    util(img, "truncate", "/thick.raw", 64 << 20)
    t = Target(tmp, free_port())
    t.img = img
    t.start(["--volume", str(img), "--iscsi", t.portal,
             "--lun", f"{IQN},/vmfs/volumes/ds1/thin.raw",
             "--lun", f"{IQN},/vmfs/volumes/ds1/thick.raw"])
    yield t
    if t.proc.poll() is None:
        assert t.stop() == 0


def test_datastore_lun_conformance(ds, tmp_path):
    url = ds.url(IQN, 1)
    r = run(["iscsi-test-cu", "-d", "-t", "ALL", "-i", INI, url, url], timeout=600)
    (tmp_path / "cu-datastore.log").write_text(r.stdout + r.stderr)
    res = classify(r.stdout)
    fails = sorted(k for k, v in res.items() if v == "FAIL")
    npass = sum(1 for v in res.values() if v == "PASS")
    print(f"iscsi-test-cu datastore: {npass} pass, {len(fails)} fail")
    assert fails == [] and npass >= 194


def test_datastore_lun_ats_and_lock(ds, tmp_path):
    p = run([prog_path("bdev_rt"), ds.url(IQN, 1)])
    assert p.returncode == 0, p.stderr
    assert "ats=compare-and-write" in p.stdout
    # a second host mounting the same volume cannot export the same disk
    other = Target(tmp_path, free_port())
    r = subprocess.run([bin_path("vmfsd"), "--state-dir", str(tmp_path / "st2"), "--volume",
                        str(ds.img), "--iscsi", other.portal,
                        "--lun", f"{IQN},/vmfs/volumes/ds1/thick.raw"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "another host holds it" in r.stderr


def test_datastore_data_lands_in_file(ds, tmp_path):
    data = os.urandom(8 << 20)
    src = tmp_path / "src.raw"
    src.write_bytes(data)
    r = run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), ds.url(IQN, 0)])
    assert r.returncode == 0, r.stderr
    r = run(["iscsi-readcapacity16", "-i", INI, ds.url(IQN, 0)])
    assert "Total size:67108864" in r.stdout
    assert ds.stop() == 0
    # independent reader: vmfs-tools
    out = subprocess.run(["debugvmfs", str(ds.img), "cat", "/thin.raw"], capture_output=True,
                         timeout=60)
    assert out.stdout[:8 << 20] == data
    # the rest of the thin file is still a hole
    r = subprocess.run([prog_path("vmfs_util"), str(ds.img), "--", "map", "/thin.raw"],
                       capture_output=True, text=True)
    assert r.returncode == 0
