/*
 * fuzz_ws.c: libFuzzer target for the WebSocket frame reader (mx_ws_read) and, through a round
 * trip, the permessage-deflate writer (mx_ws_build_frame, mx_ws_deflate).
 *
 * Input layout: byte 0 holds the options, bytes 1-2 seed the split points, the rest is data.
 * (Seeds in corpus/ws start with "\x00\x00\x00": stream mode, no limit tricks.)
 *   byte 0, bits 0-2: max_message_len, one of {1 MiB, 0, 1, 5, 125, 126, 1000, 65536}
 *   bit 3: client_no_context_takeover for the deflate runs
 *   bit 4: take message buffers with mx_ws_reader_take
 *   bit 6: header mode (when bit 7 is clear)
 *   bit 7: round-trip mode
 *
 * Stream mode: the data is what a client sent. It is read with deflate off and on, each whole,
 * in fuzzer-chosen pieces and byte by byte; within a setting all runs must give the same events
 * and verdict. Across settings: without deflate a stream can only fail earlier (on RSV1), so
 * unless it failed with a protocol error the two settings agree exactly, and otherwise the run
 * without deflate is a prefix of the one with it. Every event must also be well-formed (text is
 * UTF-8, sizes within limits) and the reader must never buffer more than max_message_len + 1.
 *
 * Round-trip mode: the data is cut into messages, which a deflater (window and context options
 * from the data) turns into frames; these are fragmented, masked and read back, and must come out
 * as they went in. Each compressed message is also inflated with exactly the negotiated window.
 *
 * Header mode: the data is a handshake field value, given to the extension negotiation, the list
 * and subprotocol helpers and the key check. An accepted offer's response, offered back, must be
 * accepted with the same parameters and the same response (the response only echoes).
 */
#include <string.h>
#include <zlib.h>

#include "fuzz_common.h"
#include "ws.h"

/* What a run saw: the events, hashed in order (FNV-1a over every field and payload byte), and
 * the prefix hashes after each event, so one run can be checked to be a prefix of another. */
#define MAX_TRACK 4096
typedef struct result {
    int err;
    size_t n;
    uint64_t hash[MAX_TRACK + 1]; /* hash[k]: after k events (hash[0] is the seed) */
} result_t;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void record(result_t *r, const mx_ws_event_t *ev) {
    uint64_t h = r->hash[r->n < MAX_TRACK ? r->n : MAX_TRACK];
    int f[3] = {ev->type, ev->opcode, ev->close_code};
    h = fnv(h, f, sizeof f);
    h = fnv(h, &ev->len, sizeof ev->len);
    h = fnv(h, ev->data, ev->len);
    r->n++;
    r->hash[r->n < MAX_TRACK ? r->n : MAX_TRACK] = h;
}

static size_t g_max;
static int g_take;

/* Checks what any event must satisfy. */
static void check_event(const mx_ws_event_t *ev) {
    CHECK(ev->data != NULL);
    switch (ev->type) {
    case MX_WS_EV_MESSAGE:
        CHECK(ev->opcode == MX_WS_OP_TEXT || ev->opcode == MX_WS_OP_BINARY);
        CHECK(ev->len <= g_max);
        if (ev->opcode == MX_WS_OP_TEXT)
            CHECK(mx_utf8_valid(ev->data, ev->len));
        CHECK(ev->close_code == 0);
        break;
    case MX_WS_EV_PING:
    case MX_WS_EV_PONG:
        CHECK(ev->len <= 125);
        CHECK(ev->opcode == (ev->type == MX_WS_EV_PING ? MX_WS_OP_PING : MX_WS_OP_PONG));
        break;
    case MX_WS_EV_CLOSE:
        CHECK(ev->len <= 123);
        CHECK(ev->close_code == 1005 ? ev->len == 0 : mx_ws_close_code_valid(ev->close_code));
        CHECK(mx_utf8_valid(ev->data, ev->len));
        break;
    default:
        CHECK(0);
    }
}

/* mode 0: whole; 1: byte by byte; 2: random pieces (some empty). Each piece is a fresh heap copy
 * of exactly its size, so ASan catches any read past it. */
