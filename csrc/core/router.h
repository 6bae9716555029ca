/*
 * router.h: the route table and its matcher.
 *
 * Built by the binding before the server starts, then frozen: the I/O thread matches every
 * request against it without locks or allocation, so a 404 or 405 never touches Python.
 *
 * Pattern syntax (Mummy's, made precise). A pattern starts with '/' and is split on '/' into
 * segments; a request path is split the same way, each of its segments is percent-decoded, and
 * the two are compared segment by segment. The kinds of pattern segment are (in line comments,
 * because a star-slash as in the glob example would end a block comment):
 */
// literal    a segment equal byte for byte to the decoded request segment; the literal itself
//            is not decoded ("/100%25" matches only a segment that decodes to "100%25")
// @name      any non-empty segment, captured decoded as parameter "name" ([A-Za-z0-9_]+)
// *          any non-empty segment
// page_*     a segment that starts with "page_"; the star may match nothing ("page_" matches)
// *.js       a segment that ends with ".js"; the star may match nothing (".js" matches)
// **         one or more whole segments, which may be empty; at most one per pattern. The
//            segments after it match the last segments of the path: /a/**/b matches /a/x/y/b
//            and /a/x/b but not /a/b; /a/** matches /a/x and /a/ but not /a
/*
 * Segment counts must otherwise be equal, so a trailing slash matters: "/a" and "/a/" are
 * different paths ("/a/" has the segments "a" and ""). The root path "/" is one empty segment:
 * it matches the pattern "/" (and a pattern made of "**" alone), never "/@id" or "/" + "*".
 * Empty segments are literals like any other: the pattern "/a//b" matches only the path "/a//b".
 *
 * Invalid patterns: not starting with '/'; containing NUL, '?' or '#'; a '*' inside a segment
 * ("a*b"), two stars in a segment ("*a*") or a "**" that is not a whole segment ("a**", "***");
 * two "**"; '@' anywhere but at a segment start; an empty or non-[A-Za-z0-9_] parameter name
 * ("@", "@id*"); the same name twice; more than MX_ROUTE_MAX_PARAMS parameters.
 */
#ifndef MX_ROUTER_H
#define MX_ROUTER_H

#include <stddef.h>

#include "common.h"

typedef struct mx_router mx_router_t;

#define MX_ROUTE_NOT_FOUND 0
#define MX_ROUTE_FOUND 1
#define MX_ROUTE_METHOD_NOT_ALLOWED 2

#define MX_ROUTE_MAX_PARAMS 32

typedef struct mx_route_param {
    const char *name; /* owned by the router; valid while it lives */
    size_t name_len;
    size_t value_off; /* the percent-decoded value is scratch[value_off .. value_off+value_len) */
    size_t value_len;
} mx_route_param_t;

/*
 * What a route asks of the server besides its handler, kept with the route and given back with
 * every match, so the policy lives in one place.
 */
#define MX_ROUTE_BODY_SERVER ((size_t)-2) /* max_body: the server's max_body_len applies */
typedef struct mx_route_opts {
    size_t max_body; /* body bytes (413 beyond); SIZE_MAX: no limit; or MX_ROUTE_BODY_SERVER */
    int stream;      /* the handler runs as soon as the head is in and reads the body as it comes */
} mx_route_opts_t;

/* Filled by mx_router_match; about 1.5 KB, so a caller may keep one per connection or thread. */
typedef struct mx_route_match {
    int route_id;         /* FOUND: the id given to mx_router_add for the route; otherwise -1 */
    mx_route_opts_t opts; /* FOUND: the route's options; otherwise the defaults */
    size_t num_params;    /* FOUND: the route's parameters, in pattern order; otherwise 0 */
    mx_route_param_t params[MX_ROUTE_MAX_PARAMS];
    /* METHOD_NOT_ALLOWED: the value for the Allow header, such as "GET, HEAD, POST" (not
     * NUL-terminated). If the full list would not fit it is cut after the last method that
     * fits, never inside one. Empty for the other results. */
    char allow[512];
    size_t allow_len;
} mx_route_match_t;

/* Returns a new empty router, or NULL when out of memory. Any thread; not thread-safe to build. */
mx_router_t *mx_router_new(void);

/* Frees the router and everything it owns. NULL is allowed. */
void mx_router_free(mx_router_t *r);

/*
 * Checks a pattern. Returns 0 when valid; MX_EINVAL when not, writing a NUL-terminated reason
 * that names the problem and quotes the pattern (e.g. "'*' may only start or end a segment:
 * '/a*b'"; unprintable bytes shown as \xHH, long patterns shortened) into err[0..errlen) when err
 * is not NULL and errlen > 0. 256 bytes is plenty. Any thread; touches no shared state.
 */
int mx_router_validate(const char *pattern, size_t len, char *err, size_t errlen);

/*
 * Appends a route. method is a token (RFC 9110 section 9.1) such as "GET" or "PURGE", compared
 * case-sensitively, so pass it upper case (copied); pattern is copied. route_id is returned by
 * matches; several routes may share one. opts (copied; NULL: the defaults, the server's body
 * limit and no streaming) is given back with matches. Returns 0, MX_EINVAL (invalid pattern or method, err
 * filled as above), or MX_ENOMEM (err says "out of memory"; the router is unchanged). Routes are
 * tried in the order they were added; the first match wins. Not thread-safe: only the thread
 * that builds the router, before the server starts.
 */
int mx_router_add(mx_router_t *r, const char *method, size_t method_len, const char *pattern,
                  size_t pattern_len, int route_id, const mx_route_opts_t *opts, char *err,
                  size_t errlen);

/*
 * Matches a request. method is compared exactly with the routes' methods. path is the raw (still
 * percent-encoded) path of the request-target, without the query, starting with '/' (anything
 * else, such as "*" or an empty path, is MX_ROUTE_NOT_FOUND). It is split on '/' first and each
 * segment percent-decoded after (so %2F inside a segment never splits it); invalid escapes are
 * kept literally.
 * scratch must hold at least path_len bytes (MX_EINVAL otherwise: a caller bug); the decoded
 * parameter values of the matching route are written there and nothing else is. It must stay
 * alive as long as the values are used; the names point into the router.
 * Returns MX_ROUTE_FOUND (m->route_id and params set); MX_ROUTE_METHOD_NOT_ALLOWED when the path
 * matches some route but none with this method (m->allow lists the methods of every route whose
 * pattern matches, in registration order, without duplicates, with HEAD added right after GET
 * when a matching GET route exists and no matching HEAD route does); MX_ROUTE_NOT_FOUND
 * otherwise.
 * HEAD: the first matching HEAD route wins, wherever it is in the table; when no HEAD route
 * matches, the first matching GET route serves the request (m->route_id is that GET route's).
 * Does not allocate. Read-only: safe to call from any number of threads once the router is no
 * longer modified. r may be NULL (NOT_FOUND).
 */
int mx_router_match(const mx_router_t *r, const char *method, size_t method_len, const char *path,
                    size_t path_len, char *scratch, size_t scratch_cap, mx_route_match_t *m);

/*
 * Percent-decodes in[0..len) into out (room for len bytes). Invalid or truncated escapes are
 * copied unchanged. When plus_as_space is set, '+' becomes ' ' (query strings). Returns the
 * decoded length. out may equal in.
 */
size_t mx_percent_decode(const char *in, size_t len, char *out, int plus_as_space);

#endif
