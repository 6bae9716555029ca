/*
 * test_router.c: unit tests for csrc/core/router.c: every pattern form, registration order,
 * percent-decoding of parameters, HEAD fallback, 405 and its Allow list, trailing slashes, the
 * root, "**" with and without segments after it, every invalid pattern, and long paths. Every
 * path and every scratch buffer ends at a guard page (harness.h), so a read or write past its end
 * crashes the test.
 *   make build/c/test_router && ./build/c/test_router
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "router.h"

#define NF MX_ROUTE_NOT_FOUND
#define OK MX_ROUTE_FOUND
#define NA MX_ROUTE_METHOD_NOT_ALLOWED

static mx_router_t *build(const char *const *routes) {
    /* routes: "METHOD pattern" strings, NULL-terminated; the route id is the index */
    mx_router_t *r = mx_router_new();
    if (!r)
        abort();
    for (int i = 0; routes[i]; i++) {
        const char *sp = strchr(routes[i], ' ');
        char err[256];
        int rc = mx_router_add(r, routes[i], (size_t)(sp - routes[i]), sp + 1, strlen(sp + 1), i, NULL,
                               err, sizeof err);
        CHECK(rc == 0, "adding '%s': %s", routes[i], err);
    }
    return r;
}

/* Formats the parameters of a match as "name=value,name=value" (bytes copied as they are). */
static void fmt_params(const mx_route_match_t *m, const char *scratch, char *out, size_t cap) {
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < m->num_params; i++) {
        const mx_route_param_t *p = &m->params[i];
        int n = snprintf(out + o, cap - o, "%s%.*s=%.*s", i ? "," : "", (int)p->name_len, p->name,
                         (int)p->value_len, scratch + p->value_off);
        if (n < 0 || (size_t)n >= cap - o)
            return;
        o += (size_t)n;
    }
}

/*
 * Matches method/path and checks the result. For FOUND, want_id and want_params ("a=1,b=2",
 * "" for none); for METHOD_NOT_ALLOWED, want_allow.
 */
static void expect_at(int line, const mx_router_t *r, const char *method, const char *path,
                      size_t path_len, int want_rc, int want_id, const char *want_params,
                      const char *want_allow) {
    guarded_t gp, gs;
    const char *p = guard_copy(&gp, path, path_len);
    char *zeros = calloc(1, path_len + 1);
    char *scratch = guard_copy(&gs, zeros, path_len);
    mx_route_match_t m;
    memset(&m, 0xAB, sizeof m); /* garbage in: the matcher must set every field it reports */
    int rc = mx_router_match(r, method, strlen(method), p, path_len, scratch, path_len, &m);
    char params[1024];
    if (rc != want_rc) {
        report(0, line, "%s %.*s: result %d, want %d", method, (int)path_len, path, rc, want_rc);
    } else if (rc == OK) {
        fmt_params(&m, scratch, params, sizeof params);
        int ok = m.route_id == want_id && strcmp(params, want_params) == 0;
        for (size_t i = 0; i < m.num_params; i++)
            ok &= m.params[i].value_off + m.params[i].value_len <= path_len;
        ok &= m.allow_len == 0;
        report(ok, line, "%s %.*s: route %d params '%s', want %d '%s'", method, (int)path_len, path,
               m.route_id, params, want_id, want_params);
    } else if (rc == NA) {
        int ok = m.allow_len == strlen(want_allow) &&
                 memcmp(m.allow, want_allow, m.allow_len) == 0 && m.num_params == 0 &&
                 m.route_id == -1;
        report(ok, line, "%s %.*s: allow '%.*s', want '%s'", method, (int)path_len, path,
               (int)m.allow_len, m.allow, want_allow);
    } else {
        CHECK(m.allow_len == 0 && m.num_params == 0 && m.route_id == -1,
              "%s %s: NOT_FOUND leaves fields set", method, path);
    }
    guard_free(&gp);
    guard_free(&gs);
    free(zeros);
}

#define FOUND(r, meth, path, id, params)                                                           \
    expect_at(__LINE__, r, meth, path, strlen(path), OK, id, params, NULL)
#define NOT_FOUND(r, meth, path) expect_at(__LINE__, r, meth, path, strlen(path), NF, 0, NULL, NULL)
#define NOT_ALLOWED(r, meth, path, allow)                                                          \
    expect_at(__LINE__, r, meth, path, strlen(path), NA, 0, NULL, allow)

