/*
 * test_ws_frame.c: unit tests of WebSocket frames (ws_frame.c): close codes, the frame reader
 * (with and without permessage-deflate) and the writers. The handshake helpers have
 * test_ws_handshake.c and the UTF-8 validator test_utf8.c.
 *
 * Reader input is fed from copies that end right before an unreadable page (harness.h), or from
 * exact-size heap copies for big inputs (ASan catches those over-reads), and every stream is fed
 * whole, byte by byte, and split at every point: all must give the same events and verdict.
 * Errors are also checked to fire exactly at the byte that decides them.
 */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "harness.h"
#include "ws.h"

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d}; /* the mask of RFC 6455 5.7 */

/* ---------------------------------------------------------------------------------------------
 * Building client frames
 * ------------------------------------------------------------------------------------------- */

/* A growable byte string for assembling streams of frames. */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes_t;

static void bput(bytes_t *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (b->p == NULL)
            abort();
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void bfree(bytes_t *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

#define FORM_SHORT 0 /* the shortest length form */
#define FORM_16 16   /* force a 16-bit length */
#define FORM_64 64   /* force a 64-bit length */

/* Appends a masked client frame: b0 is the first header byte (FIN, RSV, opcode) as sent. */
static void cframe_form(bytes_t *b, int b0, const void *payload, size_t len, int form) {
    uint8_t h[14];
    size_t n = 0;
    h[n++] = (uint8_t)b0;
    if (form == FORM_SHORT && len < 126) {
        h[n++] = (uint8_t)(0x80 | len);
    } else if (form != FORM_64 && len <= 0xFFFF) {
        h[n++] = 0x80 | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = 0x80 | 127;
        for (int k = 7; k >= 0; k--)
            h[n++] = (uint8_t)((uint64_t)len >> (8 * k));
    }
    memcpy(h + n, KEY, 4);
    n += 4;
    bput(b, h, n);
    size_t at = b->len;
    bput(b, payload, len);
    for (size_t i = 0; i < len; i++)
        b->p[at + i] ^= KEY[i & 3];
}

static void cframe(bytes_t *b, int b0, const void *payload, size_t len) {
    cframe_form(b, b0, payload, len, FORM_SHORT);
}

/* Appends a string payload frame. */
static void cframe_s(bytes_t *b, int b0, const char *s) { cframe(b, b0, s, strlen(s)); }

/* Turns a server frame (unmasked, as mx_ws_build_frame makes it) into the same frame as a
 * client would send it (masked). */
static void mask_server_frame(bytes_t *b, const uint8_t *f, size_t n) {
    size_t h = (f[1] & 0x7F) == 126 ? 4 : (f[1] & 0x7F) == 127 ? 10 : 2;
    uint8_t hdr[10];
    memcpy(hdr, f, h);
    hdr[1] |= 0x80;
    bput(b, hdr, h);
    bput(b, KEY, 4);
    size_t at = b->len;
    bput(b, f + h, n - h);
    for (size_t i = 0; i < n - h; i++)
        b->p[at + i] ^= KEY[i & 3];
}

/* ---------------------------------------------------------------------------------------------
 * Running the reader
 * ------------------------------------------------------------------------------------------- */

#define MAX_EVENTS 64

typedef struct got {
    int type, opcode, code;
    size_t len;
    uint8_t *data; /* a copy */
} got_t;

typedef struct run {
    int n;
    got_t ev[MAX_EVENTS];
    int err;         /* 0, or the negative code */
    size_t err_at;   /* for step 1: the index of the byte whose call failed */
    size_t peak_buf; /* the largest mx_ws_reader_buffered seen */
} run_t;

static void run_clear(run_t *r) {
    for (int i = 0; i < r->n; i++)
        free(r->ev[i].data);
    memset(r, 0, sizeof *r);
}

typedef struct cfg {
    size_t max;
    const mx_ws_deflate_params_t *deflate;
    int take; /* take message buffers with mx_ws_reader_take */
} cfg_t;

static int g_line; /* the test line that is running, for reports from helpers */

/*
 * A copy area that ends at an unreadable page, mapped once and reused for every piece up to its
 * size (thousands of pieces per stream make a fresh mapping each, as harness.h does, too slow).
 */
#define PIECE_AREA (64 * 1024)
static uint8_t *piece_area(const void *src, size_t n) {
    static guarded_t g;
    static int mapped;
    if (!mapped) {
        static uint8_t zero[PIECE_AREA];
        guard_copy(&g, zero, PIECE_AREA);
        mapped = 1;
    }
    uint8_t *dst = (uint8_t *)g.data + PIECE_AREA - n;
    if (n > 0)
        memcpy(dst, src, n);
    return dst;
}

/* Feeds one piece (a guarded or exact heap copy) until it is consumed or the reader fails. */
static int feed_piece(mx_ws_reader_t *rd, const cfg_t *c, run_t *out, const uint8_t *src,
                      size_t n) {
    uint8_t *copy;
    int guarded = n <= PIECE_AREA;
    if (guarded) {
        copy = piece_area(src, n);
    } else {
        copy = malloc(n);
        if (copy == NULL)
            abort();
        memcpy(copy, src, n);
    }
    size_t pos = 0;
    int rc = 0;
    do {
        mx_ws_event_t ev;
        ssize_t k = mx_ws_read(rd, copy + pos, n - pos, &ev);
        size_t buf = mx_ws_reader_buffered(rd);
        if (buf > out->peak_buf)
            out->peak_buf = buf;
        if (k < 0) {
            out->err = (int)k;
            rc = -1;
            break;
        }
        if ((size_t)k > n - pos || (ev.type == MX_WS_EV_NONE && (size_t)k != n - pos)) {
            report(0, g_line, "mx_ws_read consumed %zd of %zu, event %d", k, n - pos, ev.type);
            rc = -1;
            break;
        }
        pos += (size_t)k;
        if (ev.type != MX_WS_EV_NONE) {
            if (out->n == MAX_EVENTS) {
                report(0, g_line, "too many events");
                rc = -1;
                break;
            }
            got_t *e = &out->ev[out->n++];
            e->type = ev.type;
            e->opcode = ev.opcode;
            e->code = ev.close_code;
            e->len = ev.len;
            e->data = malloc(ev.len ? ev.len : 1);
            if (ev.data == NULL || e->data == NULL)
                abort();
            memcpy(e->data, ev.data, ev.len);
            if (c->take && ev.type == MX_WS_EV_MESSAGE) {
                size_t tl = 99;
                uint8_t *t = mx_ws_reader_take(rd, &tl);
                if ((ev.len == 0) != (t == NULL) || tl != ev.len ||
                    (t != NULL && memcmp(t, e->data, tl) != 0))
                    report(0, g_line, "take gave %p/%zu for a message of %zu", (void *)t, tl,
                           ev.len);
                size_t again = 5;
                if (mx_ws_reader_take(rd, &again) != NULL || again != 0)
                    report(0, g_line, "second take gave a buffer");
                free(t);
            }
        }
    } while (pos < n);
    if (!guarded)
        free(copy);
    return rc;
}

/* Feeds in[0..len) to a fresh reader in pieces of step bytes (0: whole), or when first > 0 in
 * two pieces split after byte first, and records the events and verdict. */
static void run_feed2(run_t *out, const cfg_t *c, const uint8_t *in, size_t len, size_t step,
                      size_t first) {
    memset(out, 0, sizeof *out);
    mx_ws_reader_t *rd = mx_ws_reader_new(c->max, c->deflate);
    if (rd == NULL)
        abort();
    size_t pos = 0;
    do {
        size_t n = len - pos;
        if (first > 0 && pos == 0 && n > first)
            n = first;
        else if (first == 0 && step != 0 && n > step)
            n = step;
        if (feed_piece(rd, c, out, in + pos, n) < 0) {
            out->err_at = pos + (n ? n - 1 : 0);
            break;
        }
        pos += n;
    } while (pos < len);
    if (out->err != 0) {
        /* Dead readers stay dead. */
        mx_ws_event_t ev;
        uint8_t x = 0x81;
        ssize_t again = mx_ws_read(rd, &x, 1, &ev);
        if (again != out->err || ev.type != MX_WS_EV_NONE)
            report(0, g_line, "dead reader returned %zd after %d", again, out->err);
    }
    mx_ws_reader_free(rd);
}

static void run_feed(run_t *out, const cfg_t *c, const uint8_t *in, size_t len, size_t step) {
    run_feed2(out, c, in, len, step, 0);
}

static int run_same(const run_t *a, const run_t *b) {
    if (a->n != b->n || a->err != b->err)
        return 0;
    for (int i = 0; i < a->n; i++) {
        const got_t *x = &a->ev[i], *y = &b->ev[i];
        if (x->type != y->type || x->opcode != y->opcode || x->code != y->code ||
            x->len != y->len || memcmp(x->data, y->data, x->len) != 0)
            return 0;
    }
    return 1;
}

/*
 * Feeds the stream whole (result in *whole), then byte by byte, in pieces of 2, 3, 7 and 1000,
 * and (for short streams) split in two at every point, with and without taking buffers; every
 * run must match the whole one. Returns 1 when all agreed.
 */
static int run_all(run_t *whole, const cfg_t *c0, const uint8_t *in, size_t len, int line) {
    static const size_t steps[] = {1, 2, 3, 7, 1000};
    cfg_t c = *c0;
    run_t other;
    int ok = 1;
    g_line = line;
    run_feed(whole, &c, in, len, 0);
    for (int take = 0; take < 2; take++) {
        c.take = take;
        for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
            if (steps[s] == 1 && len > 300000)
                continue;
            run_feed(&other, &c, in, len, steps[s]);
            if (!run_same(whole, &other)) {
                report(0, line, "step %zu take %d: %d events err %d, whole: %d events err %d",
                       steps[s], take, other.n, other.err, whole->n, whole->err);
                ok = 0;
            }
            run_clear(&other);
        }
    }
    if (len <= 600) {
        for (size_t k = 1; k < len; k++) {
            run_feed2(&other, &c, in, len, 0, k);
            if (!run_same(whole, &other)) {
                report(0, line, "split at %zu differs", k);
                ok = 0;
            }
            run_clear(&other);
        }
    }
    report(ok, line, "");
    return ok;
}

static int ev_is(const run_t *r, int i, int type, int opcode, const void *data, size_t len) {
    if (i >= r->n)
        return 0;
    const got_t *e = &r->ev[i];
    return e->type == type && e->opcode == opcode && e->len == len &&
           (len == 0 || memcmp(e->data, data, len) == 0);
}

static int ev_msg(const run_t *r, int i, int opcode, const char *s) {
    return ev_is(r, i, MX_WS_EV_MESSAGE, opcode, s, strlen(s));
}

/*
 * An invalid stream: the reader must accept in[0..at) without error and fail with err on
 * in[at]. Checked whole, byte by byte and split everywhere (run_all), and on the prefix.
 */
static void bad_at(const uint8_t *in, size_t len, size_t at, int err, size_t max,
                   const mx_ws_deflate_params_t *deflate, int line) {
    cfg_t c = {max, deflate, 0};
    run_t whole, pre, step1;
    run_all(&whole, &c, in, len, line);
    report(whole.err == err, line, "verdict %d, want %d", whole.err, err);
    g_line = line;
    run_feed(&pre, &c, in, at, 0);
    report(pre.err == 0, line, "prefix of %zu bytes already fails with %d", at, pre.err);
    run_feed(&step1, &c, in, len, 1);
    report(step1.err_at == at, line, "byte by byte fails at byte %zu, want %zu", step1.err_at, at);
    run_clear(&whole);
    run_clear(&pre);
    run_clear(&step1);
}

#define BAD_AT(b, at, err) bad_at((b)->p, (b)->len, (at), (err), 1 << 20, NULL, __LINE__)
#define BAD_AT_Z(b, at, err, z) bad_at((b)->p, (b)->len, (at), (err), 1 << 20, (z), __LINE__)

static const cfg_t PLAIN = {1 << 20, NULL, 0};

/* ---------------------------------------------------------------------------------------------
 * Close codes
 * ------------------------------------------------------------------------------------------- */

static void test_close_codes(void) {
    static const int ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                             1014, 3000, 3999, 4000, 4999};
    static const int no[] = {-1,   0,    999,  1004, 1005, 1006, 1015, 1016,
                             1100, 2000, 2999, 5000, 6000, 65535, 65536};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK(mx_ws_close_code_valid(ok[i]), "code %d should be valid", ok[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        CHECK(!mx_ws_close_code_valid(no[i]), "code %d should be invalid", no[i]);
}

/* ---------------------------------------------------------------------------------------------
 * Reader: valid streams
 * ------------------------------------------------------------------------------------------- */

static void test_rfc6455_examples(void) {
    run_t r;
    /* 5.7: a single-frame masked text message. */
    static const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f,
                                    0x9f, 0x4d, 0x51, 0x58};
    run_all(&r, &PLAIN, hello, sizeof hello, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && ev_msg(&r, 0, MX_WS_OP_TEXT, "Hello"), "masked Hello");
    run_clear(&r);

    /* 5.7: a fragmented unmasked text message, here masked: "Hel" then "lo". */
    bytes_t b = {0};
    cframe_s(&b, 0x01, "Hel");
    cframe_s(&b, 0x80, "lo");
    run_all(&r, &PLAIN, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && ev_msg(&r, 0, MX_WS_OP_TEXT, "Hello"), "fragmented Hello");
    run_clear(&r);
    bfree(&b);

    /* 5.7: ping with "Hello"; the masked pong of the RFC verbatim. */
    cframe_s(&b, 0x89, "Hello");
    static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f,
                                   0x9f, 0x4d, 0x51, 0x58};
    bput(&b, pong, sizeof pong);
    run_all(&r, &PLAIN, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 2 && ev_is(&r, 0, MX_WS_EV_PING, MX_WS_OP_PING, "Hello", 5) &&
              ev_is(&r, 1, MX_WS_EV_PONG, MX_WS_OP_PONG, "Hello", 5),
          "ping, pong");
    run_clear(&r);
    bfree(&b);

    /* 5.7: 256 bytes in one binary frame (16-bit length), 64 KiB (64-bit length). */
    uint8_t *big = malloc(65536);
    for (size_t i = 0; i < 65536; i++)
        big[i] = (uint8_t)(i * 7 + (i >> 8));
    cframe(&b, 0x82, big, 256);
    CHECK(b.p[1] == (0x80 | 126) && b.p[2] == 0x01 && b.p[3] == 0x00, "256: 16-bit length");
    run_all(&r, &PLAIN, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && ev_is(&r, 0, MX_WS_EV_MESSAGE, MX_WS_OP_BINARY, big, 256),
          "256 bytes");
    run_clear(&r);
    bfree(&b);
    cframe(&b, 0x82, big, 65536);
    CHECK(b.p[1] == (0x80 | 127) && b.p[7] == 0x01 && b.p[8] == 0 && b.p[9] == 0,
          "64 KiB: 64-bit length");
    run_all(&r, &PLAIN, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && ev_is(&r, 0, MX_WS_EV_MESSAGE, MX_WS_OP_BINARY, big, 65536),
          "64 KiB");
    run_clear(&r);
    bfree(&b);
    free(big);
}

