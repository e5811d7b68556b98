/* vmfsd logging: timestamped lines to stderr or a log file. */
#ifndef VMFSD_LOG_H
#define VMFSD_LOG_H

enum vlog_level { VLOG_ERROR, VLOG_WARN, VLOG_INFO, VLOG_DEBUG };

void vlog_set_level(enum vlog_level l);
int vlog_parse_level(const char *s, enum vlog_level *out);
/* Redirect to @path (append); NULL = stderr.  \return 0 or -errno. */
int vlog_set_file(const char *path);
void vlog(enum vlog_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)   vlog(VLOG_ERROR, __VA_ARGS__)
#define log_warn(...)  vlog(VLOG_WARN, __VA_ARGS__)
#define log_info(...)  vlog(VLOG_INFO, __VA_ARGS__)
#define log_debug(...) vlog(VLOG_DEBUG, __VA_ARGS__)

#endif
