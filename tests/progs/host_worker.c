/*
 * host_worker: one cluster host doing filesystem work on a shared volume,
 * for the multi-host system tests.
 *
 *   host_worker [options] MODE IMG[,EXTENT...] [ARGS]
 *   modes:
 *     work            random creates/writes/renames/deletes in /shared and
 *                     /<tag> for --seconds; prints "FILE <path> <size> <hash>"
 *                     for every file it created that still exists, then unmounts
 *     crashwork       the same, but prints each completed (fsync'd) file as it
 *                     goes ("DONE <path> <size> <hash>") and never stops: the
 *                     test kills it with SIGKILL
 *     verify          read-only mount; reads "<path> <size> <hash>" lines on
 *                     stdin and checks each file; prints "OK n" or "BAD ..."
 *     lock PATH       take the write lock on PATH (create it if missing),
 *                     print "LOCKED slot N" and hold it until stdin closes
 *     lockwait PATH S retry taking the write lock on PATH for up to S seconds
 *                     (a dead holder is reclaimed on the way); prints
 *                     "LOCKED after <seconds>" then releases it
 *     creates         create up to 1500 empty files in /<tag> within --seconds; prints
 *                     "CREATES <n> <seconds>"
 *     hosts           print every heartbeat slot in use
 *   options: --tag T  --seconds S  --seed N  --io-timeout-ms MS  --uuid UUID
 *
 * Exit status: 0 ok, 1 error, 3 verify mismatch, 16 the lock is held (EBUSY).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid.h>

#include "vmfs/host.h"

#define MAX_FILES 256

struct model_file {
	char path[300];
	uint64_t size;
	uint64_t hash;
	bool live;
};

static struct model_file files[MAX_FILES];
static unsigned nfiles;
static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t fnv(const uint8_t *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int split_paths(char *spec, const char **paths)
{
	int n = 0;

	for (char *s = strtok(spec, ","); s && n < VMFS_MAX_EXTENTS; s = strtok(NULL, ","))
		paths[n++] = s;
	return n;
}

static int ensure_dir(struct vmfs_fs *fs, const char *name)
{
	uint32_t a;
	int r = vmfs_mkdir(fs, VMFS_ROOT_ADDR, name, 0755, 0, 0, &a);

	return r == -EEXIST ? 0 : r;
}

/* Write a file of @size bytes of pattern; record it in the model. */
static int make_file(struct vmfs_host *h, const char *dir, const char *tag, unsigned idx,
		     uint64_t size, struct model_file *mf)
{
	struct vmfs_fs *fs = vmfs_host_fs(h);
	uint32_t d, a;
	uint8_t *buf;
	char name[128];
	int r;

	snprintf(name, sizeof(name), "%s-f%u", tag, idx);
	r = vmfs_resolve(fs, dir, &d);
	if (r)
		return r;
	r = vmfs_create(fs, d, name, 0644, 0, 0, &a);
	if (r)
		return r;
	r = vmfs_host_lock_file(h, a, VMFS_LM_EXCL, NULL);
	if (r)
		return r;
	buf = malloc(size ? size : 1);
	if (!buf) {
		vmfs_host_unlock_file(h, a);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(rnd() >> 24);
	int64_t w = vmfs_pwrite(fs, a, buf, size, 0);
	r = w < 0 ? (int)w : (uint64_t)w != size ? -EIO : 0;
	if (r == 0)
		r = vmfs_fs_sync(fs);
	vmfs_host_unlock_file(h, a);
	if (r == 0) {
		snprintf(mf->path, sizeof(mf->path), "%s/%s", dir, name);
		mf->size = size;
		mf->hash = fnv(buf, size, 0xcbf29ce484222325ull);
		mf->live = true;
	}
	free(buf);
	return r;
}

static int do_work(struct vmfs_host *h, const char *tag, double seconds, bool crash)
{
	static const uint64_t sizes[] = { 700, 20000, 3u << 20, 130000 };
	struct vmfs_fs *fs = vmfs_host_fs(h);
	char priv[64];
	double end = now_s() + seconds;
	unsigned idx = 0;
	int r;

	snprintf(priv, sizeof(priv), "/%s", tag);
	r = ensure_dir(fs, "shared");
	if (!r)
		r = ensure_dir(fs, priv + 1);
	if (r) {
		fprintf(stderr, "host_worker: mkdir: %s\n", strerror(-r));
		return 1;
	}
	while (now_s() < end || crash) {
		unsigned op = (unsigned)(rnd() % 10);

		if (op < 5 || nfiles == 0) {
			if (nfiles == MAX_FILES)
				continue;
			struct model_file *mf = &files[nfiles];
			const char *dir = (rnd() & 1) ? "/shared" : priv;

			r = make_file(h, dir, tag, idx++, sizes[rnd() % 4], mf);
			if (r) {
				fprintf(stderr, "host_worker: create in %s: %s\n", dir, strerror(-r));
				return 1;
			}
			nfiles++;
			if (crash) {
				printf("DONE %s %" PRIu64 " %016" PRIx64 "\n", mf->path, mf->size, mf->hash);
				fflush(stdout);
			}
		} else if (op < 8) {
			/* rename a live file to the other directory (or within) */
			struct model_file *mf = &files[rnd() % nfiles];
			uint32_t sd, dd;
			char sn[129], newpath[300];
			const char *dir = (rnd() & 1) ? "/shared" : priv;

			if (!mf->live || crash)
				continue;
			snprintf(newpath, sizeof(newpath), "%s/%s-r%u", dir, tag, idx++);
			r = vmfs_resolve_parent(fs, mf->path, &sd, sn);
			if (!r)
				r = vmfs_resolve(fs, dir, &dd);
			if (!r)
				r = vmfs_rename(fs, sd, sn, dd, strrchr(newpath, '/') + 1);
			if (r) {
				fprintf(stderr, "host_worker: rename %s: %s\n", mf->path, strerror(-r));
				return 1;
			}
			strcpy(mf->path, newpath);
		} else {
			struct model_file *mf = &files[rnd() % nfiles];
			uint32_t d;
			char n[129];

			if (!mf->live || crash)
				continue;
			r = vmfs_resolve_parent(fs, mf->path, &d, n);
			if (!r)
				r = vmfs_unlink(fs, d, n);
			if (r) {
				fprintf(stderr, "host_worker: unlink %s: %s\n", mf->path, strerror(-r));
				return 1;
			}
			mf->live = false;
		}
	}
	for (unsigned i = 0; i < nfiles; i++)
		if (files[i].live)
			printf("FILE %s %" PRIu64 " %016" PRIx64 "\n", files[i].path, files[i].size,
			       files[i].hash);
	return 0;
}

static int do_verify(struct vmfs_host *h)
{
	struct vmfs_fs *fs = vmfs_host_fs(h);
	char path[256];
	uint64_t size, hash;
	unsigned ok = 0, bad = 0;

	while (scanf("%255s %" SCNu64 " %" SCNx64, path, &size, &hash) == 3) {
		struct vmfs_stat st;
		uint32_t a;
		uint8_t *buf = malloc(size ? size : 1);
		int r = vmfs_resolve(fs, path, &a);

		if (!r)
			r = vmfs_stat(fs, a, &st);
		if (!r && st.size != size)
			r = -EFBIG;
		if (!r && vmfs_pread(fs, a, buf, size, 0) != (int64_t)size)
			r = -EIO;
		if (!r && fnv(buf, size, 0xcbf29ce484222325ull) != hash)
			r = -EILSEQ;
		free(buf);
		if (r) {
			printf("BAD %s: %s\n", path, strerror(-r));
			bad++;
		} else {
			ok++;
		}
	}
	printf("OK %u BAD %u\n", ok, bad);
	return bad ? 3 : 0;
}

static int do_lock(struct vmfs_host *h, const char *path)
{
	struct vmfs_fs *fs = vmfs_host_fs(h);
	struct vmfs_lock_conflict c;
	uint32_t a, d;
	char name[129], u[40];
	int r = vmfs_resolve(fs, path, &a);

	if (r == -ENOENT) {
		r = vmfs_resolve_parent(fs, path, &d, name);
		if (!r)
			r = vmfs_create(fs, d, name, 0644, 0, 0, &a);
		if (r == -EEXIST)
			r = vmfs_resolve(fs, path, &a);
	}
	if (r) {
		fprintf(stderr, "host_worker: %s: %s\n", path, strerror(-r));
		return 1;
	}
	r = vmfs_host_lock_file(h, a, VMFS_LM_EXCL, &c);
	if (r == -EBUSY) {
		uuid_unparse_lower(c.uuid, u);
		fprintf(stderr, "host_worker: %s: locked by host %s (slot %d)\n", path, u, c.slot);
		return 16;
	}
	if (r) {
		fprintf(stderr, "host_worker: lock %s: %s\n", path, strerror(-r));
		return 1;
	}
	printf("LOCKED slot %d\n", vmfs_host_slot(h));
	fflush(stdout);
	while (getchar() != EOF)
		;
	return vmfs_host_unlock_file(h, a) ? 1 : 0;
}

static int do_lockwait(struct vmfs_host *h, const char *path, double seconds)
{
	struct vmfs_fs *fs = vmfs_host_fs(h);
	double t0 = now_s();
	uint32_t a;
	int r = vmfs_resolve(fs, path, &a);

	if (r) {
		fprintf(stderr, "host_worker: %s: %s\n", path, strerror(-r));
		return 1;
	}
	for (;;) {
		r = vmfs_host_lock_file(h, a, VMFS_LM_EXCL, NULL);
		if (r != -EBUSY || now_s() - t0 > seconds)
			break;
		usleep(50000);
	}
	if (r) {
		fprintf(stderr, "host_worker: lock %s: %s\n", path, strerror(-r));
		return r == -EBUSY ? 16 : 1;
	}
	printf("LOCKED after %.2f\n", now_s() - t0);
	return vmfs_host_unlock_file(h, a) ? 1 : 0;
}

static int do_creates(struct vmfs_host *h, const char *tag, double seconds)
{
	struct vmfs_fs *fs = vmfs_host_fs(h);
	uint32_t d, a;
	char name[64];
	unsigned n = 0;
	double t0, end;
	int r = vmfs_mkdir(fs, VMFS_ROOT_ADDR, tag, 0755, 0, 0, &d);

	if (r == -EEXIST)
		r = vmfs_lookup(fs, VMFS_ROOT_ADDR, tag, &d);
	if (r) {
		fprintf(stderr, "host_worker: mkdir %s: %s\n", tag, strerror(-r));
		return 1;
	}
	t0 = now_s();
	end = t0 + seconds;
	while (now_s() < end && n < 1500) {
		snprintf(name, sizeof(name), "c%u", n);
		r = vmfs_create(fs, d, name, 0644, 0, 0, &a);
		if (r) {
			fprintf(stderr, "host_worker: create %s: %s\n", name, strerror(-r));
			return 1;
		}
		n++;
	}
	printf("CREATES %u %.3f\n", n, now_s() - t0);
	return 0;
}

static int do_hosts(struct vmfs_host *h)
{
	struct vmfs_hb_host hosts[64];
	int n = vmfs_hb_list(vmfs_host_hb(h), hosts, 64);
	char u[40];

	if (n < 0)
		return 1;
	for (int i = 0; i < n; i++) {
		uuid_unparse_lower(hosts[i].rec.uuid, u);
		printf("%u %s %s\n", hosts[i].slot, vmfs_host_state_name(hosts[i].state), u);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "tag", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "io-timeout-ms", required_argument, NULL, 'i' },
		{ "uuid", required_argument, NULL, 'u' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmfs_host_opts o = { .fs_flags = VMFS_FS_NO_RESIDENT };
	const char *tag = "h", *paths[VMFS_MAX_EXTENTS], *mode;
	double seconds = 3;
	struct vmfs_host *h;
	int c, n, r, rc;

	rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull | 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 't': tag = optarg; break;
		case 's': seconds = atof(optarg); break;
		case 'S': rng = strtoull(optarg, NULL, 0) * 0x9E3779B97F4A7C15ull | 1; break;
		case 'i': o.io_timeout_us = strtoull(optarg, NULL, 0) * 1000; break;
		case 'u':
			if (uuid_parse(optarg, o.uuid)) {
				fprintf(stderr, "host_worker: bad uuid\n");
				return 2;
			}
			break;
		default: return 2;
		}
	}
	if (argc - optind < 2) {
		fprintf(stderr, "usage: host_worker [opts] MODE IMG[,EXT...] [ARGS]\n");
		return 2;
	}
	mode = argv[optind];
	n = split_paths(argv[optind + 1], paths);
	if (!strcmp(mode, "verify"))
		o.flags |= VMFS_HOST_RDONLY;
	r = vmfs_host_mount(paths, n, &o, &h);
	if (r) {
		fprintf(stderr, "host_worker: mount: %s\n", strerror(-r));
		return 1;
	}
	if (!strcmp(mode, "work") || !strcmp(mode, "crashwork"))
		rc = do_work(h, tag, seconds, !strcmp(mode, "crashwork"));
	else if (!strcmp(mode, "verify"))
		rc = do_verify(h);
	else if (!strcmp(mode, "lock") && argc - optind >= 3)
		rc = do_lock(h, argv[optind + 2]);
	else if (!strcmp(mode, "lockwait") && argc - optind >= 4)
		rc = do_lockwait(h, argv[optind + 2], atof(argv[optind + 3]));
	else if (!strcmp(mode, "hosts"))
		rc = do_hosts(h);
	else if (!strcmp(mode, "creates"))
		rc = do_creates(h, tag, seconds);
	else {
		fprintf(stderr, "host_worker: unknown mode %s\n", mode);
		rc = 2;
	}
	r = vmfs_host_unmount(h);
	if (r && !rc) {
		fprintf(stderr, "host_worker: unmount: %s\n", strerror(-r));
		rc = 1;
	}
	return rc;
}
