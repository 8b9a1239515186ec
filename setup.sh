#!/bin/sh
# Set up everything MOM needs on a Debian machine: the Debian packages (when run as
# root), then a virtual environment at .venv with MOM installed in it.
#   ./setup.sh          the product
#   ./setup.sh --test   the product plus what the test suite needs
set -eu
cd "$(dirname "$0")"

DEBIAN_PACKAGES="python3 python3-venv python3-dev"

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

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"