/* ---- pattern forms ------------------------------------------------------------------------- */

static void test_literals(void) {
    static const char *const routes[] = {
        "GET /", "GET /a", "GET /a/", "GET /a/b", "GET /a//b", "GET /x%41", "GET /sp ace", NULL,
    };
    mx_router_t *r = build(routes);
    FOUND(r, "GET", "/", 0, "");
    FOUND(r, "GET", "/a", 1, "");
    FOUND(r, "GET", "/a/", 2, ""); /* trailing slash: a different path */
    FOUND(r, "GET", "/a/b", 3, "");
    FOUND(r, "GET", "/a//b", 4, ""); /* an empty segment is compared like any other */
    FOUND(r, "GET", "/%61", 1, "");  /* the request segment is decoded... */
    FOUND(r, "GET", "/%61/%62", 3, "");
    FOUND(r, "GET", "/x%2541", 5, ""); /* ...the pattern's literal is not: "x%41" */
    NOT_FOUND(r, "GET", "/x%41");      /* decodes to "xA" */
    FOUND(r, "GET", "/sp%20ace", 6, "");
    NOT_FOUND(r, "GET", "/a%2Fb"); /* %2F does not split: one segment "a/b" */
    NOT_FOUND(r, "GET", "//");
    NOT_FOUND(r, "GET", "/a/b/");
    NOT_FOUND(r, "GET", "/b");
    NOT_FOUND(r, "GET", "/A"); /* case-sensitive */
    NOT_FOUND(r, "GET", "/ab");
    NOT_FOUND(r, "GET", "");  /* not a path */
    NOT_FOUND(r, "GET", "*"); /* OPTIONS * */
    NOT_FOUND(r, "GET", "a");
    mx_router_free(r);
}

static void test_params(void) {
    /* everything after '@' is the name, so "@name.txt" is not a valid one */
    char err[256];
    CHECK(mx_router_validate("/f/@name.txt", 12, err, sizeof err) == MX_EINVAL,
          "@name.txt accepted");
    static const char *const ok_routes[] = {
        "GET /users/@id",
        "GET /users/@id/posts/@post_id",
        "GET /@a/@b/@c",
        NULL,
    };
    mx_router_t *r = build(ok_routes);
    FOUND(r, "GET", "/users/42", 0, "id=42");
    FOUND(r, "GET", "/users/a%20b", 0, "id=a b");
    FOUND(r, "GET", "/users/a%2Fb", 0, "id=a/b"); /* %2F stays inside the value */
    FOUND(r, "GET", "/users/%e2%82%AC", 0, "id=\xe2\x82\xac");
    FOUND(r, "GET", "/users/%zz%4", 0, "id=%zz%4"); /* invalid escapes kept literally */
    FOUND(r, "GET", "/users/%", 0, "id=%");
    FOUND(r, "GET", "/users/a+b", 0, "id=a+b"); /* '+' is only a space in query strings */
    FOUND(r, "GET", "/users/7/posts/9", 1, "id=7,post_id=9");
    FOUND(r, "GET", "/x/y/z", 2, "a=x,b=y,c=z");
    FOUND(r, "GET", "/%41%42/%2f/%25", 2, "a=AB,b=/,c=%");
    NOT_FOUND(r, "GET", "/users/"); /* a parameter is never empty */
    NOT_FOUND(r, "GET", "/users");
    NOT_FOUND(r, "GET", "/users/7/posts/");
    NOT_FOUND(r, "GET", "/x//z");
    mx_router_free(r);

    /* a decoded NUL byte is a value like any other */
    static const char *const nul_routes[] = {"GET /n/@v", NULL};
    r = build(nul_routes);
    const char path[] = "/n/a%00b";
    guarded_t gp, gs;
    const char *p = guard_copy(&gp, path, sizeof path - 1);
    char *scratch = guard_copy(&gs, path, sizeof path - 1);
    mx_route_match_t m;
    int rc = mx_router_match(r, "GET", 3, p, sizeof path - 1, scratch, sizeof path - 1, &m);
    CHECK(rc == OK && m.num_params == 1 && m.params[0].value_len == 3 &&
              memcmp(scratch + m.params[0].value_off, "a\0b", 3) == 0,
          "NUL in a parameter");
    CHECK(mx_router_match(r, "GET", 3, p, sizeof path - 1, scratch, sizeof path - 2, &m) ==
              MX_EINVAL,
          "short scratch accepted");
    guard_free(&gp);
    guard_free(&gs);
    mx_router_free(r);
}

