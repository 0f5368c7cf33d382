/*
 * train/run_dir.c: the lock that gives a checkpoint directory to one job at a
 * time, and the clean-up it makes safe (see run_dir.h).
 */
#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/log.h"
#include "train/checkpoint.h"

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A temporary file of a checkpoint or pointer write ("ckpt-N.h5.tmp.PID",
 * "latest.tmp.PID", and the ".tmp" names of older builds). */
static int is_tmp(const char *name)
{
    return (starts_with(name, "ckpt-") || starts_with(name, "latest")) && strstr(name, ".tmp");
}

/* A checkpoint of a run: ckpt-*.h5, its temporaries, and the latest pointer. */
static int is_run_file(const char *name)
{
    return is_tmp(name) || strcmp(name, "latest") == 0 ||
           (starts_with(name, "ckpt-") && strstr(name, ".h5"));
}

/* Removes the files of dir that `match` accepts; a missing dir is empty. */
static int remove_matching(const char *dir, int (*match)(const char *), core_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0
                               : core_error_set(err, "%s: cannot list: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char path[4096];
        if (!match(e->d_name) ||
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        if (unlink(path) != 0 && errno != ENOENT)
            rc = core_error_set(err, "%s: cannot remove: %s", path, strerror(errno));
    }
    closedir(d);
    return rc;
}

static int remove_in_both(const char *dir, int (*match)(const char *), core_error *err)
{
    char best[4096];
    if (snprintf(best, sizeof best, "%s/best", dir) >= (int)sizeof best)
        return core_error_set(err, "%s/best: path too long", dir);
    return remove_matching(dir, match, err) != 0 ? -1 : remove_matching(best, match, err);
}

/* The holder's "HOST PID" line, as written below. */
static void read_holder(int fd, char *host, size_t hlen, long *pid)
{
    char buf[320] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    snprintf(host, hlen, "unknown");
    *pid = 0;
    if (n <= 0)
        return;
    char h[256];
    if (sscanf(buf, "%255s %ld", h, pid) == 2)
        snprintf(host, hlen, "%s", h);
}

static void write_holder(int fd)
{
    char host[256] = "unknown", line[320];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    int n = snprintf(line, sizeof line, "%s %ld\n", host, (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n)
        core_log_warn("cannot record the holder in the checkpoint directory's lock file: %s",
                      strerror(errno));
}

int train_run_dir_lock(train_run_dir *rd, const char *dir, core_error *err)
{
    rd->fd = -1;
    if (train_checkpoint_make_dir(dir, err) != 0)
        return -1;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/" TRAIN_RUN_DIR_LOCK, dir) >= (int)sizeof path)
        return core_error_set(err, "%s: path too long", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return core_error_set(err,
                              "%s: cannot write checkpoints in this directory: %s (creating %s)",
                              dir, strerror(errno), TRAIN_RUN_DIR_LOCK);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e != EWOULDBLOCK) {
            /* a file system without flock: run, but say what is not guarded */
            close(fd);
            core_log_warn("%s: cannot lock (%s); a second job writing into %s would not be "
                          "detected",
                          path, strerror(e), dir);
            return 0;
        }
        char host[256];
        long pid;
        read_holder(fd, host, sizeof host, &pid);
        close(fd);
        return core_error_set(err,
                              "%s: checkpoint directory in use by another job (pid %ld on host "
                              "%s holds %s); wait for it to end or use another --checkpoint-dir",
                              dir, pid, host, TRAIN_RUN_DIR_LOCK);
    }
    rd->fd = fd;
    write_holder(fd);
    /* no other writer exists now: what a killed one left is garbage */
    return remove_in_both(dir, is_tmp, err);
}

void train_run_dir_unlock(train_run_dir *rd)
{
    if (rd->fd >= 0)
        close(rd->fd); /* releases the lock; the file stays for the next job */
    rd->fd = -1;
}

int train_run_dir_clear(const char *dir, core_error *err)
{
    return remove_in_both(dir, is_run_file, err);
}
