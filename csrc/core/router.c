/*
 * router.c: the route table and its matcher (see router.h for the pattern syntax).
 *
 * The binding builds the table on one thread before the server starts; from then on the table is
 * frozen and the I/O thread matches every request against it, without locks and without
 * allocating. Each pattern is compiled once, at add time, into an array of segments (kind,
 * literal, parameter index), so matching is a walk over the raw path that compares segment by
 * segment and stops at the first mismatch.
 *
 * Matching never decodes the whole path: it compares the raw (percent-encoded) request segments
 * with the pattern's literals while decoding on the fly, which costs nothing extra when the path
 * has no '%' at all (the common case: plain memcmp). Only the values of the parameters of the
 * route that finally matched are decoded, each into the caller's scratch buffer at the offset
 * where its raw text starts in the path. Decoding never makes text longer and parameters never
 * overlap, so a scratch buffer as long as the path always has room.
 */
#include "router.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The kinds of compiled pattern segment. */
enum mx__seg_kind {
    MX__SEG_LITERAL = 0, /* exact bytes (may be empty: "/a/" ends with an empty segment) */
    MX__SEG_PARAM,       /* @name: a non-empty segment, captured */
    MX__SEG_STAR,        /* *: a non-empty segment */
    MX__SEG_PREFIX,      /* lit*: a segment that starts with lit */
    MX__SEG_SUFFIX,      /* *lit: a segment that ends with lit */
    MX__SEG_GLOB,        /* **: one or more whole segments */
};

typedef struct mx__seg {
    const char *lit; /* the literal (or the parameter's name) inside the route's pattern copy */
    size_t len;
    unsigned char kind;  /* enum mx__seg_kind */
    unsigned char param; /* MX__SEG_PARAM: index into the route's parameters */
} mx__seg_t;

#define MX__NO_GLOB ((size_t)-1)
#define MX__STR2(x) #x
#define MX__STR(x) MX__STR2(x)
#define MX__TOO_MANY_PARAMS                                                                        \
    "too many parameters in route pattern (at most " MX__STR(MX_ROUTE_MAX_PARAMS) ")"

typedef struct mx__route {
    mx__seg_t *segs; /* one allocation: segs[nsegs], then method, then pattern (owned) */
    size_t nsegs;
    size_t glob; /* index of the "**" segment, or MX__NO_GLOB */
    size_t nparams;
    const char *method;
    size_t method_len;
    const char *pattern;
    size_t pattern_len;
    int id;
    mx_route_opts_t opts;
} mx__route_t;

static const mx_route_opts_t mx__default_opts = {MX_ROUTE_BODY_SERVER, 0};

/* Invariant: routes[0..n) are compiled and valid; the array is never shrunk. */
struct mx_router {
    mx__route_t *routes;
    size_t n, cap;
};

/* ---- percent-decoding ---------------------------------------------------------------------- */

