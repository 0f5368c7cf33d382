# shellcheck shell=bash
# Shared by tests/e2e/cluster_*.sh: the root check, a private state dir that is
# removed at exit (after the cluster is taken down), and mpi_hello.
# Sourced with BUILD and SRC set.
set -euo pipefail

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
skip() {
  echo "SKIP: $*"
  exit 77 # SKIP_RETURN_CODE of the e2e tests in tests/CMakeLists.txt
}

[ "$(id -u)" -eq 0 ] || skip "needs root (daemons, network namespaces); CI runs as root"

# A short path: munge's socket path must fit in a sockaddr_un (108 bytes).
export RT_CLUSTER_STATE
RT_CLUSTER_STATE=$(mktemp -d "${TMPDIR:-/tmp}/rt-test.XXXXXX")
chmod 0755 "$RT_CLUSTER_STATE"
WORK="$RT_CLUSTER_STATE/work"
mkdir -p "$WORK"

# cluster_cleanup CMD...: at exit run CMD (the down script), then remove the state.
cluster_cleanup() {
  CLUSTER_DOWN=("$@")
  # shellcheck disable=SC2154 # rc is set inside the trap
  trap 'rc=$?; "${CLUSTER_DOWN[@]}" >/dev/null || echo "cleanup: ${CLUSTER_DOWN[*]} failed" >&2;
        rm -rf "$RT_CLUSTER_STATE"; exit $rc' EXIT
}

# ms_since START_NS: milliseconds since START_NS (date +%s%N).
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

build_mpi_hello() {
  MPI_HELLO="$WORK/mpi_hello"
  mpicc -O2 -o "$MPI_HELLO" "$SRC/cluster/hosts/mpi_hello.c" || fail "mpicc cluster/hosts/mpi_hello.c failed"
}
