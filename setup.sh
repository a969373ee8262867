#!/usr/bin/env bash
# Sets vmq up on Debian 12 with Node 20: installs the Debian packages it needs (skipping what
# is already there), then the npm dependencies, then builds dist/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages: nats-server for the embedded default NATS and the tests, openssl for the
# TLS tests (test/integration/auth.test.ts makes a CA and certificates with it).
# iproute2 and dnsmasq-base: the tap-networking test builds a bridge and DHCP in a network namespace.
packages=(nats-server openssl qemu-system-x86 qemu-utils genisoimage busybox-static cpio dosfstools mtools syslinux syslinux-common xz-utils ovmf iproute2 dnsmasq-base chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
echo "setup: ready ($(/usr/sbin/nats-server --version 2>/dev/null || echo 'nats-server ?'), node $(node --version))"
