/*
 * test_multipart.c: unit tests of the multipart/form-data parser and the boundary extractor.
 *
 * Each run turns the parser's events into a text transcript (PART / DATA / END / DONE lines,
 * consecutive DATA events merged, bytes escaped, then the error or mx_mp_finish's verdict) and
 * compares it with the expected one. Every body is fed whole, byte by byte, split in two at every
 * index, in three at every pair of indexes (short bodies) and in random pieces; each piece is a
 * guarded copy (harness.h), so a read past the end of any piece faults. All runs must give the same
 * transcript. The runner also checks the calling contract on every call: consumed never exceeds
 * the input, NEED_MORE means everything was consumed, DATA is never empty and points into the
 * input or into the parser, at most boundary length + 3 bytes are held back, errors are sticky.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "harness.h"
#include "multipart.h"

/* ---------------------------------------------------------------------------------------------
 * Transcripts
 * ------------------------------------------------------------------------------------------- */

typedef struct tr {
    char *s;
    size_t len, cap;
    int in_data; /* a DATA line is open */
    int bad;     /* a contract check failed during the run */
} tr_t;

static void tr_put(tr_t *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        t->s = realloc(t->s, cap);
        if (!t->s)
            abort();
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void tr_str(tr_t *t, const char *s) { tr_put(t, s, strlen(s)); }

/* Printable ASCII but backslash as is, everything else as \xHH: transcripts stay one line each. */
static void tr_esc(tr_t *t, const char *d, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            tr_put(t, (const char *)&c, 1);
        } else {
            char b[8];
            snprintf(b, sizeof(b), "\\x%02x", c);
            tr_str(t, b);
        }
    }
}

static void tr_end_data(tr_t *t) {
    if (t->in_data)
        tr_str(t, "\n");
    t->in_data = 0;
}

static void tr_event(tr_t *t, const mx_mp_event_t *ev) {
    if (ev->type == MX_MP_DATA) {
        if (!t->in_data)
            tr_str(t, "DATA ");
        t->in_data = 1;
        tr_esc(t, ev->data, ev->len);
        return;
    }
    tr_end_data(t);
    switch (ev->type) {
    case MX_MP_PART:
        tr_str(t, "PART name=");
        tr_esc(t, ev->name, ev->name_len);
        if (ev->filename) {
            tr_str(t, " filename=");
            tr_esc(t, ev->filename, ev->filename_len);
        }
        if (ev->content_type) {
            tr_str(t, " ct=");
            tr_esc(t, ev->content_type, ev->content_type_len);
        }
        tr_str(t, "\n");
        break;
    case MX_MP_PART_END:
        tr_str(t, "END\n");
        break;
    case MX_MP_DONE:
        tr_str(t, "DONE\n");
        break;
    default: {
        char b[32];
        snprintf(b, sizeof(b), "ERR %d\n", ev->type);
        tr_str(t, b);
    }
    }
}

static void tr_free(tr_t *t) {
    free(t->s);
    memset(t, 0, sizeof(*t));
}

/* ---------------------------------------------------------------------------------------------
 * The runner
 * ------------------------------------------------------------------------------------------- */

static const char *g_boundary = "AaB03x";
static const mx_mp_limits_t *g_lim;
/* When set, PART events also log their raw header block. */
static int g_log_headers;
/* When set, every pair of cut points is tried whatever the body's length (slow: one run each). */
static int g_all_pairs;

#define CONTRACT(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (!t->bad)                                                                           \
                report(0, line, __VA_ARGS__);                                                      \
            t->bad = 1;                                                                            \
        }                                                                                          \
    } while (0)

/*
 * Parses body[0..n) cut at cuts[0..ncuts) (ascending offsets), each piece in its own guarded
 * copy, and appends the transcript to t. Returns the final verdict (the error, or
 * mx_mp_finish's result).
 */
