#!/usr/bin/env bash
# Install ordergate as a systemd service (run as root: `sudo bash systemd/install.sh` or `make install-service`).
#
#   1. puts the code in /opt/ordergate (a copy of this checkout; or, with ORDERGATE_USE_CHECKOUT=1,
#      a symlink to it — the checkout must then be world-readable and outside /home, /root, /run/user
#      because the unit has ProtectHome=yes),
#   2. builds /opt/ordergate/.venv with the project installed (no dev extras) and precompiles it,
#   3. creates /etc/ordergate/ordergate.toml (0644) and ordergate.env (0600, secrets) if they are missing,
#   4. installs the unit, daemon-reload, enable (and start with ORDERGATE_START=1).
#
# With INSTANCE=NAME (`make install-service INSTANCE=NAME`) it installs the template ordergate@.service instead and
# enables ordergate@NAME: config /etc/ordergate/NAME.toml, secrets /etc/ordergate/NAME.env, state
# /var/lib/ordergate/NAME. Run it once per instance; give each instance's TOML its own ports (webhook, metrics,
# dashboard) and its own broker account.
#
# Environment: PREFIX (default /opt/ordergate), PYTHON (default python3), ORDERGATE_USE_CHECKOUT, ORDERGATE_START,
# UNIT_DIR (default /etc/systemd/system), INSTANCE.
set -euo pipefail

PREFIX=${PREFIX:-/opt/ordergate}
PYTHON=${PYTHON:-python3}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
CONF_DIR=/etc/ordergate
INSTANCE=${INSTANCE:-}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "install.sh: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (sudo bash systemd/install.sh)"
command -v systemctl >/dev/null || die "systemctl not found: this host does not run systemd"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
[[ -f "$SRC/pyproject.toml" && -f "$SRC/systemd/ordergate.service" ]] || die "$SRC is not an ordergate checkout"
if [[ -n "$INSTANCE" && ! "$INSTANCE" =~ ^[a-z0-9][a-z0-9_-]{0,39}$ ]]; then
    die "INSTANCE=$INSTANCE is not an instance name: 1-40 lower-case letters, digits, '-' or '_'"
fi

install_code() {
    if [[ ${ORDERGATE_USE_CHECKOUT:-0} == 1 ]]; then
        if [[ "$SRC" != "$PREFIX" ]]; then
            [[ -e "$PREFIX" && ! -L "$PREFIX" ]] && die "$PREFIX exists and is not a symlink; remove it first"
            ln -sfn "$SRC" "$PREFIX"
        fi
    elif [[ "$SRC" != "$PREFIX" ]]; then
        mkdir -p "$PREFIX"
        # copy the source tree, never the checkout's venv, state or caches
        tar -C "$SRC" --exclude=./.venv --exclude=./.ordergate --exclude=./.git \
            --exclude='*.egg-info' --exclude='__pycache__' --exclude=./build -cf - . | tar -C "$PREFIX" -xf -
    fi
}

install_venv() {
    local venv="$PREFIX/.venv"
    [[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check -q --upgrade "$PREFIX"
    # the unit runs with ProtectSystem=strict: byte-code cannot be written later, so write it now
    "$venv/bin/python" -m compileall -q "$venv" >/dev/null || true
    chmod -R a+rX "$PREFIX/"
    [[ -x "$venv/bin/ordergate" ]] || die "$venv/bin/ordergate was not installed"
}

install_config() {
    local name=${INSTANCE:-ordergate}
    install -d -m 0755 -o root -g root "$CONF_DIR"
    if [[ ! -f "$CONF_DIR/$name.toml" ]]; then
        install -m 0644 -o root -g root "$SRC/config/default.toml" "$CONF_DIR/$name.toml"
        echo "created $CONF_DIR/$name.toml (edit it: broker, tickers, risk limits${INSTANCE:+, the instance ports})"
    fi
    if [[ ! -f "$CONF_DIR/$name.env" ]]; then
        install -m 0600 -o root -g root "$SRC/systemd/ordergate.env.example" "$CONF_DIR/$name.env"
        echo "created $CONF_DIR/$name.env (0600: put broker keys here)"
    fi
}

install_unit() {
    local file=ordergate.service unit=ordergate.service
    if [[ -n "$INSTANCE" ]]; then
        file=ordergate@.service
        unit=ordergate@$INSTANCE.service
    fi
    install -m 0644 -o root -g root "$SRC/systemd/$file" "$UNIT_DIR/$file"
    if command -v systemd-analyze >/dev/null; then
        systemd-analyze verify "$UNIT_DIR/$unit" || die "systemd-analyze verify failed"
    fi
    systemctl daemon-reload
    systemctl enable "$unit"
    if [[ ${ORDERGATE_START:-0} == 1 ]]; then
        systemctl restart "$unit"
    fi
}

install_code
install_venv
install_config
install_unit

if [[ -n "$INSTANCE" ]]; then
    cat <<MSG
ordergate installed in $PREFIX; instance $INSTANCE enabled (ordergate@$INSTANCE.service).
  config:       $CONF_DIR/$INSTANCE.toml (its own ports and account), secrets $CONF_DIR/$INSTANCE.env
  start:        sudo systemctl start ordergate@$INSTANCE
  logs:         journalctl -u ordergate@$INSTANCE -f -o cat
  status:       sudo $PREFIX/.venv/bin/ordergate --instance $INSTANCE status
  kill switch:  sudo $PREFIX/.venv/bin/ordergate --instance $INSTANCE kill --reason TEXT
  state dir:    /var/lib/ordergate/$INSTANCE
MSG
    exit 0
fi
cat <<MSG
ordergate installed in $PREFIX and enabled.
  start:        sudo systemctl start ordergate
  logs:         journalctl -u ordergate -f -o cat
  status:       sudo $PREFIX/.venv/bin/ordergate status --config $CONF_DIR/ordergate.toml
  kill switch:  sudo systemctl kill -s SIGUSR1 ordergate   (or: ordergate kill --reason TEXT)
  state dir:    /var/lib/ordergate (STATE_DIRECTORY; use ORDERGATE_STATE_DIR=/var/lib/ordergate for the CLI)
MSG
