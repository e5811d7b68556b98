/* TCP transport: listeners, one thread per connection reading RPC records
 * (record marking, RFC 5531 §11), the write-lock reaper, start/stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "internal.h"

struct nfs_conn {
	struct nfs_srv *s;
	int fd;
	uint32_t peer;
	struct nfs_conn *next;
	/* buffered reader */
	uint8_t rbuf[65536];
	size_t rpos, rlen;
};

int nfs_srv_create(vmfs_log_fn log, void *log_ctx, struct nfs_srv **out)
{
	struct nfs_srv *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->log = log;
	s->log_ctx = log_ctx;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->fsmu, NULL);
	pthread_cond_init(&s->conns_cv, NULL);
	s->wake[0] = s->wake[1] = -1;
	/* the write verifier changes with every server instance (RFC 1813 §3.3.7) */
	if (RAND_bytes(s->wverf, sizeof(s->wverf)) != 1) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		memcpy(s->wverf, &ts, sizeof(s->wverf));
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

/* ---- connections ------------------------------------------------------------ */

static int conn_read(struct nfs_conn *c, void *dst, size_t n)
{
	uint8_t *d = dst;

	while (n) {
		if (c->rpos == c->rlen) {
			ssize_t r;

			if (d && n >= sizeof(c->rbuf)) {
				r = read(c->fd, d, n);
				if (r <= 0)
					return r < 0 && errno == EINTR ? 0 : -1;
				d += r;
				n -= (size_t)r;
				continue;
			}
			r = read(c->fd, c->rbuf, sizeof(c->rbuf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return -1;
			c->rpos = 0;
			c->rlen = (size_t)r;
		}
		size_t k = c->rlen - c->rpos < n ? c->rlen - c->rpos : n;

		if (d) {
			memcpy(d, c->rbuf + c->rpos, k);
			d += k;
		}
		c->rpos += k;
		n -= k;
	}
	return 0;
}

static int conn_write(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* A record too big to hold: answer GARBAGE_ARGS from its header. */
static int reply_oversize(struct nfs_conn *c, const uint8_t *head, size_t n)
{
	uint8_t r[28];
	uint32_t v[7] = { 0x80000000u | 24, 0, 1, 0, FLAVOR_NONE, 0, RPC_GARBAGE_ARGS };

	if (n < 8 || head[4] || head[5] || head[6] || head[7])
		return 0;           /* not a call */
	memcpy(&v[1], head, 4);
	v[1] = ntohl(v[1]);
	for (int i = 0; i < 7; i++) {
		uint32_t be = htonl(v[i]);

		memcpy(r + i * 4, &be, 4);
	}
	nfs_log(c->s, VMFS_LOG_WARN, "dropped an RPC record over %u bytes", NFS_MAX_RECORD);
	return conn_write(c->fd, r, sizeof(r));
}

static void *conn_main(void *arg)
{
	struct nfs_conn *c = arg;
	struct nfs_srv *s = c->s;
	uint8_t *rec = malloc(NFS_MAX_RECORD);
	struct xdr_out out = { 0 };    /* kept across calls: no 1 MiB malloc per READ */
	size_t len = 0;
	bool over = false;

	while (rec && !s->stop) {
		uint8_t m[4];
		uint32_t mark, flen;

		if (conn_read(c, m, 4))
			break;
		mark = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
		flen = mark & 0x7fffffffu;
		if (!over && flen <= NFS_MAX_RECORD - len) {
			if (conn_read(c, rec + len, flen))
				break;
			len += flen;
		} else {
			if (!over && len < 8) {     /* keep the xid and direction */
				size_t k = flen < 8 - len ? flen : 8 - len;

				if (conn_read(c, rec + len, k))
					break;
				len += k;
				flen -= (uint32_t)k;
			}
			over = true;
			if (conn_read(c, NULL, flen))
				break;
		}
		if (!(mark & 0x80000000u))
			continue;
		if (over) {
			if (reply_oversize(c, rec, len))
				break;
		} else {
			/* replies to calls that arrived together go out together */
			nfs_rpc_process(s, c->peer, rec, len, &out);
			if (out.len && (c->rpos == c->rlen || out.len >= (256u << 10))) {
				int w = conn_write(c->fd, out.buf, out.len);

				out.len = 0;
				if (w)
					break;
			}
		}
		len = 0;
		over = false;
	}
	xout_free(&out);
	free(rec);
	close(c->fd);
	pthread_mutex_lock(&s->mu);
	for (struct nfs_conn **pp = &s->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	s->nconns--;
	pthread_cond_broadcast(&s->conns_cv);
	pthread_mutex_unlock(&s->mu);
	free(c);
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
			pthread_attr_t at;
			pthread_t t;
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
			pthread_mutex_lock(&s->mu);
			bool full = s->nconns >= NFS_MAX_CONNS;
			pthread_mutex_unlock(&s->mu);
			if (full) {
				nfs_log(s, VMFS_LOG_WARN, "%d connections open: refusing another",
					NFS_MAX_CONNS);
				close(fd);
				continue;
			}
			c = calloc(1, sizeof(*c));
			if (!c) {
				close(fd);
				continue;
			}
			c->s = s;
			c->fd = fd;
			if (ss.ss_family == AF_INET)
				c->peer = ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr);
			pthread_mutex_lock(&s->mu);
			c->next = s->conns;
			s->conns = c;
			s->nconns++;
			pthread_mutex_unlock(&s->mu);
			pthread_attr_init(&at);
			pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
			if (pthread_create(&t, &at, conn_main, c)) {
				pthread_mutex_lock(&s->mu);
				s->conns = c->next;
				s->nconns--;
				pthread_mutex_unlock(&s->mu);
				close(fd);
				free(c);
			}
			pthread_attr_destroy(&at);
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

int nfs_srv_start(struct nfs_srv *s)
{
	int r;

	if (!s->nlfd)
		return -EINVAL;
	if (pipe2(s->wake, O_CLOEXEC))
		return -errno;
	r = pthread_create(&s->accept_thr, NULL, accept_main, s);
	if (r)
		return -r;
	r = pthread_create(&s->reaper_thr, NULL, reaper_main, s);
	if (r) {
		s->stop = true;
		(void)!write(s->wake[1], "x", 1);
		pthread_join(s->accept_thr, NULL);
		return -r;
	}
	s->started = true;
	/* serving the portmapper ourselves means no rpcbind owns port 111 */
	if (s->nfs_port && !s->have_pmap && nfs_rpcbind_set(s, true) == 0)
		s->registered = true;
	return 0;
}

void nfs_srv_destroy(struct nfs_srv *s)
{
	if (!s)
		return;
	if (s->registered)
		nfs_rpcbind_set(s, false);
	if (s->started) {
		s->stop = true;
		(void)!write(s->wake[1], "x", 1);
		pthread_join(s->accept_thr, NULL);
		pthread_join(s->reaper_thr, NULL);
		pthread_mutex_lock(&s->mu);
		for (struct nfs_conn *c = s->conns; c; c = c->next)
			shutdown(c->fd, SHUT_RDWR);
		while (s->nconns)
			pthread_cond_wait(&s->conns_cv, &s->mu);
		pthread_mutex_unlock(&s->mu);
	}
	nfs_wlocks_reap(s, true);
	for (int i = 0; i < s->nlfd; i++)
		close(s->lfd[i]);
	if (s->wake[0] >= 0) {
		close(s->wake[0]);
		close(s->wake[1]);
	}
	for (int i = 0; i < s->nexports; i++)
		free(s->exports[i]);
	free(s->wlocks);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->fsmu);
	pthread_cond_destroy(&s->conns_cv);
	free(s);
}
