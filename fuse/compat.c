/*
 * Workaround for host/host.c (to remove once it is fixed there): its reaper
 * thread waits on a condition variable initialised with the default clock
 * (CLOCK_REALTIME) for a deadline computed on CLOCK_MONOTONIC, so every wait
 * returns at once and the thread rescans the 1 MiB heartbeat region in a
 * tight loop (a whole CPU, and the latency of every FUSE request with it).
 *
 * This definition interposes pthread_cond_timedwait for the whole program:
 * a deadline that can only be a CLOCK_MONOTONIC time (smaller than half of
 * the wall clock, i.e. an uptime below decades) is waited for on
 * CLOCK_MONOTONIC, any other on CLOCK_REALTIME, both with glibc's
 * pthread_cond_clockwait(), which ignores the clock the condition variable
 * was initialised with.  Correct callers (lockmgr's heartbeat thread, which
 * sets CLOCK_MONOTONIC on its condattr; anything that waits for a wall-clock
 * deadline) behave exactly as before.
 */
#include <pthread.h>
#include <time.h>

int pthread_cond_timedwait(pthread_cond_t *restrict c, pthread_mutex_t *restrict m,
			   const struct timespec *restrict abstime)
{
	struct timespec wall;
	clockid_t clk = CLOCK_REALTIME;

	if (clock_gettime(CLOCK_REALTIME, &wall) == 0 &&
	    abstime->tv_sec < wall.tv_sec / 2)
		clk = CLOCK_MONOTONIC;
	return pthread_cond_clockwait(c, m, clk, abstime);
}
