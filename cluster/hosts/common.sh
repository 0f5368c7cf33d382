# shellcheck shell=bash disable=SC2034 # variables for the scripts that source this
# Names and paths of the simulated hosts; sourced by up/down/status/rsh/mpirun.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
RT_HOSTS="$RT_STATE/hosts"
# Namespace names are global on the machine: a prefix keeps ours apart from any
# other instance (tests use their own). Hosts are <prefix>h1..hN; the switch and
# the launch node share <prefix>head.
RT_HOSTS_PREFIX=${RT_HOSTS_PREFIX:-rt-}
if [ -s "$RT_HOSTS/prefix" ]; then RT_HOSTS_PREFIX=$(cat "$RT_HOSTS/prefix"); fi
RT_HOSTS_NET=${RT_HOSTS_NET:-10.77.0} # the /24 that exists only inside the namespaces
RT_HEAD_NS="${RT_HOSTS_PREFIX}head"
RT_HEAD_ADDR="$RT_HOSTS_NET.254"

rt_ns_exists() { [ -e "/run/netns/$1" ]; }

# rt_host_ns NAME|ADDRESS: the namespace of a simulated host, from the map
# written by up ("name address namespace" per line).
rt_host_ns() {
  [ -s "$RT_HOSTS/map" ] || return 1
  awk -v h="$1" '$1 == h || $2 == h { print $3; found = 1; exit } END { exit !found }' "$RT_HOSTS/map"
}
