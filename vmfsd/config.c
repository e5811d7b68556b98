/* vmfsd options: one table serves the command line and the config file, so
 * everything the file can say can be said with flags (and vice versa). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfsd.h"

enum {
	OPT_CONFIG = 256, OPT_STATE_DIR, OPT_SOCKET, OPT_PIDFILE, OPT_LOG_FILE,
	OPT_LOG_LEVEL, OPT_HOST_UUID, OPT_VOLUME, OPT_DAEMONIZE, OPT_IO_TIMEOUT,
	OPT_ISCSI, OPT_LUN, OPT_NFS, OPT_NFS_PORTMAP, OPT_EXPORT, OPT_VHOST, OPT_DIRECT,
	OPT_HELP = 'h', OPT_VERSION = 'V',
};

static const struct option longopts[] = {
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "pidfile", required_argument, NULL, OPT_PIDFILE },
	{ "log-file", required_argument, NULL, OPT_LOG_FILE },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "host-uuid", required_argument, NULL, OPT_HOST_UUID },
	{ "volume", required_argument, NULL, OPT_VOLUME },
	{ "daemonize", no_argument, NULL, OPT_DAEMONIZE },
	{ "io-timeout", required_argument, NULL, OPT_IO_TIMEOUT },
	{ "direct", required_argument, NULL, OPT_DIRECT },
	{ "iscsi", required_argument, NULL, OPT_ISCSI },
	{ "lun", required_argument, NULL, OPT_LUN },
	{ "nfs", required_argument, NULL, OPT_NFS },
	{ "nfs-portmap", required_argument, NULL, OPT_NFS_PORTMAP },
	{ "export", required_argument, NULL, OPT_EXPORT },
	{ "vhost-user-blk", required_argument, NULL, OPT_VHOST },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
"Usage: vmfsd [--config FILE] --state-dir DIR --volume IMG[,EXTENT...] [options]\n"
"\n"
"OpenVMFS host daemon: mounts VMFS volumes as one host of the cluster.\n"
"\n"
"  --config FILE        read options from FILE: one 'option = value' (or bare\n"
"                       'option') per line, names as the long flags below,\n"
"                       '#' comments; flags on the command line override it\n"
"  --state-dir DIR      host-local state: config store (RocksDB), socket (required)\n"
"  --volume SPEC        volume to mount: IMG[,EXTENT...] (path or iscsi:// nfs://\n"
"                       URL of each extent); repeat for more volumes. Remembered in\n"
"                       the state dir: a restart without --volume mounts the same\n"
"  --socket PATH        management socket (default STATE_DIR/vmfsd.sock)\n"
"  --host-uuid UUID     this host's identity (default: generated once, kept\n"
"                       in the state dir)\n"
"  --io-timeout SEC     cluster I/O timeout; heartbeat timings derive from it\n"
"  --direct MODE        open the volumes' extents with O_DIRECT: auto (default:\n"
"                       on for block devices and iscsi:// nfs:// URLs, whose\n"
"                       other hosts' writes a page cache would hide; off for\n"
"                       image files), on, off\n"
"  --iscsi ADDR[:PORT]  serve iSCSI on this portal (port 3260 by default);\n"
"                       repeat for more portals\n"
"  --lun IQN,PATH[,chap=USER:SECRET][,mutual=USER:SECRET][,initiators=IQN1;IQN2]\n"
"        [,thin][,id=HEX][,lun=N]\n"
"                       export PATH as the next LUN of target IQN; PATH is\n"
"                       file:/abs/path (raw file or device; datastore paths come\n"
"                       with the filesystem integration).  Repeat for more LUNs.\n"
"                       Remembered in the state dir (also `vmfsctl target add`)\n"
"  --nfs ADDR[:PORT]    serve NFSv3 and MOUNT v3 over TCP there (port 2049 by\n"
"                       default); registers with rpcbind when one runs\n"
"  --nfs-portmap ADDR[:PORT]\n"
"                       also answer portmapper GETPORT there (111 by default)\n"
"                       for clients that ask it and no rpcbind runs\n"
"  --export PATH[,clients=A;B/N;*][,ro][,root_squash][,all_squash]\n"
"        [,anonuid=N][,anongid=N]\n"
"                       export directory PATH of the datastore over NFS ('/'\n"
"                       for all of it; /vmfs/volumes/LABEL/dir picks a volume).\n"
"                       Repeat for more.  Remembered in the state dir (also\n"
"                       `vmfsctl export add`)\n"
"  --vhost-user-blk SOCKET,PATH[,num-queues=N][,workers=N][,poll-us=N][,ro]\n"
"                       serve datastore disk PATH (a -flat file or a VMDK\n"
"                       descriptor; /vmfs/volumes/LABEL/... picks a volume) to\n"
"                       QEMU as vhost-user-blk on Unix socket SOCKET, holding\n"
"                       the disk's exclusive cluster lock.  poll-us: adaptive\n"
"                       busy-polling of the queues after work, at most N us\n"
"                       (default 32, 0 = off).  Repeat for more.\n"
"                       Remembered in the state dir (also `vmfsctl vdisk export`)\n"
"  --daemonize          detach after start-up (default: stay in the foreground)\n"
"  --pidfile FILE       write the daemon's pid to FILE\n"
"  --log-file FILE      log there instead of stderr\n"
"  --log-level LEVEL    error, warn, info (default) or debug\n"
"  -h, --help           this text\n"
"  -V, --version        version\n");
}

static int set_str(char **dst, const char *v)
{
	char *c = strdup(v);

	if (!c)
		return -ENOMEM;
	free(*dst);
	*dst = c;
	return 0;
}

/* Apply one option; @where names the source for error messages. */
static int apply(struct vmfsd_config *cfg, int id, const char *name, const char *val,
		 const char *where)
{
	char *end;

	switch (id) {
	case OPT_STATE_DIR: return set_str(&cfg->state_dir, val);
	case OPT_SOCKET: return set_str(&cfg->socket_path, val);
	case OPT_PIDFILE: return set_str(&cfg->pidfile, val);
	case OPT_LOG_FILE: return set_str(&cfg->log_file, val);
	case OPT_HOST_UUID: return set_str(&cfg->host_uuid, val);
	case OPT_DAEMONIZE: cfg->daemonize = true; return 0;
	case OPT_LOG_LEVEL:
		if (vlog_parse_level(val, &cfg->log_level)) {
			fprintf(stderr, "vmfsd: %s: bad log level '%s' (error, warn, info, debug)\n",
				where, val);
			return -EINVAL;
		}
		return 0;
	case OPT_IO_TIMEOUT:
		cfg->io_timeout = strtod(val, &end);
		if (*end || !(cfg->io_timeout > 0 && cfg->io_timeout <= 600)) {
			fprintf(stderr, "vmfsd: %s: bad --io-timeout '%s' (seconds, 0 < t <= 600)\n",
				where, val);
			return -EINVAL;
		}
		return 0;
	case OPT_DIRECT:
		if (!strcmp(val, "auto"))
			cfg->direct = VMFS_HOST_DIRECT_AUTO;
		else if (!strcmp(val, "on"))
			cfg->direct = VMFS_HOST_DIRECT_ON;
		else if (!strcmp(val, "off"))
			cfg->direct = VMFS_HOST_DIRECT_OFF;
		else {
			fprintf(stderr, "vmfsd: %s: bad --direct '%s' (auto, on, off)\n", where, val);
			return -EINVAL;
		}
		return 0;
	case OPT_ISCSI:
		if (!*val || cfg->niscsi >= VMFSD_MAX_PORTALS) {
			fprintf(stderr, "vmfsd: %s: empty --iscsi or too many portals (max %d)\n",
				where, VMFSD_MAX_PORTALS);
			return -EINVAL;
		}
		cfg->iscsi_portals[cfg->niscsi] = strdup(val);
		if (!cfg->iscsi_portals[cfg->niscsi])
			return -ENOMEM;
		cfg->niscsi++;
		return 0;
	case OPT_LUN:
		if (!*val || !strchr(val, ',') || cfg->nluns >= VMFSD_MAX_LUNS) {
			fprintf(stderr, "vmfsd: %s: bad --lun '%s' (IQN,PATH[,options]; max %d)\n",
				where, val, VMFSD_MAX_LUNS);
			return -EINVAL;
		}
		cfg->luns[cfg->nluns] = strdup(val);
		if (!cfg->luns[cfg->nluns])
			return -ENOMEM;
		cfg->nluns++;
		return 0;
	case OPT_NFS: return set_str(&cfg->nfs_listen, val);
	case OPT_NFS_PORTMAP: return set_str(&cfg->nfs_portmap, val);
	case OPT_EXPORT:
		if (!*val || *val != '/' || cfg->nexports >= VMFSD_MAX_EXPORTS) {
			fprintf(stderr, "vmfsd: %s: bad --export '%s' (PATH[,options]; max %d)\n",
				where, val, VMFSD_MAX_EXPORTS);
			return -EINVAL;
		}
		cfg->exports[cfg->nexports] = strdup(val);
		if (!cfg->exports[cfg->nexports])
			return -ENOMEM;
		cfg->nexports++;
		return 0;
	case OPT_VHOST:
		if (!*val || *val != '/' || !strchr(val, ',') || cfg->nvdisks >= VMFSD_MAX_VDISKS) {
			fprintf(stderr, "vmfsd: %s: bad --vhost-user-blk '%s' (SOCKET,PATH[,options]; "
				"max %d)\n", where, val, VMFSD_MAX_VDISKS);
			return -EINVAL;
		}
		cfg->vdisks[cfg->nvdisks] = strdup(val);
		if (!cfg->vdisks[cfg->nvdisks])
			return -ENOMEM;
		cfg->nvdisks++;
		return 0;
	case OPT_VOLUME:
		if (!*val) {
			fprintf(stderr, "vmfsd: %s: empty --volume\n", where);
			return -EINVAL;
		}
		if (cfg->nvolumes >= VMFSD_MAX_VOLUMES) {
			fprintf(stderr, "vmfsd: %s: too many volumes (max %d)\n", where,
				VMFSD_MAX_VOLUMES);
			return -EINVAL;
		}
		cfg->volumes[cfg->nvolumes] = strdup(val);
		if (!cfg->volumes[cfg->nvolumes])
			return -ENOMEM;
		cfg->nvolumes++;
		return 0;
	}
	fprintf(stderr, "vmfsd: %s: option '%s' not allowed here\n", where, name);
	return -EINVAL;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = 0;
	return s;
}

