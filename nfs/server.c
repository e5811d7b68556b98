/* TCP transport: listeners, a worker pool reading RPC records (record
 * marking, RFC 5531 §11) and running the calls, the write-lock reaper,
 * start/stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "internal.h"

int nfs_srv_create(vmfs_log_fn log, void *log_ctx, struct nfs_srv **out)
{
	struct nfs_srv *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->log = log;
	s->log_ctx = log_ctx;
	pthread_mutex_init(&s->mu, NULL);
	pthread_rwlockattr_t ra;

	pthread_rwlockattr_init(&ra);
	/* a WRITE waiting does not starve behind a stream of READs */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->fsmu, &ra);
	pthread_rwlockattr_destroy(&ra);
	s->wake[0] = s->wake[1] = -1;
	s->ep = s->qev = -1;
	s->qtail = &s->queue;
	/* the write verifier changes with every server instance (RFC 1813 §3.3.7) */
	if (RAND_bytes((uint8_t *)&s->wverf, sizeof(s->wverf)) != 1) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		s->wverf = (uint64_t)ts.tv_sec << 30 ^ (uint64_t)ts.tv_nsec;
	}
	*out = s;
	return 0;
}

int nfs_srv_add_volume(struct nfs_srv *s, struct vmfs_host *h, const uint8_t key[NFS_FH_KEY_SIZE])
{
	struct nfs_vol *v;
	const struct vmfs_fs_info *fi;

	if (s->nvols == NFS_MAX_VOLS)
		return -ENOSPC;
	if (s->started)
		return -EBUSY;
	v = &s->vols[s->nvols];
	v->host = h;
	v->fs = vmfs_host_fs(h);
	fi = vmfs_fs_get_info(v->fs);
	memcpy(v->uuid, fi->uuid, 16);
	snprintf(v->uuid_str, sizeof(v->uuid_str), "%.35s", fi->uuid_str);
	snprintf(v->label, sizeof(v->label), "%s", fi->label);
	memcpy(v->key, key, NFS_FH_KEY_SIZE);
	s->nvols++;
	return 0;
}

static int parse_addr(const char *spec, uint16_t defport, struct sockaddr_in *sa)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	size_t hl = colon ? (size_t)(colon - spec) : strlen(spec);
	unsigned long port = defport;
	char *end;

	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, spec, hl);
	host[hl] = 0;
	if (colon) {
		port = strtoul(colon + 1, &end, 10);
		if (!colon[1] || *end || port > 65535)
			return -EINVAL;
	}
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (!host[0] || !strcmp(host, "*") || !strcmp(host, "0.0.0.0"))
		sa->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -EINVAL;
	return 0;
}

static int do_listen(struct nfs_srv *s, const char *spec, uint16_t defport, uint16_t *bound,
		     char *err, size_t errlen)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd, one = 1, e;

	if (s->nlfd == NFS_MAX_LISTEN) {
		snprintf(err, errlen, "too many listeners");
		return -ENOSPC;
	}
	if (parse_addr(spec, defport, &sa)) {
		snprintf(err, errlen, "bad address '%s' (IPv4ADDR[:PORT])", spec);
		return -EINVAL;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl)) {
		e = errno;
		snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(e));
		close(fd);
		return -e;
	}
	s->lfd[s->nlfd++] = fd;
	if (bound)
		*bound = ntohs(sa.sin_port);
	return 0;
}

int nfs_srv_listen(struct nfs_srv *s, const char *addr, char *err, size_t errlen)
{
	struct sockaddr_in sa;
	int r = do_listen(s, addr, 2049, &s->nfs_port, err, errlen);

	if (!r && !parse_addr(addr, 2049, &sa))
		s->nfs_addr = ntohl(sa.sin_addr.s_addr);
	return r;
}

int nfs_srv_listen_portmap(struct nfs_srv *s, const char *addr, char *err, size_t errlen)
{
	int r = do_listen(s, addr, 111, NULL, err, errlen);

	if (!r)
		s->have_pmap = true;
	return r;
}