static void test_many_params(void) {
    /* exactly MX_ROUTE_MAX_PARAMS parameters, then one more */
    char pat[1024], path[1024], want[2048];
    size_t pl = 0, ql = 0, wl = 0;
    for (int i = 0; i < MX_ROUTE_MAX_PARAMS; i++) {
        pl += (size_t)snprintf(pat + pl, sizeof pat - pl, "/@p%d", i);
        ql += (size_t)snprintf(path + ql, sizeof path - ql, "/v%%%02X%d", 'a' + i % 26, i);
        wl += (size_t)snprintf(want + wl, sizeof want - wl, "%sp%d=v%c%d", i ? "," : "", i,
                               'a' + i % 26, i);
    }
    mx_router_t *r = mx_router_new();
    char err[256];
    CHECK(mx_router_add(r, "GET", 3, pat, pl, 5, NULL, err, sizeof err) == 0, "32 params: %s", err);
    expect_at(__LINE__, r, "GET", path, ql, OK, 5, want, NULL);
    snprintf(pat + pl, sizeof pat - pl, "/@extra");
    CHECK(mx_router_add(r, "GET", 3, pat, strlen(pat), 6, NULL, err, sizeof err) == MX_EINVAL &&
              strstr(err, "too many parameters in route pattern (at most 32)") != NULL,
          "33 params: %s", err);
    mx_router_free(r);
}

static void test_stars(void) {
    static const char *const routes[] = {
        "GET /s/*",     "GET /p/page_*", "GET /x/*.js", "GET /t/*/end",
        "GET /m/*/@id", "GET /e/%*",     NULL,
    };
    mx_router_t *r = build(routes);
    FOUND(r, "GET", "/s/anything", 0, "");
    FOUND(r, "GET", "/s/a%2Fb", 0, "");
    NOT_FOUND(r, "GET", "/s/"); /* '*' alone needs a non-empty segment */
    NOT_FOUND(r, "GET", "/s");
    NOT_FOUND(r, "GET", "/s/a/b");
    FOUND(r, "GET", "/p/page_2", 1, "");
    FOUND(r, "GET", "/p/page_", 1, ""); /* the star may match nothing */
    FOUND(r, "GET", "/p/page%5F2", 1, "");
    FOUND(r, "GET", "/p/%70age_", 1, "");
    NOT_FOUND(r, "GET", "/p/page");
    NOT_FOUND(r, "GET", "/p/Page_1");
    NOT_FOUND(r, "GET", "/p/pag%");
    FOUND(r, "GET", "/x/app.js", 2, "");
    FOUND(r, "GET", "/x/.js", 2, "");
    FOUND(r, "GET", "/x/app%2Ejs", 2, "");
    FOUND(r, "GET", "/x/a%2F.js", 2, "");
    FOUND(r, "GET", "/x/%%2ejs", 2, "");  /* "%" then ".js" */
    FOUND(r, "GET", "/x/%2%2ejs", 2, ""); /* "%2" kept, then ".js" */
    NOT_FOUND(r, "GET", "/x/app.jsx");
    NOT_FOUND(r, "GET", "/x/js");
    NOT_FOUND(r, "GET", "/x/a.j%73x");
    FOUND(r, "GET", "/x/a%2ejs", 2, ""); /* "a.js" once decoded */
    FOUND(r, "GET", "/t/mid/end", 3, "");
    NOT_FOUND(r, "GET", "/t//end");
    NOT_FOUND(r, "GET", "/t/a/b/end");
    FOUND(r, "GET", "/m/x/9", 4, "id=9");
    FOUND(r, "GET", "/e/%25", 5, ""); /* prefix literal "%" is not decoded */
    FOUND(r, "GET", "/e/%", 5, "");
    FOUND(r, "GET", "/e/%2", 5, "");
    NOT_FOUND(r, "GET", "/e/x");
    mx_router_free(r);
}

