/*
 * vmfs-fuse: the session loop.  Worker threads read requests from /dev/fuse
 * and process them, as in libfuse's multithreaded loop, but the number of
 * threads that wait for requests adapts to the load:
 *
 * - Every reader blocks in read(2) on the device and the kernel hands each
 *   request to the reader that has waited longest.  With several idle
 *   readers and one request at a time (QD1), every request therefore goes
 *   to another thread, which was asleep longest and is woken cold; a
 *   single-threaded loop (the thread that replied reads the next request)
 *   is up to ~1.3x faster there.  So a thread that finishes a request
 *   while another thread is already waiting, and that found no backlog in
 *   its last PARK_AFTER reads, parks (on a condition variable) instead of
 *   queueing behind it: at QD1 one thread does all the work, while at QD16
 *   (where a read now and then finds the queue empty) threads do not keep
 *   parking and being woken again.
 * - A read that returns about as fast as copying the request takes found
 *   it already queued: backlog (a read that had to sleep takes a wake-up
 *   longer; the clock is read through the vDSO, where getrusage's count of
 *   voluntary context switches would cost two system calls a request).
 *   After a large request (a 1 MiB write, whose copy takes as long as a
 *   wake-up, or a 1 MiB read) the thread asks getrusage instead, whose cost
 *   is small next to such a request: backlog only if the read did not sleep
 *   (no voluntary context switch in it) and the thread was not preempted
 *   (no involuntary one) since it read the large request.  At QD1 the
 *   client's next request is often queued by the time the thread reads,
 *   because the reply woke the client on the thread's own CPU, which ran it
 *   until it submitted that request; counting this as backlog grew 1 MiB
 *   QD1 reads and writes to 16 threads taking turns, each with its own
 *   cold buffers (one thread: 1.1-1.5x the 1 MiB QD1 write throughput in
 *   alternating runs).  When a thread finds backlog twice in a row and
 *   nobody else is waiting then, a parked thread is woken (or a new one
 *   started, up to the maximum) so requests are processed in parallel
 *   (QD16).  Once is not enough for small requests: a thread preempted
 *   right after its reply (the woken client runs on its CPU) finds the
 *   client's next request queued too.
 * - A watchdog ticking every 5 ms while requests are in progress
 *   adds a reader when nobody waits and nothing completed during a whole
 *   tick, so one slow request (a lock wait of seconds, an fsync) never
 *   holds up the others for more than ~10 ms (a shorter tick would take
 *   1 MiB writes that wait for the page cache's writeback for stuck ones,
 *   adding threads that then take turns).  It sleeps while the mount
 *   is idle.
 */
#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <linux/fuse.h>

#include "vmfs_fuse.h"

#define WD_TICK_NS 5000000L
#define WD_IDLE_TICKS 20
#define PARK_AFTER 4   /* reads in a row that had to wait */
#define GROW_AFTER 2   /* reads in a row that found a request queued */
#define LARGE_REQ (64u << 10)   /* after a request this large, count context switches */
/* A read that found its request queued: a system call plus the copy
 * (taken as >= 2 bytes/ns); anything slower slept waiting. */
#define QUEUED_NS(bytes) (4000 + (bytes) / 2)

struct worker {
	pthread_t tid;
	bool reading;              /* waiting in read(2): SIGUSR1 may interrupt it */
	unsigned waited;           /* reads in a row that found nothing queued */
	unsigned queued;           /* reads in a row that found a request queued */
	bool large;                /* its last request moved >= LARGE_REQ bytes */
	long niv;                  /* involuntary switches when it read that, or -1 */
	bool done;
};

struct loop {
	struct fuse_session *se;
	pthread_mutex_t mu;
	pthread_cond_t park_cv, wd_cv;
	sem_t finish;
	struct worker *w;
	unsigned max, nthreads, live;
	unsigned readers;          /* threads waiting for a request */
	unsigned busy;             /* threads processing one */
	unsigned parked, unpark;   /* parked threads, wake-ups owed to them */
	unsigned long progress;    /* requests completed */
	bool wd_sleeping;
	int error;
};

static void *worker_main(void *arg);

/* One more reader: a parked thread, else a new one.  Holds l->mu. */
static void grow(struct loop *l)
{
	if (l->parked > l->unpark) {
		l->unpark++;
		pthread_cond_signal(&l->park_cv);
		return;
	}
	if (l->nthreads < l->max && !fuse_session_exited(l->se)) {
		struct worker *w = &l->w[l->nthreads];

		w->done = w->reading = false;
		w->waited = w->queued = 0;
		w->large = false;
		if (pthread_create(&w->tid, NULL, worker_main, l) == 0) {
			l->nthreads++;
			l->live++;
		}
	}
}

static struct worker *self(struct loop *l)
{
	for (unsigned i = 0; i < l->nthreads; i++)
		if (pthread_equal(l->w[i].tid, pthread_self()))
			return &l->w[i];
	return NULL;
}

/* This thread's voluntary and involuntary context switches so far. */
static bool switches(long *nv, long *niv)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru))
		return false;
	*nv = ru.ru_nvcsw;
	*niv = ru.ru_nivcsw;
	return true;
}

/* The bytes a request moves: a WRITE carries them, a READ's reply does. */
static size_t req_bytes(const struct fuse_buf *b, int r)
{
	const struct fuse_in_header *h = b->mem;

	if (!(b->flags & FUSE_BUF_IS_FD) &&
	    (size_t)r >= sizeof(*h) + sizeof(struct fuse_read_in) && h->opcode == FUSE_READ)
		return ((const struct fuse_read_in *)(h + 1))->size;
	return (size_t)r;
}

