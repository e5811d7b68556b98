/* Target registry (targets, LUN slots, sessions), LUN spec parsing, the
 * listening portals and the accept thread. */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmfs/util.h"
#include "internal.h"

/* ---- messages ------------------------------------------------------------------ */

static void (*log_fn)(int level, const char *msg);

void iscsi_set_log(void (*fn)(int level, const char *msg))
{
	log_fn = fn;
}

void iscsi_log(int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_fn)
		log_fn(level, msg);
	else if (level <= 2)
		fprintf(stderr, "%s\n", msg);
}

/* ---- LUN specs ------------------------------------------------------------ */

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 5 || n > 223)
		return false;
	if (strncmp(s, "iqn.", 4) && strncmp(s, "eui.", 4) && strncmp(s, "naa.", 4))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' ||
		      *s == '-' || *s == ':'))
			return false;
	return true;
}

static int split_cred(const char *v, char *user, char *secret, size_t cap, char *err,
		      size_t errlen, const char *what)
{
	const char *colon = strchr(v, ':');

	if (!colon || colon == v || !colon[1] || (size_t)(colon - v) >= cap ||
	    strlen(colon + 1) >= cap) {
		snprintf(err, errlen, "%s= wants USER:SECRET", what);
		return -EINVAL;
	}
	memcpy(user, v, (size_t)(colon - v));
	user[colon - v] = 0;
	strcpy(secret, colon + 1);
	return 0;
}

int iscsi_lun_spec_parse(const char *spec, struct iscsi_lun_spec *o, char *err, size_t errlen)
{
	char *dup = strdup(spec), *save = NULL, *tok;
	int i = 0, r = 0;

	memset(o, 0, sizeof(*o));
	o->lun = -1;
	if (!dup)
		return -ENOMEM;
	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save), i++) {
		if (i == 0) {
			if (!valid_name(tok)) {
				snprintf(err, errlen, "bad target name '%s' (iqn./eui./naa., "
					 "lower case, at most 223 characters)", tok);
				r = -EINVAL;
				goto out;
			}
			strcpy(o->iqn, tok);
		} else if (i == 1) {
			if (strlen(tok) >= sizeof(o->path)) {
				snprintf(err, errlen, "LUN path too long");
				r = -EINVAL;
				goto out;
			}
			strcpy(o->path, tok);
		} else if (!strncmp(tok, "chap=", 5)) {
			r = split_cred(tok + 5, o->chap_user, o->chap_secret, 256, err, errlen, "chap");
			if (r)
				goto out;
			o->has_chap = true;
		} else if (!strncmp(tok, "mutual=", 7)) {
			r = split_cred(tok + 7, o->mutual_user, o->mutual_secret, 256, err, errlen,
				       "mutual");
			if (r)
				goto out;
			o->has_mutual = true;
		} else if (!strncmp(tok, "initiators=", 11)) {
			char *s2 = NULL, *n;

			o->has_initiators = true;
			for (n = strtok_r(tok + 11, ";", &s2); n; n = strtok_r(NULL, ";", &s2)) {
				if (!valid_name(n) || o->ninitiators >= ISCSI_MAX_INITIATORS) {
					snprintf(err, errlen, "bad or too many initiator names at '%s'", n);
					r = -EINVAL;
					goto out;
				}
				strcpy(o->initiators[o->ninitiators++], n);
			}
		} else if (!strcmp(tok, "thin")) {
			o->thin = true;
		} else if (!strncmp(tok, "id=", 3)) {
			const char *h = tok + 3;
			char hex[40];
			uint64_t v;

			if (!strncmp(h, "0x", 2))
				h += 2;
			snprintf(hex, sizeof(hex), "0x%.30s", h);
			if (!*h || kv_number(hex, &v)) {
				snprintf(err, errlen, "bad id '%s' (hex)", tok + 3);
				r = -EINVAL;
				goto out;
			}
			o->id = v;
			o->has_id = true;
		} else if (!strncmp(tok, "lun=", 4)) {
			uint64_t v;

			if (kv_number(tok + 4, &v) || v >= ISCSI_MAX_LUNS) {
				snprintf(err, errlen, "bad lun= '%s' (0..%d)", tok + 4, ISCSI_MAX_LUNS - 1);
				r = -EINVAL;
				goto out;
			}
			o->lun = (int)v;
		} else {
			snprintf(err, errlen, "unknown LUN option '%s' (chap=, mutual=, "
				 "initiators=, thin, id=, lun=)", tok);
			r = -EINVAL;
			goto out;
		}
	}
	if (i < 2) {
		snprintf(err, errlen, "LUN spec wants IQN,PATH[,options]");
		r = -EINVAL;
	} else if (o->has_mutual && !o->has_chap) {
		snprintf(err, errlen, "mutual= needs chap= as well");
		r = -EINVAL;
	}