static int run_cuts(const char *body, size_t n, const size_t *cuts, size_t ncuts, tr_t *t,
                    int line) {
    mx_mp_t p;
    int rc = mx_mp_init(&p, g_boundary, strlen(g_boundary), g_lim);
    if (rc != 0) {
        report(0, line, "init failed: %d", rc);
        return rc;
    }
    int err = 0, done = 0;
    size_t start = 0;
    for (size_t c = 0; c <= ncuts && !err; c++) {
        size_t end = c < ncuts ? cuts[c] : n;
        size_t plen = end - start;
        guarded_t g;
        const char *piece = guard_copy(&g, body + start, plen);
        size_t off = 0;
        int zero_streak = 0;
        for (;;) {
            mx_mp_event_t ev;
            size_t used = 12345;
            rc = mx_mp_next(&p, piece + off, plen - off, &used, &ev);
            CONTRACT(rc == ev.type, "rc %d != ev.type %d", rc, ev.type);
            if (rc < 0) {
                CONTRACT(used == 0, "error with consumed %zu", used);
                tr_event(t, &ev);
                err = rc;
                /* sticky: the same error again, even with no input */
                rc = mx_mp_next(&p, piece + off, plen - off, &used, &ev);
                CONTRACT(rc == err && used == 0, "error not sticky: %d", rc);
                rc = mx_mp_next(&p, NULL, 0, &used, &ev);
                CONTRACT(rc == err && used == 0, "error not sticky (empty): %d", rc);
                break;
            }
            CONTRACT(used <= plen - off, "consumed %zu of %zu", used, plen - off);
            if (used > plen - off)
                break;
            if (rc == MX_MP_DATA) {
                CONTRACT(ev.len > 0, "empty DATA");
                int in_input = ev.data >= piece + off && ev.data + ev.len <= piece + plen;
                int in_parser =
                    ev.data >= (const char *)&p && ev.data + ev.len <= (const char *)(&p + 1);
                CONTRACT(in_input || in_parser, "DATA points outside input and parser");
            }
            if (rc == MX_MP_PART) {
                CONTRACT(ev.name != NULL, "PART without name");
                CONTRACT(ev.headers != NULL, "PART without headers");
            }
            if (rc == MX_MP_DONE) {
                if (!done)
                    tr_event(t, &ev);
                CONTRACT(!done || used == plen - off, "after DONE: consumed %zu of %zu", used,
                         plen - off);
                done = 1;
            } else {
                CONTRACT(!done, "event %d after DONE", rc);
                if (rc != MX_MP_NEED_MORE) {
                    tr_event(t, &ev);
                    if (rc == MX_MP_PART && g_log_headers) {
                        tr_str(t, "HEADERS ");
                        tr_esc(t, ev.headers, ev.headers_len);
                        tr_str(t, "\n");
                    }
                }
            }
            off += used;
            zero_streak = used == 0 ? zero_streak + 1 : 0;
            CONTRACT(zero_streak < 2, "no progress");
            if (zero_streak >= 2)
                break;
            if (rc == MX_MP_NEED_MORE) {
                CONTRACT(off == plen, "NEED_MORE with %zu bytes left", plen - off);
                /* held back: at most boundary length + 3 */
                CONTRACT(p.match < p.dlen, "held back %zu", p.match);
                break;
            }
            if (off == plen && rc != MX_MP_DATA)
                break;
            if (off == plen) {
                /* a DATA event that used all input: the next call must be NEED_MORE */
                continue;
            }
        }
        guard_free(&g);
        start = end;
    }
    tr_end_data(t);
    if (!err) {
        int f = mx_mp_finish(&p);
        char b[32];
        snprintf(b, sizeof(b), "FINISH %d\n", f);
        tr_str(t, b);
        err = f;
        CONTRACT((f == 0) == done, "finish %d but done %d", f, done);
    } else {
        CONTRACT(mx_mp_finish(&p) == err, "finish after error");
    }
    mx_mp_free(&p);
    mx_mp_free(&p); /* twice is harmless */
    return err;
}

static uint32_t g_rng = 2463534242u;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return g_rng;
}

/* Compares one run with the expected transcript; 1 when equal. */
static int same(tr_t *t, const char *want, const char *how, size_t a, size_t b, int line) {
    int ok = !t->bad && strcmp(t->s ? t->s : "", want) == 0;
    if (!ok && !t->bad)
        report(0, line, "%s (%zu, %zu):\n--- got\n%s--- want\n%s", how, a, b, t->s ? t->s : "",
               want);
    tr_free(t);
    return ok;
}

/*
 * The body must give `want` however it is split: whole, byte by byte, at every single cut, at
 * every pair of cuts (bodies up to 64 bytes, or all with g_all_pairs), and in 50 random splits.
 */
static void expect_at(const char *body, size_t n, const char *want, int line) {
    tr_t t = {0};
    size_t cuts[4096];
    run_cuts(body, n, NULL, 0, &t, line);
    if (!same(&t, want, "whole", 0, 0, line))
        return;
    if (n <= sizeof(cuts) / sizeof(cuts[0])) {
        for (size_t i = 0; i < n; i++)
            cuts[i] = i + 1;
        run_cuts(body, n, cuts, n, &t, line);
        if (!same(&t, want, "byte by byte", 0, 0, line))
            return;
    }
    for (size_t k = 0; k <= n; k++) {
        cuts[0] = k;
        run_cuts(body, n, cuts, 1, &t, line);
        if (!same(&t, want, "split at", k, 0, line))
            return;
    }
    if (n <= 64 || g_all_pairs) {
        for (size_t a = 1; a < n; a++)
            for (size_t b = a + 1; b < n; b++) {
                cuts[0] = a;
                cuts[1] = b;
                run_cuts(body, n, cuts, 2, &t, line);
                if (!same(&t, want, "split at", a, b, line))
                    return;
            }
    }
    for (int r = 0; r < 50; r++) {
        size_t nc = 0, pos = 0;
        for (;;) {
            pos += 1 + rnd() % (r < 25 ? 7 : 40);
            if (pos >= n || nc == 64)
                break;
            cuts[nc++] = pos;
        }
        run_cuts(body, n, cuts, nc, &t, line);
        if (!same(&t, want, "random split", (size_t)r, nc, line))
            return;
    }
    report(1, line, "");
}

#define EXPECT(body, want) expect_at((body), sizeof(body) - 1, (want), __LINE__)

/* Shorthands for bodies with the default boundary AaB03x. */
#define D "--AaB03x\r\n"
#define CRD "\r\n--AaB03x\r\n"
#define CLOSE "\r\n--AaB03x--\r\n"
#define CD(name) "Content-Disposition: form-data; name=\"" name "\"\r\n"

/* ---------------------------------------------------------------------------------------------
 * Boundary extraction
 * ------------------------------------------------------------------------------------------- */

static int boundary_of(const char *ct, size_t len, char *out, size_t cap) {
    guarded_t g;
    const char *s = guard_copy(&g, ct, len);
    int rc = mx_multipart_boundary(s, len, out, cap);
    guard_free(&g);
    return rc;
}

static void good_boundary(const char *ct, const char *want, int line) {
    char out[80];
    memset(out, 'Z', sizeof(out));
    int rc = boundary_of(ct, strlen(ct), out, sizeof(out));
    report(rc == (int)strlen(want) && strcmp(out, want) == 0, line, "boundary of [%s]: %d [%.*s]",
           ct, rc, rc > 0 ? rc : 0, out);
}