/* ---- connections ------------------------------------------------------------
 *
 * A pool of NFS_WORKERS threads serves every connection (leader/follower):
 * idle workers wait in one epoll set where each connection is armed
 * EPOLLONESHOT, so exactly one worker at a time reads a given socket.  That
 * worker reads without blocking whatever the socket holds (a big WRITE is
 * copied out piece by piece while the client is still sending it), keeps
 * the small calls and the first bulk one to run itself, queues the other
 * bulk calls at once for idle workers (an eventfd in the same epoll set
 * wakes them), then re-arms the socket, so the calls that follow are read
 * by another worker while it runs its own; its small calls' replies go out
 * together.  Replies go out whole, one at a time per connection (wmu), in
 * completion order: RPC matches them by xid.  A connection has at most
 * NFS_CONN_JOBS calls in flight, and all connections together about
 * NFS_BIG_BUDGET big (over 64 KiB) records; past that a connection is not
 * read until half of its calls are answered. */

struct nfs_job {
	struct nfs_job *next;
	struct nfs_conn *c;
	uint8_t *buf;              /* the record */
	size_t len;
	bool big;                  /* buf came from the big-buffer pool */
	bool bulk;                 /* nfs_rpc_is_bulk */
};

struct nfs_conn {
	struct nfs_srv *s;
	int fd;
	uint32_t peer;
	struct nfs_conn *next;
	int refs;                  /* s->mu: the reader (until EOF) + jobs */
	int jobs;                  /* s->mu: calls read and not yet answered */
	bool paused;               /* s->mu: too many jobs, not armed */
	pthread_mutex_t wmu;       /* one reply on the wire at a time */
	bool broken;               /* wmu: a send failed, drop further replies */
	/* reader state, touched only by the worker that holds the event */
	uint8_t mark[4];
	unsigned mlen;             /* bytes of the fragment header read */
	bool in_frag, last_frag, over, big;
	uint32_t frag_left;
	uint8_t *rec;
	size_t len, cap;
	uint8_t head[8];           /* xid and direction of an oversize record */
	size_t hlen;
	uint8_t rbuf[65536];
	size_t rpos, rlen;
};

#define SMALL_RECORD 65536u

static uint8_t *big_get(struct nfs_srv *s)
{
	uint8_t *b = NULL;

	pthread_mutex_lock(&s->mu);
	if (s->nbig)
		b = s->bigs[--s->nbig];
	pthread_mutex_unlock(&s->mu);
	return b ? b : malloc(NFS_MAX_RECORD);
}

static void buf_put(struct nfs_srv *s, uint8_t *b, bool big)
{
	if (b && big) {
		pthread_mutex_lock(&s->mu);
		if (s->nbig < NFS_BIG_KEEP) {
			s->bigs[s->nbig++] = b;
			b = NULL;
		}
		pthread_mutex_unlock(&s->mu);
	}
	free(b);
}

static void conn_unref(struct nfs_conn *c)
{
	struct nfs_srv *s = c->s;
	bool last;

	pthread_mutex_lock(&s->mu);
	last = --c->refs == 0;
	if (last) {
		for (struct nfs_conn **pp = &s->conns; *pp; pp = &(*pp)->next) {
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		}
		s->nconns--;
	}
	pthread_mutex_unlock(&s->mu);
	if (!last)
		return;
	close(c->fd);
	buf_put(s, c->rec, c->big);
	pthread_mutex_destroy(&c->wmu);
	free(c);
}