static inline int mx__hex(unsigned char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20; /* fold to lower case; only letters are affected in the range we accept */
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/*
 * Decodes one byte forward from s[i] (i < n) into *out; returns how many raw bytes it used.
 * "%XX" is an escape only when both X are hex digits; anything else is taken literally. Because
 * a hex digit is never '%', escapes cannot overlap, so decoding forward and decoding backward
 * (mx__dec_bwd) always agree on where the escapes are.
 */
static inline size_t mx__dec_fwd(const char *s, size_t i, size_t n, unsigned char *out) {
    if (s[i] == '%' && n - i >= 3) {
        int hi = mx__hex((unsigned char)s[i + 1]), lo = mx__hex((unsigned char)s[i + 2]);
        if ((hi | lo) >= 0) {
            *out = (unsigned char)(hi << 4 | lo);
            return 3;
        }
    }
    *out = (unsigned char)s[i];
    return 1;
}

/* Decodes the byte that ends at s[e-1] (e > 0; s[0..e) is one segment); returns bytes used. */
static inline size_t mx__dec_bwd(const char *s, size_t e, unsigned char *out) {
    if (e >= 3 && s[e - 3] == '%') {
        int hi = mx__hex((unsigned char)s[e - 2]), lo = mx__hex((unsigned char)s[e - 1]);
        if ((hi | lo) >= 0) {
            *out = (unsigned char)(hi << 4 | lo);
            return 3;
        }
    }
    *out = (unsigned char)s[e - 1];
    return 1;
}

size_t mx_percent_decode(const char *in, size_t len, char *out, int plus_as_space) {
    size_t i = 0, o = 0;
    /* o <= i throughout, so decoding in place (out == in) only ever writes behind the reader. */
    while (i < len) {
        unsigned char c;
        if (plus_as_space && in[i] == '+') {
            c = ' ';
            i++;
        } else {
            i += mx__dec_fwd(in, i, len, &c);
        }
        out[o++] = (char)c;
    }
    return o;
}

/*
 * Segment comparisons against the decoded form of a raw request segment raw[0..rlen).
 * pct is 0 when the whole path has no '%': then the decoded form is the raw text itself.
 */
static int mx__seg_starts(const char *raw, size_t rlen, const char *lit, size_t llen, int pct,
                          size_t *used) {
    if (!pct) {
        *used = llen;
        return rlen >= llen && memcmp(raw, lit, llen) == 0;
    }
    size_t i = 0;
    for (size_t k = 0; k < llen; k++) {
        unsigned char c;
        if (i >= rlen)
            return 0;
        i += mx__dec_fwd(raw, i, rlen, &c);
        if (c != (unsigned char)lit[k])
            return 0;
    }
    *used = i;
    return 1;
}

static int mx__seg_equals(const char *raw, size_t rlen, const char *lit, size_t llen, int pct) {
    size_t used;
    if (!pct)
        return rlen == llen && memcmp(raw, lit, llen) == 0;
    /* a decoded segment is never longer than its raw text, nor shorter than a third of it */
    if (rlen < llen || rlen > 3 * llen)
        return 0;
    return mx__seg_starts(raw, rlen, lit, llen, pct, &used) && used == rlen;
}

static int mx__seg_ends(const char *raw, size_t rlen, const char *lit, size_t llen, int pct) {
    if (!pct)
        return rlen >= llen && memcmp(raw + rlen - llen, lit, llen) == 0;
    size_t e = rlen;
    for (size_t k = llen; k > 0; k--) {
        unsigned char c;
        if (e == 0)
            return 0;
        e -= mx__dec_bwd(raw, e, &c);
        if (c != (unsigned char)lit[k - 1])
            return 0;
    }
    return 1;
}

/* ---- matching ------------------------------------------------------------------------------ */

/*
 * Matches segs[0..count) against the request segments that start at path[*cur] (a '/', or the
 * end of the path). On success advances *cur past the last matched segment and returns 1.
 * Parameter captures are written to params as raw (offset, length) pairs.
 */
static int mx__match_run(const mx__seg_t *segs, size_t count, const char *path, size_t n,
                         size_t *cur, int pct, mx_route_param_t *params) {
    size_t c = *cur;
    for (size_t i = 0; i < count; i++) {
        const mx__seg_t *s = &segs[i];
        if (c >= n)
            return 0; /* the path has fewer segments than the pattern */
        size_t st = c + 1;
        const char *slash = memchr(path + st, '/', n - st);
        size_t e = slash ? (size_t)(slash - path) : n;
        const char *raw = path + st;
        size_t rlen = e - st;
        size_t used;
        switch (s->kind) {
        case MX__SEG_LITERAL:
            if (!mx__seg_equals(raw, rlen, s->lit, s->len, pct))
                return 0;
            break;
        case MX__SEG_PARAM:
            if (rlen == 0)
                return 0;
            params[s->param].name = s->lit;
            params[s->param].name_len = s->len;
            params[s->param].value_off = st;
            params[s->param].value_len = rlen;
            break;
        case MX__SEG_STAR:
            if (rlen == 0)
                return 0;
            break;
        case MX__SEG_PREFIX:
            if (!mx__seg_starts(raw, rlen, s->lit, s->len, pct, &used))
                return 0;
            break;
        case MX__SEG_SUFFIX:
            if (!mx__seg_ends(raw, rlen, s->lit, s->len, pct))
                return 0;
            break;
        default: /* MX__SEG_GLOB never reaches here: runs stop before and start after it */
            return 0;
        }
        c = e;
    }
    *cur = c;
    return 1;
}

/* Returns 1 when the route's pattern matches path[0..n) (path[0] == '/'), filling params. */
static int mx__route_matches(const mx__route_t *rt, const char *path, size_t n, int pct,
                             mx_route_param_t *params) {
    size_t cur = 0; /* the '/' that starts the next request segment */
    if (rt->glob == MX__NO_GLOB) {
        if (!mx__match_run(rt->segs, rt->nsegs, path, n, &cur, pct, params))
            return 0;
        return cur == n; /* same number of segments: nothing may be left over */
    }
    if (!mx__match_run(rt->segs, rt->glob, path, n, &cur, pct, params))
        return 0;
    if (cur >= n)
        return 0; /* no segment left for "**" */
    /*
     * The k segments after "**" match the last k request segments: find the '/' that starts
     * them by walking back from the end. It must lie after cur, so that "**" keeps at least the
     * segment starting at cur.
     */
    size_t k = rt->nsegs - rt->glob - 1;
    size_t pos = n;
    for (size_t i = 0; i < k; i++) {
        do {
            pos--;
        } while (pos > cur && path[pos] != '/');
        if (pos <= cur)
            return 0;
    }
    return mx__match_run(rt->segs + rt->glob + 1, k, path, n, &pos, pct, params);
}

static inline int mx__method_is(const mx__route_t *rt, const char *m, size_t len) {
    return rt->method_len == len && memcmp(rt->method, m, len) == 0;
}

/* Appends method to m->allow unless present; returns 0 when it did not fit (allow is full). */
static int mx__allow_add(mx_route_match_t *m, const char *method, size_t len) {
    /* m->allow holds "A, B, C": look for an equal token */
    size_t i = 0;
    while (i < m->allow_len) {
        size_t j = i;
        while (j < m->allow_len && m->allow[j] != ',')
            j++;
        if (j - i == len && memcmp(m->allow + i, method, len) == 0)
            return 1;
        i = j + 2; /* skip ", " */
    }
    size_t sep = m->allow_len ? 2 : 0;
    if (len + sep > sizeof m->allow - m->allow_len)
        return 0;
    if (sep) {
        m->allow[m->allow_len++] = ',';
        m->allow[m->allow_len++] = ' ';
    }
    memcpy(m->allow + m->allow_len, method, len);
    m->allow_len += len;
    return 1;
}

/* Fills m->allow for a path that matches no route of the request's method (slow path). */
static int mx__not_allowed(const mx_router_t *r, const char *path, size_t n, int pct,
                           mx_route_match_t *m) {
    int head_matches = 0, any = 0;
    for (size_t i = 0; i < r->n && !head_matches; i++) {
        const mx__route_t *rt = &r->routes[i];
        if (mx__method_is(rt, "HEAD", 4) && mx__route_matches(rt, path, n, pct, m->params))
            head_matches = 1;
    }
    for (size_t i = 0; i < r->n; i++) {
        const mx__route_t *rt = &r->routes[i];
        if (!mx__route_matches(rt, path, n, pct, m->params))
            continue;
        any = 1;
        /* stop at the first method that does not fit, so the list is cut at a method boundary */
        if (!mx__allow_add(m, rt->method, rt->method_len))
            break;
        /* a GET route also serves HEAD (mx_router_match's fallback), so HEAD is allowed too */
        if (!head_matches && mx__method_is(rt, "GET", 3) && !mx__allow_add(m, "HEAD", 4))
            break;
    }
    m->num_params = 0;
    return any ? MX_ROUTE_METHOD_NOT_ALLOWED : MX_ROUTE_NOT_FOUND;
}

/* Decodes the matched route's parameter values into scratch (each at its own raw offset). */
static int mx__found(const mx__route_t *rt, const char *path, char *scratch, mx_route_match_t *m) {
    m->route_id = rt->id;
    m->opts = rt->opts;
    m->num_params = rt->nparams;
    for (size_t i = 0; i < rt->nparams; i++) {
        mx_route_param_t *p = &m->params[i];
        p->value_len =
            mx_percent_decode(path + p->value_off, p->value_len, scratch + p->value_off, 0);
    }
    return MX_ROUTE_FOUND;
}

int mx_router_match(const mx_router_t *r, const char *method, size_t method_len, const char *path,
                    size_t path_len, char *scratch, size_t scratch_cap, mx_route_match_t *m) {
    m->route_id = -1;
    m->opts = mx__default_opts;
    m->num_params = 0;
    m->allow_len = 0;
    if (scratch_cap < path_len)
        return MX_EINVAL;
    if (!r || path_len == 0 || path[0] != '/')
        return MX_ROUTE_NOT_FOUND; /* "*" (OPTIONS *) or a malformed target never matches */

    int pct = memchr(path, '%', path_len) != NULL;
    int is_head = method_len == 4 && memcmp(method, "HEAD", 4) == 0;
    const mx__route_t *first_get = NULL;

    /* Fast path: only routes of the request's method (and GET, for HEAD) are tried. */
    for (size_t i = 0; i < r->n; i++) {
        const mx__route_t *rt = &r->routes[i];
        if (mx__method_is(rt, method, method_len)) {
            if (mx__route_matches(rt, path, path_len, pct, m->params))
                return mx__found(rt, path, scratch, m);
        } else if (is_head && !first_get && mx__method_is(rt, "GET", 3)) {
            if (mx__route_matches(rt, path, path_len, pct, m->params))
                first_get = rt;
        }
    }
    if (first_get) {
        /* a later HEAD or GET attempt may have overwritten the captures: take them again */
        mx__route_matches(first_get, path, path_len, pct, m->params);
        return mx__found(first_get, path, scratch, m);
    }
    return mx__not_allowed(r, path, path_len, pct, m);
}

/* ---- validation and compilation ------------------------------------------------------------ */

/* A bounded writer for error messages: always NUL-terminated, silently truncated. */
typedef struct mx__errw {
    char *buf;
    size_t cap, len;
} mx__errw_t;

static void mx__err_put(mx__errw_t *w, const char *s, size_t n) {
    for (size_t i = 0; i < n && w->len + 1 < w->cap; i++)
        w->buf[w->len++] = s[i];
    w->buf[w->len] = '\0';
}

static void mx__err_str(mx__errw_t *w, const char *s) { mx__err_put(w, s, strlen(s)); }

/* Writes s[0..n) between quotes, escaping bytes that would not print, and shortening it. */
static void mx__err_quoted(mx__errw_t *w, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t shown = n > 120 ? 120 : n;
    mx__err_put(w, "'", 1);
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            mx__err_put(w, (const char *)&s[i], 1);
        } else {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            mx__err_put(w, e, 4);
        }
    }
    mx__err_put(w, n > shown ? "...'" : "'", n > shown ? 4 : 1);
}

