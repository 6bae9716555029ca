/*
 * fuzz_router.c: libFuzzer target for csrc/core/router.c.
 *
 * The input is split on '\n'. The first line is the request: its first byte picks the method
 * (see METHODS), the rest is the path. Every further line (at most MAX_ROUTES) is a route: first
 * byte picks the method, the rest is the pattern. Each pattern is checked by a slow, obviously
 * correct reference model (split into strings, decode every segment, backtracking match) and
 * the router must agree with it on validity, on the result, the route, the parameters and the
 * Allow list. Invariants checked besides: parameters lie inside scratch, the route id is one
 * that was added, and FOUND means the route's method is the request's (or HEAD served by GET).
 *   make build/c/fuzz_router && ./build/c/fuzz_router -max_total_time=60 tests/fuzz/corpus/router
 */
#include <string.h>

#include "fuzz_common.h"
#include "router.h"

#define MAX_ROUTES 16
#define MAX_SEGS 4096

static const char *const METHODS[] = {"GET", "HEAD", "POST", "PUT", "PURGE", "get"};
#define NMETHODS (sizeof METHODS / sizeof METHODS[0])

/* ---- the reference model ------------------------------------------------------------------- */

typedef struct str {
    const char *p;
    size_t n;
} str_t;

enum { K_LIT, K_PARAM, K_STAR, K_PREFIX, K_SUFFIX, K_GLOB };

typedef struct ref_route {
    int valid;
    const char *method;
    size_t nsegs;
    str_t segs[MAX_SEGS];
    int kinds[MAX_SEGS];
} ref_route_t;