out:
	free(dup);
	return r;
}

void iscsi_lun_spec_format(const struct iscsi_lun_spec *s, char *buf, size_t len)
{
	size_t n = (size_t)snprintf(buf, len, "%s,%s", s->iqn, s->path);

#define APP(...) do { if (n < len) n += (size_t)snprintf(buf + n, len - n, __VA_ARGS__); } while (0)
	if (s->has_chap)
		APP(",chap=%s:%s", s->chap_user, s->chap_secret);
	if (s->has_mutual)
		APP(",mutual=%s:%s", s->mutual_user, s->mutual_secret);
	if (s->has_initiators) {
		APP(",initiators=");
		for (int i = 0; i < s->ninitiators; i++)
			APP("%s%s", i ? ";" : "", s->initiators[i]);
	}
	if (s->thin)
		APP(",thin");
	if (s->has_id)
		APP(",id=%016llx", (unsigned long long)s->id);
	if (s->lun >= 0)
		APP(",lun=%d", s->lun);
#undef APP
}

static uint64_t fnv1a(const char *s, uint64_t h)
{
	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

/* ---- server --------------------------------------------------------------- */

int iscsi_srv_create(struct iscsi_srv **out)
{
	struct iscsi_srv *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0) {
		int e = errno;

		free(s);
		return -e;
	}
	s->next_tsih = 1;
	{
		/* tests force the read path: "always" or "never" offload */
		const char *e = getenv("VMFSD_ISCSI_READ_OFFLOAD");

		s->read_offload = !e ? 0 : !strcmp(e, "always") ? 2 : !strcmp(e, "never") ? 1 : 0;
	}
	pthread_mutex_init(&s->q_lock, NULL);
	pthread_cond_init(&s->q_cond, NULL);
	*out = s;
	return 0;
}

int iscsi_srv_nportals(struct iscsi_srv *s)
{
	return s->nl;
}

int iscsi_srv_listen(struct iscsi_srv *s, const char *addr, char *err, size_t errlen)
{
	char host[80], port[8] = "3260";
	const char *colon;
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
				  .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int fd = -1, one = 1, r;

	if (s->nl >= ISCSI_MAX_PORTALS) {
		snprintf(err, errlen, "too many portals");
		return -EINVAL;
	}
	if (addr[0] == '[') {
		const char *e = strchr(addr, ']');

		if (!e || (size_t)(e - addr - 1) >= sizeof(host) || (e[1] && e[1] != ':'))
			goto bad;
		memcpy(host, addr + 1, (size_t)(e - addr - 1));
		host[e - addr - 1] = 0;
		colon = e[1] ? e + 1 : NULL;
	} else {
		colon = strrchr(addr, ':');
		if (strlen(addr) >= sizeof(host))
			goto bad;
		strcpy(host, addr);
		if (colon)
			host[colon - addr] = 0;
	}
	if (colon) {
		uint64_t p;

		if (kv_number(colon + 1, &p) || p == 0 || p > 65535)
			goto bad;
		snprintf(port, sizeof(port), "%u", (unsigned)p);
	}
	if (!host[0])
		strcpy(host, "0.0.0.0");
	r = getaddrinfo(host, port, &hints, &ai);
	if (r || !ai)
		goto bad;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto syserr;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 128))
		goto syserr;
	freeaddrinfo(ai);
	if (snprintf(s->portal[s->nl], sizeof(s->portal[0]), "%s%s%s:%s",
		     strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
		     port) >= (int)sizeof(s->portal[0])) {
		close(fd);
		fd = -1;
		ai = NULL;
		goto bad;
	}
	s->lfd[s->nl++] = fd;
	return 0;
bad:
	if (ai)
		freeaddrinfo(ai);
	snprintf(err, errlen, "bad portal address '%s' (ADDR[:PORT])", addr);
	return -EINVAL;
syserr:
	r = -errno;
	snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return r;
}

