/*
 * test_http1.c: unit tests of the request-head parser, mx_http1_analyze and the chunked decoder.
 *
 * Every input is copied so that it ends right before an unreadable page (harness.h): a read past
 * the end faults. Valid heads are also fed at every prefix length (each must be PARTIAL) and
 * invalid ones at every prefix that holds the bad byte (each must give the same status), which
 * is what a client sending one byte at a time does to the server.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "http1.h"

#define HEAD_MAX 8192
#define TARGET_MAX 4096

/* ---------------------------------------------------------------------------------------------
 * Head parser helpers
 * ------------------------------------------------------------------------------------------- */

typedef struct parsed {
    guarded_t g;
    mx_http1_request_t req;
    int rc, status;
} parsed_t;

/* Parses s[0..len) from a guarded copy; the copy lives until pfree so fields can be checked.
 * hs resumes an earlier parse of a shorter prefix (at another address), or is NULL. */
static int pparse_st(parsed_t *p, const char *s, size_t len, size_t max_head, size_t max_target,
                     mx_http1_head_state_t *hs) {
    char *d = guard_copy(&p->g, s, len);
    p->status = 0;
    p->rc = mx_http1_parse_request(d, len, max_head, max_target, &p->req, &p->status, hs);
    return p->rc;
}

static int pparse(parsed_t *p, const char *s, size_t len, size_t max_head, size_t max_target) {
    return pparse_st(p, s, len, max_head, max_target, NULL);
}

static void pfree(parsed_t *p) { guard_free(&p->g); }

/* Parses and frees; for verdict-only checks. */
static int parse_verdict_st(const char *s, size_t len, size_t max_head, size_t max_target,
                            int *status, mx_http1_head_state_t *hs) {
    parsed_t p;
    pparse_st(&p, s, len, max_head, max_target, hs);
    *status = p.status;
    pfree(&p);
    return p.rc;
}

static int parse_verdict(const char *s, size_t len, size_t max_head, size_t max_target,
                         int *status) {
    return parse_verdict_st(s, len, max_head, max_target, status, NULL);
}

/* The head s[0..n) fed one byte more per call through one resume state, each prefix at a new
 * address as a growing socket buffer may be: every prefix up to k_decides is PARTIAL and the
 * others give rc/status, exactly as the stateless parse does. Returns 1 when all held. */
static int resumed_at(const char *s, size_t n, size_t k_decides, size_t max_head, size_t max_target,
                      int want_rc, int want_status, int line) {
    mx_http1_head_state_t hs = {0};
    for (size_t k = 0; k <= n; k++) {
        int st = 0;
        int rc = parse_verdict_st(s, k, max_head, max_target, &st, &hs);
        int ok = k < k_decides ? rc == MX_HTTP1_PARTIAL
                               : rc == want_rc && (rc != MX_HTTP1_INVALID || st == want_status);
        if (!ok) {
            report(0, line, "resumed prefix %zu of %zu: rc %d status %d", k, n, rc, st);
            return 0;
        }
        if (rc != MX_HTTP1_PARTIAL && hs.pos != 0) {
            report(0, line, "resumed prefix %zu: state not reset after a verdict", k);
            return 0;
        }
    }
    /* two pieces, split at every point: the resumed whole is the stateless whole */
    for (size_t k = 0; k < n && k < k_decides; k++) {
        mx_http1_head_state_t two = {0};
        int st = 0;
        parse_verdict_st(s, k, max_head, max_target, &st, &two);
        int rc = parse_verdict_st(s, n, max_head, max_target, &st, &two);
        if (rc != want_rc || (rc == MX_HTTP1_INVALID && st != want_status)) {
            report(0, line, "split at %zu of %zu: rc %d status %d", k, n, rc, st);
            return 0;
        }
    }
    return 1;
}

/* A complete head: every shorter prefix is PARTIAL, the whole is its length, and extra bytes
 * after it (a pipelined request) do not change that. Returns 1 when all held. */
static int valid_at(const char *s, size_t n, size_t max_head, size_t max_target, int line) {
    int st;
    for (size_t k = 0; k < n; k++) {
        int rc = parse_verdict(s, k, max_head, max_target, &st);
        if (rc != MX_HTTP1_PARTIAL) {
            report(0, line, "prefix %zu of %zu: rc %d status %d, want PARTIAL", k, n, rc, st);
            return 0;
        }
    }
    int rc = parse_verdict(s, n, max_head, max_target, &st);
    if (rc != (int)n) {
        report(0, line, "whole: rc %d status %d, want %zu", rc, st, n);
        return 0;
    }
    if (!resumed_at(s, n, n, max_head, max_target, (int)n, 0, line))
        return 0;
    char more[HEAD_MAX + 64];
    if (n + 20 <= sizeof(more)) {
        memcpy(more, s, n);
        memcpy(more + n, "GET / HTTP/1.1\r\n\x01\x02\x03", 20);
        rc = parse_verdict(more, n + 20, max_head, max_target, &st);
        if (rc != (int)n) {
            report(0, line, "pipelined: rc %d, want %zu", rc, n);
            return 0;
        }
    }
    report(1, line, "");
    return 1;
}

#define VALID(s) valid_at((s), sizeof(s) - 1, HEAD_MAX, TARGET_MAX, __LINE__)

/* good + bad: every prefix up to and including good is PARTIAL (it could still be valid); every
 * longer prefix, which holds the first byte of bad, is INVALID with status. */
static void invalid_at(const char *good, size_t ng, const char *bad, size_t nb, size_t max_head,
                       size_t max_target, int status, int line) {
    char buf[HEAD_MAX * 2];
    memcpy(buf, good, ng);
    memcpy(buf + ng, bad, nb);
    size_t n = ng + nb;
    int st;
    for (size_t k = 0; k <= n; k++) {
        st = 0;
        int rc = parse_verdict(buf, k, max_head, max_target, &st);
        if (k <= ng && rc != MX_HTTP1_PARTIAL) {
            report(0, line, "prefix %zu (bad byte at %zu): rc %d status %d, want PARTIAL", k, ng,
                   rc, st);
            return;
        }
        if (k > ng && (rc != MX_HTTP1_INVALID || st != status)) {
            report(0, line, "prefix %zu (bad byte at %zu): rc %d status %d, want INVALID %d", k, ng,
                   rc, st, status);
            return;
        }
    }
    if (!resumed_at(buf, n, ng + 1, max_head, max_target, MX_HTTP1_INVALID, status, line))
        return;
    report(1, line, "");
}

#define BAD(good, bad, status)                                                                     \
    invalid_at((good), sizeof(good) - 1, (bad), sizeof(bad) - 1, HEAD_MAX, TARGET_MAX, (status),   \
               __LINE__)
