#!/usr/bin/env bash
# Puts lottie-web's player at static/vendor/lottie.min.js (git-ignored), taken from the npm
# registry, so Lottie gifts play their own animation on the room page. Without npm or a
# registry it does nothing: the page then animates every gift's icon with CSS instead.
set -uo pipefail
cd "$(dirname "$0")/.."

VERSION=5.12.2
target=static/vendor/lottie.min.js
[ -f "$target" ] && exit 0
if ! command -v npm >/dev/null 2>&1; then
  echo "install-lottie: no npm here; gifts animate with CSS" >&2
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if (cd "$work" && npm pack --silent "lottie-web@$VERSION" >/dev/null 2>&1) \
  && tar -xzf "$work/lottie-web-$VERSION.tgz" -C "$work" package/build/player/lottie.min.js; then
  mkdir -p static/vendor
  cp "$work/package/build/player/lottie.min.js" "$target"
  echo "install-lottie: lottie-web $VERSION installed at $target"
else
  echo "install-lottie: could not fetch lottie-web $VERSION; gifts animate with CSS" >&2
fi
exit 0
