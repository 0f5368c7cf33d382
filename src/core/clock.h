/*
 * core/clock.h: wall-clock readings for timings and the start-up figure.
 */
#ifndef RINGTRAIN_CORE_CLOCK_H
#define RINGTRAIN_CORE_CLOCK_H

/* Seconds on the monotonic clock (for differences only). */
double core_now(void);

/* Seconds since this process was created (fork/exec, before the dynamic
 * loader ran), from /proc/self/stat; 10 ms resolution. -1 if unknown. */
double core_process_age(void);

#endif
