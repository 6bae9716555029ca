/*
 * test_utf8.c: unit tests of the incremental UTF-8 validator (utf8.c): RFC 3629 vectors fed
 * whole (from a guarded copy, harness.h) and byte by byte, where each rejection must come at the
 * exact byte that decides it, and an exhaustive sweep of short strings against a reference
 * decoder, each also fed in two pieces.
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "utf8.h"

/* ---------------------------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------------------------- */

/* A straightforward reference: decodes each sequence and checks its range (RFC 3629). */
static int ref_utf8(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t c = p[i], cp, min;
        int k;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i - 1 < (size_t)k)
            return 0;
        for (int j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += (size_t)k + 1;
    }
    return 1;
}

/* Feeds s byte by byte and returns the index of the byte that was rejected, -1 if none; *complete
 * gets mx_utf8_complete at the end. */
static int utf8_fail_at(const char *s, size_t n, int *complete) {
    mx_utf8_t v;
    mx_utf8_init(&v);
    for (size_t i = 0; i < n; i++) {
        if (mx_utf8_feed(&v, (const uint8_t *)s + i, 1) < 0) {
            *complete = mx_utf8_complete(&v);
            return (int)i;
        }
    }
    *complete = mx_utf8_complete(&v);
    return -1;
}

static void utf8_case(const char *s, size_t n, int fail_at, int complete, int line) {
    int c;
    int at = utf8_fail_at(s, n, &c);
    guarded_t g;
    const uint8_t *gp = (const uint8_t *)guard_copy(&g, s, n);
    mx_utf8_t v;
    mx_utf8_init(&v);
    int whole = mx_utf8_feed(&v, gp, n);
    int wc = mx_utf8_complete(&v);
    int valid = mx_utf8_valid(gp, n);
    guard_free(&g);
    report(at == fail_at && c == complete && whole == (fail_at < 0 ? 0 : -1) && wc == complete &&
               valid == (fail_at < 0 && complete) && valid == ref_utf8((const uint8_t *)s, n),
           line, "utf8 case: fails at %d (want %d), complete %d (want %d), whole %d/%d", at,
           fail_at, c, complete, whole, wc);
}

#define UTF8_OK(s) utf8_case((s), sizeof(s) - 1, -1, 1, __LINE__)
#define UTF8_BAD(s, at) utf8_case((s), sizeof(s) - 1, (at), 0, __LINE__)
#define UTF8_OPEN(s) utf8_case((s), sizeof(s) - 1, -1, 0, __LINE__)

static void test_utf8_vectors(void) {
    /* Markus Kuhn's UTF-8 decoder capability and stress test, the parts that matter here. */
    UTF8_OK("");
    UTF8_OK("Hello, world");
    UTF8_OK("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"); /* 1: "kosme" in Greek */
    UTF8_OK("\x00");                                         /* 2.1.1 U+0000 */
    UTF8_OK("\xc2\x80");                                     /* 2.1.2 U+0080 */
    UTF8_OK("\xe0\xa0\x80");                                 /* 2.1.3 U+0800 */
    UTF8_OK("\xf0\x90\x80\x80");                             /* 2.1.4 U+10000 */
    UTF8_OK("\x7f");                                         /* 2.2.1 U+007F */
    UTF8_OK("\xdf\xbf");                                     /* 2.2.2 U+07FF */
    UTF8_OK("\xef\xbf\xbf");                                 /* 2.2.3 U+FFFF */
    UTF8_OK("\xf4\x8f\xbf\xbf");                             /* 2.3.5 U+10FFFF */
    UTF8_OK("\xed\x9f\xbf");                                 /* 2.3.1 U+D7FF */
    UTF8_OK("\xee\x80\x80");                                 /* 2.3.2 U+E000 */
    UTF8_OK("\xef\xbf\xbd");                                 /* 2.3.3 U+FFFD */
    UTF8_OK("\xef\xbb\xbf");                                 /* BOM */
    UTF8_OK("\xf0\x9f\x98\x80 \xf0\x9f\x98\x80");            /* emoji */
    UTF8_OK("\xef\xb7\x90\xef\xbf\xbe");                     /* 5.3 noncharacters are valid */
    /* 2.2.4-2.2.6, 3.x: beyond U+10FFFF, 5- and 6-byte forms, stray bytes. */
    UTF8_BAD("\xf7\xbf\xbf\xbf", 0);
    UTF8_BAD("\xf4\x90\x80\x80", 1); /* U+110000: decided at the second byte */
    UTF8_BAD("\xf5\x80\x80\x80", 0);
    UTF8_BAD("\xf8\x88\x80\x80\x80", 0);
    UTF8_BAD("\xfc\x84\x80\x80\x80\x80", 0);
    UTF8_BAD("\x80", 0); /* 3.1.1 first continuation byte */
    UTF8_BAD("\xbf", 0);
    UTF8_BAD("a\x80\xbf", 1);
    UTF8_BAD("\xc0 ", 0); /* 3.2 lonely start characters */
    UTF8_BAD("\xe0 ", 1);
    UTF8_BAD("\xf0 ", 1);
    UTF8_BAD("\xfe", 0); /* 3.5 impossible bytes */
    UTF8_BAD("\xff", 0);
    UTF8_BAD("\xfe\xfe\xff\xff", 0);
    /* 3.3 sequences with the last continuation byte missing, then ASCII. */
    UTF8_BAD("\xc2" "A", 1);
    UTF8_BAD("\xe0\xa0" "A", 2);
    UTF8_BAD("\xf0\x90\x80" "A", 3);
    UTF8_BAD("\xdf\xef\xbf\xbf", 1);
    /* Truncated at the end: nothing wrong yet, but not complete. */
    UTF8_OPEN("\xc2");
    UTF8_OPEN("\xe0\xa0");
    UTF8_OPEN("\xf0\x90\x80");
    UTF8_OPEN("\xf4\x8f\xbf");
    UTF8_OPEN("abc\xe2\x82");
    /* 4.1-4.3 overlong forms, including of "/" and of NUL. */
    UTF8_BAD("\xc0\xaf", 0);
    UTF8_BAD("\xe0\x80\xaf", 1);
    UTF8_BAD("\xf0\x80\x80\xaf", 1);
    UTF8_BAD("\xc1\xbf", 0);
    UTF8_BAD("\xe0\x9f\xbf", 1);
    UTF8_BAD("\xf0\x8f\xbf\xbf", 1);
    UTF8_BAD("\xc0\x80", 0);
    UTF8_BAD("\xe0\x80\x80", 1);
    UTF8_BAD("\xf0\x80\x80\x80", 1);
    /* 5.1-5.2 surrogates, single and paired. */
    UTF8_BAD("\xed\xa0\x80", 1);
    UTF8_BAD("\xed\xad\xbf", 1);
    UTF8_BAD("\xed\xbf\xbf", 1);
    UTF8_BAD("\xed\xa0\x80\xed\xb0\x80", 1);
    UTF8_BAD("ok \xed\xb0\x80", 4);
    /* The fast path: a bad byte at every position after ASCII runs of every alignment. */
    for (size_t pre = 0; pre < 40; pre++) {
        char buf[64];
        memset(buf, 'a', sizeof buf);
        buf[pre] = (char)0xC0;
        int c;
        CHECK(utf8_fail_at(buf, sizeof buf, &c) == (int)pre, "fast path at %zu", pre);
        mx_utf8_t v;
        mx_utf8_init(&v);
        CHECK(mx_utf8_feed(&v, (const uint8_t *)buf, sizeof buf) == -1, "fast path whole %zu",
              pre);
        CHECK(mx_utf8_feed(&v, (const uint8_t *)"a", 1) == -1, "sticky");
        buf[pre] = (char)0xC3;
        buf[pre + 1] = (char)0xA9;
        CHECK(mx_utf8_valid((const uint8_t *)buf, sizeof buf), "valid after %zu", pre);
    }
}