static void test_reader_valid(void) {
    run_t r;
    bytes_t b = {0};

    /* Non-minimal lengths are accepted. */
    cframe_form(&b, 0x81, "Hello", 5, FORM_16);
    cframe_form(&b, 0x82, "Hello", 5, FORM_64);
    cframe_form(&b, 0x89, "", 0, FORM_SHORT);
    run_all(&r, &PLAIN, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 3 && ev_msg(&r, 0, MX_WS_OP_TEXT, "Hello") &&
              ev_msg(&r, 1, MX_WS_OP_BINARY, "Hello") &&
              ev_is(&r, 2, MX_WS_EV_PING, MX_WS_OP_PING, "", 0),
          "non-minimal lengths");
    run_clear(&r);
    bfree(&b);

    /* Fragments with control frames between them; a code point split across fragments; empty
     * fragments; empty messages of both kinds. */
    cframe_s(&b, 0x01, "caf\xc3");
    cframe_s(&b, 0x89, "p1");
    cframe_s(&b, 0x00, "");
    cframe_s(&b, 0x8A, "");
    cframe_s(&b, 0x00, "\xa9 \xe2\x82");
    cframe_s(&b, 0x80, "\xac");
    cframe_s(&b, 0x81, "");
    cframe_s(&b, 0x82, "");
    cframe_s(&b, 0x02, "");
    cframe_s(&b, 0x80, "");
    cframe(&b, 0x02, "\xff\xfe", 2);
    cframe_s(&b, 0x89, "p2");
    cframe(&b, 0x80, "\x00\xc0", 2);
    run_all(&r, &PLAIN, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 8, "interleaved: %d events err %d", r.n, r.err);
    CHECK(ev_is(&r, 0, MX_WS_EV_PING, MX_WS_OP_PING, "p1", 2), "ping 1");
    CHECK(ev_is(&r, 1, MX_WS_EV_PONG, MX_WS_OP_PONG, "", 0), "pong");
    CHECK(ev_msg(&r, 2, MX_WS_OP_TEXT, "caf\xc3\xa9 \xe2\x82\xac"), "text across fragments");
    CHECK(ev_msg(&r, 3, MX_WS_OP_TEXT, ""), "empty text");
    CHECK(ev_msg(&r, 4, MX_WS_OP_BINARY, ""), "empty binary");
    CHECK(ev_msg(&r, 5, MX_WS_OP_BINARY, ""), "empty fragmented binary");
    CHECK(ev_is(&r, 6, MX_WS_EV_PING, MX_WS_OP_PING, "p2", 2), "ping 2");
    CHECK(ev_is(&r, 7, MX_WS_EV_MESSAGE, MX_WS_OP_BINARY, "\xff\xfe\x00\xc0", 4),
          "binary is not UTF-8 checked");
    run_clear(&r);
    bfree(&b);

    /* Close: with code and reason, and anything after it is discarded. */
    static const char close1[] = "\x03\xe8" "bye \xe2\x82\xac";
    cframe(&b, 0x88, close1, sizeof close1 - 1);
    cframe_s(&b, 0x81, "ignored");
    bput(&b, "\xff\xff\xff", 3); /* garbage too */
    run_all(&r, &PLAIN, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && r.ev[0].type == MX_WS_EV_CLOSE && r.ev[0].code == 1000 &&
              r.ev[0].len == 7 && memcmp(r.ev[0].data, "bye \xe2\x82\xac", 7) == 0,
          "close with reason");
    run_clear(&r);
    bfree(&b);
    cframe_s(&b, 0x88, "");
    run_all(&r, &PLAIN, b.p, b.len, __LINE__);
    CHECK(r.n == 1 && r.ev[0].type == MX_WS_EV_CLOSE && r.ev[0].code == 1005 && r.ev[0].len == 0,
          "close without payload is 1005");
    run_clear(&r);
    bfree(&b);
    static const int codes[] = {1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        uint8_t pl[2] = {(uint8_t)(codes[i] >> 8), (uint8_t)codes[i]};
        cframe(&b, 0x88, pl, 2);
        run_all(&r, &PLAIN, b.p, b.len, __LINE__);
        CHECK(r.n == 1 && r.ev[0].code == codes[i] && r.ev[0].len == 0, "close %d", codes[i]);
        run_clear(&r);
        bfree(&b);
    }
    /* A close in the middle of a fragmented message still ends things. */
    cframe_s(&b, 0x01, "part");
    cframe(&b, 0x88, "\x03\xe9", 2);
    cframe_s(&b, 0x80, "rest");
    run_all(&r, &PLAIN, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && r.ev[0].type == MX_WS_EV_CLOSE && r.ev[0].code == 1001,
          "close mid-message");
    run_clear(&r);
    bfree(&b);

    /* Max-length control payloads. */
    char c125[125];
    memset(c125, 'c', sizeof c125);
    cframe(&b, 0x89, c125, 125);
    cframe(&b, 0x8A, c125, 125);
    run_all(&r, &PLAIN, b.p, b.len, __LINE__);
    CHECK(r.n == 2 && ev_is(&r, 0, MX_WS_EV_PING, MX_WS_OP_PING, c125, 125) &&
              ev_is(&r, 1, MX_WS_EV_PONG, MX_WS_OP_PONG, c125, 125),
          "125-byte control frames");
    run_clear(&r);
    bfree(&b);
}

