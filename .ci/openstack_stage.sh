#!/usr/bin/env bash
# Real OpenStack (issue 5): Keystone, Placement, Glance, the Neutron API and Nova (fake virt
# driver) from PyPI on loopback (ci/openstack/recipe.sh), then the compute conformance suite and
# the end-to-end API test against them through openstacksdk. Always brings them down again.
source "$(dirname "$0")/../bin/_env.sh"
ensure_deb bc bc
ensure_deb curl curl
ensure_deb /usr/lib/postgresql/15/bin/initdb postgresql-15
export OSS_BASE="${OSS_BASE:-${TMPDIR:-/tmp}/tc-openstack-ci}"
mkdir -p test-artifacts
finish() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -d "$OSS_BASE/logs" ]; then
    tar -czf test-artifacts/openstack-logs.tar.gz -C "$OSS_BASE" logs 2>/dev/null || true
    echo "real OpenStack logs: test-artifacts/openstack-logs.tar.gz"
  fi
  ci/openstack/recipe.sh down || true
  exit "$rc"
}
trap finish EXIT
ci/openstack/recipe.sh up
ci/openstack/recipe.sh smoke
export OS_CLIENT_CONFIG_FILE="$OSS_BASE/clouds.yaml" OS_CLOUD=openstack-ci
# No Neutron agents on this cloud: servers boot without a network.
export TEACHCLOUD_COMPUTE_NETWORK=none TEACHCLOUD_COMPUTE_TIMEOUT=60
.venv/bin/pytest -p no:cacheprovider -W ignore -o console_output_style=count -rs \
  compute/tests/test_backend.py compute/tests/test_conformance.py
