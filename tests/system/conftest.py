"""Shared fixtures for the system tests: paths into the build, scratch dirs."""
import os
import pathlib
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


def prog_path(name):
    p = PROGS / name
    if not p.exists():
        pytest.fail(f"{p} not built")
    return str(p)