/* One call returns after each event with exactly the bytes of the frames up to it. */
static void test_reader_consumed(void) {
    bytes_t b = {0};
    cframe_s(&b, 0x81, "one");    /* 6 + 3 */
    cframe_s(&b, 0x01, "t");      /* 6 + 1 */
    cframe_s(&b, 0x89, "pi");     /* 6 + 2 */
    cframe_s(&b, 0x80, "wo");     /* 6 + 2 */
    cframe_s(&b, 0x82, "three!"); /* 6 + 6 */
    mx_ws_reader_t *rd = mx_ws_reader_new(1000, NULL);
    mx_ws_event_t ev;
    size_t pos = 0;
    ssize_t k = mx_ws_read(rd, b.p, b.len, &ev);
    CHECK(k == 9 && ev.type == MX_WS_EV_MESSAGE && ev.len == 3, "first message: %zd", k);
    pos += (size_t)k;
    k = mx_ws_read(rd, b.p + pos, b.len - pos, &ev);
    CHECK(k == 15 && ev.type == MX_WS_EV_PING && ev.len == 2, "ping inside a message: %zd", k);
    pos += (size_t)k;
    k = mx_ws_read(rd, b.p + pos, b.len - pos, &ev);
    CHECK(k == 8 && ev.type == MX_WS_EV_MESSAGE && ev.len == 3 && memcmp(ev.data, "two", 3) == 0,
          "second message: %zd", k);
    pos += (size_t)k;
    size_t tl;
    uint8_t *t = mx_ws_reader_take(rd, &tl);
    CHECK(t != NULL && tl == 3 && t == ev.data, "take hands over the event's buffer");
    free(t);
    k = mx_ws_read(rd, b.p + pos, b.len - pos, &ev);
    CHECK(k == 12 && ev.type == MX_WS_EV_MESSAGE && ev.opcode == MX_WS_OP_BINARY,
          "third message: %zd", k);
    pos += (size_t)k;
    CHECK(pos == b.len, "all consumed");
    k = mx_ws_read(rd, b.p + pos, 0, &ev);
    CHECK(k == 0 && ev.type == MX_WS_EV_NONE && ev.data != NULL, "empty read");
    CHECK(mx_ws_reader_take(rd, &tl) == NULL && tl == 0, "take after a non-message");
    mx_ws_reader_free(rd);
    bfree(&b);
    mx_ws_reader_free(NULL);
}