static void test_globs(void) {
    static const char *const routes[] = {
        "GET /static/**", "GET /a/**/b", "GET /k/**/@name/edit", "GET /d/**/*.txt", NULL,
    };
    mx_router_t *r = build(routes);
    FOUND(r, "GET", "/static/x", 0, "");
    FOUND(r, "GET", "/static/x/y/z.css", 0, "");
    FOUND(r, "GET", "/static/", 0, "");  /* one empty segment */
    FOUND(r, "GET", "/static//", 0, ""); /* two empty segments */
    NOT_FOUND(r, "GET", "/static");      /* "**" needs at least one segment */
    FOUND(r, "GET", "/a/x/b", 1, "");
    FOUND(r, "GET", "/a/x/y/z/b", 1, "");
    FOUND(r, "GET", "/a/b/b", 1, "");
    FOUND(r, "GET", "/a//b", 1, "");
    NOT_FOUND(r, "GET", "/a/b");
    NOT_FOUND(r, "GET", "/a/x/b/");
    NOT_FOUND(r, "GET", "/a/x/bb");
    FOUND(r, "GET", "/a/x/%62", 1, "");
    NOT_FOUND(r, "GET", "/a/x%2Fb"); /* one segment "x/b": nothing left for the suffix */
    FOUND(r, "GET", "/k/1/2/joe/edit", 2, "name=joe");
    FOUND(r, "GET", "/k/1/j%2Foe/edit", 2, "name=j/oe");
    NOT_FOUND(r, "GET", "/k/joe/edit");
    NOT_FOUND(r, "GET", "/k/1//edit");
    FOUND(r, "GET", "/d/a/b/c.txt", 3, "");
    FOUND(r, "GET", "/d/a/.txt", 3, "");
    NOT_FOUND(r, "GET", "/d/c.txt");
    mx_router_free(r);
    static const char *const all[] = {"GET /x", "POST /**", NULL};
    r = build(all);
    FOUND(r, "POST", "/", 1, ""); /* "**" alone takes the root's one empty segment */
    FOUND(r, "POST", "/anything/at/all", 1, "");
    NOT_ALLOWED(r, "PUT", "/x", "GET, HEAD, POST");
    NOT_ALLOWED(r, "PUT", "/y", "POST");
    mx_router_free(r);
}

static void test_root(void) {
    static const char *const routes[] = {"GET /*", "GET /@id", "GET /x", NULL};
    mx_router_t *r = build(routes);
    NOT_FOUND(r, "GET", "/"); /* the root is one empty segment: neither '*' nor a parameter */
    FOUND(r, "GET", "/x", 0, "");
    FOUND(r, "GET", "/y", 0, "");
    mx_router_free(r);
    static const char *const routes2[] = {"GET /@id", "GET /", NULL};
    r = build(routes2);
    FOUND(r, "GET", "/", 1, "");
    FOUND(r, "GET", "/7", 0, "id=7");
    NOT_FOUND(r, "GET", "//");
    mx_router_free(r);
}

/* ---- order, methods, HEAD and 405 ---------------------------------------------------------- */

static void test_order(void) {
    static const char *const routes[] = {
        "GET /users/me", "GET /users/@id", "GET /users/*", "GET /**", NULL,
    };
    mx_router_t *r = build(routes);
    FOUND(r, "GET", "/users/me", 0, ""); /* first match wins */
    FOUND(r, "GET", "/users/you", 1, "id=you");
    FOUND(r, "GET", "/users/me/x", 3, "");
    mx_router_free(r);
    static const char *const rev[] = {"GET /users/@id", "GET /users/me", NULL};
    r = build(rev);
    FOUND(r, "GET", "/users/me", 0, "id=me");
    mx_router_free(r);
}

static void test_methods(void) {
    static const char *const routes[] = {
        "GET /r",     "POST /r",    "PURGE /r", "get /r",      "DELETE /r/@id",
        "GET /r/@id", "PUT /r/@id", "POST /r",  "PATCH /only", NULL,
    };
    mx_router_t *r = build(routes);
    FOUND(r, "GET", "/r", 0, "");
    FOUND(r, "POST", "/r", 1, "");
    FOUND(r, "PURGE", "/r", 2, ""); /* any token */
    FOUND(r, "get", "/r", 3, "");   /* compared exactly */
    FOUND(r, "HEAD", "/r", 0, "");  /* HEAD falls back to GET */
    NOT_ALLOWED(r, "PUT", "/r", "GET, HEAD, POST, PURGE, get");
    NOT_ALLOWED(r, "Get", "/r", "GET, HEAD, POST, PURGE, get");
    NOT_ALLOWED(r, "POST", "/r/1", "DELETE, GET, HEAD, PUT");
    FOUND(r, "HEAD", "/r/1", 5, "id=1");
    NOT_ALLOWED(r, "HEAD", "/only", "PATCH"); /* no GET: no HEAD either */
    NOT_ALLOWED(r, "GET", "/only", "PATCH");
    NOT_FOUND(r, "GET", "/nothing");
    NOT_FOUND(r, "HEAD", "/nothing");
    mx_router_free(r);
}

