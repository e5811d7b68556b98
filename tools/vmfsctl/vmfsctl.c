/* vmfsctl: talk to a running vmfsd over its management socket. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
"Usage: vmfsctl [--state-dir DIR | --socket PATH] [--json] COMMAND [ARGS]\n"
"\n"
"Query or control a running vmfsd.\n"
"\n"
"Commands:\n"
"  status              daemon identity, uptime, volume count\n"
"  volumes             mounted volumes and their state\n"
"  hosts               every heartbeat slot on the volume(s): uuid, state, age\n"
"  locks [PATH]        on-disk locks held (on PATH only)\n"
"  target list         iSCSI portals, targets, LUNs and session counts\n"
"  target add IQN,PATH[,chap=U:S][,mutual=U:S][,initiators=I1;I2][,thin][,lun=N]\n"
"                      export a LUN now (remembered across restarts)\n"
"  target remove IQN [LUN]\n"
"                      remove a LUN or a whole target (its sessions are dropped)\n"
"  export list         NFS exports\n"
"  export add PATH[,clients=A;B/N][,ro][,root_squash][,all_squash][,anonuid=N][,anongid=N]\n"
"                      export a datastore directory over NFS now (remembered)\n"
"  export remove PATH  stop exporting PATH (its file handles become stale)\n"
"  vdisk list          vhost-user-blk exports (socket, disk, connected, requests)\n"
"  vdisk export DISK SOCKET [num-queues=N,workers=N,poll-us=N,ro]\n"
"                      serve datastore disk DISK to QEMU on Unix socket SOCKET\n"
"                      (cluster-locked while exported; remembered)\n"
"  vdisk unexport SOCKET|DISK\n"
"                      stop serving it and release its lock\n"
"\n"
"Options:\n"
"  -d, --state-dir DIR  vmfsd's state dir (socket DIR/vmfsd.sock); default\n"
"                       $VMFSD_STATE_DIR or /var/lib/vmfsd\n"
"  -s, --socket PATH    the management socket itself\n"
"  -j, --json           machine-readable output\n"
"  -h, --help           this text\n"
"\n"
"Exit status: 0 success, 1 the daemon reported an error, 2 usage, 3 no daemon.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *dir = getenv("VMFSD_STATE_DIR"), *sock = NULL;
	char req[1024], buf[65536];
	size_t rl = 0;
	bool json = false, failed = false;
	int c, fd;

	if (!dir)
		dir = "/var/lib/vmfsd";
	while ((c = getopt_long(argc, argv, "+d:s:jh", lo, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 's': sock = optarg; break;
		case 'j': json = true; break;
		case 'h': usage(stdout); return 0;
		default: fprintf(stderr, "Try 'vmfsctl --help'.\n"); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (sock) {
		if (strlen(sock) >= sizeof(sa.sun_path)) {
			fprintf(stderr, "vmfsctl: socket path too long\n");
			return 2;
		}
		strcpy(sa.sun_path, sock);
	} else if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/vmfsd.sock", dir) >=
		   sizeof(sa.sun_path)) {
		fprintf(stderr, "vmfsctl: state dir path too long\n");
		return 2;
	}
	rl = (size_t)snprintf(req, sizeof(req), "%s", json ? "json" : "");
	for (int i = optind; i < argc; i++) {
		if (strpbrk(argv[i], " \t\r\n") || rl + strlen(argv[i]) + 2 >= sizeof(req)) {
			fprintf(stderr, "vmfsctl: bad argument '%s'\n", argv[i]);
			return 2;
		}
		rl += (size_t)snprintf(req + rl, sizeof(req) - rl, "%s%s", rl ? " " : "", argv[i]);
	}
	req[rl++] = '\n';
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "vmfsctl: cannot reach vmfsd at %s: %s\n", sa.sun_path, strerror(errno));
		return 3;
	}
	if (write(fd, req, rl) != (ssize_t)rl) {
		fprintf(stderr, "vmfsctl: send: %s\n", strerror(errno));
		return 3;
	}
	for (bool first = true;; first = false) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0) {
			fprintf(stderr, "vmfsctl: receive: %s\n", strerror(errno));
			return 3;
		}
		if (n == 0)
			break;
		if (first && ((n >= 7 && !memcmp(buf, "error: ", 7)) ||
			      (n >= 9 && !memcmp(buf, "{\"error\":", 9))))
			failed = true;
		fwrite(buf, 1, (size_t)n, failed && !json ? stderr : stdout);
	}
	close(fd);
	return failed ? 1 : 0;
}
