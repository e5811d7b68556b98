/*
 * Every timing of the cluster protocol, derived from one io_timeout.
 *
 *   io_timeout    the longest one I/O may take before the path is considered
 *                 lost (the block layer / initiator must abort it by then)
 *   hb_interval   = 1.5 x io_timeout   renewal period of our heartbeat slot
 *   hb_timeout    = 8   x io_timeout   an observer that has seen the same stamp
 *                                      for this long calls the owner dead
 *   fence         = hb_timeout - io_timeout = 7 x io_timeout
 *                                      we stop issuing I/O at S + fence, where S
 *                                      is the *submission* time of our newest
 *                                      renewal that completed successfully
 *   lock_retry    = io_timeout / 8     poll period when waiting for a lock
 *   reclaim_wait  = hb_timeout + 2 x io_timeout
 *                                      how long to wait for another host that
 *                                      is already replaying a dead slot
 *
 * Defaults (io_timeout 2 s) match VMFS: hb_interval 3 s, hb_timeout 16 s.
 * Tests use io_timeout 0.25 s: hb_interval 0.375 s, hb_timeout 2 s, fence 1.75 s.
 *
 * Failure timeline, defaults, "host A loses its disk at t = 0"
 * -------------------------------------------------------------
 * Worst case for safety: A submitted a renewal at S = 0 that landed just before
 * the path died, and observer B read the new stamp the instant it landed.
 *
 *   t =  0 s   A submits renewal #k (stamp s_k); it lands; S = 0.
 *              B reads s_k right away and notes (s_k, first seen at T_B >= 0).
 *              A's disk is gone from here on; every I/O of A hangs.
 *   t =  3 s   A's renewal #k+1 hangs (ATS never completes).
 *   t =  6..12 (further attempts are not started while one hangs; an attempt
 *              that fails fast with -EIO is retried every hb_interval).
 *   t = 14 s   = S + hb_timeout - io_timeout: A's fence deadline.  From now on A's
 *              guard device fails every new request with -EIO and A logs
 *              "FENCED" loudly.  Requests already in flight must complete or be
 *              aborted within io_timeout, i.e. by t = 16 s.
 *   t = 16 s   = T_B + hb_timeout at the earliest: B may call A dead.  B ATSes
 *              A's slot to {replayHost = B}, replays A's journal, frees the slot
 *              (seq+1); A's locks are now stale and B may take them.
 *              Nothing of A lands after t = 16 s, so A's last write lands
 *              before B's first.
 *   later      A's path comes back: its pending renewal ATS miscompares (the
 *              slot changed), A drops every lock (epoch+1, EV_LOST) and rejoins
 *              as a new generation in a free slot.  If nobody reclaimed A in
 *              the meantime its renewal succeeds, the slot is unchanged, and
 *              A unfences (EV_UNFENCED) with its locks intact.
 *
 * Why submission time: B may see the stamp any time after A submitted it,
 * so B's clock for "same stamp" cannot start before S; A must therefore count
 * from S, not from when it learned the renewal completed.
 *
 * Both hosts only measure intervals on their own CLOCK_MONOTONIC; clocks are
 * never compared.  A host with io_timeout 2 s and one with 0.25 s must not
 * share a volume (the slower one would be called dead while still writing):
 * the volume's io_timeout is a cluster-wide setting.
 */
#include <errno.h>
#include <time.h>

#include "vmfs/lockmgr.h"

uint64_t vmfs_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000u;
}

int vmfs_timeouts_init(struct vmfs_timeouts *t, uint64_t io_timeout_us)
{
	uint64_t io = io_timeout_us ? io_timeout_us : VMFS_IO_TIMEOUT_DEFAULT_US;

	if (!t || io < 10000 || io > 600000000ull)
		return -EINVAL;
	t->io_timeout_us = io;
	t->hb_interval_us = io * 3 / 2;
	t->hb_timeout_us = io * 8;
	t->fence_us = t->hb_timeout_us - io;
	t->lock_retry_us = io / 8;
	t->reclaim_wait_us = t->hb_timeout_us + 2 * io;
	return 0;
}