static void *accept_main(void *arg)
{
	struct iscsi_srv *s = arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev;

	if (ep < 0)
		return NULL;
	ev.events = EPOLLIN;
	ev.data.u32 = 0xffff;
	epoll_ctl(ep, EPOLL_CTL_ADD, s->wake_fd, &ev);
	for (int i = 0; i < s->nl; i++) {
		ev.events = EPOLLIN;
		ev.data.u32 = (uint32_t)i;
		epoll_ctl(ep, EPOLL_CTL_ADD, s->lfd[i], &ev);
	}
	for (;;) {
		struct epoll_event evs[8];
		int n = epoll_wait(ep, evs, 8, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		for (int i = 0; i < n; i++) {
			int fd, one = 1;
			struct conn *c;
			pthread_t th;
			pthread_attr_t a;
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);

			if (evs[i].data.u32 == 0xffff)
				goto out;
			fd = accept4(s->lfd[evs[i].data.u32], (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			pthread_mutex_lock(&s->lock);
			bool full = s->nconns >= ISCSI_MAX_CONNS;

			pthread_mutex_unlock(&s->lock);
			if (full) {
				close(fd); /* each connection costs a thread and buffers */
				continue;
			}
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			/* a vanished initiator (its session may hold reservations)
			 * is noticed within about a minute */
			{
				int idle = 30, intvl = 10, cnt = 3;

				setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
				setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
				setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
				setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
			}
			c = calloc(1, sizeof(*c));
			if (!c) {
				close(fd);
				continue;
			}
			c->fd = fd;
			c->srv = s;
			getnameinfo((struct sockaddr *)&ss, sl, c->peer, sizeof(c->peer), NULL, 0,
				    NI_NUMERICHOST);
			pthread_mutex_init(&c->ua_lock, NULL);
			pthread_mutex_init(&c->done_lock, NULL);
			c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			if (c->efd < 0) {
				close(fd);
				pthread_mutex_destroy(&c->ua_lock);
				pthread_mutex_destroy(&c->done_lock);
				free(c);
				continue;
			}
			pthread_mutex_lock(&s->lock);
			c->next = s->conns;
			s->conns = c;
			s->nconns++;
			pthread_mutex_unlock(&s->lock);
			pthread_attr_init(&a);
			pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
			pthread_attr_setstacksize(&a, 512 * 1024);
			if (pthread_create(&th, &a, conn_main, c)) {
				pthread_mutex_lock(&s->lock);
				for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->next)
					if (*pp == c) {
						*pp = c->next;
						break;
					}
				s->nconns--;
				pthread_mutex_unlock(&s->lock);
				close(fd);
				close(c->efd);
				pthread_mutex_destroy(&c->ua_lock);
				pthread_mutex_destroy(&c->done_lock);
				free(c);
			}
			pthread_attr_destroy(&a);
		}
	}
out:
	close(ep);
	return NULL;
}

int iscsi_srv_start(struct iscsi_srv *s)
{
	int r;

	/* Workers first: a connection without them runs writes inline. */
	for (s->nworkers = 0; s->nworkers < ISCSI_WORKERS; s->nworkers++)
		if (pthread_create(&s->workers[s->nworkers], NULL, worker_main, s))
			break;
	r = pthread_create(&s->thr, NULL, accept_main, s);
	if (r)
		return -r;
	s->started = true;
	return 0;
}

static void free_target(struct target *t)
{
	free(t);
}

void tgt_put(struct iscsi_srv *s, struct target *t)
{
	/* called with s->lock held */
	if (--t->ref == 0 && t->removed)
		free_target(t);
}

void lun_slot_put(struct iscsi_srv *s, struct lun_slot *ls)
{
	/* called with s->lock held */
	if (--ls->ref == 0 && ls->removed) {
		scsi_lun_destroy(&ls->sl);
		free(ls);
	}
}

void iscsi_srv_destroy(struct iscsi_srv *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	if (s->started) {
		if (write(s->wake_fd, &one, sizeof(one)) < 0) {
			/* the eventfd cannot be full: nothing to do */
		}
		pthread_join(s->thr, NULL);
	}
	pthread_mutex_lock(&s->lock);
	for (struct conn *c = s->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	while (s->nconns)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	/* connections have drained their jobs: stop the pool */
	pthread_mutex_lock(&s->q_lock);
	s->q_stop = true;
	pthread_cond_broadcast(&s->q_cond);
	pthread_mutex_unlock(&s->q_lock);
	for (int i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	pthread_mutex_lock(&s->lock);
	while (s->targets) {
		struct target *t = s->targets;

		s->targets = t->next;
		for (int i = 0; i < ISCSI_MAX_LUNS; i++)
			if (t->luns[i]) {
				t->luns[i]->removed = true;
				lun_slot_put(s, t->luns[i]);
			}
		t->removed = true;
		tgt_put(s, t);
	}
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < s->nl; i++)
		close(s->lfd[i]);
	close(s->wake_fd);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->q_lock);
	pthread_cond_destroy(&s->q_cond);
	free(s);
}

static struct target *find_target(struct iscsi_srv *s, const char *iqn)
{
	for (struct target *t = s->targets; t; t = t->next)
		if (!strcmp(t->iqn, iqn))
			return t;
	return NULL;
}

/* Drop every session logged in to @t (s->lock held). */
static void kick_sessions(struct iscsi_srv *s, struct target *t)
{
	for (struct conn *c = s->conns; c; c = c->next)
		if (c->tgt == t)
			shutdown(c->fd, SHUT_RDWR);
}

int iscsi_srv_add_lun(struct iscsi_srv *s, const char *spec, int *lun_out,
		      char *canon, size_t canonlen, char *err, size_t errlen)
{
	struct iscsi_lun_spec sp;
	struct lun_slot *ls = NULL;
	struct backing *bs = NULL;
	struct target *t;
	bool created = false;
	int r, lun;

	r = iscsi_lun_spec_parse(spec, &sp, err, errlen);
	if (r)
		return r;
	ls = calloc(1, sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	r = backing_open(sp.path, sp.thin, &bs, err, errlen);
	if (r)
		goto fail;
	sp.thin = bs->thin; /* a thin datastore disk stays thin in the stored spec */
	pthread_mutex_lock(&s->lock);
	t = find_target(s, sp.iqn);
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t) {
			pthread_mutex_unlock(&s->lock);
			r = -ENOMEM;
			goto fail;
		}
		strcpy(t->iqn, sp.iqn);
		t->ref = 1;
		created = true;
	}
	lun = sp.lun;
	if (lun < 0)
		for (lun = 0; lun < ISCSI_MAX_LUNS && t->luns[lun]; lun++)
			;
	if (lun >= ISCSI_MAX_LUNS || t->luns[lun]) {
		pthread_mutex_unlock(&s->lock);
		snprintf(err, errlen, "%s: LUN %d already exists (or no free LUN)", sp.iqn, lun);
		if (created)
			free(t);
		r = -EEXIST;
		goto fail;
	}
	sp.lun = lun;
	if (!sp.has_id) {
		char n[16];

		snprintf(n, sizeof(n), "/%d/", lun);
		sp.id = fnv1a(sp.path, fnv1a(n, fnv1a(sp.iqn, 0xcbf29ce484222325ull)));
		sp.has_id = true;
	}
	r = scsi_lun_init(&ls->sl, bs, (uint16_t)lun, sp.id, sp.iqn);
	if (r) {
		pthread_mutex_unlock(&s->lock);
		snprintf(err, errlen, "bad block size");
		if (created)
			free(t);
		goto fail;
	}
	bs = NULL;
	ls->sl.ua_fn = tgt_post_ua;
	ls->sl.ua_arg = s;
	ls->ref = 1;
	ls->thin = sp.thin;
	snprintf(ls->path, sizeof(ls->path), "%s", sp.path);
	if (sp.has_chap) {
		strcpy(t->chap_user, sp.chap_user);
		strcpy(t->chap_secret, sp.chap_secret);
	}
	if (sp.has_mutual) {
		strcpy(t->mutual_user, sp.mutual_user);
		strcpy(t->mutual_secret, sp.mutual_secret);
	}
	if (sp.has_initiators) {
		memcpy(t->initiators, sp.initiators, sizeof(t->initiators));
		t->ninitiators = sp.ninitiators;
	}
	t->luns[lun] = ls;
	if (created) {
		t->next = s->targets;
		s->targets = t;
	}
	pthread_mutex_unlock(&s->lock);
	/* Sessions already logged in learn about the new LUN. */
	for (int i = 0; i < ISCSI_MAX_LUNS; i++)
		if (i != lun && t->luns[i])
			tgt_post_ua(s, &t->luns[i]->sl, NULL, NULL, ASC_REPORTED_LUNS_CHANGED);
	*lun_out = lun;
	if (canon)
		iscsi_lun_spec_format(&sp, canon, canonlen);
	return 0;
fail:
	backing_close(bs);
	free(ls);
	return r;
}

