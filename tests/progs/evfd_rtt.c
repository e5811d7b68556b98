/*
 * evfd_rtt: the price of one vhost-user round trip's notifications alone.
 * Two processes ping-pong through two eventfds, each sleeping in poll()
 * between messages, as a front-end waiting on its call eventfd and a
 * back-end waiting on its kick eventfd do.  No I/O, no rings.  bench/vhost
 * uses it to print the QD1 ceiling any vhost-user back-end has on this
 * machine against a single process doing the same I/O (fio's one sleep).
 *
 *   evfd_rtt [N]    N round trips (default 100000); prints "rtt_us=X"
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int wait_read(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v;

	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return -1;
	return read(fd, &v, 8) == 8 ? 0 : -1;
}

static int signal_fd(int fd)
{
	uint64_t one = 1;

	return write(fd, &one, 8) == 8 ? 0 : -1;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int kick = eventfd(0, EFD_CLOEXEC), call = eventfd(0, EFD_CLOEXEC);
	struct timespec t0, t1;
	pid_t pid;
	int st;

	if (n <= 0 || kick < 0 || call < 0) {
		fprintf(stderr, "usage: evfd_rtt [N]\n");
		return 2;
	}
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {   /* the "back-end" */
		for (long i = 0; i < n; i++)
			if (wait_read(kick) || signal_fd(call))
				_exit(1);
		_exit(0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++)
		if (signal_fd(kick) || wait_read(call))
			return 1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		return 1;
	printf("rtt_us=%.2f\n", ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
				 (double)(t1.tv_nsec - t0.tv_nsec)) / (double)n / 1e3);
	return 0;
}
