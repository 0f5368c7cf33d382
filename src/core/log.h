/*
 * core/log.h: rank-aware logging.
 *
 * core_log_info prints on rank 0 only (progress and results). Warnings and
 * errors print on every rank, prefixed with the rank, so a problem on rank 5
 * of 64 is still seen. Everything goes to stderr except core_log_info, which
 * goes to stdout so that results can be piped.
 */
#ifndef CORE_LOG_H
#define CORE_LOG_H

void core_log_set_rank(int rank, int size);
int core_log_rank(void);

void core_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void core_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void core_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
