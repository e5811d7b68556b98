/* libFuzzer harness for the iSCSI target's PDU handling.  Each input is fed
 * as a byte stream to a real connection thread body (conn_main) over a
 * socketpair, against a target with one 1 MiB thin LUN on a temp file.
 * Byte 0 selects a prefix: bit 0 prepends a valid login (so the fuzzer
 * reaches full feature phase), bit 1 asks for digests in that login.  The
 * pure parsers (header check, key=value text, numbers, binary values) are
 * also driven directly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../iscsi/internal.h"

static struct iscsi_srv *srv;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(int level, const char *msg)
{
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/fuzz-iscsi-XXXXXX", spec[256], err[256];
	int fd = mkstemp(path), lun;

	if (fd < 0 || ftruncate(fd, 1 << 20))
		abort();
	close(fd);
	iscsi_set_log(quiet);
	if (iscsi_srv_create(&srv))
		abort();
	snprintf(spec, sizeof(spec), "iqn.2024-01.org.openvmfs:fuzz,file:%s,thin", path);
	if (iscsi_srv_add_lun(srv, spec, &lun, NULL, 0, err, sizeof(err))) {
		fprintf(stderr, "fuzz: %s\n", err);
		abort();
	}
	unlink(path); /* the LUN keeps it open */
	return 0;
}

static size_t login_pdu_bytes(uint8_t *out, bool digests)
{
	static const char *keys[] = {
		"InitiatorName=iqn.2024-01.org.openvmfs:fuzzer", "SessionType=Normal",
		"TargetName=iqn.2024-01.org.openvmfs:fuzz", "AuthMethod=None",
		"InitialR2T=No", "ImmediateData=Yes", "MaxRecvDataSegmentLength=4096",
		"MaxBurstLength=16384", "FirstBurstLength=8192", "MaxOutstandingR2T=2",
	};
	uint8_t *h = out, *d = out + 48;
	size_t dl = 0;

	memset(out, 0, 48);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t l = strlen(keys[i]) + 1;

		memcpy(d + dl, keys[i], l);
		dl += l;
	}
	if (digests) {
		memcpy(d + dl, "HeaderDigest=CRC32C", 20);
		dl += 20;
		memcpy(d + dl, "DataDigest=CRC32C", 18);
		dl += 18;
	}
	h[0] = 0x43;
	h[1] = 0x83;               /* T, CSG 0, NSG 3 */
	put_be24(h + 5, (uint32_t)dl);
	h[8] = 0x40;               /* ISID */
	h[13] = 1;
	put_be32(h + 16, 1);       /* ITT */
	put_be32(h + 24, 1);       /* CmdSN */
	memset(d + dl, 0, pad4((uint32_t)dl) - dl);
	return 48 + pad4((uint32_t)dl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t buf[65536 + 1024];
	size_t n = 0;
	int sv[2];
	struct conn *c;

	/* the pure parsers */
	if (size >= 48) {
		struct pdu_layout lay;

		pdu_check_header(data, 262144, data[0] & 1, data[1] & 1, &lay);
	}
	if (size < sizeof(buf) - 1024) {
		char text[65536 + 1];
		struct kv kv[KV_MAX];
		uint8_t bin[1024];
		uint64_t v;
		int nk;

		memcpy(text, data, size);
		nk = kv_parse(text, size, kv, KV_MAX);
		for (int i = 0; i < nk; i++) {
			kv_number(kv[i].val, &v);
			kv_binary(kv[i].val, bin, sizeof(bin));
		}
	}
	if (!size || size > 65536)
		return 0;
	/* the connection state machine */
	if (data[0] & 1)
		n = login_pdu_bytes(buf, data[0] & 2);
	memcpy(buf + n, data + 1, size - 1);
	n += size - 1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 0;
	if (write(sv[1], buf, n) != (ssize_t)n) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	close(sv[1]); /* EOF after the input; replies fail with EPIPE */
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(sv[0]);
		return 0;
	}
	c->fd = sv[0];
	c->srv = srv;
	snprintf(c->peer, sizeof(c->peer), "fuzz");
	pthread_mutex_init(&c->ua_lock, NULL);
	pthread_mutex_init(&c->done_lock, NULL);
	c->efd = -1; /* no worker pool here: writes run inline */
	pthread_mutex_lock(&srv->lock);
	c->next = srv->conns;
	srv->conns = c;
	srv->nconns++;
	pthread_mutex_unlock(&srv->lock);
	conn_main(c); /* frees c and closes sv[0] */
	return 0;
}
