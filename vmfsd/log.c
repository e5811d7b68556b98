#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static enum vlog_level cur_level = VLOG_INFO;
static FILE *out_file;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *const names[] = { "error", "warn", "info", "debug" };

void vlog_set_level(enum vlog_level l)
{
	cur_level = l;
}

int vlog_parse_level(const char *s, enum vlog_level *out)
{
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i])) {
			*out = (enum vlog_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

int vlog_set_file(const char *path)
{
	FILE *f = NULL;

	if (path) {
		f = fopen(path, "ae");
		if (!f)
			return -errno;
		setvbuf(f, NULL, _IOLBF, 0);
	}
	pthread_mutex_lock(&log_mu);
	if (out_file)
		fclose(out_file);
	out_file = f;
	pthread_mutex_unlock(&log_mu);
	return 0;
}

void vlog(enum vlog_level l, const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32];
	va_list ap;
	FILE *f;

	if (l > cur_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	pthread_mutex_lock(&log_mu);
	f = out_file ? out_file : stderr;
	fprintf(f, "%s.%03ldZ vmfsd %s: ", stamp, ts.tv_nsec / 1000000, names[l]);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fflush(f);
	pthread_mutex_unlock(&log_mu);
}
