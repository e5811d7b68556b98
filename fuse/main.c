/*
 * vmfs-fuse: mount a VMFS volume read-write (as a host of the cluster) or
 * read-only through FUSE.  See docs/vmfs-fuse.1.
 *
 * Exit status: 0 clean unmount, 1 error (mount failed, or unmount could not
 * release everything), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uuid.h>

#include "vmfs_fuse.h"

#define VERSION "0.1"

static const char *sys_files[] = {
	".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf", ".vh.sf", ".pb2.sf", ".sdd.sf", ".jbc.sf",
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: vmfs-fuse [options] DEVICE[,EXTENT...] MOUNTPOINT\n"
"\n"
"Mount a VMFS volume.  Read-write mounts join the volume's cluster as a host\n"
"(heartbeat, on-disk locks, journal), so several hosts may mount it at once.\n"
"\n"
"options:\n"
"  -f                     stay in the foreground\n"
"  -d                     debug: FUSE requests and filesystem messages to stderr\n"
"  -s                     single-threaded\n"
"  -h, --help             this help\n"
"  -V, --version          print the version\n"
"  -o OPT[,OPT...]        mount options:\n"
"     ro                  read-only (no heartbeat, no locks; never blocks writers)\n"
"     rw                  read-write (default)\n"
"     io_timeout=MS       cluster I/O timeout; every heartbeat timeout derives from it\n"
"                         (default 2000: heartbeat every 3 s, dead after 16 s)\n"
"     lock_wait=MS        how long a metadata change waits for another host's lock\n"
"                         (default 2 x the heartbeat timeout)\n"
"     uuid=UUID           host UUID (default: a new one)\n"
"     direct              open the extents with O_DIRECT (default for block devices)\n"
"     nodirect            use the page cache of the extents (default for files)\n"
"     direct_io           bypass the kernel page cache for every open file\n"
"     attr_timeout=S      attribute cache timeout in seconds (default 1)\n"
"     fs_writes           every write through the filesystem's transactions\n"
"                         (no in-place writes; for measuring)\n"
"     threads=N           at most N worker threads (default 16); as many wait\n"
"                         for requests as the load needs (one at queue depth 1)\n"
"     libfuse_mt          libfuse's multithreaded loop instead (for measuring)\n"
"     entry_timeout=S     name cache timeout in seconds (default 1)\n"
"     allow_other, default_permissions, fsname=..., and other FUSE options\n"
"                         (default_permissions is always on)\n");
}

struct cfg {
	bool foreground, debug, single, ro;
	enum vmfs_host_direct direct;
	bool direct_io, fs_writes, libfuse_mt;
	uint64_t threads;
	uint64_t io_timeout_ms, lock_wait_ms;
	double attr_timeout, entry_timeout;
	uint8_t uuid[16];
	char *dev, *mnt;
	char fuse_opts[4096];
};

static int add_fuse_opt(struct cfg *c, const char *o)
{
	size_t l = strlen(c->fuse_opts);

	if (l + strlen(o) + 2 >= sizeof(c->fuse_opts))
		return -1;
	if (l)
		strcat(c->fuse_opts, ",");
	strcat(c->fuse_opts, o);
	return 0;
}

static int parse_num(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno || end == s || *end)
		return -1;
	*out = x;
	return 0;
}

static int parse_double(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return (errno || end == s || *end || *out < 0) ? -1 : 0;
}

static int parse_opts(struct cfg *c, const char *arg)
{
	char *s = strdup(arg), *save = NULL, *tok;
	int r = 0;

	if (!s)
		return -1;
	for (tok = strtok_r(s, ",", &save); tok && !r; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "ro")) {
			c->ro = true;
		} else if (!strcmp(tok, "rw")) {
			c->ro = false;
		} else if (!strncmp(tok, "io_timeout=", 11)) {
			if (parse_num(tok + 11, &c->io_timeout_ms) || !c->io_timeout_ms) {
				fprintf(stderr, "vmfs-fuse: bad io_timeout: %s\n", tok + 11);
				r = -1;
			}
		} else if (!strncmp(tok, "lock_wait=", 10)) {
			if (parse_num(tok + 10, &c->lock_wait_ms)) {
				fprintf(stderr, "vmfs-fuse: bad lock_wait: %s\n", tok + 10);
				r = -1;
			}
		} else if (!strncmp(tok, "uuid=", 5)) {
			if (uuid_parse(tok + 5, c->uuid)) {
				fprintf(stderr, "vmfs-fuse: bad uuid: %s\n", tok + 5);
				r = -1;
			}
		} else if (!strcmp(tok, "direct")) {
			c->direct = VMFS_HOST_DIRECT_ON;
		} else if (!strcmp(tok, "nodirect")) {
			c->direct = VMFS_HOST_DIRECT_OFF;
		} else if (!strcmp(tok, "direct_io")) {
			c->direct_io = true;
		} else if (!strcmp(tok, "fs_writes")) {
			c->fs_writes = true;
		} else if (!strcmp(tok, "libfuse_mt")) {
			c->libfuse_mt = true;
		} else if (!strncmp(tok, "threads=", 8)) {
			if (parse_num(tok + 8, &c->threads) || !c->threads || c->threads > 256) {
				fprintf(stderr, "vmfs-fuse: bad threads: %s\n", tok + 8);
				r = -1;
			}
		} else if (!strncmp(tok, "attr_timeout=", 13)) {
			if (parse_double(tok + 13, &c->attr_timeout)) {
				fprintf(stderr, "vmfs-fuse: bad attr_timeout: %s\n", tok + 13);
				r = -1;
			}
		} else if (!strncmp(tok, "entry_timeout=", 14)) {
			if (parse_double(tok + 14, &c->entry_timeout)) {
				fprintf(stderr, "vmfs-fuse: bad entry_timeout: %s\n", tok + 14);
				r = -1;
			}
		} else if (!strcmp(tok, "default_permissions")) {
			/* always on */
		} else if (add_fuse_opt(c, tok)) {
			fprintf(stderr, "vmfs-fuse: too many options\n");
			r = -1;
		}
	}
	free(s);
	return r;
}

