/*
 * VMDK descriptors: the small text file (DISK.vmdk) that names a virtual
 * disk's data file (DISK-flat.vmdk) and says whether it is thin.  One parser
 * for every service that accepts a descriptor where a disk is expected
 * (iSCSI LUNs, vhost-user exports, the disk tool).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/thinprov.h"

#define MAGIC "# Disk DescriptorFile"

int thinprov_vmdk_parse(const char *text, struct thinprov_vmdk *d)
{
	const char *line, *next;
	int extents = 0;

	memset(d, 0, sizeof(*d));
	if (strncmp(text, MAGIC, strlen(MAGIC)))
		return 0;
	for (line = text; line && *line; line = next) {
		char access[8], kind[16], name[256], l[512];
		unsigned long long sectors;
		size_t len;

		next = strchr(line, '\n');
		len = next ? (size_t)(next - line) : strlen(line);
		if (next)
			next++;
		if (len >= sizeof(l))
			continue;      /* no extent or ddb line is that long */
		memcpy(l, line, len);
		l[len] = 0;
		if (sscanf(l, "%7s %llu %15s \"%255[^\"]\"", access, &sectors, kind, name) == 4 &&
		    (!strcmp(access, "RW") || !strcmp(access, "RDONLY")) &&
		    (!strcmp(kind, "VMFS") || !strcmp(kind, "FLAT"))) {
			extents++;
			snprintf(d->flat, sizeof(d->flat), "%s", name);
			d->sectors = sectors;
			d->rdonly = !strcmp(access, "RDONLY");
		} else if (!strncmp(l, "ddb.thinProvisioned", 19)) {
			d->thin = strstr(l, "\"1\"") != NULL;
		}
	}
	return extents == 1 ? 1 : -EOPNOTSUPP;
}

int thinprov_vmdk_read(struct vmfs_fs *fs, uint32_t addr, const char *path, struct thinprov_vmdk *d,
		       char *flat_path, size_t flat_len)
{
	char *text = malloc(THINPROV_VMDK_MAX + 1);
	const char *slash = strrchr(path, '/');
	int64_t n;
	int r;

	if (!text)
		return -ENOMEM;
	n = vmfs_pread(fs, addr, text, THINPROV_VMDK_MAX, 0);
	if (n < 0) {
		free(text);
		return (int)n;
	}
	text[n] = 0;
	r = thinprov_vmdk_parse(text, d);
	free(text);
	if (r != 1)
		return r;
	if (d->flat[0] == '/' || !slash)
		n = snprintf(flat_path, flat_len, "%s", d->flat);
	else
		n = snprintf(flat_path, flat_len, "%.*s/%s", (int)(slash - path), path, d->flat);
	return n < (int64_t)flat_len ? 1 : -ENAMETOOLONG;
}