/* A client that announces a big frame and trickles it in holds little memory. */
static void test_reader_memory(void) {
    bytes_t b = {0};
    uint8_t *big = calloc(1, 1 << 20);
    cframe(&b, 0x82, big, 1 << 20);
    mx_ws_reader_t *rd = mx_ws_reader_new(1 << 20, NULL);
    mx_ws_event_t ev;
    ssize_t k = mx_ws_read(rd, b.p, 10 + 14, &ev);
    CHECK(k == 24 && ev.type == MX_WS_EV_NONE, "partial frame");
    CHECK(mx_ws_reader_buffered(rd) <= 256, "10 bytes buffered in %zu", mx_ws_reader_buffered(rd));
    k = mx_ws_read(rd, b.p + 24, 1000, &ev);
    CHECK(mx_ws_reader_buffered(rd) <= 2048, "1010 bytes buffered in %zu",
          mx_ws_reader_buffered(rd));
    k = mx_ws_read(rd, b.p + 1024, b.len - 1024, &ev);
    CHECK(k == (ssize_t)(b.len - 1024) && ev.type == MX_WS_EV_MESSAGE && ev.len == 1 << 20 &&
              mx_ws_reader_buffered(rd) == 1 << 20,
          "1 MiB message fills exactly");
    /* Not taken: the buffer is dropped on the next call. */
    k = mx_ws_read(rd, b.p, 1, &ev);
    CHECK(mx_ws_reader_buffered(rd) == 0, "big buffer dropped: %zu", mx_ws_reader_buffered(rd));
    mx_ws_reader_free(rd);
    bfree(&b);
    free(big);
}

/* ---------------------------------------------------------------------------------------------
 * Reader: errors
 * ------------------------------------------------------------------------------------------- */

static void test_reader_errors(void) {
    bytes_t b = {0};
    mx_ws_deflate_params_t z = {0, 0, 15, 15};

    /* Unmasked (5.1): decided by the second byte. */
    static const uint8_t unmasked[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    bad_at(unmasked, sizeof unmasked, 1, MX_WS_EPROTO, 1 << 20, NULL, __LINE__);
    bput(&b, "\x81\x00", 2);
    BAD_AT(&b, 1, MX_WS_EPROTO);
    bfree(&b);

    /* RSV bits: RSV2, RSV3 always; RSV1 without deflate; with deflate, RSV1 on a continuation or
     * a control frame. */
    static const int rsv[] = {0xA1, 0x91, 0xC1, 0xF1, 0xB2};
    for (size_t i = 0; i < sizeof rsv / sizeof rsv[0]; i++) {
        cframe_s(&b, 0x81, "ok");
        cframe_s(&b, rsv[i], "x");
        BAD_AT(&b, 8, MX_WS_EPROTO);
        bfree(&b);
    }
    cframe_s(&b, 0xA1, "x");
    BAD_AT_Z(&b, 0, MX_WS_EPROTO, &z);
    bfree(&b);
    cframe_s(&b, 0x41, "\xf2\x48"); /* a compressed message begins */
    cframe_s(&b, 0xC0, "\xcd");     /* RSV1 again on its continuation */
    BAD_AT_Z(&b, 8, MX_WS_EPROTO, &z);
    bfree(&b);
    cframe_s(&b, 0xC9, "");
    BAD_AT_Z(&b, 0, MX_WS_EPROTO, &z);
    bfree(&b);
    cframe_s(&b, 0xC8, "");
    BAD_AT_Z(&b, 0, MX_WS_EPROTO, &z);
    bfree(&b);

    /* Reserved opcodes (5.2), with and without FIN. */
    for (int op = 3; op <= 0xF; op++) {
        if (op >= 8 && op <= 0xA)
            continue;
        cframe_s(&b, 0x80 | op, "");
        BAD_AT(&b, 0, MX_WS_EPROTO);
        bfree(&b);
        cframe_s(&b, 0x82, "ok");
        cframe_s(&b, op, "");
        BAD_AT(&b, 8, MX_WS_EPROTO);
        bfree(&b);
    }

    /* Control frames: fragmented, or longer than 125 (5.5). */
    for (int op = 8; op <= 0xA; op++) {
        cframe_s(&b, op, "");
        BAD_AT(&b, 0, MX_WS_EPROTO);
        bfree(&b);
        char c126[126];
        memset(c126, 'x', sizeof c126);
        cframe(&b, 0x80 | op, c126, 126);
        BAD_AT(&b, 1, MX_WS_EPROTO);
        bfree(&b);
        cframe_form(&b, 0x80 | op, c126, 5, FORM_16); /* 126 in the 7-bit field: refused too */
        BAD_AT(&b, 1, MX_WS_EPROTO);
        bfree(&b);
    }

    /* A 64-bit length with the top bit set: decided by the first length byte. */
    static const uint8_t top[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 'x'};
    bad_at(top, sizeof top, 2, MX_WS_EPROTO, 1 << 20, NULL, __LINE__);

    /* Continuation without a message; a new message inside a fragmented one (5.4). */
    cframe_s(&b, 0x80, "x");
    BAD_AT(&b, 0, MX_WS_EPROTO);
    bfree(&b);
    cframe_s(&b, 0x81, "done");
    cframe_s(&b, 0x00, "x");
    BAD_AT(&b, 10, MX_WS_EPROTO);
    bfree(&b);
    cframe_s(&b, 0x01, "a");
    cframe_s(&b, 0x81, "b");
    BAD_AT(&b, 7, MX_WS_EPROTO);
    bfree(&b);
    cframe_s(&b, 0x02, "a");
    cframe_s(&b, 0x89, "");
    cframe_s(&b, 0x01, "b");
    BAD_AT(&b, 13, MX_WS_EPROTO);
    bfree(&b);

    /* Close frames: a 1-byte payload, bad codes, a bad reason (5.5.1, 7.4). */
    cframe_s(&b, 0x88, "\x03");
    BAD_AT(&b, 6, MX_WS_EPROTO);
    bfree(&b);
    static const int bad_codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        uint8_t pl[4] = {(uint8_t)(bad_codes[i] >> 8), (uint8_t)bad_codes[i], 'o', 'k'};
        cframe(&b, 0x88, pl, 4);
        BAD_AT(&b, 9, MX_WS_EPROTO);
        bfree(&b);
    }
    cframe(&b, 0x88, "\x03\xe8\xc0\xaf", 4);
    BAD_AT(&b, 9, MX_WS_EDATA);
    bfree(&b);
    cframe(&b, 0x88, "\x03\xe8" "ab\xe2\x82", 6);
    BAD_AT(&b, 11, MX_WS_EDATA);
    bfree(&b);

    /* Invalid UTF-8 in text: at the bad byte, across fragments, and at the end of a message
     * that stops inside a sequence. */
    cframe_s(&b, 0x81, "abc\xed\xa0\x80");
    BAD_AT(&b, 6 + 4, MX_WS_EDATA);
    bfree(&b);
    cframe_s(&b, 0x01, "\xe2\x82");
    cframe_s(&b, 0x89, "");
    cframe_s(&b, 0x80, "\x28");
    BAD_AT(&b, 8 + 6 + 6, MX_WS_EDATA);
    bfree(&b);
    cframe_s(&b, 0x81, "ok\xe2\x82");
    BAD_AT(&b, 6 + 3, MX_WS_EDATA);
    bfree(&b);
    cframe_s(&b, 0x01, "ok\xe2\x82");
    cframe_s(&b, 0x80, "");
    BAD_AT(&b, 10 + 5, MX_WS_EDATA); /* the empty final frame's last header byte */
    bfree(&b);
    cframe_s(&b, 0x81, "\xf4\x90\x80\x80");
    BAD_AT(&b, 7, MX_WS_EDATA);
    bfree(&b);

    /* Too big: on the announced length, before any payload (7-, 16- and 64-bit forms), and
     * counting earlier fragments. Exactly the limit is fine. */
    char buf[300];
    memset(buf, 'a', sizeof buf);
    cframe(&b, 0x81, buf, 11);
    bad_at(b.p, b.len, 1, MX_WS_ETOOBIG, 10, NULL, __LINE__);
    bfree(&b);
    cframe_form(&b, 0x82, buf, 11, FORM_16);
    bad_at(b.p, b.len, 3, MX_WS_ETOOBIG, 10, NULL, __LINE__);
    bfree(&b);
    cframe_form(&b, 0x82, buf, 300, FORM_64);
    bad_at(b.p, b.len, 9, MX_WS_ETOOBIG, 299, NULL, __LINE__);
    bfree(&b);
    cframe(&b, 0x01, buf, 6);
    cframe(&b, 0x89, buf, 20); /* control frames do not count */
    cframe(&b, 0x80, buf, 5);
    bad_at(b.p, b.len, 12 + 26 + 1, MX_WS_ETOOBIG, 10, NULL, __LINE__);
    bfree(&b);
    {
        cfg_t c = {10, NULL, 0};
        run_t r;
        cframe(&b, 0x01, buf, 6);
        cframe(&b, 0x80, buf, 4);
        cframe(&b, 0x82, buf, 10);
        cframe(&b, 0x82, buf, 0);
        run_all(&r, &c, b.p, b.len, __LINE__);
        CHECK(r.err == 0 && r.n == 3 && r.ev[0].len == 10 && r.ev[1].len == 10 &&
                  r.ev[2].len == 0,
              "exactly the limit");
        run_clear(&r);
        bfree(&b);
        c.max = 0;
        cframe(&b, 0x81, "", 0);
        cframe(&b, 0x89, "x", 1);
        run_all(&r, &c, b.p, b.len, __LINE__);
        CHECK(r.err == 0 && r.n == 2, "limit 0 takes empty messages");
        run_clear(&r);
        bfree(&b);
    }
    /* A 2^63 - 1 byte frame is refused by the limit, not by arithmetic. */
    static const uint8_t huge[] = {0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                   0xFF, 1,    2,    3,    4,    'x'};
    bad_at(huge, sizeof huge, 9, MX_WS_ETOOBIG, 1 << 20, NULL, __LINE__);
    bad_at(huge, sizeof huge, 9, MX_WS_ETOOBIG, SIZE_MAX, NULL, __LINE__);
}