static void bad_boundary(const char *ct, size_t len, int line) {
    char out[80];
    int rc = boundary_of(ct, len, out, sizeof(out));
    report(rc == -1, line, "boundary of [%s]: %d, want -1", ct, rc);
}

#define GOOD_B(ct, want) good_boundary((ct), (want), __LINE__)
#define BAD_B(ct) bad_boundary((ct), sizeof(ct) - 1, __LINE__)

static void test_boundary(void) {
    GOOD_B("multipart/form-data; boundary=AaB03x", "AaB03x");
    GOOD_B("multipart/form-data;boundary=AaB03x", "AaB03x");
    GOOD_B("Multipart/Form-Data; BOUNDARY=AaB03x", "AaB03x");
    GOOD_B("MULTIPART/FORM-DATA; Boundary=\"AaB03x\"", "AaB03x");
    GOOD_B("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
           "----WebKitFormBoundary7MA4YWxkTrZu0gW");
    GOOD_B("  multipart/form-data ; charset=utf-8 ;boundary=\"x\" ; ", "x");
    GOOD_B("multipart/form-data; ; boundary=x;;", "x");
    GOOD_B("multipart/form-data; a=\"q;boundary=no\"; boundary=yes", "yes");
    GOOD_B("multipart/form-data; boundary=\"a b'()+_,-./:=?Z\"", "a b'()+_,-./:=?Z");
    GOOD_B("multipart/form-data; boundary=\"a\\bc\"", "abc"); /* quoted-pair */
    GOOD_B("multipart/form-data; boundary=1", "1");
    GOOD_B("multipart/form-data; boundary="
           "0123456789012345678901234567890123456789012345678901234567890123456789",
           "0123456789012345678901234567890123456789012345678901234567890123456789");

    BAD_B("multipart/form-data; boundary="
          "01234567890123456789012345678901234567890123456789012345678901234567890"); /* 71 */
    BAD_B("multipart/form-data; boundary=\""
          "01234567890123456789012345678901234567890123456789012345678901234567890\"");
    BAD_B("");
    BAD_B("multipart/form-data");
    BAD_B("multipart/form-data;");
    BAD_B("multipart/mixed; boundary=x");
    BAD_B("text/plain; boundary=x");
    BAD_B("multipart/form-datax; boundary=x");
    BAD_B("multipart/form-data boundary=x");
    BAD_B("multipart /form-data; boundary=x");
    BAD_B("multipart/form-data; boundary=");
    BAD_B("multipart/form-data; boundary=\"\"");
    BAD_B("multipart/form-data; boundary=\"trailing space \"");
    BAD_B("multipart/form-data; boundary=a!b"); /* '!' is a tchar but not a bchar */
    BAD_B("multipart/form-data; boundary=\"a\tb\"");
    BAD_B("multipart/form-data; boundary=x; boundary=x"); /* twice */
    BAD_B("multipart/form-data; boundary = x");
    BAD_B("multipart/form-data; boundary= x");
    BAD_B("multipart/form-data; boundary=x y");
    BAD_B("multipart/form-data; boundary=\"x");
    BAD_B("multipart/form-data; boundary=\"x\\");
    BAD_B("multipart/form-data; boundary=x; other");
    BAD_B("multipart/form-data; other=\"unterminated; boundary=x");
    BAD_B("multipart/form-data; boundary=a\x01");
    BAD_B("multipart/form-data; boundary=\"a\x7f\"");
    bad_boundary("multipart/form-data; boundary=a\0b", 32, __LINE__);
    /* len is honoured: the boundary is cut where len says */
    good_boundary("multipart/form-data; boundary=abc", "abc", __LINE__);
    {
        char out[8];
        int rc = boundary_of("multipart/form-data; boundary=abcdef", 33, out, sizeof(out));
        CHECK(rc == 3 && strcmp(out, "abc") == 0, "len honoured: %d", rc);
        rc = boundary_of("multipart/form-data; boundary=abcdefg", 37, out, 7);
        CHECK(rc == -1, "cap too small: %d", rc);
        rc = boundary_of("multipart/form-data; boundary=abcdefg", 37, out, 8);
        CHECK(rc == 7 && strcmp(out, "abcdefg") == 0, "cap exact: %d", rc);
    }
}

static void test_init(void) {
    mx_mp_t p;
    CHECK(mx_mp_init(&p, "", 0, NULL) == MX_EINVAL, "empty boundary");
    mx_mp_free(&p);
    CHECK(mx_mp_init(&p, "a b ", 4, NULL) == MX_EINVAL, "trailing space");
    CHECK(mx_mp_init(&p, "a\r\nb", 4, NULL) == MX_EINVAL, "CRLF in boundary");
    CHECK(mx_mp_init(&p, "a@b", 3, NULL) == MX_EINVAL, "non-bchar");
    char b71[72];
    memset(b71, 'x', 71);
    CHECK(mx_mp_init(&p, b71, 71, NULL) == MX_EINVAL, "71 chars");
    CHECK(mx_mp_init(&p, b71, 70, NULL) == 0, "70 chars");
    mx_mp_free(&p);
    mx_mp_limits_t huge = {SIZE_MAX / 2, 0};
    CHECK(mx_mp_init(&p, "x", 1, &huge) == MX_EINVAL, "absurd limit");
    CHECK(mx_mp_init(&p, "a b", 3, NULL) == 0, "inner space");
    CHECK(p.max_headers == MX_MP_DEFAULT_MAX_PART_HEADERS && p.max_parts == MX_MP_DEFAULT_MAX_PARTS,
          "defaults");
    CHECK(mx_mp_finish(&p) == MX_MP_E_SYNTAX, "finish before anything");
    mx_mp_free(&p);
    memset(&p, 0, sizeof(p));
    mx_mp_free(&p); /* zero-filled: harmless */
}

