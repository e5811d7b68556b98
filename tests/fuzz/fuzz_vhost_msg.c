/* libFuzzer harness for the vhost-user back-end's message handling.  The
 * input is a stream of messages fed to a detached backend (no socket):
 *   [sel:1][header:12][payload:header.size]...
 * sel's low 4 bits ask for that many file descriptors (memfd of guest
 * memory for SET_MEM_TABLE and SET_INFLIGHT_FD - an inflight buffer over
 * the fuzzer's rings -, an eventfd otherwise).  An input starting with
 * 'M' first fills the first 4 KiB of guest memory from the next bytes, so
 * rings and descriptors the fuzzer builds are processed by a started queue
 * (a kick is sent after each SET_VRING_KICK).  Every input ends with
 * RESET_OWNER, which stops the queues and forgets the set-up. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmfs/vhost.h"

#define GMEM (256u << 10)

static struct vhost_blk *b;
static struct vhost_disk *disk;
static int memfd = -1, evfd = -1;
static uint8_t *gmem;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(void *ctx, int level, const char *msg)
{
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/fuzz-vhost-XXXXXX";
	struct vhost_blk_opts o = { 0 };
	int fd = mkstemp(path);

	if (fd < 0 || ftruncate(fd, 1 << 20))
		abort();
	close(fd);
	if (vhost_disk_open_file(path, 0, &disk))
		abort();
	unlink(path);
	o.disk = disk;
	o.num_queues = 2;
	o.workers = 1;
	o.log = quiet;   /* bad chains would be logged to stderr */
	if (vhost_blk_create_detached(&o, &b))
		abort();
	memfd = memfd_create("fuzz", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, GMEM))
		abort();
	gmem = mmap(NULL, GMEM, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (gmem == MAP_FAILED || evfd < 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t reset[12] = { 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
	uint8_t rep[512];

	memset(gmem, 0, 4096);
	if (size && data[0] == 'M') {
		size_t n = size - 1 < 4096 ? size - 1 : 4096;

		memcpy(gmem, data + 1, n);
		data += 1 + n;
		size -= 1 + n;
	}
	while (size >= 13) {
		uint32_t h[3];
		int fds[8], nfds = data[0] & 15;

		memcpy(h, data + 1, 12);
		size_t len = 12 + (size_t)(h[2] < size ? h[2] : size);

		if (len > size - 1)
			len = size - 1;
		if (nfds > 8)
			nfds = 8;
		for (int i = 0; i < nfds; i++)
			fds[i] = h[0] == 5 || h[0] == 32 ? memfd : evfd;
		size_t rl = sizeof(rep);

		vhost_blk_feed_msg(b, data + 1, len, fds, nfds, rep, &rl);
		if (h[0] == 12) {
			uint64_t one = 1;

			if (write(evfd, &one, 8) != 8)
				break;
		}
		data += 1 + len;
		size -= 1 + len;
	}
	vhost_blk_feed_msg(b, reset, sizeof(reset), NULL, 0, NULL, NULL);
	return 0;
}