static void run(const uint8_t *in, size_t len, const mx_ws_deflate_params_t *z, int mode,
                result_t *r) {
    mx_ws_reader_t *rd = mx_ws_reader_new(g_max, z);
    CHECK(rd != NULL);
    r->err = 0;
    r->n = 0;
    r->hash[0] = 0xcbf29ce484222325ull;
    size_t pos = 0;
    int closed = 0;
    do {
        size_t piece = fuzz_piece(mode, len - pos, len / 4);
        uint8_t *copy = fuzz_copy(in + pos, piece);
        size_t at = 0;
        do {
            mx_ws_event_t ev;
            ssize_t k = mx_ws_read(rd, copy + at, piece - at, &ev);
            CHECK(mx_ws_reader_buffered(rd) <= g_max + 1);
            if (k < 0) {
                CHECK(k == MX_WS_EPROTO || k == MX_WS_EDATA || k == MX_WS_ETOOBIG);
                CHECK(ev.type == MX_WS_EV_NONE);
                r->err = (int)k;
                break;
            }
            CHECK((size_t)k <= piece - at);
            CHECK(ev.type != MX_WS_EV_NONE || (size_t)k == piece - at);
            at += (size_t)k;
            if (ev.type == MX_WS_EV_NONE)
                continue;
            CHECK(!closed); /* nothing comes after a close */
            check_event(&ev);
            record(r, &ev);
            closed = ev.type == MX_WS_EV_CLOSE;
            if (ev.type == MX_WS_EV_MESSAGE && g_take) {
                size_t tl = 1;
                uint8_t *t = mx_ws_reader_take(rd, &tl);
                CHECK(tl == ev.len && (t == NULL) == (ev.len == 0));
                CHECK(t == NULL || t == ev.data);
                free(t);
            }
        } while (at < piece);
        free(copy);
        if (r->err != 0)
            break;
        pos += piece;
    } while (pos < len);
    if (r->err != 0) {
        mx_ws_event_t ev;
        uint8_t b = 0x81;
        CHECK(mx_ws_read(rd, &b, 1, &ev) == r->err); /* dead stays dead */
    }
    mx_ws_reader_free(rd);
}

static uint64_t final_hash(const result_t *r) { return r->hash[r->n < MAX_TRACK ? r->n : MAX_TRACK]; }

static void check_same(const result_t *a, const result_t *b) {
    CHECK(a->err == b->err);
    CHECK(a->n == b->n);
    CHECK(final_hash(a) == final_hash(b));
}

static void stream_mode(const uint8_t *in, size_t len, int cnct) {
    mx_ws_deflate_params_t z = {0, cnct, 15, 15};
    static result_t res[2], other;
    for (int d = 0; d < 2; d++) {
        const mx_ws_deflate_params_t *zp = d ? &z : NULL;
        run(in, len, zp, 0, &res[d]);
        for (int mode = 1; mode <= 2; mode++) {
            if (mode == 1 && len > 4096)
                continue;
            run(in, len, zp, mode, &other);
            check_same(&res[d], &other);
        }
    }
    const result_t *off = &res[0], *on = &res[1];
    if (off->err != MX_WS_EPROTO) {
        check_same(off, on);
    } else {
        CHECK(on->n >= off->n);
        if (off->n <= MAX_TRACK)
            CHECK(on->hash[off->n] == final_hash(off));
    }
}

/* ---------------------------------------------------------------------------------------------
 * Round trip through the deflater
 * ------------------------------------------------------------------------------------------- */

/* Appends a masked client frame. */
static void cframe(bytes_t *b, int fin, int rsv1, int op, const uint8_t *p, size_t n) {
    uint8_t h[14], key[4];
    size_t hl = mx_ws_frame_header(h, fin, rsv1, op, n);
    h[1] |= 0x80;
    uint32_t x = next_rand();
    memcpy(key, &x, 4);
    memcpy(h + hl, key, 4);
    bytes_put(b, h, hl + 4);
    size_t at = b->len;
    bytes_put(b, p, n);
    for (size_t i = 0; i < n; i++)
        b->p[at + i] ^= key[i & 3];
}

#define MAX_MSGS 64

