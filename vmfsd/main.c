/* vmfsd: the OpenVMFS host daemon. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uuid.h>

#include "vmfs/blockdev.h"
#include "vmfsd.h"

double vmfsd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int mkdir_p(const char *dir)
{
	char tmp[4096];

	if (strlen(dir) >= sizeof(tmp))
		return -ENAMETOOLONG;
	strcpy(tmp, dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, 0700) && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	}
	if (mkdir(tmp, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

/* Host identity: --host-uuid, else the one kept in the store, else a new one. */
static int load_host_uuid(struct vmfsd *d)
{
	char *v = NULL;
	uuid_t u;
	int r;

	if (d->cfg.host_uuid) {
		if (uuid_parse(d->cfg.host_uuid, u)) {
			log_err("bad --host-uuid '%s'", d->cfg.host_uuid);
			return -EINVAL;
		}
		uuid_unparse_lower(u, d->host_uuid);
		return vstore_put(d->store, "host/uuid", d->host_uuid);
	}
	r = vstore_get(d->store, "host/uuid", &v);
	if (r == 0 && !uuid_parse(v, u)) {
		uuid_unparse_lower(u, d->host_uuid);
		free(v);
		return 0;
	}
	free(v);
	uuid_generate(u);
	uuid_unparse_lower(u, d->host_uuid);
	log_info("new host identity %s", d->host_uuid);
	return vstore_put(d->store, "host/uuid", d->host_uuid);
}

/* Volumes from the command line/config replace the remembered ones; with none
 * given, the remembered ones are used. */
static int resolve_volumes(struct vmfsd *d)
{
	char key[32];
	int r;

	if (d->cfg.nvolumes) {
		r = vstore_drop_prefix(d->store, "volume/");
		for (int i = 0; !r && i < d->cfg.nvolumes; i++) {
			snprintf(key, sizeof(key), "volume/%02d", i);
			r = vstore_put(d->store, key, d->cfg.volumes[i]);
		}
		return r;
	}
	return vstore_collect(d->store, "volume/", d->cfg.volumes, VMFSD_MAX_VOLUMES,
			      &d->cfg.nvolumes);
}

static int write_pidfile(const char *path)
{
	char buf[32];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int len;

	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)len) != len) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct vmfsd d = { .listen_fd = -1 };
	char *err = NULL, path[4096];
	int exit_now, r, sfd = -1, rc = 1;
	sigset_t mask;

	/* Block the shutdown signals before any thread exists (RocksDB starts
	 * some): they are then only ever taken through the signalfd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (vmfsd_parse_args(argc, argv, &d.cfg, &exit_now))
		return 2;
	if (exit_now)
		return 0;
	vlog_set_level(d.cfg.log_level);
	if (d.cfg.log_file && (r = vlog_set_file(d.cfg.log_file))) {
		fprintf(stderr, "vmfsd: cannot open log file %s: %s\n", d.cfg.log_file, strerror(-r));
		return 1;
	}
	r = mkdir_p(d.cfg.state_dir);
	if (r) {
		log_err("cannot create state dir %s: %s", d.cfg.state_dir, strerror(-r));
		return 1;
	}
	if (!d.cfg.socket_path) {
		snprintf(path, sizeof(path), "%s/vmfsd.sock", d.cfg.state_dir);
		d.cfg.socket_path = strdup(path);
	}
	r = vstore_open(d.cfg.state_dir, &d.store, &err);
	if (r) {
		log_err("cannot open config store in %s: %s", d.cfg.state_dir, err ? err : "?");
		free(err);
		goto out;
	}
	if (load_host_uuid(&d) || resolve_volumes(&d)) {
		log_err("cannot read or update the config store");
		goto out;
	}
	if (d.cfg.daemonize && daemon(1, d.cfg.log_file ? 0 : 1)) {
		log_err("daemonize: %s", strerror(errno));
		goto out;
	}
	if (d.cfg.pidfile && (r = write_pidfile(d.cfg.pidfile))) {
		log_err("cannot write pidfile %s: %s", d.cfg.pidfile, strerror(-r));
		goto out;
	}
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		log_err("signalfd: %s", strerror(errno));
		goto out;
	}
	d.started = vmfsd_now();
	log_info("host %s starting, state dir %s, %d volume(s)", d.host_uuid, d.cfg.state_dir,
		 d.cfg.nvolumes);
	if (!d.cfg.nvolumes)
		log_warn("no volume configured (use --volume)");
	for (int i = 0; i < d.cfg.nvolumes; i++)
		vmfsd_volume_mount(&d, &d.vols[d.nvols++], d.cfg.volumes[i]);
	if (vmfsd_iscsi_start(&d))
		goto out;
	if (vmfsd_nfs_start(&d))
		goto out;
	if (vmfsd_vhost_start(&d))
		goto out;
	if (vmfsd_mgmt_listen(&d))
		goto out;
	log_info("management socket %s; ready", d.cfg.socket_path);
	for (;;) {
		struct pollfd p[2] = { { .fd = sfd, .events = POLLIN },
				       { .fd = d.listen_fd, .events = POLLIN } };

		if (poll(p, 2, vmfsd_vhost_timeout_ms(&d)) < 0) {
			if (errno == EINTR)
				continue;
			log_err("poll: %s", strerror(errno));
			goto out;
		}
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					log_info("SIGHUP: nothing to reload yet");
					continue;
				}
				log_info("signal %d: shutting down", (int)si.ssi_signo);
				break;
			}
		}
		if (p[1].revents & POLLIN) {
			int c = accept4(d.listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (c >= 0)
				vmfsd_mgmt_serve(&d, c);
		}
		vmfsd_vhost_retry(&d);
	}
	rc = 0;
out:
	vmfsd_vhost_stop(&d);
	vmfsd_nfs_stop(&d);
	vmfsd_iscsi_stop(&d);
	for (int i = 0; i < d.nvols; i++)
		vmfsd_volume_unmount(&d.vols[i]);
	if (d.listen_fd >= 0) {
		close(d.listen_fd);
		unlink(d.cfg.socket_path);
	}
	if (sfd >= 0)
		close(sfd);
	if (d.cfg.pidfile && rc == 0)
		unlink(d.cfg.pidfile);
	vstore_close(d.store);
	if (rc == 0)
		log_info("stopped cleanly");
	vmfsd_config_free(&d.cfg);
	vlog_set_file(NULL);
	return rc;
}
