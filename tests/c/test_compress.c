/*
 * test_compress.c: unit tests for csrc/core/compress.c. Round-trips both codings through zlib's
 * inflate, and runs tables of Accept-Encoding values and Content-Types. Every parser input is
 * placed against a guard page (harness.h) so a read past its end crashes the test.
 *   make build/c/test_compress && ./build/c/test_compress
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "compress.h"
#include "harness.h"

/* ---- Accept-Encoding --------------------------------------------------------------------- */

#define N MX_ENC_NONE
#define G MX_ENC_GZIP
#define D MX_ENC_DEFLATE

static const struct {
    const char *value;
    size_t len; /* 0: strlen(value); set for inputs holding a NUL */
    int want;
} ae_cases[] = {
    {"gzip", 0, G},
    {"gzip;q=1", 0, G},
    {"gzip;q=0, deflate", 0, D},
    {"*;q=0.5, gzip;q=0", 0, D},
    {"deflate, gzip", 0, G}, /* a tie goes to gzip, whatever the order */
    {"GZIP", 0, G},
    {"Deflate", 0, D},
    {"x-gzip", 0, G},
    {"X-GZIP;q=0.5, deflate;q=0.4", 0, G},
    {"br", 0, N},
    {"", 0, N},
    {"identity", 0, N},
    {"identity;q=1, *;q=0", 0, N},
    {"gzip;q=0.000", 0, N},
    {"gzip;q=0", 0, N},
    {"gzip;q=1.0001", 0, N}, /* malformed q: the element is ignored... */
    {"gzip;q=1.0001, deflate", 0, D}, /* ...but not the rest of the header */
    {"*", 0, G},
    {"*;q=0", 0, N},
    {"*;q=0.1, deflate;q=0", 0, G},
    {"deflate, *;q=0", 0, D},
    {"gzip;q=0, deflate;q=0, *", 0, N}, /* "*" covers only codings not named */
    {"br;q=1, gzip;q=0.1", 0, G},
    {"gzip, deflate, br, zstd", 0, G},
    {"gzip;q=0.5, deflate;q=0.8", 0, D},
    {"gzip;q=0.8, deflate;q=0.8", 0, G},
    {"deflate;q=1.000, gzip;q=0.999", 0, D},
    {"gzip;q=0.001", 0, G},
    {"gzip;q=0.01", 0, G},
    {"gzip;q=0.1, deflate;q=0.10", 0, G},
    {"gzip;q=0.5, deflate;q=0.50", 0, G},
    {"gzip;q=0.499, deflate;q=0.5", 0, D},
    /* whitespace where RFC 9110 allows OWS */
    {"gzip; q=0.5", 0, G},
    {"gzip ;q=0.5", 0, G},
    {"gzip\t;\tq=0.5", 0, G},
    {"  gzip  ", 0, G},
    {"gzip;q=0.5 , deflate;q=0.4", 0, G},
    {", , gzip ,,", 0, G},
    {",", 0, N},
    {"gzip;Q=0.5", 0, G},
    /* qvalue grammar edges */
    {"gzip;q=1.", 0, G},
    {"gzip;q=1.000", 0, G},
    {"gzip;q=0.", 0, N},
    {"gzip;q=.5", 0, N},
    {"gzip;q=2", 0, N},
    {"gzip;q=0.5000", 0, N},
    {"gzip;q=-1", 0, N},
    {"gzip;q=", 0, N},
    {"gzip;q", 0, N},
    {"gzip;q=0.5x, deflate;q=0.1", 0, D},
    {"gzip;q=\"0.5\"", 0, N},
    {"gzip;q=1e0", 0, N},
    {"gzip;q = 0.5", 0, N},
    {"gzip;q=0.5;q=0.6", 0, N},
    /* other parameters are tolerated; a quoted comma does not end the element */
    {"gzip;level=9", 0, G},
    {"gzip;foo=\"a,b\";q=0, deflate", 0, D},
    {"gzip;foo=\"a\\\"b\", deflate;q=0.5", 0, G},
    {"gzip;foo=\"a,b, deflate", 0, N},
    {"gzip;foo=, deflate", 0, D},
    {"gzip;;q=1", 0, N},
    {"gzip;", 0, N},
    /* malformed elements */
    {"gzip deflate", 0, N},
    {"gzip/1, deflate;q=0.2", 0, D},
    {"\"gzip\"", 0, N},
    {";q=1", 0, N},
    {"gzip\0", 5, N},
    {"\0gzip", 5, N},
    {"gzip\r\n", 0, N},
    {"gzip, gzip;q=0", 0, G}, /* named twice: the higher weight counts */
    {"gzip;q=0, x-gzip;q=0.3", 0, G},
    /* truncations: every prefix of a header must be safe to read (checked by the guard page) */
    {"g", 0, N},
    {"gzip;", 0, N},
    {"gzip;q=0.", 0, N},
    {"deflate;q=0.9, gz", 0, D},
};