/*
 * Fills err with "<what>[ '<seg>'][<what2>]: '<pattern>'" and returns MX_EINVAL. seg may be NULL.
 */
static int mx__pattern_error(char *err, size_t errlen, const char *what, const char *seg,
                             size_t seglen, const char *what2, const char *pat, size_t len) {
    if (err && errlen) {
        mx__errw_t w = {err, errlen, 0};
        err[0] = '\0';
        mx__err_str(&w, what);
        if (seg) {
            mx__err_put(&w, " ", 1);
            mx__err_quoted(&w, seg, seglen);
        }
        if (what2)
            mx__err_str(&w, what2);
        mx__err_put(&w, ": ", 2);
        mx__err_quoted(&w, pat, len);
    }
    return MX_EINVAL;
}

static inline int mx__is_name_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Whether segment s[0..n) is a path parameter as other frameworks spell it: {id} or {id:int}
 * (Starlette, FastAPI), :id (Express, Sinatra), <id> or <int:id> (Flask). The name goes in
 * *name. */
static int mx__foreign_param(const char *s, size_t n, const char **name, size_t *name_len) {
    size_t b = 0, e = 0;
    if (n >= 3 && s[0] == '{' && s[n - 1] == '}') {
        const char *colon = memchr(s, ':', n);
        b = 1;
        e = colon ? (size_t)(colon - s) : n - 1;
    } else if (n >= 3 && s[0] == '<' && s[n - 1] == '>') {
        const char *colon = NULL;
        for (size_t i = 1; i < n - 1; i++)
            if (s[i] == ':')
                colon = s + i;
        b = colon ? (size_t)(colon - s) + 1 : 1;
        e = n - 1;
    } else if (n >= 2 && s[0] == ':') {
        b = 1;
        e = n;
    } else {
        return 0;
    }
    if (e <= b)
        return 0;
    for (size_t i = b; i < e; i++)
        if (!mx__is_name_char((unsigned char)s[i]))
            return 0;
    *name = s + b;
    *name_len = e - b;
    return 1;
}

