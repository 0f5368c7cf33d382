/*
 * train/run_dir.h: one job at a time in a checkpoint directory.
 *
 * Rank 0 of a training job holds DIR/ringtrain.lock with flock(2) for the
 * job's life; the kernel releases it when the process ends or dies, so a
 * requeued or relaunched job takes it again at once. The file holds the
 * holder's host and pid, which a second job names in its error. While the
 * lock is held no other writer exists, so temporary files that a killed
 * writer left behind are removed.
 */
#ifndef TRAIN_RUN_DIR_H
#define TRAIN_RUN_DIR_H

#include "core/error.h"

#define TRAIN_RUN_DIR_LOCK "ringtrain.lock"

typedef struct train_run_dir {
    int fd; /* the locked file, -1 when none is held */
} train_run_dir;

/* Creates dir if needed and takes its lock; fails with a line naming the
 * directory and the holder when another process holds it. */
int train_run_dir_lock(train_run_dir *rd, const char *dir, core_error *err);
void train_run_dir_unlock(train_run_dir *rd);

/* With the lock held: removes the checkpoints (ckpt-*.h5), `latest` and the
 * best/ checkpoint of an earlier run, for --overwrite. */
int train_run_dir_clear(const char *dir, core_error *err);

#endif