/* ---------------------------------------------------------------------------------------------
 * permessage-deflate
 * ------------------------------------------------------------------------------------------- */

static const mx_ws_deflate_params_t Z_DEFAULT = {0, 0, 15, 15};
static const mx_ws_deflate_params_t Z_NO_CTX = {1, 1, 15, 15};

static void test_rfc7692_examples(void) {
    cfg_t cz = {1 << 20, &Z_DEFAULT, 0};
    cfg_t cz_reset = {1 << 20, &Z_NO_CTX, 0};
    run_t r;
    bytes_t b = {0};
    static const uint8_t hello_z[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    static const uint8_t hello_ref[] = {0xf2, 0x00, 0x11, 0x00, 0x00};

    /* 7.2.3.1: "Hello" compressed in one frame. */
    cframe(&b, 0xC1, hello_z, sizeof hello_z);
    run_all(&r, &cz, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && ev_msg(&r, 0, MX_WS_OP_TEXT, "Hello"), "7.2.3.1");
    run_clear(&r);
    bfree(&b);

    /* 7.2.3.1: the same, fragmented: f2 48 | cd c9 c9 07 00 (RSV1 only on the first). */
    cframe(&b, 0x41, hello_z, 3);
    cframe(&b, 0x89, "", 0);
    cframe(&b, 0x00, hello_z + 3, 0);
    cframe(&b, 0x80, hello_z + 3, 4);
    run_all(&r, &cz, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 2 && r.ev[0].type == MX_WS_EV_PING &&
              ev_msg(&r, 1, MX_WS_OP_TEXT, "Hello"),
          "7.2.3.1 fragmented");
    run_clear(&r);
    bfree(&b);

    /* 7.2.3.2: context takeover; the second message is a back-reference into the first. Also
     * an uncompressed message in between does not disturb the window. */
    cframe(&b, 0xC1, hello_z, sizeof hello_z);
    cframe_s(&b, 0x81, "plain");
    cframe(&b, 0xC1, hello_ref, sizeof hello_ref);
    run_all(&r, &cz, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 3 && ev_msg(&r, 0, MX_WS_OP_TEXT, "Hello") &&
              ev_msg(&r, 1, MX_WS_OP_TEXT, "plain") && ev_msg(&r, 2, MX_WS_OP_TEXT, "Hello"),
          "7.2.3.2 shared window");
    run_clear(&r);
    /* With client_no_context_takeover the reference points before the stream: corrupt. */
    run_all(&r, &cz_reset, b.p, b.len, __LINE__);
    CHECK(r.n == 2 && r.err == MX_WS_EDATA, "7.2.3.2 without context: %d", r.err);
    run_clear(&r);
    bfree(&b);

    /* 7.2.3.3: a stored block. */
    static const uint8_t stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48,
                                     0x65, 0x6c, 0x6c, 0x6f, 0x00};
    cframe(&b, 0xC2, stored, sizeof stored);
    run_all(&r, &cz, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && ev_msg(&r, 0, MX_WS_OP_BINARY, "Hello"), "7.2.3.3");
    run_clear(&r);
    bfree(&b);

    /* 7.2.3.4: BFINAL set, then a byte that starts the stored block the tail completes; the next
     * message still refers back into the window (kept across the stream's end). */
    static const uint8_t bfinal[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
    cframe(&b, 0xC1, bfinal, sizeof bfinal);
    cframe(&b, 0xC1, hello_ref, sizeof hello_ref);
    cframe(&b, 0xC1, bfinal, sizeof bfinal - 1); /* leniency: ends exactly with the stream */
    cframe(&b, 0xC1, hello_ref, sizeof hello_ref);
    run_all(&r, &cz, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 4 && ev_msg(&r, 0, MX_WS_OP_TEXT, "Hello") &&
              ev_msg(&r, 1, MX_WS_OP_TEXT, "Hello") && ev_msg(&r, 2, MX_WS_OP_TEXT, "Hello") &&
              ev_msg(&r, 3, MX_WS_OP_TEXT, "Hello"),
          "7.2.3.4 BFINAL: %d events, err %d", r.n, r.err);
    run_clear(&r);
    bfree(&b);
    /* Two streams in one message: BFINAL "Hello", then the same bytes again. */
    bput(&b, bfinal, 7);
    bput(&b, bfinal, sizeof bfinal);
    bytes_t f = {0};
    cframe(&f, 0xC1, b.p, b.len);
    run_all(&r, &cz, f.p, f.len, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && ev_msg(&r, 0, MX_WS_OP_TEXT, "HelloHello"),
          "two streams in a message");
    run_clear(&r);
    bfree(&b);
    bfree(&f);

    /* 7.2.3.5: two DEFLATE blocks in one message. */
    static const uint8_t two[] = {0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff,
                                  0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00};
    cframe(&b, 0xC1, two, sizeof two);
    run_all(&r, &cz, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && ev_msg(&r, 0, MX_WS_OP_TEXT, "Hello"), "7.2.3.5");
    run_clear(&r);
    bfree(&b);

    /* 7.2.3.6: an empty message compresses to a single 00; an empty payload is accepted too. */
    cframe(&b, 0xC1, "\x00", 1);
    cframe(&b, 0xC1, "", 0);
    cframe(&b, 0xC2, "", 0);
    cframe(&b, 0x42, "", 0);
    cframe(&b, 0x80, "\x00", 1);
    cframe(&b, 0xC1, hello_z, sizeof hello_z);
    run_all(&r, &cz, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 5 && ev_msg(&r, 0, MX_WS_OP_TEXT, "") &&
              ev_msg(&r, 1, MX_WS_OP_TEXT, "") && ev_msg(&r, 2, MX_WS_OP_BINARY, "") &&
              ev_msg(&r, 3, MX_WS_OP_BINARY, "") && ev_msg(&r, 4, MX_WS_OP_TEXT, "Hello"),
          "7.2.3.6 empty messages: %d err %d", r.n, r.err);
    run_clear(&r);
    bfree(&b);
}

static void test_deflate_errors(void) {
    mx_ws_deflate_params_t z = {0, 0, 15, 15};
    bytes_t b = {0};
    /* Corrupt data: an invalid block type (BTYPE 11) in the first byte. */
    cframe(&b, 0xC1, "\x07\x00", 2);
    BAD_AT_Z(&b, 6, MX_WS_EDATA, &z);
    bfree(&b);
    /* Truncated: the data stops inside a block; the tail cannot close it. */
    cframe(&b, 0xC1, "\xf2\x48\xcd", 3);
    BAD_AT_Z(&b, 8, MX_WS_EDATA, &z);
    bfree(&b);
    /* A stored block whose lengths do not match. */
    cframe(&b, 0xC2, "\x00\x05\x00\xfa\xfe", 5);
    BAD_AT_Z(&b, 10, MX_WS_EDATA, &z);
    bfree(&b);
    /* Invalid UTF-8 that only appears after inflating: a stored block holding "ab\xff". */
    cframe(&b, 0xC1, "\x00\x03\x00\xfc\xff" "ab\xff" "\x00", 9);
    BAD_AT_Z(&b, 6 + 7, MX_WS_EDATA, &z);
    bfree(&b);
    /* A text message ending inside a sequence after inflating ("ab\xe2"): at the frame's end. */
    cframe(&b, 0xC1, "\x00\x03\x00\xfc\xff" "ab\xe2" "\x00", 9);
    BAD_AT_Z(&b, 6 + 8, MX_WS_EDATA, &z);
    bfree(&b);
}

/* Compresses a message of len bytes with zlib directly (raw, sync flush, tail removed). */
static uint8_t *zlib_compress(const uint8_t *in, size_t len, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    uint8_t *out = malloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_SYNC_FLUSH) != Z_OK || zs.avail_out == 0)
        abort();
    *out_len = cap - zs.avail_out - 4;
    deflateEnd(&zs);
    return out;
}

