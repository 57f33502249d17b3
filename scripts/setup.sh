#!/usr/bin/env bash
# Prepare this checkout on a fresh machine: a virtualenv with the package (and its test extras), the
# JupyterLab extension built from labextension/, Chromium for the browser tests, a Docker engine that
# answers (started, or installed on Debian as root, when none does) and a base image (pulled, or
# bootstrapped offline from Debian packages when no registry answers).
# Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root_on_debian() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_install() {
    # `apt-get update` only when the package lists do not know the package yet.
    if ! apt-cache show "$1" >/dev/null 2>&1; then
        apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
# jupyterlab (a dependency) brings jlpm, its bundled yarn, and `jupyter labextension`.
export PATH="$PWD/.venv/bin:$PATH"

if ! command -v node >/dev/null; then
    if as_root_on_debian; then
        echo "setup: installing nodejs (to build the JupyterLab extension)"
        apt_install nodejs
    else
        echo "setup: the JupyterLab extension needs Node.js >= 18 on PATH; install it and run again" >&2
        exit 1
    fi
fi

if ! .venv/bin/python -c "import jupyter_containers, pytest, jupyterlab" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ] \
   || [ -n "$(find jupyter-config -newer .venv/.installed -type f 2>/dev/null)" ]; then
    echo "setup: installing jupyter-containers (editable) and its test extras into .venv"
    # The extension is built below (only when its sources changed), not by pip's build hook.
    SKIP_JUPYTER_BUILDER=1 .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
    touch .venv/.installed
fi

# The JupyterLab extension: rebuilt only when labextension/ changed since the last build.
labextension_hash() {
    find labextension/src labextension/style labextension/package.json labextension/yarn.lock \
        labextension/tsconfig.json labextension/.yarnrc.yml -type f -print0 \
        | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}
stamp=.venv/.labextension-built
if [ ! -f jupyter_containers/labextension/static/style.js ] \
   || [ "$(cat "$stamp" 2>/dev/null)" != "$(labextension_hash)" ]; then
    echo "setup: building the JupyterLab extension (labextension/ → jupyter_containers/labextension)"
    started=$SECONDS
    # A stale bundle must not survive (the wheel build hook's skip-if-exists would keep it).
    rm -rf jupyter_containers/labextension
    log=.venv/labextension-build.log
    if ! (cd labextension && jlpm install --immutable && jlpm build:prod) >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "setup: building the JupyterLab extension failed (full log: $log)" >&2
        exit 1
    fi
    labextension_hash >"$stamp"
    echo "setup: extension built in $((SECONDS - started)) s"
fi
# Lab loads the extension from the build folder itself (a link), so a rebuild needs no reinstall.
if [ ! -L .venv/share/jupyter/labextensions/jupyter-containers ]; then
    jupyter labextension develop --overwrite . >/dev/null 2>&1
fi

# Chromium for the browser tests (tests/ui), driven by Python playwright; never `playwright install`.
if [ ! -x /usr/bin/chromium ]; then
    if as_root_on_debian; then
        echo "setup: installing chromium (browser tests)"
        apt_install chromium
    else
        echo "setup: no /usr/bin/chromium: the browser tests (tests/ui) will fail; install Debian's chromium" >&2
    fi
fi

# Debian's docker-registry: the real registry of the push/pull tests (tests/registry.py starts its own instances).
if [ ! -x /usr/bin/docker-registry ]; then
    if as_root_on_debian; then
        echo "setup: installing docker-registry (registry tests)"
        apt_install docker-registry
    else
        echo "setup: no /usr/bin/docker-registry: the registry tests will fail; install Debian's docker-registry" >&2
    fi
fi

# Prometheus, for the test that runs the Grafana dashboard's queries (docs/grafana) on a real one: only the
# binary of Debian's package, unpacked into .venv/bin (no service, no user, nothing listening until a test
# starts it on 127.0.0.1).
if [ ! -x .venv/bin/prometheus ]; then
    if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
        echo "setup: unpacking Debian's prometheus binary into .venv/bin (dashboard test)"
        work=$(mktemp -d)
        if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
            as_root_on_debian && apt-get update -qq
            (cd "$work" && apt-get download prometheus >/dev/null)
        fi
        dpkg-deb -x "$work"/prometheus_*.deb "$work/unpacked"
        install -m 0755 "$work/unpacked/usr/bin/prometheus" .venv/bin/prometheus
        rm -rf "$work"
    else
        echo "setup: no apt-get: the dashboard test needs a prometheus binary at .venv/bin/prometheus" >&2
    fi
fi

.venv/bin/jupyter-containers setup