static int load_file(struct vmfsd_config *cfg, const char *path)
{
	char line[4096], where[4200];
	FILE *f = fopen(path, "re");
	int lineno = 0, r = 0;

	if (!f) {
		fprintf(stderr, "vmfsd: cannot read config %s: %s\n", path, strerror(errno));
		return -EINVAL;
	}
	while (fgets(line, sizeof(line), f)) {
		char *s, *eq, *name, *val = NULL;
		const struct option *o;

		lineno++;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (!strchr(line, '\n') && !feof(f)) {
			fprintf(stderr, "vmfsd: %s: line too long\n", where);
			r = -EINVAL;
			break;
		}
		s = trim(line);
		if (!*s || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (eq) {
			*eq = 0;
			val = trim(eq + 1);
		}
		name = trim(s);
		for (o = longopts; o->name; o++)
			if (!strcmp(o->name, name))
				break;
		if (!o->name || o->val == OPT_CONFIG || o->val == OPT_HELP || o->val == OPT_VERSION) {
			fprintf(stderr, "vmfsd: %s: unknown option '%s'\n", where, name);
			r = -EINVAL;
			break;
		}
		if ((o->has_arg == required_argument) != (val != NULL)) {
			fprintf(stderr, "vmfsd: %s: option '%s' %s\n", where, name,
				val ? "takes no value" : "needs a value");
			r = -EINVAL;
			break;
		}
		r = apply(cfg, o->val, name, val ? val : "", where);
		if (r)
			break;
	}
	fclose(f);
	return r;
}

int vmfsd_parse_args(int argc, char **argv, struct vmfsd_config *cfg, int *exit_now)
{
	const char *config = NULL;
	int c, r;

	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = VLOG_INFO;
	*exit_now = 0;
	/* First pass: --config and --help only; the file is applied before the
	 * other flags so that flags override it. */
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
		if (c == OPT_CONFIG)
			config = optarg;
		else if (c == OPT_HELP) {
			usage(stdout);
			*exit_now = 1;
			return 0;
		} else if (c == OPT_VERSION) {
			printf("vmfsd (OpenVMFS) 0.1\n");
			*exit_now = 1;
			return 0;
		}
	}
	if (config) {
		r = load_file(cfg, config);
		if (r)
			return r;
	}
	/* Volumes on the command line replace those of the file. */
	opterr = 1;
	optind = 1;
	bool cli_vol = false, cli_lun = false, cli_iscsi = false, cli_export = false;
	while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
		if (c == '?') {
			fprintf(stderr, "Try 'vmfsd --help'.\n");
			return -EINVAL;
		}
		if (c == OPT_CONFIG)
			continue;
		if (c == OPT_VOLUME && !cli_vol) {
			for (int i = 0; i < cfg->nvolumes; i++)
				free(cfg->volumes[i]);
			cfg->nvolumes = 0;
			cli_vol = true;
		}
		if (c == OPT_LUN && !cli_lun) {
			for (int i = 0; i < cfg->nluns; i++)
				free(cfg->luns[i]);
			cfg->nluns = 0;
			cli_lun = true;
		}
		if (c == OPT_EXPORT && !cli_export) {
			for (int i = 0; i < cfg->nexports; i++)
				free(cfg->exports[i]);
			cfg->nexports = 0;
			cli_export = true;
		}
		if (c == OPT_ISCSI && !cli_iscsi) {
			for (int i = 0; i < cfg->niscsi; i++)
				free(cfg->iscsi_portals[i]);
			cfg->niscsi = 0;
			cli_iscsi = true;
		}
		r = apply(cfg, c, "", optarg ? optarg : "", "command line");
		if (r)
			return r;
	}
	if (optind < argc) {
		fprintf(stderr, "vmfsd: unexpected argument '%s'\nTry 'vmfsd --help'.\n", argv[optind]);
		return -EINVAL;
	}
	if (!cfg->state_dir) {
		fprintf(stderr, "vmfsd: --state-dir is required\nTry 'vmfsd --help'.\n");
		return -EINVAL;
	}
	return 0;
}

void vmfsd_config_free(struct vmfsd_config *cfg)
{
	free(cfg->state_dir);
	free(cfg->socket_path);
	free(cfg->pidfile);
	free(cfg->log_file);
	free(cfg->host_uuid);
	for (int i = 0; i < cfg->nvolumes; i++)
		free(cfg->volumes[i]);
	for (int i = 0; i < cfg->niscsi; i++)
		free(cfg->iscsi_portals[i]);
	for (int i = 0; i < cfg->nluns; i++)
		free(cfg->luns[i]);
	free(cfg->nfs_listen);
	free(cfg->nfs_portmap);
	for (int i = 0; i < cfg->nexports; i++)
		free(cfg->exports[i]);
	for (int i = 0; i < cfg->nvdisks; i++)
		free(cfg->vdisks[i]);
	memset(cfg, 0, sizeof(*cfg));
}