/* ---------------------------------------------------------------------------------------------
 * Valid bodies
 * ------------------------------------------------------------------------------------------- */

static void test_simple(void) {
    EXPECT(D CD("field1") "\r\nvalue1" CRD CD("field2") "\r\nvalue 2" CLOSE,
           "PART name=field1\nDATA value1\nEND\n"
           "PART name=field2\nDATA value 2\nEND\nDONE\nFINISH 0\n");
    /* the close delimiter may end the body without CRLF, and needs no epilogue */
    EXPECT(D CD("a") "\r\nx\r\n--AaB03x--", "PART name=a\nDATA x\nEND\nDONE\nFINISH 0\n");
    /* an empty form: a close delimiter only (what browsers send) */
    EXPECT("--AaB03x--\r\n", "DONE\nFINISH 0\n");
    EXPECT("--AaB03x--", "DONE\nFINISH 0\n");
    EXPECT("preamble\r\n--AaB03x--", "DONE\nFINISH 0\n");
}

static void test_file_part(void) {
    g_log_headers = 1;
    /* clang-format off */
    EXPECT(D CD("submit-name") "\r\nLarry" CRD
             "Content-Disposition: form-data; name=\"files\"; filename=\"file1.txt\"\r\n"
             "Content-Type: text/plain\r\n\r\n"
             "... contents of file1.txt ...\r\n" CLOSE,
           "PART name=submit-name\nHEADERS Content-Disposition: form-data; "
           "name=\"submit-name\"\\x0d\\x0a\nDATA Larry\nEND\n"
           "PART name=files filename=file1.txt ct=text/plain\n"
           "HEADERS Content-Disposition: form-data; name=\"files\"; "
           "filename=\"file1.txt\"\\x0d\\x0a"
           "Content-Type: text/plain\\x0d\\x0a\n"
           "DATA ... contents of file1.txt ...\\x0d\\x0a\nEND\nDONE\nFINISH 0\n");
    /* clang-format on */
    /* headers in any case and order, extra headers kept in the raw block, OWS trimmed */
    EXPECT(D "x-extra: 1\r\ncontent-type:   image/png ; q=1  \r\n"
             "CONTENT-DISPOSITION:FORM-DATA;NAME=pic;FILENAME=\"a b.png\"\t\r\n\r\n"
             "\x89PNG\r\n\x1a\n\0\0" CLOSE,
           "PART name=pic filename=a b.png ct=image/png ; q=1\n"
           "HEADERS x-extra: 1\\x0d\\x0acontent-type:   image/png ; q=1  \\x0d\\x0a"
           "CONTENT-DISPOSITION:FORM-DATA;NAME=pic;FILENAME=\"a b.png\"\\x09\\x0d\\x0a\n"
           "DATA \\x89PNG\\x0d\\x0a\\x1a\\x0a\\x00\\x00\nEND\nDONE\nFINISH 0\n");
    g_log_headers = 0;
    /* an empty Content-Type is present but empty; an empty filename is present but empty */
    EXPECT(D "Content-Type:\r\nContent-Disposition: form-data; name=f; filename=\"\"\r\n\r\n"
             "x" CLOSE,
           "PART name=f filename= ct=\nDATA x\nEND\nDONE\nFINISH 0\n");
    /* UTF-8 in a quoted filename (obs-text), escapes, OWS around '=' */
    EXPECT(
        D
        "Content-Disposition: form-data ; name = \"a\\\"b\\\\c\" ; filename=\"caf\xc3\xa9.txt\"\r\n"
        "\r\nx" CLOSE,
        "PART name=a\"b\\x5cc filename=caf\\xc3\\xa9.txt\nDATA x\nEND\nDONE\nFINISH 0\n");
    /* other parameters are ignored, but must be well-formed */
    EXPECT(D
           "Content-Disposition: form-data; size=12; name=n; creation-date=\"x;y\"\r\n\r\nv" CLOSE,
           "PART name=n\nDATA v\nEND\nDONE\nFINISH 0\n");
    /* an empty name is allowed */
    EXPECT(D CD("") "\r\nv" CLOSE, "PART name=\nDATA v\nEND\nDONE\nFINISH 0\n");
}