#define BAD_LIM(good, bad, mh, mt, status)                                                         \
    invalid_at((good), sizeof(good) - 1, (bad), sizeof(bad) - 1, (mh), (mt), (status), __LINE__)

static int streq(const char *a, size_t na, const char *lit) {
    return na == strlen(lit) && memcmp(a, lit, na) == 0;
}

/* ---------------------------------------------------------------------------------------------
 * Head parser tests
 * ------------------------------------------------------------------------------------------- */

static void test_simple_get(void) {
    static const char s[] = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    parsed_t p;
    int rc = pparse(&p, s, sizeof(s) - 1, HEAD_MAX, TARGET_MAX);
    CHECK(rc == (int)sizeof(s) - 1, "simple GET rc %d", rc);
    CHECK(streq(p.req.method, p.req.method_len, "GET"), "method");
    CHECK(streq(p.req.target, p.req.target_len, "/index.html?q=1"), "target");
    CHECK(p.req.minor_version == 1, "minor");
    CHECK(p.req.num_headers == 1, "num_headers %zu", p.req.num_headers);
    CHECK(streq(p.req.headers[0].name, p.req.headers[0].name_len, "Host"), "name");
    CHECK(streq(p.req.headers[0].value, p.req.headers[0].value_len, "example.com"), "value");
    pfree(&p);
    VALID("GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
}

static void test_wrk_request(void) {
    static const char s[] = "GET /plaintext HTTP/1.1\r\n"
                            "Host: localhost:8080\r\n"
                            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) wrk/4.2.0\r\n"
                            "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9\r\n"
                            "Connection: keep-alive\r\n"
                            "\r\n";
    parsed_t p;
    int rc = pparse(&p, s, sizeof(s) - 1, HEAD_MAX, TARGET_MAX);
    CHECK(rc == (int)sizeof(s) - 1, "wrk rc %d", rc);
    CHECK(p.req.num_headers == 4, "wrk num_headers %zu", p.req.num_headers);
    CHECK(streq(p.req.headers[1].name, p.req.headers[1].name_len, "User-Agent") &&
              streq(p.req.headers[1].value, p.req.headers[1].value_len,
                    "Mozilla/5.0 (X11; Linux x86_64) wrk/4.2.0"),
          "wrk user-agent");
    CHECK(streq(p.req.headers[3].value, p.req.headers[3].value_len, "keep-alive"), "wrk conn");
    pfree(&p);
    VALID("GET /plaintext HTTP/1.1\r\n"
          "Host: localhost:8080\r\n"
          "User-Agent: Mozilla/5.0 (X11; Linux x86_64) wrk/4.2.0\r\n"
          "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9\r\n"
          "Connection: keep-alive\r\n"
          "\r\n");
}

static void test_ows_trimming(void) {
    static const char s[] = "POST /x HTTP/1.0\r\n"
                            "A:plain\r\n"
                            "B:  \t spaced out \t \r\n"
                            "C:\r\n"
                            "D: \t \r\n"
                            "E: caf\xc3\xa9 \xff\r\n"
                            "F: a\tb  c\r\n"
                            "G: a long value with a\ttab in the middle of its bytes............\r\n"
                            "x-ToKeN!#$%&'*+-.^_`|~09: v\r\n"
                            "\r\n";
    static const char *const want[][2] = {
        {"A", "plain"},
        {"B", "spaced out"},
        {"C", ""},
        {"D", ""},
        {"E", "caf\xc3\xa9 \xff"},
        {"F", "a\tb  c"},
        {"G", "a long value with a\ttab in the middle of its bytes............"},
        {"x-ToKeN!#$%&'*+-.^_`|~09", "v"},
    };
    parsed_t p;
    int rc = pparse(&p, s, sizeof(s) - 1, HEAD_MAX, TARGET_MAX);
    CHECK(rc == (int)sizeof(s) - 1, "ows rc %d status %d", rc, p.status);
    CHECK(p.req.minor_version == 0, "ows minor");
    CHECK(streq(p.req.method, p.req.method_len, "POST"), "ows method");
    CHECK(p.req.num_headers == 8, "ows count %zu", p.req.num_headers);
    for (size_t i = 0; i < 8 && i < p.req.num_headers; i++) {
        const mx_header_t *h = &p.req.headers[i];
        CHECK(streq(h->name, h->name_len, want[i][0]), "name %zu", i);
        CHECK(streq(h->value, h->value_len, want[i][1]), "value %zu: '%.*s'", i, (int)h->value_len,
              h->value);
    }
    pfree(&p);
    VALID("POST /x HTTP/1.0\r\n"
          "A:plain\r\n"
          "B:  \t spaced out \t \r\n"
          "C:\r\n"
          "D: \t \r\n"
          "E: caf\xc3\xa9 \xff\r\n"
          "F: a\tb  c\r\n"
          "\r\n");
}

