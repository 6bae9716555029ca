/*
 * options.c: the option table (options.h) and mx_config_defaults, which fills a configuration
 * from it. Every default value of the server is written here and nowhere else. Pure data and
 * pure functions: any thread may call them.
 */
#include "options.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define FIELD(f) offsetof(mx_config_t, f)
#define MIN_ MX_OPT_HAS_MIN
#define BOTH_ (MX_OPT_HAS_MIN | MX_OPT_HAS_MAX)

/* name, kind, flags, default, min, max, field, doc */
const mx_option_t mx_options[] = {
    {"workers", MX_OPT_INT, BOTH_ | MX_OPT_AUTO, 0, 1, 10000, FIELD(workers),
     "worker threads (default: 10 x CPU count, at least 4)"},
    /* 256: room for a request line and a Host header; the target limit is this minus 64 */
    {"max_headers_len", MX_OPT_SIZE, MIN_, 8192, 256, 0, FIELD(max_headers_len),
     "largest request head (request line and headers) in bytes; larger gets 431"},
    {"max_body_len", MX_OPT_SIZE, MIN_, 1048576, 0, 0, FIELD(max_body_len),
     "largest request body in bytes; larger gets 413"},
    {"max_message_len", MX_OPT_SIZE, MIN_, 65536, 1, 0, FIELD(max_message_len),
     "largest received WebSocket message in bytes; larger closes with 1009"},
    {"compression", MX_OPT_BOOL, 0, 1, 0, 1, FIELD(compression),
     "gzip/deflate responses when the client accepts them"},
    {"header_timeout", MX_OPT_DOUBLE, 0, 10.0, 0, 0, FIELD(header_timeout),
     "seconds for a whole request head to arrive (then 408); <= 0: no limit"},
    {"body_timeout", MX_OPT_DOUBLE, 0, 30.0, 0, 0, FIELD(body_timeout),
     "a body must bring 1 KiB (or its rest) per this many seconds (then 408); <= 0: no limit"},
    {"write_timeout", MX_OPT_DOUBLE, 0, 30.0, 0, 0, FIELD(write_timeout),
     "seconds output to a client may stay stuck before the connection is closed; <= 0: none"},
    {"max_queue_time", MX_OPT_DOUBLE, MX_OPT_NONE_OFF, 0, 0, 0, FIELD(max_queue_time),
     "seconds a request may wait for a worker before it gets 503; None: no limit"},
    {"idle_timeout", MX_OPT_DOUBLE, 0, 60.0, 0, 0, FIELD(idle_timeout),
     "seconds a keep-alive connection may sit idle; <= 0: no limit"},
    {"max_pipeline", MX_OPT_INT, 0, 16, 0, 0, FIELD(max_pipeline),
     "requests of one connection in flight at once; reading it pauses beyond"},
    {"max_connections", MX_OPT_INT, 0, 10000, 0, 0, FIELD(max_connections),
     "open connections; accepting pauses beyond"},
    {"backlog", MX_OPT_INT, 0, 1024, 0, 0, FIELD(backlog), "the listen(2) backlog"},
    /* below 1 KiB a single WebSocket frame header and a short message would not fit */
    {"max_send_queue", MX_OPT_SIZE, MIN_, 4 * 1024 * 1024, 1024, 0, FIELD(max_send_queue),
     "bytes an SSE stream or WebSocket may have queued; a client that stops reading is cut"},
    {"sse_heartbeat", MX_OPT_DOUBLE, MX_OPT_NONE_OFF, 15.0, 0, 0, FIELD(sse_heartbeat),
     "seconds of silence before an SSE stream gets a comment line; 0 or None: none"},
    {"websocket_compression", MX_OPT_BOOL, 0, 1, 0, 1, FIELD(websocket_compression),
     "negotiate permessage-deflate when the client offers it"},
    {"websocket_ping_interval", MX_OPT_DOUBLE, MX_OPT_NONE_OFF, 0, 0, 0,
     FIELD(websocket_ping_interval),
     "seconds of silence before a WebSocket is pinged (closed without an answer); None: never"},
    {"websocket_close_timeout", MX_OPT_DOUBLE, 0, 5.0, 0, 0, FIELD(websocket_close_timeout),
     "seconds to wait for the client's close frame after the server's"},
};
const size_t mx_num_options = sizeof(mx_options) / sizeof(mx_options[0]);

const mx_option_t *mx_option_find(const char *name, size_t len) {
    for (size_t i = 0; i < mx_num_options; i++)
        if (strlen(mx_options[i].name) == len && memcmp(mx_options[i].name, name, len) == 0)
            return &mx_options[i];
    return NULL;
}

/* The bounds test shared by both setters; v is compared as a double, exact for any bound the
 * table holds (all below 2^53). */
static int in_bounds(const mx_option_t *o, double v) {
    if ((o->flags & MX_OPT_HAS_MIN) && v < o->min)
        return 0;
    if ((o->flags & MX_OPT_HAS_MAX) && v > o->max)
        return 0;
    return 1;
}

int mx_option_set_int(mx_config_t *c, const mx_option_t *o, long long v) {
    char *field = (char *)c + o->offset;
    if (o->kind == MX_OPT_DOUBLE || !in_bounds(o, (double)v))
        return MX_EINVAL;
    switch (o->kind) {
    case MX_OPT_SIZE:
        if (v < 0 || (unsigned long long)v > SIZE_MAX)
            return MX_EINVAL;
        *(size_t *)field = (size_t)v;
        return 0;
    case MX_OPT_BOOL:
        if (v != 0 && v != 1)
            return MX_EINVAL;
        *(int *)field = (int)v;
        return 0;
    default:
        if (v < INT_MIN || v > INT_MAX)
            return MX_EINVAL;
        *(int *)field = (int)v;
        return 0;
    }
}

int mx_option_set_double(mx_config_t *c, const mx_option_t *o, double v) {
    /* NaN fails every comparison: refuse it rather than store a timer that never fires */
    if (o->kind != MX_OPT_DOUBLE || v != v || !in_bounds(o, v))
        return MX_EINVAL;
    *(double *)((char *)c + o->offset) = v;
    return 0;
}

/* Workers for this machine: handlers block, so ten per CPU, and never fewer than four. */
static long auto_workers(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    long w = 10 * (n > 0 ? n : 1);
    return w < 4 ? 4 : (w > 10000 ? 10000 : w);
}

int mx_option_unset(mx_config_t *c, const mx_option_t *o) {
    if (o->flags & MX_OPT_AUTO) /* workers is the only one */
        return mx_option_set_int(c, o, auto_workers());
    if (!(o->flags & MX_OPT_NONE_OFF))
        return MX_EINVAL;
    return o->kind == MX_OPT_DOUBLE ? mx_option_set_double(c, o, 0) : mx_option_set_int(c, o, 0);
}

void mx_config_defaults(mx_config_t *c) {
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < mx_num_options; i++) {
        const mx_option_t *o = &mx_options[i];
        if (o->flags & MX_OPT_AUTO)
            mx_option_unset(c, o);
        else if (o->kind == MX_OPT_DOUBLE)
            mx_option_set_double(c, o, o->def);
        else
            mx_option_set_int(c, o, (long long)o->def);
    }
    /* Not options: derived by the binding (the target limit from max_headers_len, the routing
     * switches from which handlers exist); this is what they were before it sets them. */
    c->max_target_len = 8000;
}