static void test_filename_star(void) {
    EXPECT(D "Content-Disposition: form-data; name=f; filename=\"fallback.txt\"; "
             "filename*=UTF-8''na%C3%AFve%20file.txt\r\n\r\nx" CLOSE,
           "PART name=f filename=na\\xc3\\xafve file.txt\nDATA x\nEND\nDONE\nFINISH 0\n");
    /* order does not matter; charset is case-insensitive; a language tag is skipped */
    EXPECT(D "Content-Disposition: form-data; filename*=utf-8'en-us'%e2%82%ac%20rates; name=f; "
             "filename=\"EUR rates\"\r\n\r\nx" CLOSE,
           "PART name=f filename=\\xe2\\x82\\xac rates\nDATA x\nEND\nDONE\nFINISH 0\n");
    /* filename* alone */
    EXPECT(D "Content-Disposition: form-data; name=f; filename*=UTF-8''a.txt\r\n\r\nx" CLOSE,
           "PART name=f filename=a.txt\nDATA x\nEND\nDONE\nFINISH 0\n");
    /* undecodable filename*: fall back to filename, or to no filename */
    static const char *const undecodable[] = {
        "ISO-8859-1''%A3%20rates", /* not UTF-8 */
        "UTF-8''bad%2",            /* truncated escape */
        "UTF-8''bad%zz",           /* not hex */
        "UTF-8''%C3%28",           /* invalid UTF-8 */
        "UTF-8''%C0%AF",           /* overlong */
        "UTF-8''%ED%A0%80",        /* surrogate */
        "UTF-8''a%00b",            /* NUL */
        "UTF-8''a%0Ab",            /* LF */
        "UTF-8''a*b",              /* not an attr-char */
        "UTF-8'a.txt",             /* one quote */
        "UTF8''a.txt",             /* wrong charset name */
        "\"UTF-8''a b\"",          /* a space is never an attr-char */
    };
    for (size_t i = 0; i < sizeof(undecodable) / sizeof(undecodable[0]); i++) {
        char body[512], want[256];
        int n = snprintf(body, sizeof(body),
                         D "Content-Disposition: form-data; name=f; filename=\"plain.txt\"; "
                           "filename*=%s\r\n\r\nx" CLOSE,
                         undecodable[i]);
        expect_at(body, (size_t)n, "PART name=f filename=plain.txt\nDATA x\nEND\nDONE\nFINISH 0\n",
                  __LINE__);
        n = snprintf(body, sizeof(body),
                     D "Content-Disposition: form-data; name=f; filename*=%s\r\n\r\nx" CLOSE,
                     undecodable[i]);
        snprintf(want, sizeof(want), "PART name=f\nDATA x\nEND\nDONE\nFINISH 0\n");
        expect_at(body, (size_t)n, want, __LINE__);
    }
    /* a quoted ext-value still decodes */
    EXPECT(D "Content-Disposition: form-data; name=f; filename*=\"UTF-8''q.txt\"\r\n\r\nx" CLOSE,
           "PART name=f filename=q.txt\nDATA x\nEND\nDONE\nFINISH 0\n");
    /* twice is an error, even when both are the same */
    EXPECT(D "Content-Disposition: form-data; name=f; filename*=UTF-8''a; filename*=UTF-8''a\r\n"
             "\r\nx" CLOSE,
           "ERR -400\n");
}

static void test_empty_parts(void) {
    EXPECT(D CD("a") "\r\n" CRD CD("b") "\r\n" CLOSE,
           "PART name=a\nEND\nPART name=b\nEND\nDONE\nFINISH 0\n");
    /* a body that is a lone CRLF */
    EXPECT(D CD("a") "\r\n\r\n" CLOSE, "PART name=a\nDATA \\x0d\\x0a\nEND\nDONE\nFINISH 0\n");
}

static void test_near_boundaries(void) {
    /* prefixes of the delimiter, the boundary mid-line, LF-only and CR-only line breaks */
    EXPECT(
        D CD("a") "\r\n"
                  "1\r\n--AaB03 2\r\n-3\r\n--4\r5\r\r\n6--AaB03x7 AaB03x\n--AaB03x\r--AaB03x\r\r\r"
                  "\r\n--AaB03\r\n--AaB0\r\n--A\r\n--\r\n-\r\n\r\r\n\r\n-\r" CLOSE,
        "PART name=a\nDATA 1\\x0d\\x0a--AaB03 2\\x0d\\x0a-3\\x0d\\x0a--4\\x0d5\\x0d\\x0d\\x0a"
        "6--AaB03x7 AaB03x\\x0a--AaB03x\\x0d--AaB03x\\x0d\\x0d\\x0d\\x0d\\x0a--AaB03\\x0d\\x0a"
        "--AaB0\\x0d\\x0a--A\\x0d\\x0a--\\x0d\\x0a-\\x0d\\x0a\\x0d\\x0d\\x0a\\x0d\\x0a-\\x0d\n"
        "END\nDONE\nFINISH 0\n");
    /* data ending in a prefix of the delimiter, right before the real one */
    EXPECT(D CD("a") "\r\nabc\r\n--AaB03\r\n--AaB03x--", "PART name=a\nDATA abc\\x0d\\x0a--AaB03\n"
                                                         "END\nDONE\nFINISH 0\n");
    EXPECT(D CD("a") "\r\nabc\r" CLOSE, "PART name=a\nDATA abc\\x0d\nEND\nDONE\nFINISH 0\n");
    EXPECT(D CD("a") "\r\n\r" CLOSE, "PART name=a\nDATA \\x0d\nEND\nDONE\nFINISH 0\n");
    /* "--AaB03x" in the data without CR before it is data */
    EXPECT(D CD("a") "\r\n--AaB03x--\n--AaB03x\r\n" CLOSE,
           "PART name=a\nDATA --AaB03x--\\x0a--AaB03x\\x0d\\x0a\nEND\nDONE\nFINISH 0\n");
    /* a one-character boundary */
    g_boundary = "-";
    EXPECT("---\r\n" CD("a") "\r\n\r\n--\r\n-\r\n-- \r\n---\r\n" CD("b") "\r\nz\r\n-----",
           "PART name=a\nDATA \\x0d\\x0a--\\x0d\\x0a-\\x0d\\x0a-- \nEND\n"
           "PART name=b\nDATA z\nEND\nDONE\nFINISH 0\n");
    g_boundary = "AaB03x";
}

/* Near misses of the delimiter and the delimiter itself at every offset of the scan's 16-byte
 * blocks and of the input's last bytes (where the SSE2 scan hands over to memchr). */