static void conn_arm(struct nfs_conn *c)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = c };

	epoll_ctl(c->s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Send a whole buffer (wmu held).  A client that stops reading for
 * NFS_SEND_TIMEOUT_S loses its connection. */
static int conn_send(struct nfs_conn *c, const uint8_t *p, size_t n)
{
	if (c->broken)
		return -1;
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			c->broken = true;
			shutdown(c->fd, SHUT_RDWR);
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* nfs_send_now_fn: a reply sent before its call is done, only when that
 * cannot wait on another reply or on a client that does not read. */
static bool conn_send_now(void *ctx, const uint8_t *p, size_t n)
{
	struct nfs_conn *c = ctx;
	ssize_t w;

	if (pthread_mutex_trylock(&c->wmu))
		return false;
	if (c->broken) {
		pthread_mutex_unlock(&c->wmu);
		return false;
	}
	w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		pthread_mutex_unlock(&c->wmu);
		return false;
	}
	if (w < 0) {
		c->broken = true;
		shutdown(c->fd, SHUT_RDWR);
	} else if ((size_t)w < n) {
		conn_send(c, p + w, n - (size_t)w);   /* the rest of a record begun */
	}
	pthread_mutex_unlock(&c->wmu);
	return true;
}

static void conn_reply(struct nfs_conn *c, const uint8_t *p, size_t n)
{
	pthread_mutex_lock(&c->wmu);
	conn_send(c, p, n);
	pthread_mutex_unlock(&c->wmu);
}

/* A record too big to hold: answer GARBAGE_ARGS from its header. */
static void reply_oversize(struct nfs_conn *c)
{
	uint8_t r[28];
	uint32_t v[7] = { 0x80000000u | 24, 0, 1, 0, FLAVOR_NONE, 0, RPC_GARBAGE_ARGS };
	const uint8_t *head = c->head;

	if (c->hlen < 8 || head[4] || head[5] || head[6] || head[7])
		return;             /* not a call */
	memcpy(&v[1], head, 4);
	v[1] = ntohl(v[1]);
	for (int i = 0; i < 7; i++) {
		uint32_t be = htonl(v[i]);

		memcpy(r + i * 4, &be, 4);
	}
	nfs_log(c->s, VMFS_LOG_WARN, "dropped an RPC record over %u bytes", NFS_MAX_RECORD);
	conn_reply(c, r, sizeof(r));
}

/* Up to @n bytes from the connection into @dst (NULL: discard).
 * \return bytes moved, 0 when nothing is there now, -1 at EOF or error. */
static ssize_t conn_fill(struct nfs_conn *c, uint8_t *dst, size_t n)
{
	size_t k;

	if (c->rpos == c->rlen) {
		bool direct = dst && n >= sizeof(c->rbuf);
		ssize_t r = recv(c->fd, direct ? dst : c->rbuf, direct ? n : sizeof(c->rbuf),
				 MSG_DONTWAIT);

		if (r < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
		if (r == 0)
			return -1;
		if (direct)
			return r;
		c->rpos = 0;
		c->rlen = (size_t)r;
	}
	k = c->rlen - c->rpos < n ? c->rlen - c->rpos : n;
	if (dst)
		memcpy(dst, c->rbuf + c->rpos, k);
	c->rpos += k;
	return (ssize_t)k;
}

/* Room for @flen more bytes of the current record; false: it is oversize. */
static bool rec_room(struct nfs_conn *c, uint32_t flen)
{
	uint8_t *b;

	if (flen > NFS_MAX_RECORD - c->len)
		return false;
	if (c->len + flen <= c->cap)
		return true;
	if (!c->len && c->last_frag && flen <= SMALL_RECORD) {
		b = malloc(flen ? flen : 1);
		if (!b)
			return false;
		buf_put(c->s, c->rec, c->big);
		c->cap = flen;
		c->big = false;
	} else {
		b = big_get(c->s);
		if (!b)
			return false;
		if (c->len)
			memcpy(b, c->rec, c->len);
		buf_put(c->s, c->rec, c->big);
		c->cap = NFS_MAX_RECORD;
		c->big = true;
	}
	c->rec = b;
	return true;
}

static void queue_jobs(struct nfs_srv *s, struct nfs_job *first, struct nfs_job **tail);

/* Read what the socket holds.  Small calls are appended to *mine, for the
 * caller to run one after the other and answer together (cheaper than a
 * thread each); a bulk call too when *mine is empty, other bulk calls are
 * queued at once for other workers.
 * \return 1 more to read later (armed or paused), 0 at EOF/error. */
static int conn_pump(struct nfs_conn *c, struct nfs_job **mine)
{
	struct nfs_srv *s = c->s;
	struct nfs_job **tail = mine;
	ssize_t r;

	while (*tail)
		tail = &(*tail)->next;
	for (;;) {
		if (!c->in_frag) {
			r = conn_fill(c, c->mark + c->mlen, 4 - c->mlen);
			if (r <= 0)
				break;
			c->mlen += (unsigned)r;
			if (c->mlen < 4)
				continue;
			uint32_t mark = (uint32_t)c->mark[0] << 24 | (uint32_t)c->mark[1] << 16 |
					(uint32_t)c->mark[2] << 8 | c->mark[3];

			c->mlen = 0;
			c->in_frag = true;
			c->last_frag = mark >> 31;
			c->frag_left = mark & 0x7fffffffu;
			if (!c->over && !rec_room(c, c->frag_left)) {
				/* keep the xid and direction for the error reply */
				c->hlen = c->len < 8 ? c->len : 8;
				if (c->hlen)
					memcpy(c->head, c->rec, c->hlen);
				c->over = true;
			}
		}
		if (c->frag_left) {
			if (c->over && c->hlen < 8) {
				size_t want = 8 - c->hlen < c->frag_left ? 8 - c->hlen : c->frag_left;

				r = conn_fill(c, c->head + c->hlen, want);
				if (r > 0)
					c->hlen += (size_t)r;
			} else {
				r = conn_fill(c, c->over ? NULL : c->rec + c->len, c->frag_left);
				if (r > 0 && !c->over)
					c->len += (size_t)r;
			}
			if (r <= 0)
				break;
			c->frag_left -= (uint32_t)r;
			continue;
		}
		c->in_frag = false;
		if (!c->last_frag)
			continue;
		if (c->over) {
			reply_oversize(c);
			c->over = false;
			c->hlen = 0;
			c->len = 0;
			continue;
		}
		struct nfs_job *j = malloc(sizeof(*j));

		if (!j) {
			r = -1;
			break;
		}
		*j = (struct nfs_job){ .c = c, .buf = c->rec, .len = c->len, .big = c->big,
				       .bulk = nfs_rpc_is_bulk(c->rec, c->len) };
		c->rec = NULL;
		c->len = c->cap = 0;
		pthread_mutex_lock(&s->mu);
		c->refs++;
		s->big_out += j->big;
		/* bounded memory: a connection stops being read at NFS_CONN_JOBS
		 * calls, or when it adds a big record past the server's budget */
		bool full = ++c->jobs >= NFS_CONN_JOBS || (j->big && s->big_out > NFS_BIG_BUDGET);

		if (full)
			c->paused = true;
		pthread_mutex_unlock(&s->mu);
		if (!j->bulk || !*mine) {
			*tail = j;
			tail = &j->next;
		} else {
			queue_jobs(s, j, &j->next);
		}
		if (full)
			return 1;
	}
	if (r < 0) {
		epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
		return 0;
	}
	conn_arm(c);
	return 1;
}

static void queue_jobs(struct nfs_srv *s, struct nfs_job *first, struct nfs_job **tail)
{
	uint64_t n = 0;

	if (!first)
		return;
	for (struct nfs_job *j = first; j; j = j->next)
		n++;
	pthread_mutex_lock(&s->mu);
	*s->qtail = first;
	s->qtail = tail;
	pthread_mutex_unlock(&s->mu);
	(void)!write(s->qev, &n, sizeof(n));
}

static struct nfs_job *pop_job(struct nfs_srv *s)
{
	struct nfs_job *j;

	pthread_mutex_lock(&s->mu);
	j = s->queue;
	if (j) {
		s->queue = j->next;
		if (!s->queue)
			s->qtail = &s->queue;
	}
	pthread_mutex_unlock(&s->mu);
	return j;
}

/* Run the calls of @list (one connection's) in order, their replies sent
 * together.  \return calls to run next (read on a resumed connection). */
static struct nfs_job *run_jobs(struct nfs_srv *s, struct nfs_job *list, struct xdr_out *out)
{
	struct nfs_conn *c = list->c;
	struct nfs_job *mine = NULL;
	bool resume = false;
	int n = 0;

	out->len = 0;
	for (struct nfs_job *j = list; j; j = j->next) {
		nfs_rpc_process(s, c->peer, j->buf, j->len, out, conn_send_now, c);
		if (out->len && (out->len >= (256u << 10) || !j->next)) {
			conn_reply(c, out->buf, out->len);
			out->len = 0;
		}
	}
	int nbig = 0;

	while (list) {
		struct nfs_job *j = list;

		list = j->next;
		nbig += j->big;
		buf_put(s, j->buf, j->big);
		free(j);
		n++;
	}
	if (out->cap > (4u << 20)) {
		xout_free(out);
		*out = (struct xdr_out){ 0 };
	}
	pthread_mutex_lock(&s->mu);
	s->big_out -= nbig;
	c->jobs -= n;
	if (c->paused && c->jobs <= NFS_CONN_JOBS / 2) {
		c->paused = false;
		resume = true;
	}
	c->refs -= n - 1;          /* the last one below */
	pthread_mutex_unlock(&s->mu);
	/* read on in this worker: what is buffered first, then the socket */
	if (resume && !conn_pump(c, &mine))
		conn_unref(c);      /* the reader's reference */
	conn_unref(c);
	return mine;
}

static void *worker_main(void *arg)
{
	struct nfs_srv *s = arg;
	struct xdr_out out = { 0 };    /* kept across calls: no 1 MiB malloc per READ */

	while (!s->stop) {
		struct nfs_job *j = pop_job(s);
		struct epoll_event ev;
		int n;

		if (j) {
			j->next = NULL;
			while (j)
				j = run_jobs(s, j, &out);
			continue;
		}
		n = epoll_wait(s->ep, &ev, 1, -1);
		if (n <= 0 || s->stop)
			continue;
		if (ev.data.ptr == &s->qev) {
			uint64_t v;

			(void)!read(s->qev, &v, sizeof(v));
			continue;
		}
		if (ev.data.ptr == &s->wake)
			continue;
		j = NULL;
		if (!conn_pump(ev.data.ptr, &j))
			conn_unref(ev.data.ptr);
		while (j)
			j = run_jobs(s, j, &out);
	}
	xout_free(&out);
	return NULL;
}

static void *accept_main(void *arg)
{
	struct nfs_srv *s = arg;
	struct pollfd p[NFS_MAX_LISTEN + 1];

	for (;;) {
		int n = 0;

		for (int i = 0; i < s->nlfd; i++)
			p[n++] = (struct pollfd){ .fd = s->lfd[i], .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = s->wake[0], .events = POLLIN };
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (s->stop)
			break;
		for (int i = 0; i < s->nlfd; i++) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			struct nfs_conn *c;
			struct timeval tv = { .tv_sec = NFS_SEND_TIMEOUT_S };
			struct epoll_event ev;
			int fd, one = 1, bufsz = 4 << 20;

			if (!(p[i].revents & POLLIN))
				continue;
			fd = accept4(s->lfd[i], (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			/* room for a whole 1 MiB READ reply / WRITE call in flight */
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof(bufsz));
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			c = calloc(1, sizeof(*c));
			if (!c) {
				close(fd);
				continue;
			}
			c->s = s;
			c->fd = fd;
			c->refs = 1;
			pthread_mutex_init(&c->wmu, NULL);
			if (ss.ss_family == AF_INET)
				c->peer = ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr);
			pthread_mutex_lock(&s->mu);
			bool full = s->nconns >= NFS_MAX_CONNS;

			if (!full) {
				c->next = s->conns;
				s->conns = c;
				s->nconns++;
			}
			pthread_mutex_unlock(&s->mu);
			if (full) {
				nfs_log(s, VMFS_LOG_WARN, "%d connections open: refusing another",
					NFS_MAX_CONNS);
				pthread_mutex_destroy(&c->wmu);
				free(c);
				close(fd);
				continue;
			}
			ev = (struct epoll_event){ .events = EPOLLIN | EPOLLONESHOT, .data.ptr = c };
			if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev))
				conn_unref(c);
		}
	}
	return NULL;
}