/*
 * Parses pat[0..len). When segs is not NULL (room for one segment per '/'), stores the compiled
 * segments there, pointing into pat. Returns 0 or MX_EINVAL with err filled.
 */
static int mx__parse(const char *pat, size_t len, mx__seg_t *segs, size_t *nsegs_out,
                     size_t *glob_out, size_t *nparams_out, char *err, size_t errlen) {
#define FAIL(what) return mx__pattern_error(err, errlen, what, NULL, 0, NULL, pat, len)
    if (len == 0 || pat[0] != '/')
        FAIL("route pattern must start with '/'");
    if (memchr(pat, '\0', len))
        FAIL("route pattern contains a NUL byte");
    if (memchr(pat, '?', len))
        FAIL("route pattern contains '?' (a query string is not part of the path)");
    if (memchr(pat, '#', len))
        FAIL("route pattern contains '#' (a fragment is never sent to the server)");

    const char *names[MX_ROUTE_MAX_PARAMS];
    size_t name_lens[MX_ROUTE_MAX_PARAMS];
    size_t nsegs = 0, nparams = 0, glob = MX__NO_GLOB;
    size_t pos = 0; /* the '/' that starts the next segment */
    while (pos < len) {
        size_t st = pos + 1;
        const char *slash = memchr(pat + st, '/', len - st);
        size_t e = slash ? (size_t)(slash - pat) : len;
        const char *s = pat + st;
        size_t n = e - st;
        mx__seg_t seg = {s, n, MX__SEG_LITERAL, 0};
        const char *at = memchr(s, '@', n);
        const char *star = memchr(s, '*', n);

        const char *fname;
        size_t fname_len;
        if (mx__foreign_param(s, n, &fname, &fname_len)) {
            /* another framework's parameter: it would silently be a literal segment here */
            char hint[96];
            snprintf(hint, sizeof(hint), " is a parameter in another framework's spelling; "
                     "mummyx writes it @%.*s", (int)fname_len, fname);
            return mx__pattern_error(err, errlen, "segment", s, n, hint, pat, len);
        }
        if (n > 0 && s[0] == '@') {
            /* @name: a parameter */
            if (n == 1)
                FAIL("empty parameter name after '@'");
            for (size_t i = 1; i < n; i++) {
                if (!mx__is_name_char((unsigned char)s[i]))
                    return mx__pattern_error(err, errlen, "invalid character in parameter name", s,
                                             n, " (names are made of A-Z, a-z, 0-9 and _)", pat,
                                             len);
            }
            for (size_t i = 0; i < nparams; i++) {
                if (name_lens[i] == n - 1 && memcmp(names[i], s + 1, n - 1) == 0)
                    return mx__pattern_error(err, errlen, "duplicate parameter name", s + 1, n - 1,
                                             NULL, pat, len);
            }
            if (nparams == MX_ROUTE_MAX_PARAMS)
                FAIL(MX__TOO_MANY_PARAMS);
            names[nparams] = s + 1;
            name_lens[nparams] = n - 1;
            seg.kind = MX__SEG_PARAM;
            seg.lit = s + 1;
            seg.len = n - 1;
            seg.param = (unsigned char)nparams++;
        } else if (at) {
            FAIL("'@' may only start a segment (as in /users/@id)");
        } else if (n == 2 && s[0] == '*' && s[1] == '*') {
            if (glob != MX__NO_GLOB)
                FAIL("only one '**' per pattern");
            glob = nsegs;
            seg.kind = MX__SEG_GLOB;
            seg.len = 0;
        } else if (star) {
            size_t stars = 0, adjacent = 0;
            for (size_t i = 0; i < n; i++) {
                stars += s[i] == '*';
                adjacent |= i + 1 < n && s[i] == '*' && s[i + 1] == '*';
            }
            if (adjacent)
                FAIL("'**' must be a whole segment (as in /static/**)");
            if (stars > 1)
                FAIL("only one '*' per segment (as in /*.js or /page_*)");
            if (n == 1) {
                seg.kind = MX__SEG_STAR;
                seg.len = 0;
            } else if (s[0] == '*') {
                seg.kind = MX__SEG_SUFFIX;
                seg.lit = s + 1;
                seg.len = n - 1;
            } else if (s[n - 1] == '*') {
                seg.kind = MX__SEG_PREFIX;
                seg.len = n - 1;
            } else {
                FAIL("'*' may only start or end a segment");
            }
        }
        if (segs)
            segs[nsegs] = seg;
        nsegs++;
        pos = e;
    }
    *nsegs_out = nsegs;
    *glob_out = glob;
    *nparams_out = nparams;
    return 0;
#undef FAIL
}