static void test_scan_offsets(void) {
    static const char noise[] = "ab\r\n--AaB03\r\n-x\rc\r\n--AaB0y\r\r\n\n-\r\n--";
    const size_t nn = sizeof(noise) - 1;
    for (size_t len = 0; len <= 48; len++) {
        char body[256];
        char data[64];
        for (size_t i = 0; i < len; i++)
            data[i] = noise[(i + len) % nn];
        const char *pre = D CD("a") "\r\n";
        size_t n = strlen(pre);
        memcpy(body, pre, n);
        memcpy(body + n, data, len);
        n += len;
        memcpy(body + n, CLOSE, strlen(CLOSE));
        n += strlen(CLOSE);
        tr_t w = {0};
        tr_str(&w, "PART name=a\n");
        if (len) {
            tr_str(&w, "DATA ");
            tr_esc(&w, data, len);
            tr_str(&w, "\n");
        }
        tr_str(&w, "END\nDONE\nFINISH 0\n");
        expect_at(body, n, w.s, __LINE__);
        tr_free(&w);
    }
}

static void test_preamble_epilogue(void) {
    /* clang-format off */
    EXPECT("This is the preamble.\r\nIt is ignored.\r\n--AaB03x\r\n" CD("a") "\r\nv" CLOSE
           "This is the epilogue.\r\n--AaB03x\r\nContent-Disposition: junk\r\n\r\n\0\xff",
           "PART name=a\nDATA v\nEND\nDONE\nFINISH 0\n");
    /* clang-format on */
    /* near-boundaries in the preamble: not at a line start, prefixes, LF only */
    EXPECT("x--AaB03x\r\n\r\n--AaB03\r\n-\n--AaB03x\r\r\n--AaB03x\r\n" CD("a") "\r\nv" CLOSE,
           "PART name=a\nDATA v\nEND\nDONE\nFINISH 0\n");
    /* a preamble that is only CRLF */
    EXPECT("\r\n--AaB03x\r\n" CD("a") "\r\nv" CLOSE, "PART name=a\nDATA v\nEND\nDONE\nFINISH 0\n");
    /* transport padding after boundaries (RFC 2046 5.1.1) */
    EXPECT("--AaB03x \t \r\n" CD("a") "\r\nv\r\n--AaB03x\t\r\n" CD("b") "\r\nw\r\n--AaB03x-- \r\n",
           "PART name=a\nDATA v\nEND\nPART name=b\nDATA w\nEND\nDONE\nFINISH 0\n");
}

