/* File handles: version | volume UUID | export id | FD address | generation |
 * HMAC-SHA256(key of the volume, first 32 bytes) truncated to 16 bytes.
 *
 *   0      1..3   4..19   20..23     24..27  28..31  32..47
 *   ver=1  zero   uuid    export id  addr    gen     MAC
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "internal.h"

#define FH_VERSION 1

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void mac(const uint8_t key[NFS_FH_KEY_SIZE], const uint8_t *msg, uint8_t out[16])
{
	uint8_t full[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (!HMAC(EVP_sha256(), key, NFS_FH_KEY_SIZE, msg, 32, full, &n) || n < 16)
		memset(full, 0xff, 16);   /* never verifies against a real handle */
	memcpy(out, full, 16);
}

void nfs_fh_make(const struct nfs_vol *v, uint32_t export_id, uint32_t addr, uint32_t gen,
		 uint8_t out[NFS_FH_LEN])
{
	memset(out, 0, NFS_FH_LEN);
	out[0] = FH_VERSION;
	memcpy(out + 4, v->uuid, 16);
	put32(out + 20, export_id);
	put32(out + 24, addr);
	put32(out + 28, gen);
	mac(v->key, out, out + 32);
}

int nfs_fh_parse(struct nfs_srv *s, const uint8_t *p, uint32_t len, struct nfs_fh *fh)
{
	uint8_t m[16];

	if (len != NFS_FH_LEN || p[0] != FH_VERSION || p[1] || p[2] || p[3])
		return NFS3ERR_BADHANDLE;
	for (int i = 0; i < s->nvols; i++) {
		if (memcmp(s->vols[i].uuid, p + 4, 16))
			continue;
		mac(s->vols[i].key, p, m);
		if (CRYPTO_memcmp(m, p + 32, 16))
			return NFS3ERR_BADHANDLE;
		fh->vol = i;
		fh->export_id = get32(p + 20);
		fh->addr = get32(p + 24);
		fh->gen = get32(p + 28);
		if (vmfs_addr_type(fh->addr) != VMFS_ADDR_FD)
			return NFS3ERR_BADHANDLE;
		return NFS3_OK;
	}
	/* a volume this server does not serve (any more): cannot check the MAC */
	return NFS3ERR_STALE;
}

int nfs_volume_key(struct vmfs_fs *fs, const uint8_t *fallback, uint8_t key[NFS_FH_KEY_SIZE])
{
	uint8_t fresh[NFS_FH_KEY_SIZE];
	uint32_t addr;
	int64_t n;
	int r;

	for (int attempt = 0; attempt < 4; attempt++) {
		r = vmfs_lookup(fs, VMFS_ROOT_ADDR, NFS_FH_KEY_FILE, &addr);
		if (r == 0) {
			n = vmfs_pread(fs, addr, key, NFS_FH_KEY_SIZE, 0);
			if (n == NFS_FH_KEY_SIZE)
				return 0;
			if (attempt < 2) {
				/* another host may be between create and write */
				usleep(300000);
				continue;
			}
			/* a host died between create and write: write it */
		} else if (r == -ENOENT) {
			r = vmfs_create(fs, VMFS_ROOT_ADDR, NFS_FH_KEY_FILE, 0600, 0, 0, &addr);
			if (r == -EEXIST)
				continue;       /* another host won the race: read its key */
			if (r)
				return r;
		} else {
			return r;
		}
		if (fallback)
			memcpy(fresh, fallback, sizeof(fresh));
		else if (RAND_bytes(fresh, sizeof(fresh)) != 1)
			return -EIO;
		n = vmfs_pwrite(fs, addr, fresh, sizeof(fresh), 0);
		if (n != (int64_t)sizeof(fresh))
			return n < 0 ? (int)n : -EIO;
		r = vmfs_fs_sync(fs);
		if (r)
			return r;
		/* read back: a concurrent writer may have written first */
	}
	return -EIO;
}