static void test_valid_forms(void) {
    VALID("GET / HTTP/1.1\r\n\r\n"); /* no Host: the parser accepts, analyze() rejects */
    VALID("GET / HTTP/1.0\r\n\r\n");
    VALID("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    VALID("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n");
    VALID("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    VALID("GET http://a.example/b?c=d#e HTTP/1.1\r\nHost: a.example\r\n\r\n");
    VALID("GET /%7Efoo/[x]{y}|\"'<>^`\\~!$&()*+,;=:@ HTTP/1.1\r\nHost: a\r\n\r\n");
    VALID("get /lower-case-method-is-a-token HTTP/1.1\r\nHost: a\r\n\r\n");
    VALID(
        "GET /0123456789012345678901234567890123456789 HTTP/1.1\r\n"
        "Host: a\r\nCookie: a=b; c=d; eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee=f\r\n\r\n");
    /* minor version read in the slow path (buffer shorter than 10 bytes after the target) */
    int st;
    parsed_t p;
    pparse(&p, "A / HTTP/1.0\r\n\r\n", 16, HEAD_MAX, TARGET_MAX);
    CHECK(p.rc == 16 && p.req.minor_version == 0, "1.0 rc %d", p.rc);
    pfree(&p);
    /* consumed never counts bytes after the head */
    CHECK(parse_verdict("GET / HTTP/1.1\r\n\r\nGET", 21, HEAD_MAX, TARGET_MAX, &st) == 18,
          "pipelined");
}

static void test_bad_request_line(void) {
    BAD("", "\r\nGET / HTTP/1.1\r\n\r\n", 400); /* leading empty lines are not skipped */
    BAD("", "\nGET / HTTP/1.1\r\n\r\n", 400);
    BAD("", " GET / HTTP/1.1\r\n\r\n", 400); /* empty method */
    BAD("", "\0GET / HTTP/1.1\r\n\r\n", 400);
    BAD("GE", "(T / HTTP/1.1\r\n\r\n", 400); /* method not a token */
    BAD("GET", "\t/ HTTP/1.1\r\n\r\n", 400);
    BAD("GET", "\r\n\r\n", 400);
    BAD("GET ", " / HTTP/1.1\r\n\r\n", 400); /* two SPs */
    BAD("GET / ", " HTTP/1.1\r\n\r\n", 400);
}

static void test_bad_target(void) {
    BAD("GET /a", "\x7f HTTP/1.1\r\n\r\n", 400); /* DEL */
    BAD("GET /a", "\x80 HTTP/1.1\r\n\r\n", 400); /* non-ASCII */
    BAD("GET /a", "\xff HTTP/1.1\r\n\r\n", 400);
    BAD("GET /a", "\tb HTTP/1.1\r\n\r\n", 400);
    BAD("GET /a", "\0b HTTP/1.1\r\n\r\n", 400);
    BAD("GET /a", "\r\n\r\n", 400); /* HTTP/0.9-style request line */
    BAD("GET /a", "\n\r\n", 400);
    BAD("GET /aaaaaaaaaaaaaaaaaaaaaaaa",
        "\x01"
        "aaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
        400); /* SWAR */
    BAD("GET /aaaaaaa", "\x7f", 400);
}

static void test_bad_version(void) {
    BAD("GET / ", "http/1.1\r\n\r\n", 400);
    BAD("GET / HTTP", "\\1.1\r\n\r\n", 400);
    BAD("GET / HTTP/", "x.1\r\n\r\n", 400);
    BAD("GET / HTTP/1", "1.1\r\n\r\n", 400); /* HTTP/11.1 */
    BAD("GET / HTTP/1.", "x\r\n\r\n", 400);
    BAD("GET / HTTP/1.1", "1\r\n\r\n", 400);  /* HTTP/1.11 */
    BAD("GET / HTTP/1.1", " \r\n\r\n", 400);  /* trailing SP */
    BAD("GET / HTTP/1.1", "\n\r\n", 400);     /* bare LF */
    BAD("GET / HTTP/1.1\r", "\r\n\r\n", 400); /* bare CR */
    BAD("GET / HTTP/1.1\r", "X\r\n", 400);
    BAD("GET / HTTP/2.0", "x\r\n", 400); /* malformed beats 505 */
    BAD("GET / HTTP/2.0\r", "\n\r\n", 505);
    BAD("GET / HTTP/1.2\r", "\nHost: a\r\n\r\n", 505);
    BAD("GET / HTTP/0.9\r", "\n\r\n", 505);
    BAD("GET / HTTP/3.1\r", "\n", 505);
    BAD("GET / HTTP/9.9\r", "\n\x01\x02", 505); /* decided at the LF; later bytes don't matter */
}

static void test_bad_fields(void) {
    BAD("GET / HTTP/1.1\r\n", " Host: a\r\n\r\n", 400); /* whitespace before the first field */
    BAD("GET / HTTP/1.1\r\n", "\tHost: a\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: a\r\n", " folded\r\n\r\n", 400); /* obs-fold */
    BAD("GET / HTTP/1.1\r\nHost: a\r\n", "\tfolded\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost", " : a\r\n\r\n", 400); /* whitespace before the colon */
    BAD("GET / HTTP/1.1\r\nHost", "\t: a\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\n", ": a\r\n\r\n", 400); /* empty name */
    BAD("GET / HTTP/1.1\r\nX", "\x80: a\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nX", "(y): a\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nX", "\0: a\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: a\r\nno", " colon\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: a\r\nnocolon", "\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: a", "\n\r\n", 400);         /* bare LF ends a field */
    BAD("GET / HTTP/1.1\r\nHost: a\r", "X: b\r\n\r\n", 400); /* bare CR */
    BAD("GET / HTTP/1.1\r\nHost: a\r", "\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nHost: a\r\n", "\n", 400); /* bare LF ends the head */
    BAD("GET / HTTP/1.1\r\nHost: a\r\n\r", "X", 400);
    BAD("GET / HTTP/1.1\r\nHost: a\r\n\r", "\r", 400);
    BAD("GET / HTTP/1.1\r\nX: a", "\0b\r\n\r\n", 400); /* NUL */
    BAD("GET / HTTP/1.1\r\nX: a", "\x01\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nX: a", "\x1f\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nX: a", "\x7f\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nX: a\r", "b\r\n\r\n", 400); /* bare CR inside a value */
    BAD("GET / HTTP/1.1\r\nX: ", "\x0b\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nX:\t", "\x0c\r\n\r\n", 400);
    BAD("GET / HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaa",
        "\x01"
        "aaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        400); /* caught inside the 8-byte fast path */
    BAD("GET / HTTP/1.1\r\nX: aaaaaaaa\taaaaaaaaaaaaaaa",
        "\x7f"
        "aaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        400);
}

static void test_limits(void) {
    /* 414: a 16-byte target is fine, the 17th byte is refused at once, even before the SP */
    CHECK(valid_at("GET /0123456789abcde HTTP/1.1\r\n\r\n", 33, HEAD_MAX, 16, __LINE__),
          "16-byte target");
    BAD_LIM("GET /0123456789abcde", "f HTTP/1.1\r\n\r\n", HEAD_MAX, 16, 414);
    BAD_LIM("GET /0123456789abcde", "f\x01 HTTP/1.1\r\n\r\n", HEAD_MAX, 16, 414);
    BAD_LIM("GET /0123456789abcde", "f", HEAD_MAX, 16, 414);
    BAD_LIM("GET ", "/", HEAD_MAX, 0, 414);
    BAD_LIM("GET /0123456789abcd", "\x01", HEAD_MAX, 16, 400); /* bad byte before the limit */

    /* 431: the head must end within max_head_len bytes */
    static const char h[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"; /* 27 bytes */
    CHECK(valid_at(h, 27, 27, 16, __LINE__), "head of exactly max_head_len");
    BAD_LIM("GET / HTTP/1.1\r\nHost: a\r\n", "\r\n", 26, 16, 431);
    BAD_LIM("GET / HTTP/1.1\r\nHost: a\r\n", "\r\n", 26, 4096, 431);
    BAD_LIM("GET / HTTP/1.1\r\nHost: a", "\r\n\r\n", 24, 16, 431);
    int st = 0;
    CHECK(parse_verdict("GET / HTTP/1.1\r\n\r\n", 18, 0, 16, &st) == MX_HTTP1_INVALID && st == 431,
          "max_head_len 0");
    st = 0;
    CHECK(parse_verdict("", 0, 0, 16, &st) == MX_HTTP1_INVALID && st == 431, "empty, limit 0");
    /* the head limit reached inside the request line: 414 when the line already holds more than
     * max_target_len bytes, else 431 */
    BAD_LIM("GET /01234567", "89 HTTP/1.1\r\n\r\n", 14, 10, 414);
    BAD_LIM("GET /01234567", "89 HTTP/1.1\r\n\r\n", 14, 100, 431);
    BAD_LIM("GET / HTTP/1.", "1\r\n\r\n", 14, 10, 414);
    BAD_LIM("GETGETGETGETG", "ETGET / HTTP/1.1\r\n\r\n", 14, 10, 414);
    /* an invalid byte is seen before the limit: it wins */
    BAD_LIM("GET / HTTP/1.1\r\nX: a",
            "\x01"
            "bbbbbbbbbbb\r\n\r\n",
            21, 16, 400);
    /* bytes past the limit are never read, so they cannot change the verdict */
    st = 0;
    CHECK(parse_verdict("GET / HTTP/1.1\r\nX: abc\x01\r\n\r\n", 28, 22, 16, &st) ==
                  MX_HTTP1_INVALID &&
              st == 431,
          "bytes past the limit ignored (%d)", st);

    /* 431: more than MX_HTTP1_MAX_HEADERS fields */
    static char many[HEAD_MAX];
    size_t n = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < MX_HTTP1_MAX_HEADERS; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X%d: y\r\n", i);
    memcpy(many + n, "\r\n", 2);
    CHECK(valid_at(many, n + 2, HEAD_MAX, TARGET_MAX, __LINE__), "100 fields");
    parsed_t p;
    pparse(&p, many, n + 2, HEAD_MAX, TARGET_MAX);
    CHECK(p.req.num_headers == MX_HTTP1_MAX_HEADERS &&
              streq(p.req.headers[99].name, p.req.headers[99].name_len, "X99"),
          "100 fields stored");
    pfree(&p);
    invalid_at(many, n, "Z: y\r\n\r\n", 8, HEAD_MAX, TARGET_MAX, 431, __LINE__);
    invalid_at(many, n, " obs-fold\r\n\r\n", 13, HEAD_MAX, TARGET_MAX, 431, __LINE__);
}

/* Every prefix of a long valid head, under several limits, with the fields checked at the end. */
static void test_all_prefixes(void) {
    static const char *const heads[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ("POST /upload?x=1 HTTP/1.1\r\nHost: h:1\r\nContent-Length: 5\r\n"
         "Content-Type: application/octet-stream\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n"),
        "DELETE http://h/a/b HTTP/1.0\r\nX:y\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        size_t n = strlen(heads[i]);
        CHECK(valid_at(heads[i], n, HEAD_MAX, TARGET_MAX, __LINE__), "head %zu", i);
        CHECK(valid_at(heads[i], n, n, TARGET_MAX, __LINE__), "head %zu at its limit", i);
    }
}

/* Bytes the parser examines for an n-byte head delivered in pieces of `step` bytes, through one
 * growing buffer as a connection has. fresh = 1 starts every call from scratch (the parser before
 * it could resume); the result is the last call's rc through *rc. */
static size_t examined_for(const char *head, size_t n, size_t step, int fresh, int *rc) {
    mx_http1_head_state_t hs = {0};
    size_t total = 0;
    int st = 0;
    *rc = MX_HTTP1_PARTIAL;
    for (size_t k = step < n ? step : n; *rc == MX_HTTP1_PARTIAL; k = k + step < n ? k + step : n) {
        mx_http1_request_t req;
        if (fresh)
            hs = (mx_http1_head_state_t){0};
        *rc = mx_http1_parse_request(head, k, 16384, TARGET_MAX, &req, &st, &hs);
        if (fresh)
            total += hs.examined;
        if (k == n)
            break;
    }
    return fresh ? total : hs.examined;
}

/* Appends "name: " + vlen bytes of 'v' + CRLF to head[*n..]. */
static void add_field(char *head, size_t *n, const char *name, size_t vlen) {
    *n += (size_t)sprintf(head + *n, "%s: ", name);
    memset(head + *n, 'v', vlen);
    *n += vlen;
    memcpy(head + *n, "\r\n", 2);
    *n += 2;
}

/* A client sending an 8 KiB head one byte per packet must not cost more than a small constant
 * times what the whole head costs (issue 11 item 6). The parser counts the bytes it looks at. */
static void test_linear_resume(void) {
    enum { N = 8192 };
    static char head[N + 64];
    size_t n = (size_t)sprintf(head, "GET /%0300d HTTP/1.1\r\nHost: a\r\n", 7);
    add_field(head, &n, "X-Long", 1500); /* one long value, then fields of varied lengths */
    char name[32];
    for (int i = 0; n + 200 < N; i++) {
        snprintf(name, sizeof(name), "X-Field-%d", i);
        add_field(head, &n, name, (size_t)(40 + (i * 37) % 90)); /* 60-odd fields */
    }
    add_field(head, &n, "Y", N - 2 - n - 5); /* "Y: " + value + CRLF ends at N - 2 */
    memcpy(head + n, "\r\n", 2);
    n += 2;
    CHECK(n == N, "head is %zu bytes", n);

    int rc;
    size_t whole = examined_for(head, n, n, 0, &rc);
    CHECK(rc == (int)n && whole == n, "whole head: rc %d, %zu bytes examined", rc, whole);
    size_t bytewise = examined_for(head, n, 1, 0, &rc);
    CHECK(rc == (int)n && bytewise <= 3 * n, "byte at a time: rc %d, %zu bytes examined for %zu",
          rc, bytewise, n);
    size_t pieces = examined_for(head, n, 7, 0, &rc);
    CHECK(rc == (int)n && pieces <= 3 * n, "7 bytes at a time: %zu examined", pieces);
    /* the same bound fails for a parse that starts over on every read (about n * n / 2) */
    size_t rescan = examined_for(head, n, 1, 1, &rc);
    CHECK(rc == (int)n && rescan > 1000 * n, "rescanning: %zu examined", rescan);
    printf("http1: %zu-byte head: %zu bytes examined whole, %zu byte by byte (%zu rescanning)\n", n,
           whole, bytewise, rescan);
}

/* ---------------------------------------------------------------------------------------------
 * analyze()
 * ------------------------------------------------------------------------------------------- */

/* Parses head (which must be valid) and analyzes it; returns the analyze result. */
static int an(const char *head, mx_http1_info_t *info, int *status, parsed_t *p) {
    size_t n = strlen(head);
    int rc = pparse(p, head, n, HEAD_MAX, TARGET_MAX);
    if (rc != (int)n) {
        fprintf(stderr, "analyze test head does not parse (%d %d): %s\n", rc, p->status, head);
        return -100;
    }
    memset(info, 0xa5, sizeof(*info));
    *status = 0;
    return mx_http1_analyze(&p->req, info, status);
}

static void an_status(const char *head, int want, int line) {
    parsed_t p;
    mx_http1_info_t info;
    int st;
    int rc = an(head, &info, &st, &p);
    if (want == 0)
        report(rc == 0, line, "analyze rc %d status %d, want 0: %s", rc, st, head);
    else
        report(rc == MX_HTTP1_INVALID && st == want, line, "analyze rc %d status %d, want %d: %s",
               rc, st, want, head);
    pfree(&p);
}

#define AN(head, want) an_status(head, want, __LINE__)
#define H11 "GET / HTTP/1.1\r\nHost: a\r\n"
#define P11 "POST / HTTP/1.1\r\nHost: a\r\n"
#define P10 "POST / HTTP/1.0\r\n"

static void test_analyze_defaults(void) {
    parsed_t p;
    mx_http1_info_t info;
    int st;
    int rc = an("GET / HTTP/1.1\r\nHost: example.com:80\r\n\r\n", &info, &st, &p);
    CHECK(rc == 0, "plain GET rc %d", rc);
    CHECK(info.content_length == -1 && !info.chunked && info.keep_alive && !info.expect_continue &&
              !info.upgrade && info.num_host == 1,
          "plain GET info");
    CHECK(info.host && streq(info.host, info.host_len, "example.com:80"), "host value");
    pfree(&p);

    rc = an("GET / HTTP/1.0\r\n\r\n", &info, &st, &p);
    CHECK(rc == 0 && !info.keep_alive && info.num_host == 0 && info.host == NULL &&
              info.host_len == 0 && info.content_length == -1,
          "1.0 defaults");
    pfree(&p);
}

static void test_analyze_content_length(void) {
    parsed_t p;
    mx_http1_info_t info;
    int st;
    static const struct {
        const char *v;
        int64_t want;
    } ok[] = {
        {"0", 0},
        {"42", 42},
        {"007", 7},
        {"  12  ", 12},
        {"9223372036854775807", INT64_MAX},
        {"000000000000000000000000000001", 1},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char head[256];
        snprintf(head, sizeof(head), P11 "Content-Length: %s\r\n\r\n", ok[i].v);
        int rc = an(head, &info, &st, &p);
        CHECK(rc == 0 && info.content_length == ok[i].want && !info.chunked, "CL '%s' -> %lld",
              ok[i].v, (long long)info.content_length);
        pfree(&p);
    }
    static const char *const bad[] = {
        "",
        "+1",
        "-1",
        "1 2",
        "1,1",
        "1, 1",
        "0x10",
        "1a",
        "1.0",
        "9223372036854775808",
        "99999999999999999999",
        "\xd9\xa1" /* non-ASCII digit */,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char head[256];
        snprintf(head, sizeof(head), P11 "Content-Length: %s\r\n\r\n", bad[i]);
        AN(head, 400);
    }
    AN(P11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400); /* repeated, even equal */
    AN(P11 "Content-Length: 5\r\ncontent-length: 6\r\n\r\n", 400);
    AN(P11 "CONTENT-LENGTH: 5\r\n\r\n", 0);
    AN(P10 "Content-Length: 5\r\n\r\n", 0);
}

static void test_analyze_transfer_encoding(void) {
    parsed_t p;
    mx_http1_info_t info;
    int st;
    int rc = an(P11 "Transfer-Encoding: chunked\r\n\r\n", &info, &st, &p);
    CHECK(rc == 0 && info.chunked && info.content_length == -1, "TE chunked");
    pfree(&p);
    rc = an(P11 "transfer-encoding: ChUnKeD\r\n\r\n", &info, &st, &p);
    CHECK(rc == 0 && info.chunked, "TE case-insensitive");
    pfree(&p);
    rc = an(P11 "Transfer-Encoding: , chunked ,\r\n\r\n", &info, &st, &p);
    CHECK(rc == 0 && info.chunked, "TE with empty list elements");
    pfree(&p);

    AN(P11 "Transfer-Encoding: gzip, chunked\r\n\r\n", 501);
    AN(P11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
    AN(P11 "Transfer-Encoding: gzip;level=9, chunked\r\n\r\n", 501);
    AN(P11 "Transfer-Encoding: x-custom ; a=b, chunked\r\n\r\n", 501);
    AN(P11 "Transfer-Encoding: chunked, gzip\r\n\r\n", 400); /* chunked not last */
    AN(P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
    AN(P11 "Transfer-Encoding: gzip\r\n\r\n", 400);
    AN(P11 "Transfer-Encoding: identity\r\n\r\n", 400);
    AN(P11 "Transfer-Encoding: chunked, chunked\r\n\r\n", 400); /* applied twice */
    AN(P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    AN(P11 "Transfer-Encoding:\r\n\r\n", 400);
    AN(P11 "Transfer-Encoding: ,\r\n\r\n", 400);
    AN(P11 "Transfer-Encoding: chunked;x=1\r\n\r\n", 400); /* chunked has no parameters */
    AN(P11 "Transfer-Encoding: chunked x\r\n\r\n", 400);
    AN(P11 "Transfer-Encoding: \"chunked\"\r\n\r\n", 400);
    AN(P11 "Transfer-Encoding: chunkedx\r\n\r\n", 400);
    AN(P11 "Transfer-Encoding: xchunked\r\n\r\n", 400);
    AN(P11 "Transfer-Encoding: gzip x, chunked\r\n\r\n", 400); /* malformed beats 501 */
    AN(P11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400); /* CL + TE */
    AN(P11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    AN(P11 "Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400);
    AN(P10 "Transfer-Encoding: chunked\r\n\r\n", 400); /* TE on 1.0 */
    AN(P11 "Transfer-Encodings: gzip\r\n\r\n", 0);     /* a different field */
}

static void test_analyze_connection(void) {
    static const struct {
        const char *head;
        int keep_alive, upgrade;
    } cases[] = {
        {H11 "\r\n", 1, 0},
        {H11 "Connection: close\r\n\r\n", 0, 0},
        {H11 "Connection: CLOSE\r\n\r\n", 0, 0},
        {H11 "Connection: keep-alive\r\n\r\n", 1, 0},
        {H11 "Connection: keep-alive, close\r\n\r\n", 0, 0},
        {H11 "Connection: close, keep-alive\r\n\r\n", 0, 0},
        {H11 "Connection: foo,  Close  ,bar\r\n\r\n", 0, 0},
        {H11 "Connection: foo\r\nConnection: close\r\n\r\n", 0, 0},
        {H11 "Connection: closed\r\n\r\n", 1, 0},
        {H11 "Connection: cl ose\r\n\r\n", 1, 0},
        {"GET / HTTP/1.0\r\n\r\n", 0, 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1, 0},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1, 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive,close\r\n\r\n", 0, 0},
        {"GET / HTTP/1.0\r\nConnection: x\r\nConnection: keep-alive\r\n\r\n", 1, 0},
        {H11 "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 1, 1},
        {H11 "Upgrade: websocket\r\nConnection: keep-alive, upgrade\r\n\r\n", 1, 1},
        {H11 "Connection: upgrade\r\n\r\n", 1, 0},             /* no Upgrade field */
        {H11 "Connection: upgrade\r\nUpgrade:\r\n\r\n", 1, 0}, /* empty Upgrade */
        {H11 "Upgrade: websocket\r\n\r\n", 1, 0},              /* not a connection option */
        {"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 0, 0},
        {H11 "Connection: upgrade, close\r\nUpgrade: websocket\r\n\r\n", 0, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parsed_t p;
        mx_http1_info_t info;
        int st;
        int rc = an(cases[i].head, &info, &st, &p);
        CHECK(rc == 0 && info.keep_alive == (unsigned)cases[i].keep_alive &&
                  info.upgrade == (unsigned)cases[i].upgrade,
              "connection case %zu: rc %d keep_alive %u upgrade %u", i, rc, info.keep_alive,
              info.upgrade);
        pfree(&p);
    }
}

static void test_analyze_host_expect(void) {
    parsed_t p;
    mx_http1_info_t info;
    int st;
    AN("GET / HTTP/1.1\r\n\r\n", 400);                       /* missing on 1.1 */
    AN("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400); /* repeated */
    AN("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400); /* repeated, any version */
    AN("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);          /* invalid value */
    AN("GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n", 400);
    AN("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
    AN("GET / HTTP/1.1\r\nHost: h\xc3\xa9\r\n\r\n", 400);
    AN("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0);
    AN("GET / HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n\r\n", 0);
    AN("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 0);
    AN("GET / HTTP/1.0\r\n\r\n", 0);
    int rc = an("GET / HTTP/1.1\r\nHOST:\r\n\r\n", &info, &st, &p);
    CHECK(rc == 0 && info.num_host == 1 && info.host != NULL && info.host_len == 0,
          "empty Host on 1.1 (RFC 9112 3.2)");
    pfree(&p);

    rc = an(P11 "Expect: 100-continue\r\n\r\n", &info, &st, &p);
    CHECK(rc == 0 && info.expect_continue, "expect 100-continue");
    pfree(&p);
    rc = an(P11 "expect:  100-Continue \r\n\r\n", &info, &st, &p);
    CHECK(rc == 0 && info.expect_continue, "expect case-insensitive");
    pfree(&p);
    rc = an(P11 "\r\n", &info, &st, &p);
    CHECK(rc == 0 && !info.expect_continue, "no expect");
    pfree(&p);
    rc = an(P10 "Expect: 100-continue\r\n\r\n", &info, &st, &p);
    CHECK(rc == 0 && !info.expect_continue, "expect ignored on 1.0 (RFC 9110 10.1.1)");
    pfree(&p);
    AN(P11 "Expect: 200-ok\r\n\r\n", 417);
    AN(P11 "Expect: 100-continue, foo\r\n\r\n", 417);
    AN(P11 "Expect: 100-continue;x=1\r\n\r\n", 417);
    AN(P11 "Expect: 100-continuex\r\n\r\n", 417);
    AN(P11 "Expect:\r\n\r\n", 0); /* an empty list expects nothing */

    /* precedence: 400 before 501 before 417 */
    AN(P11 "Expect: nope\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    AN(P11 "Expect: nope\r\nTransfer-Encoding: gzip, chunked\r\nHost: b\r\n\r\n", 400);
    AN("POST / HTTP/1.1\r\nExpect: nope\r\n\r\n", 400);
}

/* ---------------------------------------------------------------------------------------------
 * Chunked decoder
 * ------------------------------------------------------------------------------------------- */

typedef struct dec_result {
    int invalid, done;
    size_t consumed;
    size_t out_len;
    char out[65536];
} dec_result_t;

/* Decodes in[0..len) fed in pieces of the given sizes (cycled; 0 means "all at once"), each
 * piece guarded, stopping at done or INVALID. */
static void decode_pieces(const char *in, size_t len, const size_t *sizes, size_t nsizes,
                          dec_result_t *r) {
    mx_chunked_t d;
    memset(&d, 0, sizeof(d));
    memset(r, 0, sizeof(*r));
    size_t pos = 0, si = 0;
    do {
        size_t piece = nsizes ? sizes[si++ % nsizes] : len;
        if (piece > len - pos)
            piece = len - pos;
        guarded_t g;
        char *gp = guard_copy(&g, in + pos, piece);
        char out[65536];
        size_t out_len = 12345;
        int done = -1;
        ssize_t rc = mx_chunked_decode(&d, gp, piece, out, &out_len, &done);
        guard_free(&g);
        if (rc == MX_HTTP1_INVALID) {
            r->invalid = 1;
            break;
        }
        if (out_len > (size_t)rc || r->out_len + out_len > sizeof(r->out)) {
            r->invalid = 99; /* impossible: more output than input */
            break;
        }
        memcpy(r->out + r->out_len, out, out_len);
        r->out_len += out_len;
        pos += (size_t)rc;
        r->done = done;
        if (!done && (size_t)rc != piece) {
            r->invalid = 98; /* must consume everything until done */
            break;
        }
        if (done)
            break;
    } while (pos < len);
    r->consumed = pos;
}

/* Decodes in place (out == in) in one call. */
static void decode_in_place(const char *in, size_t len, dec_result_t *r) {
    mx_chunked_t d;
    memset(&d, 0, sizeof(d));
    memset(r, 0, sizeof(*r));
    guarded_t g;
    char *gp = guard_copy(&g, in, len);
    size_t out_len = 0;
    ssize_t rc = mx_chunked_decode(&d, gp, len, gp, &out_len, &r->done);
    if (rc == MX_HTTP1_INVALID) {
        r->invalid = 1;
    } else {
        r->consumed = (size_t)rc;
        memcpy(r->out, gp, out_len);
        r->out_len = out_len;
    }
    guard_free(&g);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static size_t rnd(size_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (size_t)((rng_state >> 33) % n);
}

static dec_result_t whole, other;

static int same(const dec_result_t *a, const dec_result_t *b) {
    if (a->invalid != b->invalid)
        return 0;
    if (a->invalid)
        return 1;
    return a->done == b->done && a->consumed == b->consumed && a->out_len == b->out_len &&
           memcmp(a->out, b->out, a->out_len) == 0;
}

/* Decodes whole, byte by byte, in random pieces and in place; all must agree with want. want_out
 * NULL means INVALID is expected. */
static void chunked_case(const char *in, size_t len, const char *want_out, size_t want_out_len,
                         size_t want_consumed, int want_done, int line) {
    decode_pieces(in, len, NULL, 0, &whole);
    if (want_out == NULL) {
        report(whole.invalid == 1, line, "whole: want INVALID (invalid %d done %d consumed %zu)",
               whole.invalid, whole.done, whole.consumed);
    } else {
        report(!whole.invalid && whole.done == want_done && whole.consumed == want_consumed &&
                   whole.out_len == want_out_len && memcmp(whole.out, want_out, want_out_len) == 0,
               line, "whole: invalid %d done %d consumed %zu out_len %zu", whole.invalid,
               whole.done, whole.consumed, whole.out_len);
    }
    static const size_t one[] = {1}, two[] = {2, 1, 3}, seven[] = {7};
    decode_pieces(in, len, one, 1, &other);
    report(same(&whole, &other), line, "byte by byte differs (invalid %d)", other.invalid);
    decode_pieces(in, len, two, 3, &other);
    report(same(&whole, &other), line, "2/1/3 pieces differ");
    decode_pieces(in, len, seven, 1, &other);
    report(same(&whole, &other), line, "7-byte pieces differ");
    for (int k = 0; k < 20; k++) {
        size_t sizes[16];
        for (int i = 0; i < 16; i++)
            sizes[i] = rnd(k < 10 ? 4 : 64);
        decode_pieces(in, len, sizes, 16, &other);
        if (!same(&whole, &other)) {
            report(0, line, "random pieces differ (round %d)", k);
            break;
        }
    }
    decode_in_place(in, len, &other);
    report(same(&whole, &other), line, "in place differs");
}

#define CH_OK(in, out, consumed, done)                                                             \
    chunked_case((in), sizeof(in) - 1, (out), sizeof(out) - 1, (consumed), (done), __LINE__)
#define CH_ALL(in, out) CH_OK(in, out, sizeof(in) - 1, 1)
#define CH_BAD(in) chunked_case((in), sizeof(in) - 1, NULL, 0, 0, 0, __LINE__)

static void test_chunked_valid(void) {
    CH_ALL("5\r\nhello\r\n0\r\n\r\n", "hello");
    CH_ALL("0\r\n\r\n", "");
    CH_ALL("3\r\nabc\r\nA\r\n0123456789\r\na\r\nABCDEFGHIJ\r\n0\r\n\r\n",
           "abc0123456789ABCDEFGHIJ");
    CH_ALL("1\r\n\r\r\n2\r\n\r\n\r\n0\r\n\r\n", "\r\r\n"); /* CR LF inside data is data */
    CH_ALL("0005\r\nhello\r\n000\r\n\r\n", "hello");
    CH_ALL("5;a=b\r\nhello\r\n0;last\r\n\r\n", "hello");
    CH_ALL("5 ; a = \"q\\\"x;y\" ; b\t;c=d\r\nhello\r\n0\r\n\r\n", "hello");
    CH_ALL("5;a;b=c;d=\"\"\r\nhello\r\n0\r\n\r\n", "hello");
    CH_ALL("5;a=\"caf\xc3\xa9\\\xff\"\r\nhello\r\n0\r\n\r\n", "hello");
    CH_ALL("5\r\nhello\r\n0\r\nX-Sum: abc\r\nY:\r\nZ:\tv \xff\r\n\r\n", "hello");
    CH_ALL("0\r\nA: b\r\n\r\n", "");
    /* bytes after the body are the next request's: not consumed */
    CH_OK("5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "hello", 15, 1);
    CH_OK("0\r\n\r\n\r\n", "", 5, 1);
    /* incomplete bodies consume everything and are not done */
    CH_OK("5\r\nhel", "hel", 6, 0);
    CH_OK("5\r\nhello\r\n0\r\nX: y\r\n", "hello", 19, 0);
    CH_OK("5;a=\"", "", 5, 0);
    /* the largest size we accept: 2^63 - 1 */
    CH_OK("7fffffffffffffff\r\nab", "ab", 20, 0);
    CH_OK("00000000000000000000007FFFFFFFFFFFFFFF\r\n", "", 40, 0);
}

static void test_chunked_invalid(void) {
    CH_BAD("+5\r\nhello\r\n0\r\n\r\n");
    CH_BAD("-5\r\nhello\r\n0\r\n\r\n");
    CH_BAD("0x5\r\nhello\r\n0\r\n\r\n");
    CH_BAD(" 5\r\nhello\r\n0\r\n\r\n");
    CH_BAD("\r\n5\r\nhello\r\n0\r\n\r\n");
    CH_BAD("g\r\n");
    CH_BAD("5 \r\nhello\r\n0\r\n\r\n"); /* BWS only before ';' */
    CH_BAD("5\nhello\r\n0\r\n\r\n");    /* bare LF */
    CH_BAD("5\r\rhello\r\n0\r\n\r\n");  /* bare CR */
    CH_BAD("5\r\nhelloX\r\n0\r\n\r\n"); /* data longer than its size */
    CH_BAD("5\r\nhell\r\n0\r\n\r\n");   /* shorter: the CRLF lands inside, then 'X' */
    CH_BAD("5\r\nhello\n0\r\n\r\n");
    CH_BAD("5\r\nhello\rX0\r\n\r\n");
    CH_BAD("5\r\nhello\r\r\n0\r\n\r\n");
    CH_BAD("5;\r\nhello\r\n0\r\n\r\n"); /* empty extension name */
    CH_BAD("5;=x\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=\r\nhello\r\n0\r\n\r\n"); /* empty value */
    CH_BAD("5;a b\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=b c\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=\"x\\\ny\"\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=(x)\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5;a=\"x\r\nhello\r\n0\r\n\r\n"); /* unterminated quoted string */
    CH_BAD("5;a\x01\r\nhello\r\n0\r\n\r\n");
    CH_BAD("5 ;a \r\nhello\r\n0\r\n\r\n"); /* BWS before CRLF */
    CH_BAD("5;a=b \r\nhello\r\n0\r\n\r\n");
    CH_BAD("0\r\nA: b\r\n c\r\n\r\n"); /* obs-fold in the trailer */
    CH_BAD("0\r\nAb\r\n\r\n");         /* trailer line without a colon */
    CH_BAD("0\r\nA : b\r\n\r\n");      /* whitespace before the colon */
    CH_BAD("0\r\n: b\r\n\r\n");        /* empty name */
    CH_BAD("0\r\nA: b\n\r\n");         /* bare LF */
    CH_BAD("0\r\nA: b\x01\r\n\r\n");   /* CTL in a trailer value */
    CH_BAD("0\r\n\n");
    CH_BAD("0\r\n\rX");
    CH_BAD("0\r\n\r\r");
    /* overflow: 2^63 and beyond */
    CH_BAD("8000000000000000\r\n");
    CH_BAD("10000000000000000\r\n");
    CH_BAD("ffffffffffffffffffff\r\n");
}

static void test_chunked_limits(void) {
    static char buf[40000];
    /* a size line of exactly 4096 bytes (CRLF included) passes; 4097 fails */
    size_t n = 0;
    buf[n++] = '5';
    buf[n++] = ';';
    while (n < 4094)
        buf[n++] = 'a';
    memcpy(buf + n, "\r\nhello\r\n0\r\n\r\n", 14);
    chunked_case(buf, n + 14, "hello", 5, n + 14, 1, __LINE__);
    memmove(buf + n + 1, buf + n, 14);
    buf[n] = 'a';
    chunked_case(buf, n + 15, NULL, 0, 0, 0, __LINE__);

    /* a trailer line of 4096 bytes passes, one of 4097 fails */
    n = (size_t)snprintf(buf, sizeof(buf), "0\r\nX:");
    while (n < 3 + 4094)
        buf[n++] = 'v';
    memcpy(buf + n, "\r\n\r\n", 4);
    chunked_case(buf, n + 4, "", 0, n + 4, 1, __LINE__);
    memmove(buf + n + 1, buf + n, 4);
    buf[n] = 'v';
    chunked_case(buf, n + 5, NULL, 0, 0, 0, __LINE__);

    /* the whole trailer section: 16384 bytes at most */
    n = (size_t)snprintf(buf, sizeof(buf), "0\r\n");
    for (int i = 0; i < 4; i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%d:", i);
        for (int k = 0; k < 4090 - 3; k++)
            buf[n++] = 'v';
        buf[n++] = '\r';
        buf[n++] = '\n';
    }
    /* 4 lines of 4090 = 16360 bytes so far, plus the final CRLF */
    memcpy(buf + n, "\r\n", 2);
    chunked_case(buf, n + 2, "", 0, n + 2, 1, __LINE__);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Y: 0123456789012345678901\r\n\r\n");
    chunked_case(buf, n, NULL, 0, 0, 0, __LINE__);

    /* a large body in many chunks, random splits and in place */
    n = 0;
    static char want[32768];
    size_t wn = 0;
    for (int i = 0; i < 200; i++) {
        size_t sz = 1 + rnd(100);
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, i % 3 ? "%zx\r\n" : "%zX;i=%d\r\n", sz, i);
        for (size_t k = 0; k < sz; k++) {
            char c = (char)rnd(256);
            buf[n++] = c;
            want[wn++] = c;
        }
        buf[n++] = '\r';
        buf[n++] = '\n';
    }
    memcpy(buf + n, "0\r\nT: x\r\n\r\n", 11);
    chunked_case(buf, n + 11, want, wn, n + 11, 1, __LINE__);
}

static void test_chunked_sticky(void) {
    mx_chunked_t d;
    memset(&d, 0, sizeof(d));
    char out[64];
    size_t out_len;
    int done;
    ssize_t rc = mx_chunked_decode(&d, "0\r\n\r\nXYZ", 8, out, &out_len, &done);
    CHECK(rc == 5 && done == 1 && out_len == 0, "done rc %zd", rc);
    rc = mx_chunked_decode(&d, "XYZ", 3, out, &out_len, &done);
    CHECK(rc == 0 && done == 1 && out_len == 0, "after done consumes nothing (rc %zd)", rc);
    rc = mx_chunked_decode(&d, "", 0, out, &out_len, &done);
    CHECK(rc == 0 && done == 1, "after done, empty input");

    memset(&d, 0, sizeof(d));
    rc = mx_chunked_decode(&d, "", 0, out, &out_len, &done);
    CHECK(rc == 0 && done == 0 && out_len == 0, "empty input");
    rc = mx_chunked_decode(&d, "3\r\nabZ", 6, out, &out_len, &done);
    CHECK(rc == 6 && out_len == 3 && memcmp(out, "abZ", 3) == 0, "partial data");
    rc = mx_chunked_decode(&d, "X", 1, out, &out_len, &done);
    CHECK(rc == MX_HTTP1_INVALID && done == 0, "bad CRLF after data");
    rc = mx_chunked_decode(&d, "\r\n0\r\n\r\n", 7, out, &out_len, &done);
    CHECK(rc == MX_HTTP1_INVALID, "invalid is sticky");
}

static void test_helpers(void) {
    CHECK(mx_http1_name_eq("Content-Length", 14, "content-length", 14), "name_eq");
    CHECK(mx_http1_name_eq("CONTENT-LENGTH", 14, "content-length", 14), "name_eq upper");
    CHECK(!mx_http1_name_eq("Content-Lengt", 13, "content-length", 14), "name_eq len");
    CHECK(!mx_http1_name_eq("Content_Length", 14, "content-length", 14), "name_eq char");
    CHECK(!mx_http1_name_eq("\xc3\x85", 2, "\xe3\xa5", 2), "name_eq non-ASCII is not folded");
    CHECK(mx_http1_name_eq("", 0, "", 0), "name_eq empty");
    CHECK(mx_http1_is_token("X-Custom_1!#$%&'*+.^`|~", 23), "is_token");
    CHECK(!mx_http1_is_token("", 0), "is_token empty");
    CHECK(!mx_http1_is_token("a b", 3), "is_token space");
    CHECK(!mx_http1_is_token("a:b", 3), "is_token colon");
    CHECK(!mx_http1_is_token("a\r\nb", 4), "is_token CRLF");
    CHECK(!mx_http1_is_token("\xc3\xa9", 2), "is_token non-ASCII");
    CHECK(!mx_http1_is_token("(x)", 3), "is_token delimiters");
    CHECK(mx_http1_is_field_value("", 0), "is_field_value empty");
    CHECK(mx_http1_is_field_value("text/html; charset=utf-8", 24), "is_field_value");
    CHECK(mx_http1_is_field_value("a\tb \xc3\xa9", 6), "is_field_value HTAB, obs-text");
    CHECK(!mx_http1_is_field_value("a\r\nSet-Cookie: x", 16), "is_field_value CRLF");
    CHECK(!mx_http1_is_field_value("a\nb", 3), "is_field_value LF");
    CHECK(!mx_http1_is_field_value("a\0b", 3), "is_field_value NUL");
    CHECK(!mx_http1_is_field_value("a\x7f", 2), "is_field_value DEL");
    CHECK(!mx_http1_is_field_value("\x1b[0m", 4), "is_field_value ESC");
}

int main(void) {
    test_simple_get();
    test_wrk_request();
    test_ows_trimming();
    test_valid_forms();
    test_bad_request_line();
    test_bad_target();
    test_bad_version();
    test_bad_fields();
    test_limits();
    test_all_prefixes();
    test_linear_resume();
    test_analyze_defaults();
    test_analyze_content_length();
    test_analyze_transfer_encoding();
    test_analyze_connection();
    test_analyze_host_expect();
    test_chunked_valid();
    test_chunked_invalid();
    test_chunked_limits();
    test_chunked_sticky();
    test_helpers();
    return harness_summary("http1");
}
