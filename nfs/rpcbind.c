/* Register with a running rpcbind/portmapper: PMAP v2 SET/UNSET (RFC 1833)
 * over TCP to 127.0.0.1:111 (rpcbind accepts them from loopback).  No
 * rpcbind listening is not an error: clients then use fixed ports. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* One PMAP call; \return 1 (true), 0 (false) or negative errno. */
static int pmap_call(uint32_t proc, uint32_t prog, uint32_t vers, uint32_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(111),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = 1 };
	uint32_t req[15] = { 0x80000000u | 56, 0x4e465300u ^ proc ^ prog, 0, 2, PMAP_PROG, 2,
			     proc, 0, 0, 0, 0, prog, vers, 6, port };
	uint8_t buf[64];
	size_t got = 0;
	int fd, r = -EIO;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		r = -errno;
		goto out;
	}
	for (int i = 0; i < 15; i++)
		req[i] = htonl(req[i]);
	if (send(fd, req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req))
		goto out;
	/* mark, xid, REPLY, ACCEPTED, verf flavor, verf len, SUCCESS, bool */
	while (got < 32) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - got, 0);

		if (n <= 0)
			goto out;
		got += (size_t)n;
	}
	uint32_t w[8];

	memcpy(w, buf, sizeof(w));
	for (int i = 0; i < 8; i++)
		w[i] = ntohl(w[i]);
	if (w[2] != 1 || w[3] != 0 || w[5] != 0 || w[6] != 0)
		goto out;
	r = w[7] ? 1 : 0;
out:
	close(fd);
	return r;
}

int nfs_rpcbind_set(struct nfs_srv *s, bool set)
{
	static const uint32_t progs[2] = { NFS_PROG, MOUNT_PROG };
	int r = 0;

	for (int i = 0; i < 2; i++) {
		int k = pmap_call(set ? 1 : 2, progs[i], 3, s->nfs_port);

		if (k < 0) {
			if (set)
				nfs_log(s, VMFS_LOG_INFO, "no rpcbind on 127.0.0.1:111 (%s): clients "
					"use port %u for NFS and MOUNT", strerror(-k), s->nfs_port);
			return k;
		}
		if (set && k == 0) {
			nfs_log(s, VMFS_LOG_WARN, "rpcbind refused to register program %u v3 "
				"(another server has it?)", progs[i]);
			r = -EEXIST;
		}
	}
	if (set && !r)
		nfs_log(s, VMFS_LOG_INFO, "registered NFS v3 and MOUNT v3 (TCP port %u) with rpcbind",
			s->nfs_port);
	return r;
}