static void test_head(void) {
    static const char *const routes[] = {
        "GET /h/@a",  /* 0 */
        "GET /h/x",   /* 1 */
        "HEAD /h/x",  /* 2: an explicit HEAD wins over the earlier GET */
        "HEAD /h/@b", /* 3 */
        "GET /g/*",   /* 4 */
        "GET /g/@z",  /* 5 */
        "POST /p",    /* 6 */
        "HEAD /p",    /* 7 */
        "GET /p",     /* 8 */
        NULL,
    };
    mx_router_t *r = build(routes);
    FOUND(r, "HEAD", "/h/x", 2, "");
    FOUND(r, "HEAD", "/h/y", 3, "b=y");
    FOUND(r, "GET", "/h/x", 0, "a=x");
    FOUND(r, "HEAD", "/g/q", 4, ""); /* the first matching GET */
    FOUND(r, "HEAD", "/p", 7, "");
    /* an explicit HEAD route is listed where it was registered, not after GET */
    NOT_ALLOWED(r, "PUT", "/p", "POST, HEAD, GET");
    NOT_ALLOWED(r, "PUT", "/h/x", "GET, HEAD");
    NOT_ALLOWED(r, "PUT", "/g/q", "GET, HEAD");
    mx_router_free(r);

    /* the fallback's parameters are the GET route's, even when later routes were tried */
    static const char *const r2[] = {"GET /u/@first", "HEAD /@w/@v/x", "GET /u/@second", NULL};
    r = build(r2);
    FOUND(r, "HEAD", "/u/one", 0, "first=one");
    mx_router_free(r);
}

static void test_allow_overflow(void) {
    /* 60 methods of 10 letters: "M000000000, M000000001, ..." is 12 bytes per method */
    mx_router_t *r = mx_router_new();
    char method[16], err[256];
    for (int i = 0; i < 60; i++) {
        snprintf(method, sizeof method, "M%09d", i);
        CHECK(mx_router_add(r, method, 10, "/o", 2, i, NULL, err, sizeof err) == 0, "%s", err);
    }
    guarded_t gp, gs;
    const char *p = guard_copy(&gp, "/o", 2);
    char *scratch = guard_copy(&gs, "xx", 2);
    mx_route_match_t m;
    int rc = mx_router_match(r, "GET", 3, p, 2, scratch, 2, &m);
    /* 42 methods take 42 * 10 + 41 * 2 = 502 bytes; a 43rd would need 514 */
    CHECK(rc == NA && m.allow_len == 502 && memcmp(m.allow + 492, "M000000041", 10) == 0,
          "allow overflow: %d %zu", rc, m.allow_len);
    guard_free(&gp);
    guard_free(&gs);
    mx_router_free(r);
}

/* ---- invalid patterns and methods ---------------------------------------------------------- */