static void test_zip_bomb(void) {
    size_t n = 10 * 1000 * 1000, zlen;
    uint8_t *zeros = calloc(1, n);
    uint8_t *z = zlib_compress(zeros, n, &zlen);
    CHECK(zlen < 20000, "10 MB of zeros compress to %zu bytes", zlen);
    bytes_t b = {0};
    cframe(&b, 0xC2, z, zlen);
    cfg_t c = {64 * 1024, &Z_DEFAULT, 0};
    run_t r;
    g_line = __LINE__;
    run_feed(&r, &c, b.p, b.len, 0);
    CHECK(r.err == MX_WS_ETOOBIG, "bomb verdict %d", r.err);
    CHECK(r.peak_buf <= 64 * 1024 + 1, "bomb buffered %zu bytes", r.peak_buf);
    run_clear(&r);
    run_feed(&r, &c, b.p, b.len, 1);
    CHECK(r.err == MX_WS_ETOOBIG && r.peak_buf <= 64 * 1024 + 1 && r.err_at < 1000,
          "bomb byte by byte: %d, %zu buffered, fails at byte %zu", r.err, r.peak_buf, r.err_at);
    run_clear(&r);
    bfree(&b);

    /* Spread over fragments, and with the limit exactly at the inflated size (fine) or one
     * below (too big). */
    size_t m = 100000;
    uint8_t *zm = zlib_compress(zeros, m, &zlen);
    cframe(&b, 0x42, zm, zlen / 3);
    cframe(&b, 0x00, zm + zlen / 3, zlen / 3);
    cframe(&b, 0x80, zm + 2 * (zlen / 3), zlen - 2 * (zlen / 3));
    c.max = m;
    run_all(&r, &c, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 1 && r.ev[0].len == m && r.peak_buf <= m + 1,
          "exactly the limit inflated: err %d, peak %zu", r.err, r.peak_buf);
    run_clear(&r);
    c.max = m - 1;
    run_all(&r, &c, b.p, b.len, __LINE__);
    CHECK(r.err == MX_WS_ETOOBIG && r.n == 0 && r.peak_buf <= m, "one over: %d", r.err);
    run_clear(&r);
    bfree(&b);
    free(zm);
    free(z);
    free(zeros);
}

/* Masks a server frame and feeds it to a reader; returns the event's message (copied). */
static void roundtrip_params(const mx_ws_deflate_params_t *p, int line) {
    static const char *const texts[] = {
        "Hello",
        "{\"type\":\"chat\",\"user\":\"alice\",\"text\":\"hello there, how are you doing?\"}",
        "{\"type\":\"chat\",\"user\":\"bob\",\"text\":\"hello there, I am fine, thank you!\"}",
        "{\"type\":\"chat\",\"user\":\"alice\",\"text\":\"hello there, how are you doing?\"}",
        "",
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 "
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
    };
    mx_ws_deflater_t *d = mx_ws_deflater_new(p);
    bytes_t stream = {0};
    size_t nmsg = 0, ncompressed = 0;
    uint8_t *msgs[16];
    size_t lens[16];
    int ops[16];
    /* Text messages, a long repetitive one, random binary (does not compress), a big one. */
    for (size_t i = 0; i < 10; i++) {
        uint8_t *m;
        size_t n;
        int op = MX_WS_OP_TEXT;
        if (i < sizeof texts / sizeof texts[0]) {
            n = strlen(texts[i]);
            m = malloc(n + 1);
            memcpy(m, texts[i], n);
        } else if (i == 6) {
            n = 5000;
            m = malloc(n);
            for (size_t k = 0; k < n; k++)
                m[k] = (uint8_t)"abcdefghij"[(k * k) % 10];
        } else if (i == 7) {
            op = MX_WS_OP_BINARY;
            n = 3000;
            m = malloc(n);
            uint32_t x = 12345;
            for (size_t k = 0; k < n; k++) {
                x = x * 1103515245u + 12345u;
                m[k] = (uint8_t)(x >> 16);
            }
        } else if (i == 8) {
            op = MX_WS_OP_BINARY;
            n = 200000;
            m = malloc(n);
            for (size_t k = 0; k < n; k++)
                m[k] = (uint8_t)((k / 1000) ^ (k % 251));
        } else {
            n = 700;
            m = malloc(n);
            for (size_t k = 0; k < n; k++)
                m[k] = (uint8_t)('a' + k % 26);
        }
        uint8_t *frame;
        size_t flen;
        if (mx_ws_build_frame(d, op, m, n, &frame, &flen) != 0)
            abort();
        if (frame[0] & 0x40)
            ncompressed++;
        mask_server_frame(&stream, frame, flen);
        free(frame);
        msgs[nmsg] = m;
        lens[nmsg] = n;
        ops[nmsg++] = op;
    }
    report(ncompressed >= 3, line, "only %zu messages were compressed", ncompressed);
    cfg_t c = {1 << 20, p, 0};
    run_t r;
    g_line = line;
    run_feed(&r, &c, stream.p, stream.len, 0);
    int ok = r.err == 0 && (size_t)r.n == nmsg;
    for (size_t i = 0; ok && i < nmsg; i++)
        ok = ev_is(&r, (int)i, MX_WS_EV_MESSAGE, ops[i], msgs[i], lens[i]);
    report(ok, line, "round trip (window %d, no_context %d): err %d, %d events",
           p->server_max_window_bits, p->server_no_context_takeover, r.err, r.n);
    run_clear(&r);
    run_feed(&r, &c, stream.p, stream.len, 3);
    ok = r.err == 0 && (size_t)r.n == nmsg;
    report(ok, line, "round trip in pieces of 3: err %d", r.err);
    run_clear(&r);

    /* An inflater with exactly the negotiated window must decode everything: no reference may
     * reach further back than 2^bits (zlib's inflate takes raw windows 8..15). */
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -p->server_max_window_bits) == Z_OK) {
        mx_ws_deflater_t *d2 = mx_ws_deflater_new(p);
        uint8_t *out = malloc(1 << 20);
        for (size_t i = 0; i < nmsg; i++) {
            uint8_t *zb;
            size_t zl;
            if (mx_ws_deflate(d2, msgs[i], lens[i], &zb, &zl) != 0)
                abort();
            if (zb == NULL)
                continue;
            zb = realloc(zb, zl + 4);
            memcpy(zb + zl, "\x00\x00\xff\xff", 4);
            zs.next_in = zb;
            zs.avail_in = (uInt)(zl + 4);
            zs.next_out = out;
            zs.avail_out = 1 << 20;
            int zrc = inflate(&zs, Z_SYNC_FLUSH);
            size_t got = (1 << 20) - zs.avail_out;
            report((zrc == Z_OK || zrc == Z_BUF_ERROR) && got == lens[i] &&
                       memcmp(out, msgs[i], got) == 0,
                   line, "window-%d inflater: message %zu: zrc %d, %zu bytes of %zu",
                   p->server_max_window_bits, i, zrc, got, lens[i]);
            free(zb);
        }
        inflateEnd(&zs);
        free(out);
        mx_ws_deflater_free(d2);
    }

    for (size_t i = 0; i < nmsg; i++)
        free(msgs[i]);
    bfree(&stream);
    mx_ws_deflater_free(d);
}