int iscsi_srv_remove(struct iscsi_srv *s, const char *iqn, int lun, char *err, size_t errlen)
{
	struct target *t;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	t = find_target(s, iqn);
	if (!t) {
		snprintf(err, errlen, "no target %s", iqn);
		r = -ENOENT;
		goto out;
	}
	if (lun >= 0) {
		if (lun >= ISCSI_MAX_LUNS || !t->luns[lun]) {
			snprintf(err, errlen, "%s has no LUN %d", iqn, lun);
			r = -ENOENT;
			goto out;
		}
		t->luns[lun]->removed = true;
		lun_slot_put(s, t->luns[lun]);
		t->luns[lun] = NULL;
		kick_sessions(s, t);
		goto out;
	}
	for (struct target **pp = &s->targets; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	for (int i = 0; i < ISCSI_MAX_LUNS; i++)
		if (t->luns[i]) {
			t->luns[i]->removed = true;
			lun_slot_put(s, t->luns[i]);
			t->luns[i] = NULL;
		}
	kick_sessions(s, t);
	t->removed = true;
	tgt_put(s, t);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

void iscsi_srv_list(struct iscsi_srv *s, FILE *f, bool json)
{
	bool first_t = true;

	pthread_mutex_lock(&s->lock);
	if (json) {
		fprintf(f, "{\"portals\": [");
		for (int i = 0; i < s->nl; i++) {
			fprintf(f, "%s", i ? ", " : "");
			vmfs_json_str(f, s->portal[i]);
		}
		fprintf(f, "], \"targets\": [");
	} else {
		for (int i = 0; i < s->nl; i++)
			fprintf(f, "portal %s\n", s->portal[i]);
	}
	for (struct target *t = s->targets; t; t = t->next) {
		int nsess = 0;

		for (struct conn *c = s->conns; c; c = c->next)
			nsess += c->tgt == t;
		if (json) {
			fprintf(f, "%s{\"iqn\": ", first_t ? "" : ", ");
			vmfs_json_str(f, t->iqn);
			fprintf(f, ", \"chap\": %s, \"mutual_chap\": %s, \"initiators\": [",
				t->chap_user[0] ? "true" : "false", t->mutual_user[0] ? "true" : "false");
			for (int i = 0; i < t->ninitiators; i++) {
				fprintf(f, "%s", i ? ", " : "");
				vmfs_json_str(f, t->initiators[i]);
			}
			fprintf(f, "], \"sessions\": [");
			bool first_s = true;

			for (struct conn *c = s->conns; c; c = c->next) {
				if (c->tgt != t)
					continue;
				fprintf(f, "%s{\"initiator\": ", first_s ? "" : ", ");
				vmfs_json_str(f, c->initiator);
				fprintf(f, ", \"isid\": \"%02x%02x%02x%02x%02x%02x\", \"tsih\": %u, "
					"\"peer\": ", c->isid[0], c->isid[1], c->isid[2], c->isid[3],
					c->isid[4], c->isid[5], c->tsih);
				vmfs_json_str(f, c->peer);
				fprintf(f, "}");
				first_s = false;
			}
			fprintf(f, "], \"luns\": [");
		} else {
			fprintf(f, "target %s  chap=%s mutual=%s acl=%d sessions=%d\n", t->iqn,
				t->chap_user[0] ? "yes" : "no", t->mutual_user[0] ? "yes" : "no",
				t->ninitiators, nsess);
			for (struct conn *c = s->conns; c; c = c->next)
				if (c->tgt == t)
					fprintf(f, "  session %s isid %02x%02x%02x%02x%02x%02x tsih %u from %s\n",
						c->initiator, c->isid[0], c->isid[1], c->isid[2],
						c->isid[3], c->isid[4], c->isid[5], c->tsih, c->peer);
		}
		first_t = false;
		bool first_l = true;

		for (int i = 0; i < ISCSI_MAX_LUNS; i++) {
			struct lun_slot *ls = t->luns[i];

			if (!ls)
				continue;
			if (json) {
				fprintf(f, "%s{\"lun\": %d, \"path\": ", first_l ? "" : ", ", i);
				vmfs_json_str(f, ls->path);
				fprintf(f, ", \"size\": %llu, \"block_size\": %u, \"thin\": %s, "
					"\"id\": \"%016llx\"}",
					(unsigned long long)ls->sl.bs->size, ls->sl.block_size,
					ls->thin ? "true" : "false", (unsigned long long)ls->sl.id);
			} else {
				fprintf(f, "  lun %-3d %-50s %14llu %s id=%016llx\n", i, ls->path,
					(unsigned long long)ls->sl.bs->size, ls->thin ? "thin" : "thick",
					(unsigned long long)ls->sl.id);
			}
			first_l = false;
		}
		if (json)
			fprintf(f, "]}");
	}
	if (json)
		fprintf(f, "]}\n");
	pthread_mutex_unlock(&s->lock);
}

/* ---- per-connection helpers ---------------------------------------------- */

struct lun_slot *tgt_lun_get(struct conn *c, uint16_t lun)
{
	struct lun_slot *ls;

	if (lun >= ISCSI_MAX_LUNS || !c->tgt)
		return NULL;
	if (c->luns[lun])
		return c->luns[lun];
	pthread_mutex_lock(&c->srv->lock);
	ls = c->tgt->luns[lun];
	if (ls && !ls->removed) {
		ls->ref++;
		c->luns[lun] = ls;
	} else {
		ls = NULL;
	}
	pthread_mutex_unlock(&c->srv->lock);
	return ls;
}

int tgt_list_luns(void *arg, uint16_t *luns, int max)
{
	struct conn *c = arg;
	int n = 0;

	pthread_mutex_lock(&c->srv->lock);
	for (int i = 0; i < ISCSI_MAX_LUNS && n < max; i++)
		if (c->tgt && c->tgt->luns[i])
			luns[n++] = (uint16_t)i;
	pthread_mutex_unlock(&c->srv->lock);
	return n;
}

bool conn_take_ua(void *arg, uint16_t lun, uint16_t *asc)
{
	struct conn *c = arg;
	bool got = false;

	if (!__atomic_load_n(&c->ua_pending, __ATOMIC_ACQUIRE))
		return false;
	pthread_mutex_lock(&c->ua_lock);
	for (int i = 0; i < c->nua; i++)
		if (c->ua[i].lun == lun) {
			*asc = c->ua[i].asc;
			memmove(&c->ua[i], &c->ua[i + 1], sizeof(c->ua[0]) * (size_t)(c->nua - i - 1));
			c->nua--;
			got = true;
			break;
		}
	__atomic_store_n(&c->ua_pending, c->nua, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&c->ua_lock);
	return got;
}

void tgt_post_ua(void *arg, struct scsi_lun *lun, const char *only, const char *except,
		 uint16_t asc)
{
	struct iscsi_srv *s = arg;

	pthread_mutex_lock(&s->lock);
	for (struct conn *c = s->conns; c; c = c->next) {
		struct lun_slot *ls;

		if (!c->tgt || !c->ffp || c->discovery)
			continue;
		ls = c->tgt->luns[lun->lun];
		if (!ls || &ls->sl != lun)
			continue;
		if (only && strcmp(only, c->nexus.name))
			continue;
		if (except && !strcmp(except, c->nexus.name))
			continue;
		pthread_mutex_lock(&c->ua_lock);
		bool dup = false;

		for (int i = 0; i < c->nua; i++)
			if (c->ua[i].lun == lun->lun && c->ua[i].asc == asc)
				dup = true;
		if (!dup && c->nua < 64) {
			c->ua[c->nua].lun = lun->lun;
			c->ua[c->nua++].asc = asc;
		}
		__atomic_store_n(&c->ua_pending, c->nua, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&c->ua_lock);
	}
	pthread_mutex_unlock(&s->lock);
}

struct scsi_lun *tgt_find_lu(void *arg, const uint8_t *desig)
{
	struct conn *c = arg;
	unsigned type = desig[1] & 0x0f, len = desig[3];

	if (!c->tgt || !((type == 3 && len == 16) || (type == 2 && len == 8)))
		return NULL;
	for (int i = 0; i < ISCSI_MAX_LUNS; i++) {
		struct lun_slot *ls;
		uint8_t naa[16];

		if (!c->tgt->luns[i] || !(ls = tgt_lun_get(c, (uint16_t)i)))
			continue;
		if (type == 3) {
			scsi_lun_naa(&ls->sl, naa);
			if (!memcmp(naa, desig + 4, 16))
				return &ls->sl;
		} else if (get_be64(desig + 4) == ls->sl.id) {
			return &ls->sl;
		}
	}
	return NULL;
}
