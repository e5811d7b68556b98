/* Management socket: one request line per connection, one reply.
 *   request:  [json ]COMMAND [ARGS...]\n
 *   reply:    text (or one JSON document), then the server closes.
 * A reply that starts with "error: " (text) or {"error": ...} (JSON) failed. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmfs/blockdev.h"
#include "vmfsd.h"

int vmfsd_mgmt_listen(struct vmfsd *d)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = d->cfg.socket_path;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("management socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 16)) {
		int e = errno;

		log_err("cannot listen on %s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	chmod(path, 0600);
	d->listen_fd = fd;
	return 0;
}

static void cmd_status(struct vmfsd *d, FILE *f, bool json)
{
	double up = vmfsd_now() - d->started;

	if (json) {
		fprintf(f, "{\"host_uuid\": ");
		vmfs_json_str(f, d->host_uuid);
		fprintf(f, ", \"pid\": %d, \"uptime_s\": %.1f, \"volumes\": %d, \"state_dir\": ",
			(int)getpid(), up, d->nvols);
		vmfs_json_str(f, d->cfg.state_dir);
		fprintf(f, "}\n");
	} else {
		fprintf(f, "host uuid: %s\npid: %d\nuptime: %.1f s\nvolumes: %d\nstate dir: %s\n",
			d->host_uuid, (int)getpid(), up, d->nvols, d->cfg.state_dir);
	}
}

static void cmd_volumes(struct vmfsd *d, FILE *f, bool json)
{
	if (json)
		fprintf(f, "[");
	else
		fprintf(f, "%-40s %-14s %-18s %-11s %s\n", "VOLUME", "SIZE", "ATS", "IO", "STATE");
	for (int i = 0; i < d->nvols; i++) {
		struct vmfsd_volume *v = &d->vols[i];

		if (json) {
			fprintf(f, "%s{\"spec\": ", i ? ", " : "");
			vmfs_json_str(f, v->spec);
			fprintf(f, ", \"size\": %llu, \"ats\": ", (unsigned long long)v->size);
			vmfs_json_str(f, v->ats ? v->ats : "");
			fprintf(f, ", \"direct\": %s, \"io\": \"%s\"", v->direct ? "true" : "false",
				vmfsd_volume_io_name(v));
			fprintf(f, ", \"state\": ");
			vmfs_json_str(f, v->state);
			fprintf(f, "}");
		} else {
			fprintf(f, "%-40s %-14llu %-18s %-11s %s\n", v->spec, (unsigned long long)v->size,
				v->ats ? v->ats : "-", vmfsd_volume_io_name(v), v->state);
		}
	}
	if (json)
		fprintf(f, "]\n");
}

void vmfsd_reply(FILE *f, bool json, bool ok, const char *msg)
{
	if (json) {
		fprintf(f, "{\"%s\": ", ok ? "ok" : "error");
		vmfs_json_str(f, msg);
		fprintf(f, "}\n");
	} else {
		fprintf(f, "%s%s\n", ok ? "" : "error: ", msg);
	}
}

void vmfsd_mgmt_serve(struct vmfsd *d, int fd)
{
	char req[1024], *argv[16], *save = NULL, *tok;
	size_t have = 0;
	char *buf = NULL;
	size_t len = 0;
	int argc = 0;
	bool json = false;
	FILE *f;

	/* Read one line with a short deadline: a stuck client cannot block us. */
	while (have < sizeof(req) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 2000) <= 0)
			goto out;
		n = read(fd, req + have, sizeof(req) - 1 - have);
		if (n <= 0)
			goto out;
		have += (size_t)n;
		if (memchr(req, '\n', have))
			break;
	}
	req[have] = 0;
	req[strcspn(req, "\r\n")] = 0;
	for (tok = strtok_r(req, " \t", &save); tok && argc < 16; tok = strtok_r(NULL, " \t", &save))
		argv[argc++] = tok;
	if (argc && !strcmp(argv[0], "json")) {
		json = true;
		memmove(argv, argv + 1, sizeof(argv[0]) * (size_t)--argc);
	}
	f = open_memstream(&buf, &len);
	if (!f)
		goto out;
	if (!argc)
		vmfsd_reply(f, json, false, "empty request");
	else if (!strcmp(argv[0], "status"))
		cmd_status(d, f, json);
	else if (!strcmp(argv[0], "volumes"))
		cmd_volumes(d, f, json);
	else if (!strcmp(argv[0], "hosts"))
		vmfsd_mgmt_hosts(d, f, json);
	else if (!strcmp(argv[0], "locks"))
		vmfsd_mgmt_locks(d, f, json, argc > 1 ? argv[1] : NULL);
	else if (!strcmp(argv[0], "target"))
		vmfsd_iscsi_mgmt(d, f, json, argc - 1, argv + 1);
	else if (!strcmp(argv[0], "export"))
		vmfsd_nfs_mgmt(d, f, json, argc - 1, argv + 1);
	else if (!strcmp(argv[0], "vdisk"))
		vmfsd_vhost_mgmt(d, f, json, argc - 1, argv + 1);
	else
		vmfsd_reply(f, json, false, "unknown command (status, volumes, hosts, locks, target, export, vdisk)");
	fclose(f);
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, buf + off, len - off);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(buf);
out:
	close(fd);
}
