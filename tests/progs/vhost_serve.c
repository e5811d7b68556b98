/*
 * vhost_serve: the vhost-user-blk back-end over a plain file, without vmfsd
 * (tests of the protocol, the bench's raw-file comparison).
 *
 *   vhost_serve [-q QUEUES] [-w WORKERS] [-p POLL_US] [-d] [-r] SOCKET FILE
 *     -p busy-polling window at most POLL_US (default 32, 0 = off)
 *     -d O_DIRECT when guest buffers allow   -r read-only
 * Runs until SIGTERM/SIGINT; prints "ready" once the socket listens.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmfs/vhost.h"

int main(int argc, char **argv)
{
	struct vhost_blk_opts o = { 0 };
	struct vhost_disk *disk;
	struct vhost_blk *b;
	unsigned flags = 0;
	sigset_t ss;
	int c, sig, r;

	while ((c = getopt(argc, argv, "q:w:p:dr")) != -1) {
		switch (c) {
		case 'p': o.poll_us = atoi(optarg) ? atoi(optarg) : -1; break;   /* 0 = off */
		case 'q': o.num_queues = (unsigned)atoi(optarg); break;
		case 'w': o.workers = (unsigned)atoi(optarg); break;
		case 'd': flags |= VHOST_DISK_DIRECT; break;
		case 'r': flags |= VHOST_DISK_RDONLY; break;
		default: return 2;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: vhost_serve [-q N] [-w N] [-p POLL_US] [-d] [-r] SOCKET FILE\n");
		return 2;
	}
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	pthread_sigmask(SIG_BLOCK, &ss, NULL);
	r = vhost_disk_open_file(argv[optind + 1], flags, &disk);
	if (r) {
		fprintf(stderr, "vhost_serve: %s: %s\n", argv[optind + 1], strerror(-r));
		return 1;
	}
	o.socket_path = argv[optind];
	o.disk = disk;
	r = vhost_blk_create(&o, &b);
	if (r) {
		fprintf(stderr, "vhost_serve: %s: %s\n", argv[optind], strerror(-r));
		vhost_disk_close(disk);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	sigwait(&ss, &sig);
	vhost_blk_destroy(b);
	vhost_disk_close(disk);
	return 0;
}
