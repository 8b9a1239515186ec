#!/bin/sh
# Set up everything MOM needs on a Debian machine: the Debian packages (when run as
# root), then a virtual environment at .venv with MOM installed in it.
#   ./setup.sh          the product
#   ./setup.sh --test   the product plus what the test suite needs
set -eu
cd "$(dirname "$0")"

DEBIAN_PACKAGES="python3 python3-venv python3-dev"
# libvirt-python (the libvirt interface) builds from source against these.
DEBIAN_PACKAGES="$DEBIAN_PACKAGES gcc pkg-config libvirt-dev"
# The tests' own libvirtd and tiny QEMU guest (libvirt-daemon-system: the libvirt-qemu user
# the QEMU driver insists on, even when its configuration runs QEMU as root).
DEBIAN_TEST_PACKAGES="libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system qemu-system-x86 busybox-static"
# The package tests: a fresh Debian 12 root (../shared/tools/fresh-debian.sh) for the
# .deb, rpmbuild and Debian's Python build tools for the RPM spec.
DEBIAN_TEST_PACKAGES="$DEBIAN_TEST_PACKAGES debootstrap rpm python3-build python3-installer python3-setuptools"
# groff renders the man pages, which a test checks for warnings.
DEBIAN_TEST_PACKAGES="$DEBIAN_TEST_PACKAGES groff-base"
[ "${1:-}" = "--test" ] && DEBIAN_PACKAGES="$DEBIAN_PACKAGES $DEBIAN_TEST_PACKAGES"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for p in $DEBIAN_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "setup: installing Debian packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
fi

extras="[libvirt,qmp]"
[ "${1:-}" = "--test" ] && extras="[test,libvirt,qmp]"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"; then
    [ "${1:-}" = "--test" ] && exit 1
    # Without libvirt-dev, pkg-config and gcc the libvirt binding cannot build: MOM without it.
    echo "setup: libvirt-python did not build (needs libvirt-dev, pkg-config, gcc); installing MOM without the libvirt interface" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[qmp]"
fi