static void test_deflate_roundtrip(void) {
    for (int bits = 8; bits <= 15; bits++) {
        for (int noctx = 0; noctx < 2; noctx++) {
            mx_ws_deflate_params_t p = {noctx, noctx, bits, 15};
            roundtrip_params(&p, __LINE__);
        }
    }
}

/* 1 when the header of the unmasked frame f says its payload is the rest of f, in the shortest
 * length form. */
static int frame_len_ok(const uint8_t *f, size_t fl) {
    size_t h, n = f[1] & 0x7F;
    if (n < 126) {
        h = 2;
    } else if (n == 126) {
        h = 4;
        n = (size_t)f[2] << 8 | f[3];
        if (n < 126)
            return 0;
    } else {
        h = 10;
        n = 0;
        for (int k = 0; k < 8; k++)
            n = n << 8 | f[2 + k];
        if (n <= 0xFFFF)
            return 0;
    }
    return fl == h + n;
}

static void test_deflater(void) {
    mx_ws_deflate_params_t p = {0, 0, 15, 15};
    mx_ws_deflater_t *d = mx_ws_deflater_new(&p);
    uint8_t *z1, *z2;
    size_t l1, l2;
    static const char msg[] = "{\"event\":\"update\",\"payload\":{\"id\":12345,\"name\":\"widget\","
                              "\"tags\":[\"a\",\"b\",\"c\"]}}";
    size_t n = sizeof msg - 1;

    /* Every message is compressed, even a short one: "Hello" as in RFC 7692 7.2.3.1. */
    CHECK(mx_ws_deflate(d, (const uint8_t *)"Hello", 5, &z1, &l1) == 0 && z1 != NULL && l1 == 7 &&
              memcmp(z1, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7) == 0,
          "short message compressed as in RFC 7692 7.2.3.1");
    free(z1);
    CHECK(mx_ws_deflate(d, NULL, 0, &z1, &l1) == 0 && z1 != NULL && l1 >= 1 && l1 <= 2,
          "empty message: an empty block");
    free(z1);

    /* Context takeover: the second identical message is a few bytes of back-reference. */
    CHECK(mx_ws_deflate(d, (const uint8_t *)msg, n, &z1, &l1) == 0 && z1 != NULL && l1 < n,
          "first: %zu bytes", l1);
    CHECK(mx_ws_deflate(d, (const uint8_t *)msg, n, &z2, &l2) == 0 && z2 != NULL && l2 < 10,
          "second with context: %zu bytes", l2);
    CHECK(l1 >= 4 && memcmp(z1 + l1 - 4, "\x00\x00\xff\xff", 4) != 0, "tail removed");
    free(z1);
    free(z2);
    mx_ws_deflater_free(d);

    /* No context takeover: identical messages compress identically. */
    p.server_no_context_takeover = 1;
    d = mx_ws_deflater_new(&p);
    CHECK(mx_ws_deflate(d, (const uint8_t *)msg, n, &z1, &l1) == 0 && z1 != NULL, "noctx 1");
    CHECK(mx_ws_deflate(d, (const uint8_t *)msg, n, &z2, &l2) == 0 && z2 != NULL, "noctx 2");
    CHECK(l1 == l2 && memcmp(z1, z2, l1) == 0, "no context: same output (%zu, %zu)", l1, l2);
    free(z1);
    free(z2);

    /* Incompressible data is still compressed (a few bytes longer); the context goes on. */
    uint8_t rnd[1000];
    uint32_t x = 99;
    for (size_t i = 0; i < sizeof rnd; i++) {
        x = x * 1664525u + 1013904223u;
        rnd[i] = (uint8_t)(x >> 24);
    }
    CHECK(mx_ws_deflate(d, rnd, sizeof rnd, &z1, &l1) == 0 && z1 != NULL && l1 < sizeof rnd + 16,
          "random: compressed anyway (%zu bytes)", l1);
    free(z1);
    CHECK(mx_ws_deflate(d, (const uint8_t *)msg, n, &z1, &l1) == 0 && z1 != NULL && l1 == l2,
          "after a plain message");
    free(z1);
    mx_ws_deflater_free(d);
    mx_ws_deflater_free(NULL);

    /* Frames: RSV1 when compressed, never on control frames; header sizes. */
    d = mx_ws_deflater_new(NULL);
    uint8_t *f;
    size_t fl;
    CHECK(mx_ws_build_frame(d, MX_WS_OP_TEXT, (const uint8_t *)msg, n, &f, &fl) == 0 &&
              f[0] == 0xC1 && f[1] == fl - 2 && fl - 2 < n,
          "compressed text frame");
    free(f);
    CHECK(mx_ws_build_frame(d, MX_WS_OP_BINARY, rnd, sizeof rnd, &f, &fl) == 0 && f[0] == 0xC2 &&
              f[1] == 126,
          "incompressible binary frame still compressed (RSV1)");
    free(f);
    CHECK(mx_ws_build_frame(d, MX_WS_OP_PING, (const uint8_t *)msg, 20, &f, &fl) == 0 &&
              f[0] == 0x89 && f[1] == 20 && fl == 22 && memcmp(f + 2, msg, 20) == 0,
          "ping never compressed");
    free(f);
    uint8_t c126[126] = {0};
    CHECK(mx_ws_build_frame(NULL, MX_WS_OP_PONG, c126, 126, &f, &fl) == MX_EINVAL && f == NULL,
          "control frame over 125");
    CHECK(mx_ws_build_frame(NULL, MX_WS_OP_CONT, c126, 1, &f, &fl) == MX_EINVAL, "CONT refused");
    CHECK(mx_ws_build_frame(NULL, 3, c126, 1, &f, &fl) == MX_EINVAL, "reserved opcode refused");
    CHECK(mx_ws_build_frame(NULL, MX_WS_OP_TEXT, NULL, 0, &f, &fl) == 0 && fl == 2 &&
              f[0] == 0x81 && f[1] == 0,
          "empty text frame");
    free(f);
    /* A big compressible message: 64-bit header for the plain form, 16-bit when compressed. */
    uint8_t *big = malloc(100000);
    for (size_t i = 0; i < 100000; i++)
        big[i] = (uint8_t)('a' + (i % 7));
    CHECK(mx_ws_build_frame(NULL, MX_WS_OP_BINARY, big, 100000, &f, &fl) == 0 && f[1] == 127 &&
              fl == 100010 && memcmp(f + 10, big, 100000) == 0,
          "plain 100000-byte frame");
    free(f);
    CHECK(mx_ws_build_frame(d, MX_WS_OP_BINARY, big, 100000, &f, &fl) == 0 && f[0] == 0xC2 &&
              fl < 2000 && frame_len_ok(f, fl),
          "compressed 100000-byte frame: %zu bytes", fl);
    free(f);
    free(big);
    mx_ws_deflater_free(d);
}

