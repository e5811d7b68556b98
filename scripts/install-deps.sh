#!/bin/sh
# Install the Debian packages OpenVMFS needs to build, test and demo.
# Idempotent and silent when nothing is missing.  Needs root (or sudo) only
# when something has to be installed.
set -e
PKGS="gcc make pkg-config clang libclang-rt-14-dev
libaio-dev libiscsi-dev libnfs-dev librocksdb-dev uuid-dev libssl-dev libfuse3-dev fuse3
libcmocka-dev python3 python3-pytest
tgt libiscsi-bin libnfs-utils vmfs-tools fio qemu-utils xz-utils util-linux iproute2 rsync
nfs-ganesha nfs-ganesha-vfs rpcbind
qemu-system-x86 busybox-static sanlock"

missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
		echo "install-deps: need root to install:$missing" >&2; exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done"
