/* In-memory test device: see memdev.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memdev.h"

#define CHUNK (1u << 20)

static int mem_io(struct memdev *m, const struct iovec *iov, int cnt, uint64_t off, bool wr)
{
	for (int i = 0; i < cnt; i++) {
		uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;

		while (len) {
			size_t c = (size_t)(off / CHUNK), in = (size_t)(off % CHUNK);
			size_t n = CHUNK - in < len ? CHUNK - in : len;

			if (wr) {
				if (!m->chunks[c]) {
					m->chunks[c] = malloc(CHUNK);
					if (!m->chunks[c])
						return -ENOMEM;
					memset(m->chunks[c], m->fill, CHUNK);
				}
				memcpy(m->chunks[c] + in, p, n);
			} else if (m->chunks[c]) {
				memcpy(p, m->chunks[c] + in, n);
			} else {
				memset(p, m->fill, n);
			}
			p += n;
			off += n;
			len -= n;
		}
	}
	return 0;
}

static int mem_readv(void *p, const struct iovec *iov, int cnt, uint64_t off)
{
	return mem_io(p, iov, cnt, off, false);
}

static int mem_writev(void *p, const struct iovec *iov, int cnt, uint64_t off)
{
	return mem_io(p, iov, cnt, off, true);
}

static int mem_flush(void *p)
{
	(void)p;
	return 0;
}

static int mem_discard(void *p, uint64_t off, uint64_t len)
{
	struct memdev *m = p;

	if (m->on_discard)
		m->on_discard(m, off, len);
	m->discards++;
	m->discarded += len;
	return 0;
}

static int mem_ats(void *p, uint64_t off, const void *exp, const void *nd, void *cur)
{
	uint8_t b[512];
	struct iovec v = { b, 512 };
	int r = mem_io(p, &v, 1, off, false);

	if (r)
		return r;
	if (memcmp(b, exp, 512)) {
		if (cur)
			memcpy(cur, b, 512);
		return -ESTALE;
	}
	v.iov_base = (void *)nd;
	return mem_io(p, &v, 1, off, true);
}

static void mem_close(void *p)
{
	struct memdev *m = p;

	for (size_t i = 0; i < m->nchunks; i++)
		free(m->chunks[i]);
	free(m->chunks);
	free(m);
}

static const struct vmfs_bdev_ops mem_ops = {
	mem_readv, mem_writev, mem_flush, mem_discard, mem_ats, mem_close,
};

struct vmfs_bdev *memdev_new(uint64_t size, const char *name, uint8_t fill, struct memdev **out)
{
	struct vmfs_bdev_info info = { .size = size, .lbs = 512, .pbs = 4096,
				       .ats = VMFS_ATS_OFD_LOCK, .discard = true };
	struct memdev *m = calloc(1, sizeof(*m));
	struct vmfs_bdev *bd;

	if (!m)
		abort();
	m->size = size;
	m->fill = fill;
	m->nchunks = (size + CHUNK - 1) / CHUNK;
	m->chunks = calloc(m->nchunks, sizeof(*m->chunks));
	if (!m->chunks)
		abort();
	strcpy(info.kind, "mem");
	if (vmfs_bdev_create(&mem_ops, m, &info, name, &bd))
		abort();
	if (out)
		*out = m;
	return bd;
}

static char last_tmp[64];

struct vmfs_bdev *tmpfile_bdev(char path[64], uint64_t size, unsigned flags)
{
	struct vmfs_bdev_open_opts o = { .flags = flags | VMFS_BDEV_CREATE, .create_size = size };
	struct vmfs_bdev *bd;
	int fd;

	strcpy(path, "/tmp/vmfs-ut-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	close(fd);
	if (vmfs_bdev_open_opts(path, &o, &bd)) {
		unlink(path);
		return NULL;
	}
	strcpy(last_tmp, path);
	return bd;
}

int tmpfile_teardown(void **state)
{
	vmfs_bdev_close(*state);
	if (last_tmp[0])
		unlink(last_tmp);
	last_tmp[0] = 0;
	return 0;
}