static void test_invalid(void) {
    static const struct {
        const char *pattern;
        size_t len; /* 0: strlen */
        const char *msg;
    } cases[] = {
        {"", 0, "route pattern must start with '/': ''"},
        {"abc", 0, "route pattern must start with '/': 'abc'"},
        {"*", 0, "must start with '/'"},
        {"/a\0b", 4, "NUL byte: '/a\\x00b'"},
        {"/a?b=1", 0, "contains '?'"},
        {"/a#top", 0, "contains '#'"},
        {"/a*b", 0, "'*' may only start or end a segment: '/a*b'"},
        {"/*a*", 0, "only one '*' per segment"},
        {"/x/*a*b", 0, "only one '*' per segment"},
        {"/a**", 0, "'**' must be a whole segment"},
        {"/**a", 0, "'**' must be a whole segment"},
        {"/***", 0, "'**' must be a whole segment"},
        {"/x/a**b/y", 0, "'**' must be a whole segment"},
        {"/**/a/**", 0, "only one '**' per pattern: '/**/a/**'"},
        {"/@", 0, "empty parameter name"},
        {"/a/@/b", 0, "empty parameter name"},
        {"/@id*", 0, "invalid character in parameter name '@id*'"},
        {"/@i-d", 0, "invalid character in parameter name '@i-d'"},
        {"/@id.json", 0, "invalid character in parameter name"},
        {"/@@", 0, "invalid character in parameter name"},
        {"/@id/@id", 0, "duplicate parameter name 'id': '/@id/@id'"},
        {"/@id/x/**/@id", 0, "duplicate parameter name 'id'"},
        {"/a@b", 0, "'@' may only start a segment"},
        {"/a/b@", 0, "'@' may only start a segment"},
        {"/*@x", 0, "'@' may only start a segment"},
        {"/x\x01y\xff", 0, "'/x\\x01y\\xff'"}, /* shown escaped in the message */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].pattern);
        guarded_t g;
        const char *p = guard_copy(&g, cases[i].pattern, len);
        char err[256];
        int rc = mx_router_validate(p, len, err, sizeof err);
        if (i == sizeof cases / sizeof cases[0] - 1) {
            /* control bytes are valid literals; only the quoting is checked, via a bad '@' */
            CHECK(rc == 0, "'/x\\x01y\\xff' rejected: %s", err);
            guard_free(&g);
            char bad[] = "/x\x01y\xff/a@";
            p = guard_copy(&g, bad, strlen(bad));
            rc = mx_router_validate(p, strlen(bad), err, sizeof err);
            CHECK(rc == MX_EINVAL && strstr(err, "'/x\\x01y\\xff/a@'"), "quoting: %s", err);
            guard_free(&g);
            continue;
        }
        CHECK(rc == MX_EINVAL && strstr(err, cases[i].msg), "pattern #%zu: rc %d, err '%s'", i, rc,
              err);
        /* mx_router_add rejects it the same way and leaves the router empty */
        mx_router_t *r = mx_router_new();
        char err2[256];
        rc = mx_router_add(r, "GET", 3, p, len, 1, NULL, err2, sizeof err2);
        CHECK(rc == MX_EINVAL && strcmp(err, err2) == 0, "add #%zu: %d '%s'", i, rc, err2);
        NOT_FOUND(r, "GET", "/");
        mx_router_free(r);
        guard_free(&g);
    }

    /* valid corner cases */
    static const char *const valid[] = {
        "/",   "//",     "/a/",   "/**",  "/**/a",    "/a/**/b/c", "/*",     "/*x",   "/x*",
        "/@_", "/@A9_z", "/100%", "/%zz", "/a.b-c~d", "/**/*",     "/**/@x", "/*/**", "/@a/**/@b",
    };
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        char err[256] = "unset";
        CHECK(mx_router_validate(valid[i], strlen(valid[i]), err, sizeof err) == 0 &&
                  err[0] == '\0',
              "'%s' rejected: %s", valid[i], err);
    }

    /* error buffers: NULL, zero-sized, tiny (truncated but terminated) */
    CHECK(mx_router_validate("x", 1, NULL, 0) == MX_EINVAL, "NULL err");
    char tiny[8];
    memset(tiny, 'z', sizeof tiny);
    CHECK(mx_router_validate("x", 1, tiny, sizeof tiny) == MX_EINVAL &&
              strcmp(tiny, "route p") == 0,
          "tiny err '%.8s'", tiny);
    char one = 'z';
    CHECK(mx_router_validate("x", 1, &one, 0) == MX_EINVAL && one == 'z', "errlen 0 written");

    /* a long pattern is shortened in the message */
    char longpat[600];
    memset(longpat, 'a', sizeof longpat);
    longpat[0] = '/';
    longpat[599] = '@';
    char err[1024];
    CHECK(mx_router_validate(longpat, sizeof longpat, err, sizeof err) == MX_EINVAL &&
              strlen(err) < 200 && strstr(err, "...'"),
          "long pattern message: %s", err);

    /* methods */
    mx_router_t *r = mx_router_new();
    CHECK(mx_router_add(r, "", 0, "/", 1, 0, NULL, err, sizeof err) == MX_EINVAL &&
              strstr(err, "invalid HTTP method"),
          "empty method: %s", err);
    CHECK(mx_router_add(r, "G T", 3, "/", 1, 0, NULL, err, sizeof err) == MX_EINVAL &&
              strstr(err, "'G T'"),
          "method with a space: %s", err);
    CHECK(mx_router_add(r, "GET\r\n", 5, "/", 1, 0, NULL, err, sizeof err) == MX_EINVAL,
          "method with CRLF: %s", err);
    CHECK(mx_router_add(r, "M-SEARCH", 8, "/", 1, 0, NULL, err, sizeof err) == 0, "M-SEARCH: %s", err);
    mx_router_free(r);
}