static void test_choose(void) {
    for (size_t k = 0; k < sizeof ae_cases / sizeof ae_cases[0]; k++) {
        size_t len = ae_cases[k].len ? ae_cases[k].len : strlen(ae_cases[k].value);
        guarded_t g;
        const char *s = guard_copy(&g, ae_cases[k].value, len);
        int got = mx_compress_choose(s, len);
        CHECK(got == ae_cases[k].want, "choose(\"%s\") = %d, want %d", ae_cases[k].value, got,
              ae_cases[k].want);
        guard_free(&g);
    }
    CHECK(mx_compress_choose(NULL, 0) == N, "choose(NULL)");

    /* Every prefix of a long, varied header: no crash, and only valid results. */
    const char *h = "gzip;q=0.5, deflate;q=0.8, br;q=\"x,y\";foo=bar, *;q=0.1, X-GZIP;Q=1.000";
    for (size_t n = 0; n <= strlen(h); n++) {
        guarded_t g;
        int got = mx_compress_choose(guard_copy(&g, h, n), n);
        CHECK(got == N || got == G || got == D, "prefix %zu gave %d", n, got);
        guard_free(&g);
    }
    guarded_t g;
    size_t hl = strlen(h);
    CHECK(mx_compress_choose(guard_copy(&g, h, hl), hl) == G, "full varied header");
    guard_free(&g);
}

/* ---- Content-Type ------------------------------------------------------------------------ */

static const struct {
    const char *type;
    int want;
} ct_cases[] = {
    {"text/html", 1},
    {"text/html; charset=utf-8", 1},
    {"text/html;charset=UTF-8", 1},
    {"TEXT/PLAIN", 1},
    {"text/css", 1},
    {"text/csv", 1},
    {"text/javascript", 1},
    {"  text/plain  ", 1},
    {"text/event-stream", 0},
    {"Text/Event-Stream; charset=utf-8", 0},
    {"application/json", 1},
    {"Application/JSON; charset=utf-8", 1},
    {"application/javascript", 1},
    {"application/ecmascript", 1},
    {"application/xml", 1},
    {"application/xhtml+xml", 1},
    {"application/rss+xml", 1},
    {"application/atom+xml", 1},
    {"application/ld+json", 1},
    {"application/manifest+json", 1},
    {"application/x-www-form-urlencoded", 1},
    {"application/wasm", 1},
    {"application/graphql", 1},
    {"application/problem+json", 1},
    {"application/vnd.api+json", 1},
    {"application/soap+XML", 1},
    {"image/svg+xml", 1},
    {"image/SVG+XML; charset=utf-8", 1},
    {"image/png", 0},
    {"image/jpeg", 0},
    {"image/webp", 0},
    {"application/octet-stream", 0},
    {"application/zip", 0},
    {"application/gzip", 0},
    {"application/pdf", 0},
    {"application/jsonx", 0},
    {"application/+json", 0},
    {"application/json+zip", 0},
    {"video/mp4", 0},
    {"audio/mpeg", 0},
    {"font/woff2", 0},
    {"multipart/form-data; boundary=x", 0},
    {"", 0},
    {"text", 0},
    {"text/", 0},
    {"/html", 0},
    {"text/plain garbage", 0},
    {"text /plain", 0},
    {"json", 0},
};

static void test_type_ok(void) {
    for (size_t k = 0; k < sizeof ct_cases / sizeof ct_cases[0]; k++) {
        size_t len = strlen(ct_cases[k].type);
        guarded_t g;
        int got = mx_compress_type_ok(guard_copy(&g, ct_cases[k].type, len), len);
        CHECK(got == ct_cases[k].want, "type_ok(\"%s\") = %d, want %d", ct_cases[k].type, got,
              ct_cases[k].want);
        guard_free(&g);
    }
    CHECK(mx_compress_type_ok(NULL, 0) == 0, "type_ok(NULL)");
    /* Every prefix of a type with parameters reads only inside its bounds. */
    const char *t = "application/vnd.api+json; charset=\"utf-8\"";
    for (size_t n = 0; n <= strlen(t); n++) {
        guarded_t g;
        int got = mx_compress_type_ok(guard_copy(&g, t, n), n);
        CHECK(got == 0 || got == 1, "type prefix %zu gave %d", n, got);
        guard_free(&g);
    }
}

/* ---- zlib round trips -------------------------------------------------------------------- */