static void test_truncated(void) {
    EXPECT("", "FINISH -400\n");
    EXPECT("preamble only", "FINISH -400\n");
    EXPECT("--AaB03", "FINISH -400\n");
    EXPECT("--AaB03x", "FINISH -400\n");
    EXPECT("--AaB03x\r\n", "FINISH -400\n");
    EXPECT("--AaB03x-", "FINISH -400\n");
    EXPECT("--AaB03x\r\nContent-Disp", "FINISH -400\n");
    EXPECT(D CD("a") "\r", "FINISH -400\n");
    EXPECT(D CD("a") "\r\n", "PART name=a\nFINISH -400\n");
    EXPECT(D CD("a") "\r\nsome data", "PART name=a\nDATA some data\nFINISH -400\n");
    /* the held-back prefix is never reported: the body may still have been a delimiter */
    EXPECT(D CD("a") "\r\ndata\r\n--AaB03", "PART name=a\nDATA data\nFINISH -400\n");
    EXPECT(D CD("a") "\r\ndata\r\n--AaB03x", "PART name=a\nDATA data\nEND\nFINISH -400\n");
    EXPECT(D CD("a") "\r\ndata\r\n--AaB03x-", "PART name=a\nDATA data\nEND\nFINISH -400\n");
    EXPECT(D CD("a") "\r\ndata\r\n--AaB03x\r\n", "PART name=a\nDATA data\nEND\nFINISH -400\n");
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

static void test_delimiter_errors(void) {
    EXPECT("--AaB03xZ\r\n", "ERR -400\n");    /* boundary as a line prefix */
    EXPECT("--AaB03x \tZ\r\n", "ERR -400\n"); /* junk after padding */
    EXPECT("--AaB03x\rZ", "ERR -400\n");      /* bare CR */
    EXPECT("--AaB03x\n", "ERR -400\n");       /* bare LF */
    EXPECT("--AaB03x --\r\n", "ERR -400\n");  /* padding before the close "--" */
    EXPECT("--AaB03x-Z", "ERR -400\n");       /* half a close delimiter */
    EXPECT("\r\n--AaB03x-\r\n", "ERR -400\n");
    EXPECT(D CD("a") "\r\nv\r\n--AaB03xY\r\n", "PART name=a\nDATA v\nEND\nERR -400\n");
    EXPECT(D CD("a") "\r\nv\r\n--AaB03x\r\r\n", "PART name=a\nDATA v\nEND\nERR -400\n");
    EXPECT(D CD("a") "\r\nv\r\n--AaB03x---", "PART name=a\nDATA v\nEND\nDONE\nFINISH 0\n");
}

static void test_header_errors(void) {
    /* the header line grammar */
    EXPECT(D "Content-Disposition: form-data; name=a\n\r\nv" CLOSE, "ERR -400\n");     /* bare LF */
    EXPECT(D "Content-Disposition: form-data; name=a\r\n\nv" CLOSE, "ERR -400\n");     /* bare LF */
    EXPECT(D "Content-Disposition: form-data; name=a\rX\r\n\r\n" CLOSE, "ERR -400\n"); /* CR */
    EXPECT(D CD("a") "\rX\r\n" CLOSE, "ERR -400\n");                /* CR on the blank line */
    EXPECT(D CD("a") "X-A: a\0b\r\n\r\nv" CLOSE, "ERR -400\n");     /* NUL */
    EXPECT(D CD("a") "X-A: a\x7f\r\n\r\nv" CLOSE, "ERR -400\n");    /* DEL */
    EXPECT(D CD("a") "X-A: a\x1b\r\n\r\nv" CLOSE, "ERR -400\n");    /* ESC */
    EXPECT(D CD("a") "X-A: a\r\n b\r\n\r\nv" CLOSE, "ERR -400\n");  /* obs-fold */
    EXPECT(D CD("a") "X-A: a\r\n\tb\r\n\r\nv" CLOSE, "ERR -400\n"); /* obs-fold */
    EXPECT(D " " CD("a") "\r\nv" CLOSE, "ERR -400\n");              /* leading space */
    EXPECT(D CD("a") "X-A : a\r\n\r\nv" CLOSE, "ERR -400\n");       /* space before ':' */
    EXPECT(D CD("a") ": a\r\n\r\nv" CLOSE, "ERR -400\n");           /* empty name */
    EXPECT(D CD("a") "X(A): a\r\n\r\nv" CLOSE, "ERR -400\n");       /* not a token */
    EXPECT(D CD("a") "no colon\r\n\r\nv" CLOSE, "ERR -400\n");
    /* Content-Disposition and Content-Type */
    EXPECT(D "\r\nv" CLOSE, "ERR -400\n"); /* no headers at all */
    EXPECT(D "Content-Type: text/plain\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: attachment; name=a\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-datax; name=a\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: name=a\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; filename=a\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=a; name=b\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=a; NAME=a\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=a; filename=x; filename=y\r\n\r\nv" CLOSE,
           "ERR -400\n");
    EXPECT(D CD("a") CD("a") "\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D CD("a") "Content-Type: a\r\ncontent-type: a\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=\"a\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=\"a\\\"\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=a;\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=a b\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=a@b\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=\"a\"b\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data name=a\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data;; name=a\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; =a; name=a\r\n\r\nv" CLOSE, "ERR -400\n");
    EXPECT(D "Content-Disposition: ; name=a\r\n\r\nv" CLOSE, "ERR -400\n");
    /* the second part is bad: the first one's events come first */
    EXPECT(D CD("a") "\r\nv" CRD "Content-Disposition: form-data\r\n\r\nw" CLOSE,
           "PART name=a\nDATA v\nEND\nERR -400\n");
}

static void test_limits(void) {
    /* 40 + 24 = 64 bytes of header block */
    static const char hdr64[] = "Content-Disposition: form-data; name=a\r\n"
                                "X: 0123456789012345678\r\n";
    CHECK(sizeof(hdr64) - 1 == 64, "hdr64 is %zu", sizeof(hdr64) - 1);
    mx_mp_limits_t lim = {64, 0};
    g_lim = &lim;
    EXPECT(D "Content-Disposition: form-data; name=a\r\nX: 0123456789012345678\r\n\r\nv" CLOSE,
           "PART name=a\nDATA v\nEND\nDONE\nFINISH 0\n");
    EXPECT(D "Content-Disposition: form-data; name=a\r\nX: 01234567890123456789\r\n\r\nv" CLOSE,
           "ERR -431\n");
    /* the limit is per part; a bad byte after the limit is still a 431 */
    EXPECT(D "Content-Disposition: form-data; name=a\r\nX: 0123456789012345678\r\n\r\nv" CRD
             "Content-Disposition: form-data; name=b\r\nX: 0123456789012345678\r\n\r\nw" CLOSE,
           "PART name=a\nDATA v\nEND\nPART name=b\nDATA w\nEND\nDONE\nFINISH 0\n");
    EXPECT(D "Content-Disposition: form-data; name=a\r\nX: 0123456789012345678\r\n\0" CLOSE,
           "ERR -400\n");
    EXPECT(D "Content-Disposition: form-data; name=a\r\nX: 0123456789012345678\r\nY\0" CLOSE,
           "ERR -431\n");
    lim.max_part_headers = 0;
    lim.max_parts = 2;
    EXPECT(D CD("a") "\r\nv" CRD CD("b") "\r\nw" CLOSE,
           "PART name=a\nDATA v\nEND\nPART name=b\nDATA w\nEND\nDONE\nFINISH 0\n");
    EXPECT(D CD("a") "\r\nv" CRD CD("b") "\r\nw" CRD CD("c") "\r\nx" CLOSE,
           "PART name=a\nDATA v\nEND\nPART name=b\nDATA w\nEND\nERR -413\n");
    lim.max_parts = 1;
    EXPECT("--AaB03x--", "DONE\nFINISH 0\n");
    g_lim = NULL;

    /* the default header limit: 8192 bytes pass, 8193 do not */
    static char big[9000];
    size_t n = 0;
    n += (size_t)sprintf(big + n, D "Content-Disposition: form-data; name=big\r\nX: ");
    size_t hstart = strlen(D);
    size_t fill = hstart + 8192 - 2 - n; /* the value fills the block to 8192 with its CRLF */
    memset(big + n, 'v', fill);
    n += fill;
    n += (size_t)sprintf(big + n, "\r\n\r\nv" CLOSE);
    tr_t t = {0};
    run_cuts(big, n, NULL, 0, &t, __LINE__);
    CHECK(strstr(t.s, "PART name=big\nDATA v\nEND\nDONE\nFINISH 0\n") != NULL, "8192: %s", t.s);
    tr_free(&t);
    memmove(big + hstart + 44, big + hstart + 43, n - hstart - 43);
    n++;
    run_cuts(big, n, NULL, 0, &t, __LINE__);
    CHECK(strcmp(t.s, "ERR -431\n") == 0, "8193: %s", t.s);
    tr_free(&t);
}

/* A body mixing every feature, split every way (three-way splits included). */
static void test_mixed_splits(void) {
    g_all_pairs = 1;
    /* clang-format off */
    EXPECT("pre\r\n--AaB03x \r\n" CD("a") "\r\n\r\n--AaB0\r" CRD
           "Content-Disposition: form-data; name=f; filename*=UTF-8''%C3%A9\r\n"
           "Content-Type: x/y\r\n\r\n\r\r\n-" CRD CD("e") "\r\n" CLOSE "epi",
           "PART name=a\nDATA \\x0d\\x0a--AaB0\\x0d\nEND\nPART name=f filename=\\xc3\\xa9 "
           "ct=x/y\nDATA \\x0d\\x0d\\x0a-\nEND\nPART name=e\nEND\nDONE\nFINISH 0\n");
    /* clang-format on */
    g_all_pairs = 0;
}

/* ---------------------------------------------------------------------------------------------
 * A 10 MB part streamed through in constant memory
 * ------------------------------------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const char *d, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)d[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void test_stream_10mb(void) {
    const char *bd = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    char delim[80];
    size_t dl = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", bd);
    const size_t size = 10u << 20;
    char *data = malloc(size);
    CHECK(data != NULL, "malloc");
    if (!data)
        return;
    /* random bytes, with CR and LF frequent, and every prefix of the delimiter sprinkled in,
     * each broken just before it would complete */
    g_rng = 12345;
    for (size_t i = 0; i < size; i++) {
        uint32_t r = rnd();
        data[i] = (r & 7) == 0 ? '\r' : (r & 7) == 1 ? '\n' : (char)(r >> 8);
    }
    for (size_t i = 0; i + dl < size; i += 100 + rnd() % 4000) {
        size_t k = 1 + rnd() % (dl - 1);
        memcpy(data + i, delim, k);
        data[i + k] = delim[k] == 'X' ? 'Y' : 'X';
    }
    CHECK(memmem(data, size, delim, dl) == NULL, "no delimiter in the data");
    uint64_t want = fnv(1469598103934665603ull, data, size);

    char head[256], tail[80];
    size_t hl = (size_t)snprintf(head, sizeof(head),
                                 "--%s\r\nContent-Disposition: form-data; name=\"file\"; "
                                 "filename=\"big.bin\"\r\nContent-Type: application/octet-stream"
                                 "\r\n\r\n",
                                 bd);
    size_t tl = (size_t)snprintf(tail, sizeof(tail), "\r\n--%s--\r\n", bd);

    mx_mp_t p;
    CHECK(mx_mp_init(&p, bd, strlen(bd), NULL) == 0, "init");
    uint64_t h = 1469598103934665603ull;
    size_t got = 0, events = 0, parts = 0, ends = 0, done = 0, bad_ptr = 0, max_held = 0;
    size_t pos = 0, total = hl + size + tl;
    clock_t t0 = clock();
    while (pos < total) {
        /* pieces of 1..128 KiB, some tiny, cut anywhere (headers and tail included) */
        uint32_t r = rnd();
        size_t piece = (r & 15) == 0 ? 1 + (r >> 4) % 16 : 1 + (r >> 4) % (128 << 10);
        if (piece > total - pos)
            piece = total - pos;
        char *buf = malloc(piece);
        for (size_t i = 0; i < piece; i++) {
            size_t o = pos + i;
            buf[i] = o < hl ? head[o] : o < hl + size ? data[o - hl] : tail[o - hl - size];
        }
        size_t off = 0;
        for (;;) {
            mx_mp_event_t ev;
            size_t used;
            int rc = mx_mp_next(&p, buf + off, piece - off, &used, &ev);
            if (rc < 0) {
                CHECK(0, "error %d at %zu", rc, pos + off);
                break;
            }
            events++;
            if (rc == MX_MP_DATA) {
                int in_input = ev.data >= buf && ev.data + ev.len <= buf + piece;
                int in_parser =
                    ev.data >= (const char *)&p && ev.data + ev.len <= (const char *)(&p + 1);
                bad_ptr += !(in_input || in_parser);
                h = fnv(h, ev.data, ev.len);
                got += ev.len;
            }
            parts += rc == MX_MP_PART;
            ends += rc == MX_MP_PART_END;
            done += rc == MX_MP_DONE;
            off += used;
            if (p.match > max_held)
                max_held = p.match;
            if (rc == MX_MP_NEED_MORE || rc == MX_MP_DONE || (off == piece && rc != MX_MP_DATA))
                break;
        }
        free(buf);
        pos += piece;
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(got == size && h == want, "10 MB: got %zu bytes, hash %s", got,
          h == want ? "ok" : "differs");
    CHECK(parts == 1 && ends == 1 && done == 1, "10 MB: parts %zu ends %zu done %zu", parts, ends,
          done);
    CHECK(bad_ptr == 0, "10 MB: %zu DATA events pointed elsewhere", bad_ptr);
    CHECK(max_held < dl, "10 MB: held back %zu", max_held);
    CHECK(mx_mp_finish(&p) == 0, "10 MB: finish");
    mx_mp_free(&p);
    free(data);
    printf("  10 MB streamed: %zu events, %.0f MB/s (ASan build), parser state %zu bytes + %d "
           "header buffer\n",
           events, secs > 0 ? 10.0 / secs : 0.0, sizeof(mx_mp_t),
           2 * MX_MP_DEFAULT_MAX_PART_HEADERS);
}

int main(void) {
    test_boundary();
    test_init();
    test_simple();
    test_file_part();
    test_filename_star();
    test_empty_parts();
    test_near_boundaries();
    test_scan_offsets();
    test_preamble_epilogue();
    test_truncated();
    test_delimiter_errors();
    test_header_errors();
    test_limits();
    test_mixed_splits();
    test_stream_10mb();
    return harness_summary("multipart");
}