/* ---- long paths ---------------------------------------------------------------------------- */

static void test_long(void) {
    static const char *const routes[] = {
        "GET /deep/**/leaf", "GET /one/@v", "GET /tail/**", "GET /a/b/c/d/e/f/g/h/i/j", NULL,
    };
    mx_router_t *r = build(routes);
    size_t n = 100000;
    char *path = malloc(n + 64), *want = malloc(n + 64);
    /* 20000 segments under /deep, then /leaf */
    size_t o = (size_t)sprintf(path, "/deep");
    while (o < n)
        o += (size_t)sprintf(path + o, "/x%%2F");
    o += (size_t)sprintf(path + o, "/leaf");
    expect_at(__LINE__, r, "GET", path, o, OK, 0, "", NULL);
    path[o - 1] = 'X';
    expect_at(__LINE__, r, "GET", path, o, NF, 0, NULL, NULL);
    /* one 100000-byte parameter, every byte an escape */
    o = (size_t)sprintf(path, "/one/");
    for (size_t i = 0; i < n / 3; i++) {
        memcpy(path + o, "%41", 3);
        o += 3;
    }
    memset(want, 'A', n / 3);
    /* too long for fmt_params: check the value by hand */
    guarded_t gp, gs;
    const char *p = guard_copy(&gp, path, o);
    char *scratch = guard_copy(&gs, path, o);
    mx_route_match_t m;
    int rc = mx_router_match(r, "GET", 3, p, o, scratch, o, &m);
    CHECK(rc == OK && m.route_id == 1 && m.params[0].value_len == n / 3 &&
              memcmp(scratch + m.params[0].value_off, want, n / 3) == 0,
          "long parameter");
    guard_free(&gp);
    guard_free(&gs);
    /* many empty segments */
    o = (size_t)sprintf(path, "/tail");
    memset(path + o, '/', n);
    o += n;
    expect_at(__LINE__, r, "GET", path, o, OK, 2, "", NULL);
    expect_at(__LINE__, r, "GET", path + 5, o - 5, NF, 0, NULL, NULL);
    FOUND(r, "GET", "/a/b/c/d/e/f/g/h/i/j", 3, "");
    NOT_FOUND(r, "GET", "/a/b/c/d/e/f/g/h/i/j/k");
    NOT_FOUND(r, "GET", "/a/b/c/d/e/f/g/h/i");
    free(path);
    free(want);
    mx_router_free(r);
}

/* ---- percent-decoding ---------------------------------------------------------------------- */

static void test_decode(void) {
    static const struct {
        const char *in, *out;
        int plus;
    } cases[] = {
        {"", "", 0},
        {"abc", "abc", 0},
        {"%41%62%7a%7A", "Abzz", 0},
        {"%", "%", 0},
        {"%4", "%4", 0},
        {"%g1", "%g1", 0},
        {"%4g", "%4g", 0},
        {"%%41", "%A", 0},
        {"%2541", "%41", 0}, /* decoded once only */
        {"a+b%2B", "a+b+", 0},
        {"a+b%2B", "a b+", 1},
        {"%E2%82%ac", "\xe2\x82\xac", 0},
        {"100%", "100%", 1},
        {"%FF%fF", "\xff\xff", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        guarded_t g, go;
        const char *in = guard_copy(&g, cases[i].in, len);
        char *out = guard_copy(&go, cases[i].in, len);
        size_t n = mx_percent_decode(in, len, out, cases[i].plus);
        CHECK(n == strlen(cases[i].out) && memcmp(out, cases[i].out, n) == 0, "decode '%s'",
              cases[i].in);
        /* in place */
        char *buf = guard_copy(&go, cases[i].in, len);
        n = mx_percent_decode(buf, len, buf, cases[i].plus);
        CHECK(n == strlen(cases[i].out) && memcmp(buf, cases[i].out, n) == 0,
              "decode in place '%s'", cases[i].in);
        guard_free(&g);
        guard_free(&go);
    }
}

static void test_misc(void) {
    mx_route_match_t m;
    char s[4];
    CHECK(mx_router_match(NULL, "GET", 3, "/", 1, s, sizeof s, &m) == NF, "NULL router");
    mx_router_free(NULL);
    mx_router_t *r = mx_router_new();
    NOT_FOUND(r, "GET", "/"); /* empty table */
    /* a route id is returned as given, negative ones too */
    char err[64];
    CHECK(mx_router_add(r, "GET", 3, "/neg", 4, -7, NULL, err, sizeof err) == 0, "%s", err);
    FOUND(r, "GET", "/neg", -7, "");
    /* many routes: the table grows */
    char pat[32];
    int added = 0;
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(pat, sizeof pat, "/r%d/@x", i);
        added += mx_router_add(r, "GET", 3, pat, (size_t)n, i, NULL, err, sizeof err) == 0;
    }
    CHECK(added == 1000, "only %d of 1000 routes added", added);
    FOUND(r, "GET", "/r999/q", 999, "x=q");
    FOUND(r, "GET", "/r0/q", 0, "x=q");
    mx_router_free(r);
}

