/*
 * Small helpers shared by the services and the daemon.
 */
#ifndef VMFS_UTIL_H
#define VMFS_UTIL_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Write @s as a JSON string literal (quotes, backslashes and control
 *  characters escaped). */
void vmfs_json_str(FILE *f, const char *s);

#ifdef __cplusplus
}
#endif
#endif
