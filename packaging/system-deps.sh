#!/bin/sh
# System libraries Embridge needs beyond Python packages, on Debian/Ubuntu.
#   packaging/system-deps.sh run    the Qt "xcb" platform plugin's libraries (make run)
#   packaging/system-deps.sh test   the same, and chromium for the test that loads the HTML report (make test)
# Installs what is missing with apt-get when run as root; otherwise says what to install and fails.
# PYTHON (default .venv/bin/python) is used to find the Qt plugin and check it with ldd.
set -eu
what="${1:-run}"
PYTHON="${PYTHON:-.venv/bin/python}"

xcb="libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0 libxcb-randr0
     libxcb-shape0 libxcb-cursor0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3"
case "$what" in
  run) packages="$xcb" ;;
  test) packages="$xcb chromium" ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

if command -v dpkg-query >/dev/null 2>&1; then
  missing=""
  for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "system-deps: installing$missing" >&2
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "system-deps: missing system packages:$missing" >&2
      echo "system-deps: install them with: sudo apt-get install$missing" >&2
      exit 1
    fi
  fi
else
  echo "system-deps: not a Debian-like system; make sure the equivalents of these are installed: $packages" >&2
fi

if [ -x "$PYTHON" ]; then
  plugin="$("$PYTHON" -c 'import os, PySide6; print(os.path.join(os.path.dirname(PySide6.__file__), "Qt", "plugins", "platforms", "libqxcb.so"))')"
  if [ -f "$plugin" ]; then
    absent="$(ldd "$plugin" 2>/dev/null | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')"
    if [ -n "$absent" ]; then
      echo "system-deps: the Qt xcb platform plugin cannot load; missing libraries: $absent" >&2
      exit 1
    fi
  fi
fi