int mx_router_validate(const char *pattern, size_t len, char *err, size_t errlen) {
    size_t nsegs, glob, nparams;
    if (err && errlen)
        err[0] = '\0';
    return mx__parse(pattern, len, NULL, &nsegs, &glob, &nparams, err, errlen);
}

/* RFC 9110 section 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 * "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. A method is a token (section 9.1). */
static int mx__is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* ---- the table ----------------------------------------------------------------------------- */

mx_router_t *mx_router_new(void) { return calloc(1, sizeof(mx_router_t)); }

void mx_router_free(mx_router_t *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->routes[i].segs);
    free(r->routes);
    free(r);
}

int mx_router_add(mx_router_t *r, const char *method, size_t method_len, const char *pattern,
                  size_t pattern_len, int route_id, const mx_route_opts_t *opts, char *err,
                  size_t errlen) {
    size_t nsegs, glob, nparams;
    char *mem = NULL;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    int method_ok = method_len > 0;
    for (size_t i = 0; i < method_len && method_ok; i++)
        method_ok = mx__is_tchar((unsigned char)method[i]);
    if (!method_ok) {
        if (err && errlen) {
            mx__errw_t w = {err, errlen, 0};
            mx__err_str(&w, "invalid HTTP method (must be a token such as GET): ");
            mx__err_quoted(&w, method, method_len);
        }
        rc = MX_EINVAL;
        goto error;
    }
    rc = mx__parse(pattern, pattern_len, NULL, &nsegs, &glob, &nparams, err, errlen);
    if (rc)
        goto error;

    /* one block: the segments, then the method, then the pattern (the segments point into it) */
    size_t segs_size = nsegs * sizeof(mx__seg_t);
    mem = malloc(segs_size + method_len + pattern_len);
    rc = MX_ENOMEM;
    if (!mem)
        goto error;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        mx__route_t *routes = realloc(r->routes, cap * sizeof *routes);
        if (!routes)
            goto error;
        r->routes = routes;
        r->cap = cap;
    }
    mx__route_t *rt = &r->routes[r->n];
    char *m = mem + segs_size, *p = m + method_len;
    memcpy(m, method, method_len);
    memcpy(p, pattern, pattern_len);
    rt->segs = (mx__seg_t *)(void *)mem;
    /* parsing the copy cannot fail: it is the same bytes that were just validated */
    mx__parse(p, pattern_len, rt->segs, &rt->nsegs, &rt->glob, &rt->nparams, NULL, 0);
    rt->method = m;
    rt->method_len = method_len;
    rt->pattern = p;
    rt->pattern_len = pattern_len;
    rt->id = route_id;
    rt->opts = opts ? *opts : mx__default_opts;
    r->n++;
    return 0;

error:
    if (rc == MX_ENOMEM && err && errlen) {
        mx__errw_t w = {err, errlen, 0};
        mx__err_str(&w, "out of memory");
    }
    free(mem);
    return rc;
}