/* Inflates in[0..len) with the given windowBits; returns the malloc'd result or NULL. */
static char *inflate_all(const char *in, size_t len, int window_bits, size_t expect_len,
                         size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, window_bits) != Z_OK)
        return NULL;
    char *out = malloc(expect_len + 1);
    if (out == NULL) {
        inflateEnd(&zs);
        return NULL;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)expect_len + 1; /* one spare byte catches output that is too long */
    int rc = inflate(&zs, Z_FINISH);
    int clean = rc == Z_STREAM_END && zs.avail_in == 0;
    *out_len = expect_len + 1 - zs.avail_out;
    inflateEnd(&zs);
    if (!clean) {
        free(out);
        return NULL;
    }
    return out;
}

static void round_trip(const char *what, const char *data, size_t len) {
    static const int encs[] = {MX_ENC_GZIP, MX_ENC_DEFLATE};
    static const int levels[] = {-1, 1, 6, 9};
    for (size_t e = 0; e < 2; e++) {
        for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
            int enc = encs[e], level = levels[l];
            char *z = NULL;
            size_t zlen = 0;
            int rc = mx_compress(enc, data, len, level, &z, &zlen);
            CHECK(rc == MX_OK && z != NULL, "%s enc %d level %d: rc %d", what, enc, level, rc);
            if (rc != MX_OK || z == NULL)
                continue;
            const unsigned char *u = (const unsigned char *)z;
            if (enc == MX_ENC_GZIP) {
                /* RFC 1952: magic 1f 8b, method 8 (deflate). */
                CHECK(zlen >= 18 && u[0] == 0x1f && u[1] == 0x8b && u[2] == 8,
                      "%s: gzip header", what);
            } else {
                /* RFC 1950: CM 8, a 32K window, and a header check that divides by 31. */
                CHECK(zlen >= 6 && (u[0] & 0x0f) == 8 && (u[0] >> 4) == 7 &&
                          ((u[0] << 8) | u[1]) % 31 == 0,
                      "%s: zlib header", what);
            }
            size_t got_len = 0;
            /* Inflate with the wrapper the coding promises, not zlib's auto-detect. */
            char *back = inflate_all(z, zlen, enc == MX_ENC_GZIP ? 31 : 15, len, &got_len);
            CHECK(back != NULL && got_len == len && (len == 0 || memcmp(back, data, len) == 0),
                  "%s enc %d level %d: round trip", what, enc, level);
            free(back);
            free(z);
        }
    }
}

static void test_compress(void) {
    round_trip("empty", "", 0);
    round_trip("NULL empty", NULL, 0);
    round_trip("short", "Hello, World!", 13);

    /* A big, repetitive text body (what compression is for) must shrink a lot. */
    size_t big_len = 256 * 1024;
    char *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++)
        big[i] = "{\"id\": 12345, \"name\": \"mummyx\", \"tags\": [\"a\", \"b\"]}\n"[i % 52];
    round_trip("repetitive 256K", big, big_len);
    char *z = NULL;
    size_t zlen = 0;
    CHECK(mx_compress(MX_ENC_GZIP, big, big_len, -1, &z, &zlen) == MX_OK && zlen < big_len / 50,
          "repetitive body shrinks: %zu -> %zu", big_len, zlen);
    free(z);

    /* Incompressible bytes still round-trip (the output may be slightly larger). */
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < big_len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32 */
        big[i] = (char)(x >> 24);
    }
    round_trip("random 256K", big, big_len);
    round_trip("random 1", big, 1);
    round_trip("random 860", big, MX_COMPRESS_MIN_LEN);
    free(big);

    /* Bad arguments are refused, and leave nothing to free. */
    z = NULL;
    CHECK(mx_compress(MX_ENC_NONE, "abc", 3, -1, &z, &zlen) == MX_EINVAL, "enc none");
    CHECK(mx_compress(7, "abc", 3, -1, &z, &zlen) == MX_EINVAL, "enc 7");
    CHECK(mx_compress(MX_ENC_GZIP, "abc", 3, 0, &z, &zlen) == MX_EINVAL, "level 0");
    CHECK(mx_compress(MX_ENC_GZIP, "abc", 3, 10, &z, &zlen) == MX_EINVAL, "level 10");
    CHECK(mx_compress(MX_ENC_GZIP, "abc", 3, -2, &z, &zlen) == MX_EINVAL, "level -2");
    CHECK(mx_compress(MX_ENC_GZIP, NULL, 3, -1, &z, &zlen) == MX_EINVAL, "NULL input");
    CHECK(mx_compress(MX_ENC_GZIP, "abc", 3, -1, NULL, &zlen) == MX_EINVAL, "NULL out");
    CHECK(mx_compress(MX_ENC_GZIP, "abc", 3, -1, &z, NULL) == MX_EINVAL, "NULL out_len");
    CHECK(z == NULL, "no output after a refusal");
}

int main(void) {
    test_choose();
    test_type_ok();
    test_compress();
    return harness_summary("compress");
}