/* \return 0 parsed, 1 exit 0 (help/version), -1 usage error. */
static int parse_args(struct cfg *c, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 1;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("vmfs-fuse (OpenVMFS) %s, libfuse %s\n", VERSION, fuse_pkgversion());
			return 1;
		} else if (!strcmp(a, "-f")) {
			c->foreground = true;
		} else if (!strcmp(a, "-d")) {
			c->debug = c->foreground = true;
		} else if (!strcmp(a, "-s")) {
			c->single = true;
		} else if (!strcmp(a, "-o")) {
			if (++i >= argc) {
				fprintf(stderr, "vmfs-fuse: -o needs an argument\n");
				return -1;
			}
			if (parse_opts(c, argv[i]))
				return -1;
		} else if (!strncmp(a, "-o", 2)) {
			if (parse_opts(c, a + 2))
				return -1;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "vmfs-fuse: unknown option %s\n", a);
			return -1;
		} else if (!c->dev) {
			c->dev = argv[i];
		} else if (!c->mnt) {
			c->mnt = argv[i];
		} else {
			fprintf(stderr, "vmfs-fuse: unexpected argument %s\n", a);
			return -1;
		}
	}
	if (!c->dev || !c->mnt) {
		fprintf(stderr, "vmfs-fuse: need DEVICE and MOUNTPOINT (try --help)\n");
		return -1;
	}
	return 0;
}

/* ---- signals: a dedicated thread turns SIGTERM/SIGINT/SIGHUP into a clean
 * exit of the session loop (libfuse's handlers could run on any of our
 * threads and leave the main thread asleep). */