static void *worker_main(void *arg)
{
	struct loop *l = arg;
	struct fuse_buf buf = { 0 };
	struct worker *me;

	pthread_mutex_lock(&l->mu);
	me = self(l);
	while (!fuse_session_exited(l->se)) {
		uint64_t t0;
		long nv0 = -1, nv = -1, niv = -1, x;
		bool slept, large = me->large;
		int r;

		l->readers++;
		me->reading = true;
		pthread_mutex_unlock(&l->mu);
		if (large && !switches(&nv0, &x))
			nv0 = -1;
		t0 = vf_now_ns();
		r = fuse_session_receive_buf(l->se, &buf);
		me->large = r > 0 && req_bytes(&buf, r) >= LARGE_REQ;
		if ((large || me->large) && !switches(&nv, &niv))
			nv = niv = -1;
		if (r <= 0)
			slept = true;
		else if (large)
			slept = nv0 < 0 || nv < 0 || me->niv < 0 || nv != nv0 || niv != me->niv;
		else
			slept = vf_now_ns() - t0 > QUEUED_NS((uint64_t)r);
		me->niv = niv;
		pthread_mutex_lock(&l->mu);
		l->readers--;
		me->reading = false;
		if (r == -EINTR || r == -EAGAIN)
			continue;
		if (r <= 0) {
			/* 0: unmounted or told to exit */
			if (r < 0 && !l->error)
				l->error = r;
			fuse_session_exit(l->se);
			break;
		}
		l->busy++;
		me->waited = slept ? me->waited + 1 : 0;
		me->queued = slept ? 0 : me->queued + 1;
		if (me->queued >= GROW_AFTER && !l->readers)
			grow(l);
		if (l->wd_sleeping)
			pthread_cond_signal(&l->wd_cv);
		pthread_mutex_unlock(&l->mu);

		fuse_session_process_buf(l->se, &buf);

		pthread_mutex_lock(&l->mu);
		l->busy--;
		l->progress++;
		if (me->waited >= PARK_AFTER && l->readers) {
			/* someone already waits for the next request: step aside */
			l->parked++;
			while (!l->unpark && !fuse_session_exited(l->se))
				pthread_cond_wait(&l->park_cv, &l->mu);
			if (l->unpark)
				l->unpark--;
			l->parked--;
			me->waited = 0;
		}
	}
	me->done = true;
	l->live--;
	pthread_cond_broadcast(&l->park_cv);
	pthread_cond_broadcast(&l->wd_cv);
	pthread_mutex_unlock(&l->mu);
	sem_post(&l->finish);
	free(buf.mem);
	return NULL;
}

static void *watchdog_main(void *arg)
{
	struct loop *l = arg;
	struct timespec tick = { 0, WD_TICK_NS };
	unsigned long last = 0;
	unsigned idle = 0;

	pthread_mutex_lock(&l->mu);
	while (!fuse_session_exited(l->se)) {
		if (l->busy) {
			if (!l->readers && l->progress == last)
				grow(l);   /* everyone is stuck in a slow request */
			idle = 0;
		} else if (++idle > WD_IDLE_TICKS) {
			l->wd_sleeping = true;
			pthread_cond_wait(&l->wd_cv, &l->mu);
			l->wd_sleeping = false;
			idle = 0;
		}
		last = l->progress;
		pthread_mutex_unlock(&l->mu);
		nanosleep(&tick, NULL);
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

int vf_session_loop(struct fuse_session *se, unsigned max_threads)
{
	struct loop l = { .se = se, .max = max_threads ? max_threads : 1 };
	pthread_t wd;
	bool wd_ok;
	int r;

	l.w = calloc(l.max, sizeof(*l.w));
	if (!l.w)
		return -ENOMEM;
	pthread_mutex_init(&l.mu, NULL);
	pthread_cond_init(&l.park_cv, NULL);
	pthread_cond_init(&l.wd_cv, NULL);
	sem_init(&l.finish, 0, 0);
	pthread_mutex_lock(&l.mu);
	grow(&l);
	r = l.nthreads ? 0 : -EAGAIN;
	pthread_mutex_unlock(&l.mu);
	wd_ok = !r && pthread_create(&wd, NULL, watchdog_main, &l) == 0;
	if (!r && !wd_ok)
		r = -EAGAIN;
	if (r)
		fuse_session_exit(se);

	/* Until a worker or a signal (SIGUSR1 interrupts sem_wait) ends the session. */
	while (!fuse_session_exited(se))
		sem_wait(&l.finish);

	/* Wake everyone: parked threads and the watchdog by their condition
	 * variables, threads blocked in read(2) by SIGUSR1 (EINTR; threads
	 * processing a request finish it undisturbed). */
	pthread_mutex_lock(&l.mu);
	while (l.live) {
		pthread_cond_broadcast(&l.park_cv);
		pthread_cond_broadcast(&l.wd_cv);
		for (unsigned i = 0; i < l.nthreads; i++)
			if (l.w[i].reading)
				pthread_kill(l.w[i].tid, SIGUSR1);
		pthread_mutex_unlock(&l.mu);
		nanosleep(&(struct timespec){ 0, 1000000L }, NULL);
		pthread_mutex_lock(&l.mu);
	}
	pthread_cond_broadcast(&l.wd_cv);
	pthread_mutex_unlock(&l.mu);
	if (wd_ok)
		pthread_join(wd, NULL);
	for (unsigned i = 0; i < l.nthreads; i++)
		pthread_join(l.w[i].tid, NULL);
	if (!r)
		r = l.error;
	sem_destroy(&l.finish);
	pthread_cond_destroy(&l.wd_cv);
	pthread_cond_destroy(&l.park_cv);
	pthread_mutex_destroy(&l.mu);
	free(l.w);
	return r;
}