static void roundtrip_mode(const uint8_t *in, size_t len) {
    if (len < 1)
        return;
    /* Options byte: bit 0 server_no_context_takeover, bits 2-4 server_max_window_bits - 8,
     * bit 5 the reader resets its inflater per message (when the deflater does). */
    mx_ws_deflate_params_t z = {in[0] & 1, 0, 8 + ((in[0] >> 2) & 7), 15};
    in++;
    len--;
    mx_ws_deflater_t *d = mx_ws_deflater_new(&z);
    CHECK(d != NULL);
    z_stream check;
    memset(&check, 0, sizeof check);
    CHECK(inflateInit2(&check, -z.server_max_window_bits) == Z_OK);

    /* Messages: a length byte (x 16 when its top bit is set), then that many bytes; text when
     * the bytes are UTF-8 and the length byte is odd. */
    const uint8_t *msg[MAX_MSGS];
    size_t mlen[MAX_MSGS], nmsg = 0, pos = 0;
    int op[MAX_MSGS];
    bytes_t stream = {0};
    uint8_t *out = malloc(65536 + 1);
    CHECK(out != NULL);
    while (pos < len && nmsg < MAX_MSGS) {
        size_t n = in[pos] & 0x7F;
        if (in[pos] & 0x80)
            n *= 16;
        int text = in[pos] & 1;
        pos++;
        if (n > len - pos)
            n = len - pos;
        msg[nmsg] = in + pos;
        mlen[nmsg] = n;
        op[nmsg] = text && mx_utf8_valid(in + pos, n) ? MX_WS_OP_TEXT : MX_WS_OP_BINARY;
        pos += n;

        uint8_t *f;
        size_t fl;
        CHECK(mx_ws_build_frame(d, op[nmsg], msg[nmsg], n, &f, &fl) == 0);
        size_t hl = (f[1] & 0x7F) == 126 ? 4 : (f[1] & 0x7F) == 127 ? 10 : 2;
        int rsv1 = (f[0] & 0x40) != 0;
        CHECK(f[0] == (0x80 | (rsv1 ? 0x40 : 0) | op[nmsg]));
        const uint8_t *payload = f + hl;
        size_t plen = fl - hl;
        if (!rsv1) {
            CHECK(plen == n && memcmp(payload, msg[nmsg], n) == 0);
        } else {
            /* Decodable with exactly the negotiated window. */
            uint8_t *zb = malloc(plen + 4);
            CHECK(zb != NULL);
            memcpy(zb, payload, plen);
            memcpy(zb + plen, "\x00\x00\xff\xff", 4);
            check.next_in = zb;
            check.avail_in = (uInt)(plen + 4);
            check.next_out = out;
            check.avail_out = 65536 + 1;
            int zrc = inflate(&check, Z_SYNC_FLUSH);
            CHECK(zrc == Z_OK || zrc == Z_BUF_ERROR);
            CHECK(check.avail_in == 0 && 65536 + 1 - check.avail_out == n);
            CHECK(memcmp(out, msg[nmsg], n) == 0);
            free(zb);
            CHECK(plen <= n + n / 1000 + 16); /* every message is compressed, even if it grows */
        }
        /* Fragment it: RSV1 and the opcode on the first piece only. */
        size_t at = 0;
        int first = 1;
        do {
            size_t k = plen - at;
            uint32_t x = next_rand();
            if (x & 1)
                k = k < (x >> 1) % 64 ? k : (x >> 1) % 64;
            cframe(&stream, at + k == plen, first && rsv1, first ? op[nmsg] : MX_WS_OP_CONT,
                   payload + at, k);
            if ((x >> 8) % 8 == 0) {
                uint8_t ping[3] = {'p', (uint8_t)nmsg, (uint8_t)at};
                cframe(&stream, 1, 0, MX_WS_OP_PING, ping, 3);
            }
            first = 0;
            at += k;
        } while (at < plen);
        free(f);
        nmsg++;
    }
    inflateEnd(&check);
    free(out);

    /* Read it back, whole and in pieces. The reader plays the server's part for a client
     * that compresses as our deflater does: it may reset per message only if the deflater does. */
    mx_ws_deflate_params_t rz = {0, z.server_no_context_takeover && (in[-1] & 0x20), 15, 15};
    g_max = 1 << 20;
    for (int mode = 0; mode <= 2; mode += 2) {
        mx_ws_reader_t *rd = mx_ws_reader_new(g_max, &rz);
        CHECK(rd != NULL);
        size_t got = 0, p = 0;
        while (p < stream.len) {
            size_t piece = stream.len - p;
            if (mode == 2) {
                size_t step = next_rand() % 100;
                if (step < piece)
                    piece = step;
            }
            size_t at = 0;
            do {
                mx_ws_event_t ev;
                ssize_t k = mx_ws_read(rd, stream.p + p + at, piece - at, &ev);
                CHECK(k >= 0);
                at += (size_t)k;
                if (ev.type == MX_WS_EV_MESSAGE) {
                    CHECK(got < nmsg);
                    CHECK(ev.opcode == op[got] && ev.len == mlen[got]);
                    CHECK(ev.len == 0 || memcmp(ev.data, msg[got], ev.len) == 0);
                    got++;
                } else {
                    CHECK(ev.type == MX_WS_EV_NONE || ev.type == MX_WS_EV_PING);
                }
            } while (at < piece);
            p += piece;
        }
        CHECK(got == nmsg);
        mx_ws_reader_free(rd);
    }
    free(stream.p);
    mx_ws_deflater_free(d);
}