static struct fuse_session *g_se;
static pthread_t g_main;

static void wake_handler(int sig)
{
	(void)sig;
}

static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig;

	for (;;) {
		if (sigwait(set, &sig))
			continue;
		if (sig == SIGUSR2)
			return NULL;   /* shutting down */
		if (g_se)
			fuse_session_exit(g_se);
		pthread_kill(g_main, SIGUSR1);
	}
}

/* Remember the FD addresses of the system files in the root. */
static void find_sysfiles(struct vf *v)
{
	for (size_t i = 0; i < sizeof(sys_files) / sizeof(sys_files[0]); i++) {
		uint32_t a;

		if (vmfs_lookup(v->fs, VMFS_ROOT_ADDR, sys_files[i], &a) == 0 &&
		    v->nsys < sizeof(v->sys_addr) / sizeof(v->sys_addr[0]))
			v->sys_addr[v->nsys++] = a;
	}
}

int main(int argc, char **argv)
{
	struct cfg c = { .direct = VMFS_HOST_DIRECT_AUTO, .attr_timeout = 1.0, .entry_timeout = 1.0,
			 .threads = 16 };
	struct vf v = { 0 };
	struct vmfs_host_opts ho = { 0 };
	const char *paths[VMFS_MAX_EXTENTS];
	struct fuse_args fa = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config lc = { .clone_fd = 0, .max_idle_threads = 10 };
	char opt[4200], *devs = NULL, *save = NULL;
	sigset_t set;
	pthread_t sigthr;
	bool sigthr_ok = false, mounted = false, nodes = false;
	int npaths = 0, status_fd = -1, rc = 1, r;
	struct stat st;

	r = parse_args(&c, argc, argv);
	if (r)
		return r > 0 ? 0 : 2;
	if (stat(c.mnt, &st) || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "vmfs-fuse: %s: not a directory\n", c.mnt);
		return 1;
	}
	devs = strdup(c.dev);
	if (!devs)
		return 1;
	for (char *t = strtok_r(devs, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (npaths == VMFS_MAX_EXTENTS) {
			fprintf(stderr, "vmfs-fuse: more than %d extents\n", VMFS_MAX_EXTENTS);
			goto out;
		}
		paths[npaths++] = t;
	}
	if (!npaths) {
		fprintf(stderr, "vmfs-fuse: no device given\n");
		goto out;
	}

	/* Background: fork before any thread exists; the parent waits for the
	 * child's verdict so errors still reach the caller's terminal. */
	if (!c.foreground) {
		int pfd[2];
		pid_t pid;

		if (pipe(pfd)) {
			perror("vmfs-fuse: pipe");
			goto out;
		}
		pid = fork();
		if (pid < 0) {
			perror("vmfs-fuse: fork");
			goto out;
		}
		if (pid > 0) {
			char b = 1;

			close(pfd[1]);
			if (read(pfd[0], &b, 1) != 1)
				b = 1;
			if (b) {
				int ws;

				waitpid(pid, &ws, 0);
			}
			free(devs);
			return b ? 1 : 0;
		}
		close(pfd[0]);
		status_fd = pfd[1];
		setsid();
	}

	/* Every thread created from here on inherits these blocked signals. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	{
		struct sigaction sa = { .sa_handler = wake_handler };

		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);   /* no SA_RESTART: interrupts the wait */
	}
	g_main = pthread_self();

	v.ro = c.ro;
	v.debug = c.debug;
	v.direct_io = c.direct_io;
	v.fs_writes = c.fs_writes;
	v.attr_timeout = c.attr_timeout;
	v.entry_timeout = c.entry_timeout;
	v.direct_bdev = vmfs_host_want_direct(c.direct, paths, npaths);
	ho.flags = (c.ro ? VMFS_HOST_RDONLY : 0) | (v.direct_bdev ? VMFS_HOST_DIRECT : 0);
	memcpy(ho.uuid, c.uuid, 16);
	ho.io_timeout_us = c.io_timeout_ms * 1000;
	ho.lock_wait_us = c.lock_wait_ms * 1000;
	ho.log = vf_log;
	ho.log_ctx = &v;
	ho.fs_flags = VMFS_FS_NO_RESIDENT;   /* files stay readable by vmfs-tools' fsck */
	r = vmfs_host_mount(paths, npaths, &ho, &v.host);
	if (r) {
		fprintf(stderr, "vmfs-fuse: cannot mount %s: %s\n", c.dev, strerror(-r));
		goto out;
	}
	v.fs = vmfs_host_fs(v.host);
	v.bd = vmfs_host_bdev(v.host);
	find_sysfiles(&v);
	if (vf_nodes_init(&v))
		goto out;
	nodes = true;

	snprintf(opt, sizeof(opt), "fsname=%s,subtype=vmfs,default_permissions%s%s%s",
		 c.dev, c.ro ? ",ro" : "", c.fuse_opts[0] ? "," : "", c.fuse_opts);
	if (fuse_opt_add_arg(&fa, argv[0]) || fuse_opt_add_arg(&fa, "-o") ||
	    fuse_opt_add_arg(&fa, opt) || (c.debug && fuse_opt_add_arg(&fa, "-d")))
		goto out;
	v.se = fuse_session_new(&fa, &vf_ops, sizeof(vf_ops), &v);
	if (!v.se) {
		fprintf(stderr, "vmfs-fuse: bad FUSE options: %s\n", opt);
		goto out;
	}
	g_se = v.se;
	if (pthread_create(&sigthr, NULL, signal_thread, &set) == 0)
		sigthr_ok = true;
	if (fuse_session_mount(v.se, c.mnt)) {
		fprintf(stderr, "vmfs-fuse: cannot mount on %s\n", c.mnt);
		goto out;
	}
	mounted = true;
	fprintf(stderr, "vmfs-fuse: %s mounted on %s (%s%s, slot %d)\n", c.dev, c.mnt,
		c.ro ? "read-only" : "read-write", v.direct_bdev ? ", O_DIRECT" : "",
		vmfs_host_slot(v.host));
	if (status_fd >= 0) {
		char ok = 0;
		int nfd = open("/dev/null", O_RDWR);

		if (write(status_fd, &ok, 1) != 1) {
			/* parent gone: carry on */
		}
		close(status_fd);
		status_fd = -1;
		if (nfd >= 0) {
			dup2(nfd, 0);
			dup2(nfd, 1);
			dup2(nfd, 2);
			if (nfd > 2)
				close(nfd);
		}
		if (chdir("/")) {
			/* nothing to do */
		}
	}
	if (c.single)
		r = fuse_session_loop(v.se);
	else if (c.libfuse_mt)
		r = fuse_session_loop_mt(v.se, &lc);
	else
		r = vf_session_loop(v.se, (unsigned)c.threads);
	rc = r < 0 ? 1 : 0;
out:
	if (mounted)
		fuse_session_unmount(v.se);
	if (sigthr_ok) {
		g_se = NULL;
		pthread_kill(sigthr, SIGUSR2);
		pthread_join(sigthr, NULL);
	}
	if (v.se)
		fuse_session_destroy(v.se);
	fuse_opt_free_args(&fa);
	if (v.host) {
		if (nodes && !c.ro)
			vf_commit_all(&v);
		r = vmfs_host_unmount(v.host);
		if (r) {
			fprintf(stderr, "vmfs-fuse: unmount of %s: %s\n", c.dev, strerror(-r));
			rc = 1;
		}
	}
	if (nodes)
		vf_nodes_destroy(&v);
	if (status_fd >= 0) {
		char bad = 1;

		if (write(status_fd, &bad, 1) != 1) {
			/* parent gone */
		}
		close(status_fd);
	}
	free(devs);
	return rc;
}
