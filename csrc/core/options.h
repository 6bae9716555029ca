/*
 * options.h: the table of the server's options (mx_config_t's settable fields): for each its
 * name, type, default, bounds, field and a one-line doc. The one home of every default: the
 * binding builds mummyx._mummyx.OPTIONS from it, and Server(), the command line and the docs
 * read that. Pure C; the table is constant, so every function here may run on any thread, and
 * none takes ownership of anything (c is the caller's).
 */
#ifndef MX_OPTIONS_H
#define MX_OPTIONS_H

#include <stddef.h>

#include "mx.h"

/* The C type of an option's field in mx_config_t. */
typedef enum {
    MX_OPT_INT,    /* int */
    MX_OPT_SIZE,   /* size_t (never negative) */
    MX_OPT_DOUBLE, /* double: seconds */
    MX_OPT_BOOL,   /* int, 0 or 1 */
} mx_opt_kind_t;

#define MX_OPT_HAS_MIN 0x1u  /* min is a bound */
#define MX_OPT_HAS_MAX 0x2u  /* max is a bound */
#define MX_OPT_NONE_OFF 0x4u /* may be left unset (None in Python): 0, meaning off or no limit */
#define MX_OPT_AUTO 0x8u     /* may be left unset: a value for this machine (mx_option_unset) */

typedef struct mx_option {
    const char *name;
    mx_opt_kind_t kind;
    unsigned flags;    /* MX_OPT_* above */
    double def;        /* the default (unused with MX_OPT_AUTO) */
    double min, max;   /* bounds, when flags say so (inclusive) */
    size_t offset;     /* of the field in mx_config_t */
    const char *doc;   /* one line, for --help and the docs */
} mx_option_t;

/* The table, in the order the docs list the options. */
extern const mx_option_t mx_options[];
extern const size_t mx_num_options;

/* The option called name[0..len), or NULL. Any thread. */
const mx_option_t *mx_option_find(const char *name, size_t len);

/*
 * Sets o's field in c: mx_option_set_int for MX_OPT_INT, SIZE and BOOL (0 or 1),
 * mx_option_set_double for MX_OPT_DOUBLE. Returns 0, or MX_EINVAL (c unchanged) when the value
 * is outside o's bounds or its type's range, or o is of the other family. Any thread.
 */
int mx_option_set_int(mx_config_t *c, const mx_option_t *o, long long v);
int mx_option_set_double(mx_config_t *c, const mx_option_t *o, double v);

/* Leaves o unset: 0 for MX_OPT_NONE_OFF, the machine's value for MX_OPT_AUTO. Returns 0, or
 * MX_EINVAL when o must have a value. Any thread. */
int mx_option_unset(mx_config_t *c, const mx_option_t *o);

/* Fills c with every option's default (and zeroes the rest). Any thread. Declared in mx.h. */
/* void mx_config_defaults(mx_config_t *c); */

#endif