/* ---------------------------------------------------------------------------------------------
 * Handshake fields
 * ------------------------------------------------------------------------------------------- */

static int ieq_at(const uint8_t *s, const char *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char a = s[i], b = (unsigned char)t[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a + 32);
        if (a != b)
            return 0;
    }
    return 1;
}

static void header_mode(const uint8_t *in, size_t len) {
    char *v = fuzz_copy(in, len);

    mx_ws_deflate_params_t p, p2;
    char resp[MX_WS_DEFLATE_RESP_MAX], resp2[MX_WS_DEFLATE_RESP_MAX];
    if (mx_ws_negotiate_deflate(v, len, &p, resp, sizeof resp) == 1) {
        CHECK(strncmp(resp, "permessage-deflate", 18) == 0);
        CHECK(p.server_max_window_bits >= 8 && p.server_max_window_bits <= 15);
        CHECK(p.client_max_window_bits >= 8 && p.client_max_window_bits <= 15);
        CHECK((p.server_no_context_takeover | p.client_no_context_takeover) <= 1);
        size_t rl = strlen(resp);
        char *again = fuzz_copy(resp, rl);
        CHECK(mx_ws_negotiate_deflate(again, rl, &p2, resp2, sizeof resp2) == 1);
        CHECK(memcmp(&p, &p2, sizeof p) == 0 && strcmp(resp, resp2) == 0);
        free(again);
        /* A response buffer of exactly the right size is enough; one byte less is not. */
        CHECK(mx_ws_negotiate_deflate(v, len, &p2, resp2, rl + 1) == 1);
        CHECK(mx_ws_negotiate_deflate(v, len, &p2, resp2, rl) == 0);
    }
    mx_ws_deflate_params_t lim = {1, 1, 9, 10};
    if (mx_ws_negotiate_deflate_ex(v, len, &lim, &p, resp, sizeof resp) == 1)
        CHECK(p.server_no_context_takeover && p.client_no_context_takeover &&
              p.server_max_window_bits <= 9 && p.client_max_window_bits <= 15);

    /* A token is found only where the value holds it, ignoring case. */
    static const char *const toks[] = {"upgrade", "websocket", "a"};
    for (size_t t = 0; t < 3; t++) {
        size_t tl = strlen(toks[t]);
        if (mx_ws_token_list_has(v, len, toks[t])) {
            int found = 0;
            for (size_t i = 0; !found && i + tl <= len; i++)
                found = ieq_at(in + i, toks[t], tl);
            CHECK(found);
        }
    }
    static const char *const sup[] = {"chat", "superchat", "v1.json"};
    int k = mx_ws_select_protocol(v, len, sup, 3);
    CHECK(k >= -1 && k < 3);
    if (k >= 0)
        CHECK(memmem(v, len, sup[k], strlen(sup[k])) != NULL);

    char out[29];
    if (mx_ws_accept_key(v, len, out) == 0) {
        CHECK(strlen(out) == 28 && out[27] == '=');
        CHECK(len >= 24);
    }
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const size_t maxes[8] = {1 << 20, 0, 1, 5, 125, 126, 1000, 65536};
    if (size < 3)
        return 0;
    fuzz_seed(data[1], data[2]);
    g_max = maxes[data[0] & 7];
    g_take = (data[0] >> 4) & 1;
    if (data[0] & 0x80)
        roundtrip_mode(data + 3, size - 3);
    else if (data[0] & 0x40)
        header_mode(data + 3, size - 3);
    else
        stream_mode(data + 3, size - 3, (data[0] >> 3) & 1);
    return 0;
}