/* Every 1- and 2-byte string, every 3-byte string starting at 0xC0 or above, and 4-byte strings
 * over a set of interesting bytes, against the reference decoder; each also fed in two pieces. */
static void test_utf8_exhaustive(void) {
    static const uint8_t interesting[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
                                          0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec,
                                          0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5,
                                          0xf7, 0xf8, 0xfe, 0xff};
    size_t ni = sizeof interesting;
    long bad = 0, n = 0;
    uint8_t s[4];
    for (int a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        bad += mx_utf8_valid(s, 1) != ref_utf8(s, 1);
        for (int b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            bad += mx_utf8_valid(s, 2) != ref_utf8(s, 2);
            n += 2;
            if (a < 0xC0)
                continue;
            for (int c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                int want = ref_utf8(s, 3);
                mx_utf8_t v;
                mx_utf8_init(&v);
                int split = mx_utf8_feed(&v, s, 1) == 0 && mx_utf8_feed(&v, s + 1, 2) == 0 &&
                            mx_utf8_complete(&v);
                bad += mx_utf8_valid(s, 3) != want || split != want;
                n++;
            }
        }
    }
    for (size_t a = 0; a < ni; a++)
        for (size_t b = 0; b < ni; b++)
            for (size_t c = 0; c < ni; c++)
                for (size_t d = 0; d < ni; d++) {
                    s[0] = interesting[a], s[1] = interesting[b];
                    s[2] = interesting[c], s[3] = interesting[d];
                    int want = ref_utf8(s, 4);
                    mx_utf8_t v;
                    mx_utf8_init(&v);
                    int split = mx_utf8_feed(&v, s, 2) == 0 && mx_utf8_feed(&v, s + 2, 2) == 0 &&
                                mx_utf8_complete(&v);
                    bad += mx_utf8_valid(s, 4) != want || split != want;
                    n++;
                }
    CHECK(bad == 0, "%ld of %ld strings disagree with the reference decoder", bad, n);
    /* Every 4-byte sequence that starts F0..F4 with continuation bytes: valid exactly in range. */
    bad = 0;
    for (int a = 0xF0; a <= 0xF4; a++)
        for (int b = 0x80; b <= 0xBF; b++)
            for (int c = 0x80; c <= 0xBF; c += 7)
                for (int d = 0x80; d <= 0xBF; d += 5) {
                    s[0] = (uint8_t)a, s[1] = (uint8_t)b, s[2] = (uint8_t)c, s[3] = (uint8_t)d;
                    bad += mx_utf8_valid(s, 4) != ref_utf8(s, 4);
                }
    CHECK(bad == 0, "4-byte sweep: %ld disagree", bad);
}

int main(void) {
    test_utf8_vectors();
    test_utf8_exhaustive();
    return harness_summary("utf8");
}