static void *reaper_main(void *arg)
{
	struct nfs_srv *s = arg;

	while (!s->stop) {
		struct pollfd p = { .fd = s->wake[0], .events = POLLIN };

		poll(&p, 1, 250);
		if (s->stop)
			break;
		nfs_wlocks_reap(s, false);
	}
	return NULL;
}

/* Stop every thread, then drop the queued calls and the connections. */
static void stop_threads(struct nfs_srv *s)
{
	struct nfs_job *j;

	if (!s->started)
		return;
	s->stop = true;
	pthread_mutex_lock(&s->mu);
	for (struct nfs_conn *c = s->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);   /* no worker stays in a send */
	pthread_mutex_unlock(&s->mu);
	if (s->wake[1] >= 0)
		(void)!write(s->wake[1], "x", 1);     /* level-triggered: wakes every worker */
	for (int i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	if (s->have_accept)
		pthread_join(s->accept_thr, NULL);
	if (s->have_reaper)
		pthread_join(s->reaper_thr, NULL);
	while ((j = pop_job(s))) {
		struct nfs_conn *c = j->c;

		buf_put(s, j->buf, j->big);
		free(j);
		conn_unref(c);
	}
	while (s->conns) {
		/* the reader references left (at most one each) */
		struct nfs_conn *c = s->conns;

		c->refs = 1;
		conn_unref(c);
	}
	s->started = false;
}

int nfs_srv_start(struct nfs_srv *s)
{
	int r;

	if (!s->nlfd)
		return -EINVAL;
	if (pipe2(s->wake, O_CLOEXEC))
		return -errno;
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	s->qev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
	if (s->ep < 0 || s->qev < 0)
		return -errno;
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->qev };

		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->qev, &ev))
			return -errno;
		ev.data.ptr = &s->wake;
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->wake[0], &ev))
			return -errno;
	}
	s->started = true;
	for (int i = 0; i < NFS_WORKERS; i++) {
		r = pthread_create(&s->workers[i], NULL, worker_main, s);
		if (r)
			goto fail;
		s->nworkers++;
	}
	r = pthread_create(&s->accept_thr, NULL, accept_main, s);
	if (r)
		goto fail;
	s->have_accept = true;
	r = pthread_create(&s->reaper_thr, NULL, reaper_main, s);
	if (r)
		goto fail;
	s->have_reaper = true;
	/* serving the portmapper ourselves means no rpcbind owns port 111 */
	if (s->nfs_port && !s->have_pmap && nfs_rpcbind_set(s, true) == 0)
		s->registered = true;
	return 0;
fail:
	stop_threads(s);
	return -r;
}

void nfs_srv_destroy(struct nfs_srv *s)
{
	if (!s)
		return;
	if (s->registered)
		nfs_rpcbind_set(s, false);
	stop_threads(s);
	nfs_wlocks_reap(s, true);
	for (int i = 0; i < s->nlfd; i++)
		close(s->lfd[i]);
	if (s->wake[0] >= 0) {
		close(s->wake[0]);
		close(s->wake[1]);
	}
	if (s->ep >= 0)
		close(s->ep);
	if (s->qev >= 0)
		close(s->qev);
	for (int i = 0; i < s->nbig; i++)
		free(s->bigs[i]);
	for (int i = 0; i < s->nexports; i++)
		free(s->exports[i]);
	free(s->wlocks);
	pthread_mutex_destroy(&s->mu);
	pthread_rwlock_destroy(&s->fsmu);
	free(s);
}