/* Each route's options come back with its matches; misses get the defaults. */
static void test_opts(void) {
    mx_router_t *r = mx_router_new();
    char err[256], scratch[64];
    mx_route_opts_t up = {123, 1}, big = {SIZE_MAX, 0};
    CHECK(mx_router_add(r, "POST", 4, "/upload", 7, 0, &up, err, sizeof err) == 0, "add");
    CHECK(mx_router_add(r, "PUT", 3, "/upload", 7, 1, &big, err, sizeof err) == 0, "add");
    CHECK(mx_router_add(r, "GET", 3, "/", 1, 2, NULL, err, sizeof err) == 0, "add");
    up.max_body = 7; /* copied: later changes to the caller's struct do not matter */
    mx_route_match_t m;
    CHECK(mx_router_match(r, "POST", 4, "/upload", 7, scratch, sizeof scratch, &m) == OK &&
              m.opts.max_body == 123 && m.opts.stream == 1,
          "POST /upload: its options (%zu, %d)", m.opts.max_body, m.opts.stream);
    CHECK(mx_router_match(r, "PUT", 3, "/upload", 7, scratch, sizeof scratch, &m) == OK &&
              m.opts.max_body == SIZE_MAX && m.opts.stream == 0,
          "PUT /upload: its options");
    CHECK(mx_router_match(r, "GET", 3, "/", 1, scratch, sizeof scratch, &m) == OK &&
              m.opts.max_body == MX_ROUTE_BODY_SERVER && m.opts.stream == 0,
          "GET /: the defaults (NULL options)");
    CHECK(mx_router_match(r, "GET", 3, "/upload", 7, scratch, sizeof scratch, &m) == NA &&
              m.opts.max_body == MX_ROUTE_BODY_SERVER && m.opts.stream == 0,
          "405: the defaults");
    CHECK(mx_router_match(r, "GET", 3, "/none", 5, scratch, sizeof scratch, &m) == NF &&
              m.opts.max_body == MX_ROUTE_BODY_SERVER,
          "404: the defaults");
    mx_router_free(r);
}

/* Other frameworks' parameter spellings are refused with the mummyx spelling; look-alikes that
 * are not parameters stay literal. */
static void test_foreign_params(void) {
    static const struct {
        const char *pat, *hint;
    } bad[] = {
        {"/users/{id}", "@id"},      {"/users/{id:int}", "@id"}, {"/users/:id", "@id"},
        {"/users/<id>", "@id"},      {"/users/<int:user_id>/x", "@user_id"},
        {"/a/{slug}/b", "@slug"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256];
        int rc = mx_router_validate(bad[i].pat, strlen(bad[i].pat), err, sizeof(err));
        CHECK(rc == MX_EINVAL && strstr(err, bad[i].hint) && strstr(err, "another framework"),
              "%s: rc %d, %s", bad[i].pat, rc, err);
    }
    static const char *const fine[] = {"/time/12:30", "/a/{", "/a/{}", "/a/<>", "/a/:",
                                       "/a/{b-c}", "/a/x:y"};
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        char err[256];
        CHECK(mx_router_validate(fine[i], strlen(fine[i]), err, sizeof(err)) == 0, "%s: %s",
              fine[i], err);
    }
}

int main(void) {
    test_opts();
    test_foreign_params();
    test_literals();
    test_params();
    test_many_params();
    test_stars();
    test_globs();
    test_root();
    test_order();
    test_methods();
    test_head();
    test_allow_overflow();
    test_invalid();
    test_long();
    test_decode();
    test_misc();
    return harness_summary("router");
}
