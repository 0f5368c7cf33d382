# shellcheck shell=bash disable=SC2034 # variables for the scripts that source this
# Paths of the private Slurm cluster; sourced by up/down/status/env.
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
RT_SLURM="$RT_STATE/slurm"
RT_SLURM_CONF="$RT_SLURM/etc/slurm.conf"
RT_MUNGE_SOCKET="$RT_SLURM/munge/munge.socket"
RT_MUNGED=/usr/sbin/munged
RT_SLURMCTLD=/usr/sbin/slurmctld
RT_SLURMD=/usr/sbin/slurmd
# pid file, executable, name of each daemon, in start order
rt_daemons=(
  "$RT_SLURM/munge/munged.pid $RT_MUNGED munged"
  "$RT_SLURM/run/slurmctld.pid $RT_SLURMCTLD slurmctld"
  "$RT_SLURM/run/slurmd.pid $RT_SLURMD slurmd"
)

# rt_slurm_running: all three daemons alive (by pid file) and slurmctld answers.
rt_slurm_running() {
  local d
  for d in "${rt_daemons[@]}"; do
    # shellcheck disable=SC2086
    rt_pid_alive $d >/dev/null || return 1
  done
  SLURM_CONF=$RT_SLURM_CONF timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'
}