/* ---------------------------------------------------------------------------------------------
 * Writers
 * ------------------------------------------------------------------------------------------- */

static void test_frame_header(void) {
    uint8_t h[10];
    CHECK(mx_ws_frame_header(h, 1, 0, MX_WS_OP_TEXT, 0) == 2 && h[0] == 0x81 && h[1] == 0, "0");
    CHECK(mx_ws_frame_header(h, 1, 0, MX_WS_OP_TEXT, 125) == 2 && h[1] == 125, "125");
    CHECK(mx_ws_frame_header(h, 0, 1, MX_WS_OP_BINARY, 126) == 4 && h[0] == 0x42 &&
              h[1] == 126 && h[2] == 0 && h[3] == 126,
          "126");
    CHECK(mx_ws_frame_header(h, 1, 0, MX_WS_OP_CONT, 65535) == 4 && h[0] == 0x80 &&
              h[2] == 0xFF && h[3] == 0xFF,
          "65535");
    CHECK(mx_ws_frame_header(h, 1, 0, MX_WS_OP_BINARY, 65536) == 10 && h[1] == 127 &&
              memcmp(h + 2, "\0\0\0\0\0\x01\0\0", 8) == 0,
          "65536");
    CHECK(mx_ws_frame_header(h, 1, 1, MX_WS_OP_TEXT, 0x0102030405060708ull) == 10 &&
              h[0] == 0xC1 && memcmp(h + 2, "\x01\x02\x03\x04\x05\x06\x07\x08", 8) == 0,
          "64-bit");
}

static void close_case(int code, const char *reason, size_t rlen, int want_rc,
                       size_t want_reason_len, int line) {
    uint8_t *f = (uint8_t *)"x";
    size_t fl = 99;
    int rc = mx_ws_build_close(code, reason, rlen, &f, &fl);
    if (rc != want_rc) {
        report(0, line, "build_close(%d) = %d, want %d", code, rc, want_rc);
        return;
    }
    if (rc != 0) {
        report(f == NULL, line, "out not cleared");
        return;
    }
    size_t plen = (code == 0 || code == 1005) ? 0 : 2 + want_reason_len;
    int ok = fl == 2 + plen && f[0] == 0x88 && f[1] == plen;
    if (ok && plen > 0)
        ok = f[2] == (uint8_t)(code >> 8) && f[3] == (uint8_t)code &&
             (want_reason_len == 0 || memcmp(f + 4, reason, want_reason_len) == 0);
    report(ok, line, "build_close(%d, %zu): frame of %zu", code, rlen, fl);
    /* Our own close frame, masked, reads back as itself. */
    bytes_t b = {0};
    mask_server_frame(&b, f, fl);
    run_t r;
    g_line = line;
    run_feed(&r, &PLAIN, b.p, b.len, 0);
    report(r.err == 0 && r.n == 1 && r.ev[0].type == MX_WS_EV_CLOSE &&
               r.ev[0].code == (plen ? code : 1005) && r.ev[0].len == (plen ? plen - 2 : 0),
           line, "close frame reads back: err %d", r.err);
    run_clear(&r);
    bfree(&b);
    free(f);
}

static void test_build_close(void) {
    char reason[300];
    memset(reason, 'r', sizeof reason);
    close_case(1000, "bye", 3, 0, 3, __LINE__);
    close_case(1001, NULL, 0, 0, 0, __LINE__);
    close_case(4999, reason, 123, 0, 123, __LINE__);
    close_case(1011, reason, 300, 0, 123, __LINE__);
    close_case(0, reason, 10, 0, 0, __LINE__);
    close_case(1005, reason, 10, 0, 0, __LINE__);
    close_case(1006, "", 0, MX_EINVAL, 0, __LINE__);
    close_case(1015, "", 0, MX_EINVAL, 0, __LINE__);
    close_case(999, "", 0, MX_EINVAL, 0, __LINE__);
    close_case(5000, "", 0, MX_EINVAL, 0, __LINE__);
    /* Cut at a UTF-8 boundary: a 2-byte sequence at 122..123 goes; one at 121..122 stays; a
     * 3-byte one at 121..123 goes; a 4-byte one at 120..123 goes; one at 119..122 stays. */
    memcpy(reason + 122, "\xc3\xa9", 2);
    close_case(1000, reason, 200, 0, 122, __LINE__);
    memset(reason, 'r', sizeof reason);
    memcpy(reason + 121, "\xc3\xa9", 2);
    close_case(1000, reason, 200, 0, 123, __LINE__);
    memset(reason, 'r', sizeof reason);
    memcpy(reason + 121, "\xe2\x82\xac", 3);
    close_case(1000, reason, 200, 0, 121, __LINE__);
    memset(reason, 'r', sizeof reason);
    memcpy(reason + 120, "\xf0\x9f\x98\x80", 4);
    close_case(1000, reason, 200, 0, 120, __LINE__);
    memset(reason, 'r', sizeof reason);
    memcpy(reason + 119, "\xf0\x9f\x98\x80", 4);
    close_case(1000, reason, 200, 0, 123, __LINE__);
    for (int i = 0; i < 300; i += 2)
        memcpy(reason + i, "\xc3\xa9", 2);
    close_case(1000, reason, 300, 0, 122, __LINE__);
}

/* A long mixed stream, compressed and not, against every split. */
static void test_mixed_stream_splits(void) {
    bytes_t b = {0};
    mx_ws_deflater_t *d = mx_ws_deflater_new(&Z_DEFAULT);
    static const char *const parts[] = {"first message, long enough to be compressed",
                                        "second message, long enough to be compressed too",
                                        "first message, long enough to be compressed"};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *f;
        size_t fl;
        if (mx_ws_build_frame(d, MX_WS_OP_TEXT, (const uint8_t *)parts[i], strlen(parts[i]), &f,
                              &fl) != 0)
            abort();
        mask_server_frame(&b, f, fl);
        free(f);
        cframe_s(&b, 0x89, "ping");
        cframe_s(&b, 0x01, "pla");
        cframe_s(&b, 0x8A, "");
        cframe_s(&b, 0x80, "in \xe2\x82\xac");
    }
    cframe(&b, 0x88, "\x0f\xa0" "done", 6);
    cfg_t c = {1 << 20, &Z_DEFAULT, 0};
    run_t r;
    run_all(&r, &c, b.p, b.len, __LINE__);
    CHECK(r.err == 0 && r.n == 13, "mixed stream: %d events, err %d", r.n, r.err);
    for (int i = 0; i < 3; i++) {
        CHECK(ev_msg(&r, 4 * i, MX_WS_OP_TEXT, parts[i]), "compressed part %d", i);
        CHECK(ev_msg(&r, 4 * i + 3, MX_WS_OP_TEXT, "plain \xe2\x82\xac"), "plain part %d", i);
    }
    CHECK(r.ev[12].type == MX_WS_EV_CLOSE && r.ev[12].code == 4000, "close 4000");
    run_clear(&r);
    bfree(&b);
    mx_ws_deflater_free(d);
}

int main(void) {
    test_close_codes();
    test_rfc6455_examples();
    test_reader_valid();
    test_reader_consumed();
    test_reader_memory();
    test_reader_errors();
    test_rfc7692_examples();
    test_deflate_errors();
    test_zip_bomb();
    test_deflate_roundtrip();
    test_deflater();
    test_frame_header();
    test_build_close();
    test_mixed_stream_splits();
    return harness_summary("ws_frame");
}