static int hexv(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t ref_decode(const char *in, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '%' && i + 2 < n && hexv(in[i + 1]) >= 0 && hexv(in[i + 2]) >= 0) {
            out[o++] = (char)(hexv(in[i + 1]) * 16 + hexv(in[i + 2]));
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    return o;
}

/* Splits s[0..n) (s[0] == '/') into the segments after each '/'. Returns the count. */
static size_t split(const char *s, size_t n, str_t *out) {
    size_t k = 0, start = 1;
    for (size_t i = 1; i <= n; i++) {
        if (i == n || s[i] == '/') {
            if (k == MAX_SEGS)
                return SIZE_MAX;
            out[k].p = s + start;
            out[k].n = i - start;
            k++;
            start = i + 1;
        }
    }
    return k;
}

static int count(str_t s, char c) {
    int k = 0;
    for (size_t i = 0; i < s.n; i++)
        k += s.p[i] == c;
    return k;
}

/* The validity rules, written out independently of router.c. */
static int ref_compile(ref_route_t *rt, const char *pat, size_t n) {
    if (n == 0 || pat[0] != '/')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (pat[i] == '\0' || pat[i] == '?' || pat[i] == '#')
            return 0;
    rt->nsegs = split(pat, n, rt->segs);
    if (rt->nsegs == SIZE_MAX)
        return -1; /* too many segments for the model: skip the route */
    int globs = 0, params = 0;
    for (size_t i = 0; i < rt->nsegs; i++) {
        str_t s = rt->segs[i];
        int stars = count(s, '*');
        if (s.n >= 1 && s.p[0] == '@') {
            if (s.n == 1)
                return 0;
            for (size_t j = 1; j < s.n; j++) {
                char c = s.p[j];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_'))
                    return 0;
            }
            for (size_t j = 0; j < i; j++)
                if (rt->kinds[j] == K_PARAM && rt->segs[j].n == s.n &&
                    memcmp(rt->segs[j].p, s.p, s.n) == 0)
                    return 0;
            if (++params > MX_ROUTE_MAX_PARAMS)
                return 0;
            rt->kinds[i] = K_PARAM;
        } else if (count(s, '@')) {
            return 0;
        } else if (s.n == 2 && stars == 2) {
            if (++globs > 1)
                return 0;
            rt->kinds[i] = K_GLOB;
        } else if (stars == 0) {
            rt->kinds[i] = K_LIT;
        } else if (stars > 1) {
            return 0;
        } else if (s.n == 1) {
            rt->kinds[i] = K_STAR;
        } else if (s.p[0] == '*') {
            rt->kinds[i] = K_SUFFIX;
        } else if (s.p[s.n - 1] == '*') {
            rt->kinds[i] = K_PREFIX;
        } else {
            return 0;
        }
    }
    return 1;
}

typedef struct ref_req {
    size_t nsegs;
    str_t raw[MAX_SEGS];
    str_t dec[MAX_SEGS];                  /* decoded, into a heap buffer */
    str_t params[MX_ROUTE_MAX_PARAMS][2]; /* name, decoded value */
    size_t nparams;
} ref_req_t;

static int seg_ok(int kind, str_t pat, str_t d) {
    switch (kind) {
    case K_LIT:
        return pat.n == d.n && memcmp(pat.p, d.p, d.n) == 0;
    case K_PARAM:
    case K_STAR:
        return d.n > 0;
    case K_PREFIX:
        return d.n >= pat.n - 1 && memcmp(pat.p, d.p, pat.n - 1) == 0;
    case K_SUFFIX:
        return d.n >= pat.n - 1 && memcmp(pat.p + 1, d.p + d.n - (pat.n - 1), pat.n - 1) == 0;
    }
    return 0;
}

/* Backtracking match of pattern segments [pi..) against request segments [si..). */
static int ref_match_from(const ref_route_t *rt, size_t pi, ref_req_t *q, size_t si) {
    if (pi == rt->nsegs)
        return si == q->nsegs;
    if (rt->kinds[pi] == K_GLOB) {
        for (size_t t = 1; si + t <= q->nsegs; t++)
            if (ref_match_from(rt, pi + 1, q, si + t))
                return 1;
        return 0;
    }
    if (si == q->nsegs || !seg_ok(rt->kinds[pi], rt->segs[pi], q->dec[si]))
        return 0;
    if (!ref_match_from(rt, pi + 1, q, si + 1))
        return 0;
    if (rt->kinds[pi] == K_PARAM) {
        /* collected on the way back, so in reverse order: fixed up by the caller */
        q->params[q->nparams][0].p = rt->segs[pi].p + 1;
        q->params[q->nparams][0].n = rt->segs[pi].n - 1;
        q->params[q->nparams][1] = q->dec[si];
        q->nparams++;
    }
    return 1;
}

static int ref_match(const ref_route_t *rt, ref_req_t *q) {
    q->nparams = 0;
    if (!ref_match_from(rt, 0, q, 0))
        return 0;
    for (size_t i = 0; i < q->nparams / 2; i++) {
        str_t a0 = q->params[i][0], a1 = q->params[i][1];
        q->params[i][0] = q->params[q->nparams - 1 - i][0];
        q->params[i][1] = q->params[q->nparams - 1 - i][1];
        q->params[q->nparams - 1 - i][0] = a0;
        q->params[q->nparams - 1 - i][1] = a1;
    }
    return 1;
}

/* ---- the target ---------------------------------------------------------------------------- */

static ref_route_t ref_routes[MAX_ROUTES];
static ref_req_t req;

static const char *method_of(const char *line, size_t n) {
    return METHODS[(n ? (unsigned char)line[0] : 0) % NMETHODS];
}

static void allow_add(char *allow, size_t *len, int *full, const char *m) {
    size_t ml = strlen(m);
    if (*full)
        return;
    /* already listed? */
    size_t i = 0;
    while (i < *len) {
        size_t j = i;
        while (j < *len && allow[j] != ',')
            j++;
        if (j - i == ml && memcmp(allow + i, m, ml) == 0)
            return;
        i = j + 2;
    }
    size_t need = ml + (*len ? 2 : 0);
    if (*len + need > 512) {
        *full = 1;
        return;
    }
    if (*len) {
        memcpy(allow + *len, ", ", 2);
        *len += 2;
    }
    memcpy(allow + *len, m, ml);
    *len += ml;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192)
        return 0;
    const char *in = (const char *)data;
    const char *lines[MAX_ROUTES + 1];
    size_t lens[MAX_ROUTES + 1], nlines = 0, start = 0;
    for (size_t i = 0; i <= size && nlines < MAX_ROUTES + 1; i++) {
        if (i == size || in[i] == '\n') {
            lines[nlines] = in + start;
            lens[nlines] = i - start;
            nlines++;
            start = i + 1;
        }
    }

    mx_router_t *r = mx_router_new();
    CHECK(r);
    int nadded = 0; /* route ids are 0..nadded-1, the same as the indices into ref_routes */
    for (size_t l = 1; l < nlines; l++) {
        const char *method = method_of(lines[l], lens[l]);
        /* exact-size copy, so ASan catches a read past the pattern */
        size_t plen = lens[l] ? lens[l] - 1 : 0;
        char *pat = fuzz_copy(lines[l] + (lens[l] ? 1 : 0), plen);
        ref_route_t *rt = &ref_routes[nadded];
        int want = ref_compile(rt, pat, plen);
        char err[256];
        err[0] = 'x';
        int vrc = mx_router_validate(pat, plen, err, sizeof err);
        if (want >= 0)
            CHECK((vrc == 0) == (want == 1));
        CHECK(vrc == 0 ? err[0] == '\0' : strlen(err) > 0 && strlen(err) < sizeof err);
        if (want == 1) {
            int rc = mx_router_add(r, method, strlen(method), pat, plen, nadded, NULL, err, sizeof err);
            CHECK(rc == 0);
            rt->method = method;
            nadded++;
            /* pat is freed below: point the model at the same bytes in the input instead */
            for (size_t i = 0; i < rt->nsegs; i++)
                rt->segs[i].p = lines[l] + 1 + (rt->segs[i].p - pat);
        } else if (want == 0) {
            CHECK(mx_router_add(r, method, strlen(method), pat, plen, 99, NULL, err, sizeof err) ==
                  MX_EINVAL);
        }
        free(pat);
    }

    /* the request */
    const char *method = method_of(lines[0], lens[0]);
    size_t plen = lens[0] ? lens[0] - 1 : 0;
    char *path = fuzz_copy(lines[0] + (lens[0] ? 1 : 0), plen);
    char *scratch = calloc(1, plen ? plen : 1);
    char *decbuf = malloc(plen ? plen : 1);
    CHECK(scratch != NULL && decbuf != NULL);
    mx_route_match_t m;
    memset(&m, 0x5a, sizeof m);
    int rc = mx_router_match(r, method, strlen(method), path, plen, scratch, plen, &m);
    CHECK(rc == MX_ROUTE_FOUND || rc == MX_ROUTE_NOT_FOUND || rc == MX_ROUTE_METHOD_NOT_ALLOWED);

    /* invariants that hold whatever the model says */
    if (rc == MX_ROUTE_FOUND) {
        CHECK(m.route_id >= 0 && m.route_id < nadded);
        const char *rm = ref_routes[m.route_id].method;
        CHECK(strcmp(rm, method) == 0 || (!strcmp(method, "HEAD") && !strcmp(rm, "GET")));
        CHECK(m.num_params <= MX_ROUTE_MAX_PARAMS && m.allow_len == 0);
        for (size_t i = 0; i < m.num_params; i++) {
            CHECK(m.params[i].value_off <= plen);
            CHECK(m.params[i].value_len <= plen - m.params[i].value_off);
            CHECK(m.params[i].value_len > 0 && m.params[i].name_len > 0);
        }
    } else {
        CHECK(m.route_id == -1 && m.num_params == 0);
        CHECK(m.allow_len <= sizeof m.allow);
        CHECK((rc == MX_ROUTE_METHOD_NOT_ALLOWED) == (m.allow_len > 0));
    }

    /* the model */
    if (plen == 0 || path[0] != '/')
        CHECK(rc == MX_ROUTE_NOT_FOUND);
    else if ((req.nsegs = split(path, plen, req.raw)) != SIZE_MAX) {
        size_t o = 0;
        for (size_t i = 0; i < req.nsegs; i++) {
            req.dec[i].p = decbuf + o;
            req.dec[i].n = ref_decode(req.raw[i].p, req.raw[i].n, decbuf + o);
            o += req.dec[i].n;
        }
        int is_head = !strcmp(method, "HEAD");
        int want_rc = MX_ROUTE_NOT_FOUND, want_id = -1, first_get = -1, head_match = 0;
        for (int i = 0; i < nadded && want_id < 0; i++) {
            const char *rm = ref_routes[i].method;
            if (!strcmp(rm, method) && ref_match(&ref_routes[i], &req))
                want_id = i;
            else if (is_head && first_get < 0 && !strcmp(rm, "GET") &&
                     ref_match(&ref_routes[i], &req))
                first_get = i;
        }
        if (want_id < 0)
            want_id = first_get;
        if (want_id >= 0) {
            want_rc = MX_ROUTE_FOUND;
            CHECK(ref_match(&ref_routes[want_id], &req));
        }
        char allow[600];
        size_t allow_len = 0;
        int full = 0;
        if (want_id < 0) {
            for (int i = 0; i < nadded; i++)
                head_match |=
                    !strcmp(ref_routes[i].method, "HEAD") && ref_match(&ref_routes[i], &req);
            for (int i = 0; i < nadded; i++) {
                if (!ref_match(&ref_routes[i], &req))
                    continue;
                want_rc = MX_ROUTE_METHOD_NOT_ALLOWED;
                allow_add(allow, &allow_len, &full, ref_routes[i].method);
                if (!head_match && !strcmp(ref_routes[i].method, "GET"))
                    allow_add(allow, &allow_len, &full, "HEAD");
            }
        }
        CHECK(rc == want_rc);
        if (rc == MX_ROUTE_FOUND) {
            CHECK(m.route_id == want_id);
            CHECK(m.num_params == req.nparams);
            for (size_t i = 0; i < m.num_params; i++) {
                CHECK(m.params[i].name_len == req.params[i][0].n);
                CHECK(!memcmp(m.params[i].name, req.params[i][0].p, req.params[i][0].n));
                CHECK(m.params[i].value_len == req.params[i][1].n);
                CHECK(!memcmp(scratch + m.params[i].value_off, req.params[i][1].p,
                              req.params[i][1].n));
            }
        } else if (rc == MX_ROUTE_METHOD_NOT_ALLOWED) {
            CHECK(m.allow_len == allow_len && !memcmp(m.allow, allow, allow_len));
        }
    }

    /* the decoder agrees with the model's, and in place too */
    size_t n1 = mx_percent_decode(path, plen, scratch, 0);
    size_t n2 = ref_decode(path, plen, decbuf);
    CHECK(n1 == n2 && !memcmp(scratch, decbuf, n1));
    n1 = mx_percent_decode(path, plen, path, 1);
    CHECK(n1 <= plen);

    free(path);
    free(scratch);
    free(decbuf);
    mx_router_free(r);
    return 0;
}
