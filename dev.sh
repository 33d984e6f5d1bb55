#!/usr/bin/env bash
# Sets up hyperv-backup on a fresh Debian machine (Python 3.11 + apt) and runs it.
#   ./dev.sh demo   back up the simulator's VMs (the emulated Hyper-V host) and show the result
#   ./dev.sh test   the whole test suite: lint, types, PowerShell gates, end-to-end tests
# The first run creates .venv and installs the package with its test extras; later runs
# reuse it (re-installing only when pyproject.toml changed).
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON=${PYTHON:-python3}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_venv() {
    if [ -x "$VENV/bin/python" ]; then return; fi
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian splits venv support (ensurepip) into its own package.
        rm -rf "$VENV"
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
}

apt_install() {
    as_root apt-get update -qq
    # noninteractive: the samba package asks a debconf question (WINS from DHCP).
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_samba() {
    # smbd serves the simulator's drives as SMB shares, as a Windows host does (Samba runs
    # privately on a loopback port; the machine's own Samba service is not used).
    if ! command -v smbd >/dev/null 2>&1 && [ ! -x /usr/sbin/smbd ]; then
        apt_install samba
    fi
}

ensure_tools() {
    ensure_samba
    # qemu-img makes real VHDX images for the simulator tests that check them.
    if ! command -v qemu-img >/dev/null 2>&1; then
        apt_install qemu-utils
    fi
}

ensure_installed() {
    local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ -f "$stamp" ]; then return; fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[test]'
    rm -f "$VENV"/.installed-*
    touch "$stamp"
}

run_tests() {
    echo "== ruff"
    "$VENV/bin/ruff" check hyperv_backup tests examples ansible_collections
    echo "== mypy --strict"
    "$VENV/bin/mypy" hyperv_backup
    "$VENV/bin/mypy" --strict examples
    echo "== pytest"
    set +e
    "$VENV/bin/python" -m pytest "$@"
    local status=$?
    set -e
    if [ "$status" -eq 5 ]; then
        echo "pytest collected no tests: that is neither a pass nor a test failure;" \
             "check the test paths." >&2
    fi
    return "$status"
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    demo)
        ensure_venv; ensure_installed; ensure_samba
        exec "$VENV/bin/hyperv-backup" demo "$@" ;;
    test)
        ensure_venv; ensure_installed; ensure_tools
        run_tests "$@" ;;
    *)
        echo "usage: ./dev.sh demo | ./dev.sh test [pytest args]" >&2
        exit 2 ;;
esac
