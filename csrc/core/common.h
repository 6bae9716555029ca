/*
 * common.h: error codes and tiny helpers shared by every core file. Pure C, any thread.
 */
#ifndef MX_COMMON_H
#define MX_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Core functions return 0 (or a count) on success and one of these negative codes on failure. */
#define MX_OK 0
#define MX_ENOMEM (-12)  /* allocation failed */
#define MX_EINVAL (-22)  /* bad argument or pattern */
#define MX_ECLOSED (-32) /* the connection or stream is gone */
#define MX_ESYS (-5)     /* a system call failed; errno says why */
#define MX_ELIMIT (-27)  /* a configured limit was exceeded */
#define MX_EAGAIN (-11)  /* nothing to do now: try again when the descriptor is ready */

#define MX_UNUSED(x) ((void)(x))
#define MX_LIKELY(x) __builtin_expect(!!(x), 1)
#define MX_UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif
