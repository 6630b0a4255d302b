# Sourced by the install-* scripts: `apt_install NAME PACKAGE` installs a Debian package as root
# (or through passwordless sudo). It never fails the caller: it returns 1, saying why as NAME,
# where apt, root or the network is missing, and the caller decides what that means.
apt_install() {
  local name=$1 package=$2 sudo=""
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$name: no apt-get here to install $package" >&2
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      echo "$name: not root and no sudo to install $package" >&2
      return 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  if $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$package" >/dev/null; then
    return 0
  fi
  echo "$name: apt-get could not install $package" >&2
  return 1
}
