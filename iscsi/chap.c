/* CHAP with MD5 (RFC 1994, RFC 7143 §12.1.3): response = MD5(id || secret ||
 * challenge).  OpenSSL supplies MD5 and the random challenge. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "internal.h"

int chap_response(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len,
		  uint8_t out[16])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;
	int r = -EIO;

	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, &id, 1) == 1 &&
	    EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
	    EVP_DigestUpdate(ctx, chal, chal_len) == 1 &&
	    EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == 16)
		r = 0;
	EVP_MD_CTX_free(ctx);
	return r;
}

int chap_random(void *buf, size_t n)
{
	int fd, r = 0;

	if (RAND_bytes(buf, (int)n) == 1)
		return 0;
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, n) != (ssize_t)n)
		r = -EIO;
	if (fd >= 0)
		close(fd);
	return r;
}
