/*
 * ws.c: the WebSocket codec (RFC 6455, with permessage-deflate from RFC 7692).
 *
 * It owns the handshake arithmetic (SHA-1 and base64 for Sec-WebSocket-Accept, list parsing for
 * Connection, Upgrade, Sec-WebSocket-Protocol and Sec-WebSocket-Extensions), UTF-8 validation,
 * the incremental frame reader that turns a client's bytes into messages and control events, and
 * the writers for the server's frames. No I/O and no locks: the I/O thread drives a reader; the
 * thread that sends a connection's messages drives its deflater (one at a time); the pure helpers
 * run on any thread. Parsing functions never read outside the ranges they are given.
 */
#include "ws.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "text.h"

/* ---------------------------------------------------------------------------------------------
 * Header lists (RFC 9110 5.6; the helpers are in text.h)
 * ------------------------------------------------------------------------------------------- */

int mx_ws_token_list_has(const char *value, size_t len, const char *token) {
    if (value == NULL || token == NULL)
        return 0;
    return mx_list_has_token(value, len, token, strlen(token));
}

int mx_ws_select_protocol(const char *offered, size_t len, const char *const *supported,
                          size_t n) {
    const char *item;
    size_t item_len, i = 0;
    if (offered == NULL || supported == NULL)
        return -1;
    /* The client's order decides (RFC 6455 4.2.2 leaves the choice to the server; taking the
     * client's first acceptable preference is what browsers' users expect). */
    while (mx_next_item(offered, len, &i, &item, &item_len)) {
        for (size_t k = 0; k < n; k++) {
            if (supported[k] != NULL && strlen(supported[k]) == item_len &&
                memcmp(supported[k], item, item_len) == 0)
                return k > (size_t)INT_MAX ? -1 : (int)k;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * SHA-1 (FIPS 180-4) and base64 (RFC 4648 4), just enough for Sec-WebSocket-Accept
 * ------------------------------------------------------------------------------------------- */

static uint32_t mx__rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

/* Processes one 64-byte block into the hash state h. */
static void mx__sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    for (int t = 16; t < 80; t++)
        w[t] = mx__rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; t++) {
        uint32_t f, k;
        if (t < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999u;
        } else if (t < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1u;
        } else if (t < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDCu;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6u;
        }
        uint32_t tmp = mx__rol(a, 5) + f + e + k + w[t];
        e = d;
        d = c;
        c = mx__rol(b, 30);
        b = a;
        a = tmp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

/* One-shot SHA-1 of p[0..n). */
static void mx__sha1(const uint8_t *p, size_t n, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    uint8_t tail[128];
    size_t full = n / 64 * 64, rest = n - full;
    for (size_t off = 0; off < full; off += 64)
        mx__sha1_block(h, p + off);
    /* Padding: 0x80, zeros, then the length in bits as a 64-bit big-endian number, filling one
     * block when the rest leaves room for 9 more bytes, else two. */
    memset(tail, 0, sizeof tail);
    memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    size_t tail_len = rest + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (unsigned k = 0; k < 8; k++)
        tail[tail_len - 1 - k] = (uint8_t)(bits >> (8 * k));
    for (size_t off = 0; off < tail_len; off += 64)
        mx__sha1_block(h, tail + off);
    for (int k = 0; k < 5; k++) {
        out[4 * k] = (uint8_t)(h[k] >> 24);
        out[4 * k + 1] = (uint8_t)(h[k] >> 16);
        out[4 * k + 2] = (uint8_t)(h[k] >> 8);
        out[4 * k + 3] = (uint8_t)h[k];
    }
}

static const char mx__b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of a base64 character, or -1. */
static int mx__b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Encodes p[0..n) with padding; out needs 4 * ceil(n / 3) + 1 bytes. Returns the length. */
static size_t mx__b64_encode(const uint8_t *p, size_t n, char *out) {
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = mx__b64[v >> 18];
        out[o++] = mx__b64[(v >> 12) & 63];
        out[o++] = mx__b64[(v >> 6) & 63];
        out[o++] = mx__b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = mx__b64[v >> 18];
        out[o++] = mx__b64[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = mx__b64[v >> 18];
        out[o++] = mx__b64[(v >> 12) & 63];
        out[o++] = mx__b64[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

#define MX__WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int mx_ws_accept_key(const char *key, size_t key_len, char out[29]) {
    size_t i = 0;
    uint8_t buf[24 + sizeof(MX__WS_GUID) - 1], digest[20];
    if (key == NULL)
        return -1;
    /* The field parser already trims OWS; trimming again costs nothing and makes the function
     * safe to call on a raw value. */
    mx_skip_ows(key, key_len, &i);
    while (key_len > i && mx_is_ows((unsigned char)key[key_len - 1]))
        key_len--;
    key += i;
    key_len -= i;

    /* RFC 6455 4.2.1 item 5: base64 of a 16-byte value is 22 characters and "==". The two bits
     * the 22nd character carries past the 16th byte are not checked (RFC 4648 3.5 allows either;
     * a client that sets them still sent 16 bytes). */
    if (key_len != 24 || key[22] != '=' || key[23] != '=')
        return -1;
    for (size_t k = 0; k < 22; k++)
        if (mx__b64_value((unsigned char)key[k]) < 0)
            return -1;

    memcpy(buf, key, 24);
    memcpy(buf + 24, MX__WS_GUID, sizeof(MX__WS_GUID) - 1);
    mx__sha1(buf, sizeof buf, digest);
    mx__b64_encode(digest, sizeof digest, out);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * permessage-deflate negotiation (RFC 7692 7.1)
 * ------------------------------------------------------------------------------------------- */

/*
 * Parses a parameter value at *i: a token, or a quoted-string (RFC 9110 5.6.4) whose unescaped
 * text must itself be a token (RFC 6455 9.1). Copies up to cap - 1 unescaped bytes into val
 * (NUL-terminated) and sets *val_len to the full unescaped length (which may exceed what fit).
 * Returns 0; -2 for a well-formed value that is not a token (empty, or a quoted string holding
 * other characters), with *i just past it; -1 for a malformed one (an unterminated quoted
 * string, or a control character in it), with *i at the end of the input.
 */
static int mx__ext_value(const char *s, size_t len, size_t *i, char *val, size_t cap,
                         size_t *val_len) {
    size_t n = 0;
    int token = 1;
    if (*i < len && s[*i] == '"') {
        for ((*i)++;; (*i)++) {
            if (*i >= len)
                return -1;
            unsigned char c = (unsigned char)s[*i];
            if (c == '"')
                break;
            if (c == '\\') {
                if (++*i >= len)
                    return -1;
                c = (unsigned char)s[*i];
            }
            if ((c < 0x20 && c != '\t') || c == 0x7F) {
                *i = len;
                return -1;
            }
            token &= mx_is_tchar(c);
            if (n + 1 < cap)
                val[n] = (char)c;
            n++;
        }
        (*i)++; /* the closing quote */
    } else {
        size_t start = *i;
        n = mx_token(s, len, i);
        for (size_t k = 0; k < n && k + 1 < cap; k++)
            val[k] = s[start + k];
    }
    val[n < cap ? n : cap - 1] = '\0';
    *val_len = n;
    return n > 0 && token ? 0 : -2;
}

/* A window size: a plain decimal 8..15 without leading zeros (RFC 7692 7.1.2.1). -1 if not. */
static int mx__window_bits(const char *v, size_t n) {
    if (n == 1 && (v[0] == '8' || v[0] == '9'))
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + (v[1] - '0');
    return -1;
}

/* What one permessage-deflate offer asked for. */
typedef struct mx__pmd_offer {
    int snct, cnct;   /* server_ / client_no_context_takeover present */
    int smwb;         /* server_max_window_bits value, or 0 when absent */
    int cmwb_present; /* client_max_window_bits present, with or without a value */
    int cmwb;         /* its value, or 0 when given without one */
} mx__pmd_offer_t;

/*
 * Applies one parameter of a permessage-deflate offer. Returns 0, or -1 when it makes the offer
 * unacceptable: unknown, repeated, a value where none belongs, or a missing or bad window size
 * (RFC 7692 7.1: "the server MUST decline an extension negotiation offer for this extension if
 * ... [it] includes an extension parameter not defined for use in an offer, ... with an invalid
 * value, ... [or] multiple extension parameters with the same name").
 */
static int mx__pmd_param(mx__pmd_offer_t *o, const char *name, size_t name_len, int has_val,
                         const char *val, size_t val_len) {
#define MX__IS(lit) MX_IEQ_LIT(name, name_len, lit)
    if (MX__IS("server_no_context_takeover")) {
        if (has_val || o->snct)
            return -1;
        o->snct = 1;
    } else if (MX__IS("client_no_context_takeover")) {
        if (has_val || o->cnct)
            return -1;
        o->cnct = 1;
    } else if (MX__IS("server_max_window_bits")) {
        if (!has_val || o->smwb)
            return -1;
        o->smwb = mx__window_bits(val, val_len);
        if (o->smwb < 0)
            return -1;
    } else if (MX__IS("client_max_window_bits")) {
        if (o->cmwb_present)
            return -1;
        o->cmwb_present = 1;
        if (has_val) {
            o->cmwb = mx__window_bits(val, val_len);
            if (o->cmwb < 0)
                return -1;
        }
    } else {
        return -1;
    }
    return 0;
#undef MX__IS
}

static int mx__clamp_bits(int b) { return b < 8 ? 8 : b > 15 ? 15 : b; }

/* Writes the response for an accepted offer, applying the server's limits. Returns 1, or 0 when
 * resp is too small. */
static int mx__pmd_accept(const mx__pmd_offer_t *o, const mx_ws_deflate_params_t *limits,
                          mx_ws_deflate_params_t *p, char *resp, size_t resp_cap) {
    int lim_s = limits ? mx__clamp_bits(limits->server_max_window_bits) : 15;
    int lim_c = limits ? mx__clamp_bits(limits->client_max_window_bits) : 15;
    int show_s, show_c;

    p->server_no_context_takeover = o->snct || (limits && limits->server_no_context_takeover);
    p->client_no_context_takeover = o->cnct || (limits && limits->client_no_context_takeover);
    /* Our window: what the client allows (RFC 7692 7.1.2.1: the response carries the same or a
     * smaller value), capped by our limit, which we may announce even when not asked. */
    p->server_max_window_bits = o->smwb ? (o->smwb < lim_s ? o->smwb : lim_s) : lim_s;
    show_s = o->smwb != 0 || lim_s < 15;
    /* The client's window: only limitable when it offered client_max_window_bits (7.1.2.2);
     * echo a value it gave, so both sides agree on it. */
    p->client_max_window_bits = 15;
    show_c = 0;
    if (o->cmwb_present) {
        int c = o->cmwb ? o->cmwb : 15;
        p->client_max_window_bits = c < lim_c ? c : lim_c;
        show_c = o->cmwb != 0 || lim_c < 15;
    }

    int n = snprintf(resp, resp_cap, "permessage-deflate%s%s", p->server_no_context_takeover
                     ? "; server_no_context_takeover" : "", p->client_no_context_takeover
                     ? "; client_no_context_takeover" : "");
    if (n < 0 || (size_t)n >= resp_cap)
        return 0;
    if (show_s) {
        int k = snprintf(resp + n, resp_cap - (size_t)n, "; server_max_window_bits=%d",
                         p->server_max_window_bits);
        if (k < 0 || (size_t)k >= resp_cap - (size_t)n)
            return 0;
        n += k;
    }
    if (show_c) {
        int k = snprintf(resp + n, resp_cap - (size_t)n, "; client_max_window_bits=%d",
                         p->client_max_window_bits);
        if (k < 0 || (size_t)k >= resp_cap - (size_t)n)
            return 0;
    }
    return 1;
}

int mx_ws_negotiate_deflate_ex(const char *offers, size_t len,
                               const mx_ws_deflate_params_t *limits, mx_ws_deflate_params_t *p,
                               char *resp, size_t resp_cap) {
    const char *s = offers;
    size_t i = 0;
    if (s == NULL || p == NULL || resp == NULL || resp_cap == 0)
        return 0;

    /* Sec-WebSocket-Extensions = 1#extension; extension = token *( ";" extension-param );
     * extension-param = token [ "=" ( token / quoted-string ) ] (RFC 6455 9.1), with OWS allowed
     * around the separators as in every HTTP list. */
    while (i < len) {
        mx_skip_ows(s, len, &i);
        if (i >= len)
            break;
        if (s[i] == ',') {
            i++; /* an empty item */
            continue;
        }
        const char *name = s + i;
        size_t name_len = mx_token(s, len, &i);
        int ok = name_len > 0;
        int ours = ok && mx_ieq(name, name_len, "permessage-deflate", 18);
        mx__pmd_offer_t o;
        memset(&o, 0, sizeof o);

        while (ok) {
            mx_skip_ows(s, len, &i);
            if (i >= len || s[i] == ',')
                break;
            if (s[i] != ';') {
                ok = 0;
                break;
            }
            i++;
            mx_skip_ows(s, len, &i);
            const char *pname = s + i;
            size_t pname_len = mx_token(s, len, &i);
            if (pname_len == 0) {
                ok = 0;
                break;
            }
            mx_skip_ows(s, len, &i);
            int has_val = 0;
            char val[8];
            size_t val_len = 0;
            val[0] = '\0';
            if (i < len && s[i] == '=') {
                i++;
                mx_skip_ows(s, len, &i);
                /* A value that is not a token spoils the offer (ours or not) but, when it is a
                 * well-formed quoted string, it still ends where its closing quote is. */
                if (mx__ext_value(s, len, &i, val, sizeof val, &val_len) < 0) {
                    ok = 0;
                    break;
                }
                has_val = 1;
            }
            if (ours && mx__pmd_param(&o, pname, pname_len, has_val, val, val_len) < 0)
                ok = 0; /* declined; the rest of the offer is skipped below */
        }
        /* A malformed or declined offer ends at the next comma outside quotes. */
        mx_skip_item(s, len, &i);
        if (i < len)
            i++;
        if (ok && ours)
            return mx__pmd_accept(&o, limits, p, resp, resp_cap);
    }
    return 0;
}

int mx_ws_negotiate_deflate(const char *offers, size_t len, mx_ws_deflate_params_t *p, char *resp,
                            size_t resp_cap) {
    return mx_ws_negotiate_deflate_ex(offers, len, NULL, p, resp, resp_cap);
}

/* ---------------------------------------------------------------------------------------------
 * UTF-8 (RFC 3629 4)
 * ------------------------------------------------------------------------------------------- */

void mx_utf8_init(mx_utf8_t *v) {
    v->state = 0;
    v->need = 0;
    v->lo = 0x80;
    v->hi = 0xBF;
}

#define MX__HIGH_BITS 0x8080808080808080ull

int mx_utf8_feed(mx_utf8_t *v, const uint8_t *p, size_t n) {
    uint32_t need = v->need, lo = v->lo, hi = v->hi;
    size_t i = 0;
    if (v->state != 0)
        return -1;
    while (i < n) {
        if (need == 0) {
            /* Between sequences: skip ASCII 8 bytes at a time (most text is mostly ASCII). */
            while (n - i >= 8) {
                uint64_t x;
                memcpy(&x, p + i, 8);
                if (x & MX__HIGH_BITS)
                    break;
                i += 8;
            }
            while (i < n && p[i] < 0x80)
                i++;
            if (i >= n)
                break;
            /* A lead byte. The first continuation byte's range excludes overlongs (E0, F0),
             * surrogates (ED) and code points past U+10FFFF (F4), per the table in RFC 3629 4. */
            uint32_t c = p[i++];
            if (c < 0xC2) {
                goto invalid; /* a stray continuation byte, or C0/C1 (overlong) */
            } else if (c < 0xE0) {
                need = 1;
                lo = 0x80;
                hi = 0xBF;
            } else if (c < 0xF0) {
                need = 2;
                lo = c == 0xE0 ? 0xA0 : 0x80;
                hi = c == 0xED ? 0x9F : 0xBF;
            } else if (c < 0xF5) {
                need = 3;
                lo = c == 0xF0 ? 0x90 : 0x80;
                hi = c == 0xF4 ? 0x8F : 0xBF;
            } else {
                goto invalid;
            }
        } else {
            uint32_t c = p[i++];
            if (c < lo || c > hi)
                goto invalid;
            need--;
            lo = 0x80;
            hi = 0xBF;
        }
    }
    v->need = need;
    v->lo = lo;
    v->hi = hi;
    return 0;

invalid:
    v->state = 1;
    return -1;
}

int mx_utf8_complete(const mx_utf8_t *v) { return v->state == 0 && v->need == 0; }

int mx_utf8_valid(const uint8_t *p, size_t n) {
    mx_utf8_t v;
    mx_utf8_init(&v);
    return mx_utf8_feed(&v, p, n) == 0 && mx_utf8_complete(&v);
}

int mx_ws_close_code_valid(int code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* ---------------------------------------------------------------------------------------------
 * Frame reader (RFC 6455 5.2-5.5, RFC 7692 6-7.2.2)
 * ------------------------------------------------------------------------------------------- */

enum {
    MX__RS_HEAD,    /* reading a frame header */
    MX__RS_PAYLOAD, /* reading a frame's payload */
    MX__RS_CLOSED,  /* a Close frame arrived: the rest is discarded */
    MX__RS_DEAD     /* a protocol error: every call returns err */
};

/* A delivered message buffer at most this large is kept for the next message. */
#define MX__KEEP_BUF 4096
/* Compressed payload is unmasked through a stack buffer of this size before inflating. */
#define MX__ZCHUNK 4096

static const uint8_t mx__empty[1] = {0};
static const uint8_t mx__z_tail[4] = {0x00, 0x00, 0xff, 0xff};

struct mx_ws_reader {
    size_t max_len;
    int state, err;
    int deflate;    /* permessage-deflate negotiated: RSV1 may start a compressed message */
    int reset_each; /* client_no_context_takeover: each message is its own deflate stream */
    int z_init;     /* zs is initialised (from the first compressed message on) */
    int z_fresh;    /* inflate sits at a stream or message boundary and has had no input since */
    z_stream zs;

    /* the frame being read */
    uint8_t head[14]; /* 2 fixed bytes, up to 8 length bytes, 4 mask bytes */
    unsigned head_have, head_need;
    int fin, rsv1, opcode;
    uint8_t mask[4];
    unsigned mask_pos; /* offset into mask of the next payload byte */
    uint64_t left;     /* payload bytes of this frame still to come */

    /* the data message being assembled (msg_op 0: none in progress) */
    int msg_op, msg_z;
    uint8_t *msg;
    size_t msg_len, msg_cap;
    mx_utf8_t utf8;
    int delivered; /* a MESSAGE event went out; the next call drops or reuses its buffer */

    /* the control frame being read; its payload is at most 125 bytes (RFC 6455 5.5) */
    uint8_t ctl[125];
    size_t ctl_len;
};

mx_ws_reader_t *mx_ws_reader_new(size_t max_message_len, const mx_ws_deflate_params_t *deflate) {
    mx_ws_reader_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    /* No message can come near SIZE_MAX / 4 bytes anyway; the clamp keeps max_len + 1 (the
     * inflater writes one byte past the limit to detect it) and every 64-bit frame length at or
     * above 2^62 clear of overflow. */
    r->max_len = max_message_len < SIZE_MAX / 4 ? max_message_len : SIZE_MAX / 4;
    r->state = MX__RS_HEAD;
    r->deflate = deflate != NULL;
    r->reset_each = deflate != NULL && deflate->client_no_context_takeover;
    return r;
}

void mx_ws_reader_free(mx_ws_reader_t *r) {
    if (r == NULL)
        return;
    if (r->z_init)
        inflateEnd(&r->zs);
    free(r->msg);
    free(r);
}

size_t mx_ws_reader_buffered(const mx_ws_reader_t *r) { return r->msg_cap; }

uint8_t *mx_ws_reader_take(mx_ws_reader_t *r, size_t *len) {
    uint8_t *p = NULL;
    *len = 0;
    if (r->delivered && r->msg != NULL && r->msg_len > 0) {
        p = r->msg;
        *len = r->msg_len;
        r->msg = NULL;
        r->msg_len = r->msg_cap = 0;
    }
    return p;
}

/* XORs src[0..n) with the mask (starting at mask offset pos) into dst; dst may equal src. */
typedef uint8_t mx__v16 __attribute__((vector_size(16))); /* one SSE2/NEON register */

static void mx__unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
                       unsigned pos) {
    uint8_t m8[16];
    uint64_t m;
    mx__v16 mv;
    size_t i = 0;
    for (int k = 0; k < 16; k++)
        m8[k] = mask[(pos + (unsigned)k) & 3];
    memcpy(&m, m8, 8);
    memcpy(&mv, m8, 16);
    /* 16 and 8 are multiples of 4, so the rotated mask stays in phase across the steps. */
    for (; n - i >= 32; i += 32) {
        mx__v16 a, b;
        memcpy(&a, src + i, 16);
        memcpy(&b, src + i + 16, 16);
        a ^= mv;
        b ^= mv;
        memcpy(dst + i, &a, 16);
        memcpy(dst + i + 16, &b, 16);
    }
    for (; n - i >= 8; i += 8) {
        uint64_t x;
        memcpy(&x, src + i, 8);
        x ^= m;
        memcpy(dst + i, &x, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ m8[i & 7];
}

/* Makes room for at least need bytes of message, growing geometrically but never past hint
 * (what the frame announced, or the inflate limit) unless need itself is larger. */
static int mx__reserve(mx_ws_reader_t *r, size_t need, size_t hint) {
    if (need <= r->msg_cap)
        return 0;
    size_t cap = r->msg_cap < 256 ? 256 : r->msg_cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > hint)
        cap = hint;
    if (cap < need)
        cap = need;
    uint8_t *p = realloc(r->msg, cap);
    if (p == NULL)
        return MX_WS_EINTERNAL;
    r->msg = p;
    r->msg_cap = cap;
    return 0;
}

/* Counts got freshly inflated bytes at msg + msg_len: text is validated up to the limit, then
 * anything past the limit is too big. Validating first keeps the verdict independent of how
 * much output one inflate call happened to produce. */
static int mx__took_output(mx_ws_reader_t *r, size_t got) {
    size_t within = got;
    if (r->msg_len + got > r->max_len)
        within = r->max_len - r->msg_len;
    if (r->msg_op == MX_WS_OP_TEXT && mx_utf8_feed(&r->utf8, r->msg + r->msg_len, within) < 0)
        return MX_WS_EDATA;
    r->msg_len += got;
    return r->msg_len > r->max_len ? MX_WS_ETOOBIG : 0;
}

/*
 * A deflate stream ended (a block with BFINAL set, RFC 7692 7.2.3.4). What follows in the
 * message, if anything, starts a new stream. Unless the client resets its context per message
 * it may still refer back to the old data, so the window must survive: inflateResetKeep (exported
 * and declared by zlib.h, though not in the manual) restarts the stream and keeps the window,
 * with no copy. Copying the window out and back as a dictionary would work too, but would cost
 * 64 KiB of memory traffic for every two-byte stream a client cares to send.
 */
static int mx__z_restart(mx_ws_reader_t *r) {
    int zrc = r->reset_each ? inflateReset(&r->zs) : inflateResetKeep(&r->zs);
    return zrc == Z_OK ? 0 : MX_WS_EINTERNAL;
}

/*
 * Inflates src[0..n) into the message. The buffer grows only while output keeps coming and never
 * past max_len + 1 bytes: one byte past the limit proves the message too big.
 */
static int mx__inflate(mx_ws_reader_t *r, const uint8_t *src, size_t n) {
    size_t limit = r->max_len + 1;
    int rc;
    if (n == 0)
        return 0;
    r->zs.next_in = (Bytef *)(uintptr_t)src; /* zlib does not write through next_in */
    r->zs.avail_in = (uInt)n;                /* n <= MX__ZCHUNK */
    r->z_fresh = 0;
    for (;;) {
        if (r->msg_len == r->msg_cap) {
            size_t want = r->msg_cap < 1024 ? 1024 : r->msg_cap * 2;
            rc = mx__reserve(r, r->msg_len + 1, want < limit ? want : limit);
            if (rc < 0)
                return rc;
        }
        size_t room = r->msg_cap - r->msg_len;
        if (room > UINT_MAX)
            room = UINT_MAX;
        r->zs.next_out = r->msg + r->msg_len;
        r->zs.avail_out = (uInt)room;
        int zrc = inflate(&r->zs, Z_SYNC_FLUSH);
        rc = mx__took_output(r, room - r->zs.avail_out);
        if (rc < 0)
            return rc;
        switch (zrc) {
        case Z_STREAM_END:
            rc = mx__z_restart(r);
            if (rc < 0)
                return rc;
            if (r->zs.avail_in == 0) {
                r->z_fresh = 1;
                return 0;
            }
            continue;
        case Z_OK:
        case Z_BUF_ERROR: /* no progress possible: input used up and nothing pending */
            break;
        case Z_DATA_ERROR:
        case Z_NEED_DICT:
            return MX_WS_EDATA;
        default:
            return MX_WS_EINTERNAL;
        }
        /* inflate stops only when the input is used up or the output is full; with room left,
         * everything decodable so far has been written. */
        if (r->zs.avail_out != 0)
            return 0;
    }
}

/* Ends a compressed message: RFC 7692 7.2.2 appends 00 00 ff ff and inflates the lot. */
static int mx__inflate_finish(mx_ws_reader_t *r) {
    int rc;
    /* Nothing since the last boundary (an empty payload, or a stream that ended exactly at the
     * message's end): there is no block to close. */
    if (!r->z_fresh) {
        rc = mx__inflate(r, mx__z_tail, sizeof mx__z_tail);
        if (rc < 0)
            return rc;
        /* The tail is an empty stored block; after it inflate must wait for a new block header
         * (zlib reports that as bit 128 of data_type). Anything else means the client's data was
         * cut inside a block, and the next message would be decoded from a broken state. */
        if (!r->z_fresh && !(r->zs.data_type & 128))
            return MX_WS_EDATA;
    }
    if (r->reset_each && inflateReset(&r->zs) != Z_OK)
        return MX_WS_EINTERNAL;
    r->z_fresh = 1;
    return 0;
}

/*
 * The length bytes of the header are all in (the 4 mask bytes follow): records the payload
 * length and refuses an uncompressed data frame that would take the message past max_len, before
 * a byte of it is buffered. Compressed sizes say nothing about the inflated size; the inflater
 * checks those.
 */
static int mx__length_known(mx_ws_reader_t *r) {
    unsigned len7 = r->head[1] & 0x7F;
    uint64_t len = len7;
    if (len7 == 126) {
        len = (uint64_t)r->head[2] << 8 | r->head[3];
    } else if (len7 == 127) {
        len = 0;
        for (int k = 0; k < 8; k++)
            len = len << 8 | r->head[2 + k];
    }
    r->left = len;
    if (r->opcode >= 8)
        return 0;
    int compressed = r->opcode == MX_WS_OP_CONT ? r->msg_z : r->rsv1;
    size_t have = r->opcode == MX_WS_OP_CONT ? r->msg_len : 0;
    if (!compressed && len > r->max_len - have)
        return MX_WS_ETOOBIG;
    return 0;
}

/* Reads one header byte. Returns 1 when the header is complete, 0 when more is needed, or an
 * error. Each check runs on the byte that decides it. */
static int mx__head_byte(mx_ws_reader_t *r, uint8_t b) {
    r->head[r->head_have++] = b;
    if (r->head_have == 1) {
        r->fin = b >> 7;
        r->rsv1 = (b >> 6) & 1;
        r->opcode = b & 0x0F;
        if (b & 0x30)
            return MX_WS_EPROTO; /* RSV2, RSV3: no extension we speak defines them (5.2) */
        switch (r->opcode) {
        case MX_WS_OP_CLOSE:
        case MX_WS_OP_PING:
        case MX_WS_OP_PONG:
            /* Control frames are never fragmented (5.5) nor compressed (RFC 7692 6). */
            if (!r->fin || r->rsv1)
                return MX_WS_EPROTO;
            return 0;
        case MX_WS_OP_CONT:
            /* RSV1 marks only the first frame of a compressed message (RFC 7692 6.1). */
            if (r->msg_op == 0 || r->rsv1)
                return MX_WS_EPROTO;
            return 0;
        case MX_WS_OP_TEXT:
        case MX_WS_OP_BINARY:
            if (r->msg_op != 0 || (r->rsv1 && !r->deflate))
                return MX_WS_EPROTO; /* 5.4: a new message may not interrupt a fragmented one */
            return 0;
        default:
            return MX_WS_EPROTO; /* a reserved opcode (5.2) */
        }
    }
    if (r->head_have == 2) {
        unsigned len7 = b & 0x7F;
        if (!(b & 0x80))
            return MX_WS_EPROTO; /* a client must mask every frame (5.1) */
        if (r->opcode >= 8 && len7 > 125)
            return MX_WS_EPROTO; /* control payloads are at most 125 bytes (5.5) */
        r->head_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
    } else if (r->head_have == 3 && (r->head[1] & 0x7F) == 127 && (b & 0x80)) {
        return MX_WS_EPROTO; /* the most significant bit of a 64-bit length must be 0 (5.2) */
    }
    if (r->head_have == r->head_need - 4)
        return mx__length_known(r);
    return r->head_have == r->head_need;
}

/* The header is complete: sets up the payload and any message it starts. */
static int mx__frame_begin(mx_ws_reader_t *r) {
    memcpy(r->mask, r->head + r->head_need - 4, 4);
    r->mask_pos = 0;
    r->head_have = 0;
    r->state = MX__RS_PAYLOAD;

    if (r->opcode >= 8) {
        r->ctl_len = 0;
        return 0;
    }
    if (r->opcode != MX_WS_OP_CONT) {
        r->msg_op = r->opcode;
        r->msg_z = r->rsv1;
        r->msg_len = 0;
        mx_utf8_init(&r->utf8);
        if (r->msg_z) {
            if (!r->z_init) {
                memset(&r->zs, 0, sizeof r->zs);
                /* -15: raw DEFLATE with the largest window, which decodes data made with any
                 * smaller one, so client_max_window_bits never needs to reach zlib. */
                if (inflateInit2(&r->zs, -15) != Z_OK)
                    return MX_WS_EINTERNAL;
                r->z_init = 1;
            }
            r->z_fresh = 1;
        }
    }
    return 0;
}

/* Takes in[0..n) of the current frame's payload (n <= left). */
static int mx__payload(mx_ws_reader_t *r, const uint8_t *in, size_t n) {
    int rc;
    if (r->opcode >= 8) {
        mx__unmask(r->ctl + r->ctl_len, in, n, r->mask, r->mask_pos);
        r->ctl_len += n;
    } else if (r->msg_z) {
        uint8_t chunk[MX__ZCHUNK];
        unsigned pos = r->mask_pos;
        for (size_t off = 0; off < n;) {
            size_t k = n - off < sizeof chunk ? n - off : sizeof chunk;
            mx__unmask(chunk, in + off, k, r->mask, pos);
            pos = (pos + (unsigned)k) & 3;
            rc = mx__inflate(r, chunk, k);
            if (rc < 0)
                return rc;
            off += k;
        }
    } else {
        /* Grow towards what the frame announced (not past it: a client that announces a big
         * frame and trickles it in only costs memory for what it actually sent, times two). */
        size_t frame_end = r->msg_len + (size_t)r->left;
        rc = mx__reserve(r, r->msg_len + n, frame_end);
        if (rc < 0)
            return rc;
        uint8_t *dst = r->msg + r->msg_len;
        mx__unmask(dst, in, n, r->mask, r->mask_pos);
        if (r->msg_op == MX_WS_OP_TEXT && mx_utf8_feed(&r->utf8, dst, n) < 0)
            return MX_WS_EDATA;
        r->msg_len += n;
    }
    r->mask_pos = (r->mask_pos + (unsigned)(n & 3)) & 3;
    return 0;
}

/* The frame's payload is complete: produces an event when it completes one. */
static int mx__frame_end(mx_ws_reader_t *r, mx_ws_event_t *ev) {
    r->state = MX__RS_HEAD;
    if (r->opcode >= 8) {
        ev->opcode = r->opcode;
        ev->data = r->ctl;
        ev->len = r->ctl_len;
        if (r->opcode == MX_WS_OP_PING) {
            ev->type = MX_WS_EV_PING;
        } else if (r->opcode == MX_WS_OP_PONG) {
            ev->type = MX_WS_EV_PONG;
        } else {
            /* 5.5.1: an optional 2-byte code, then an optional UTF-8 reason. */
            if (r->ctl_len == 1)
                return MX_WS_EPROTO;
            ev->close_code = 1005;
            if (r->ctl_len >= 2) {
                ev->close_code = r->ctl[0] << 8 | r->ctl[1];
                if (!mx_ws_close_code_valid(ev->close_code))
                    return MX_WS_EPROTO;
                if (!mx_utf8_valid(r->ctl + 2, r->ctl_len - 2))
                    return MX_WS_EDATA;
                ev->data = r->ctl + 2;
                ev->len = r->ctl_len - 2;
            }
            ev->type = MX_WS_EV_CLOSE;
            r->state = MX__RS_CLOSED;
        }
        return 0;
    }
    if (!r->fin)
        return 0;
    if (r->msg_z) {
        int rc = mx__inflate_finish(r);
        if (rc < 0)
            return rc;
    }
    if (r->msg_op == MX_WS_OP_TEXT && !mx_utf8_complete(&r->utf8))
        return MX_WS_EDATA; /* the text ends inside a sequence (8.1) */
    ev->type = MX_WS_EV_MESSAGE;
    ev->opcode = r->msg_op;
    ev->data = r->msg != NULL ? r->msg : mx__empty;
    ev->len = r->msg_len;
    r->msg_op = 0;
    r->msg_z = 0;
    r->delivered = 1;
    return 0;
}

static ssize_t mx__fail(mx_ws_reader_t *r, int err, mx_ws_event_t *ev) {
    r->state = MX__RS_DEAD;
    r->err = err;
    ev->type = MX_WS_EV_NONE;
    ev->data = mx__empty;
    ev->len = 0;
    ev->close_code = 0;
    return err;
}

ssize_t mx_ws_read(mx_ws_reader_t *r, const uint8_t *in, size_t len, mx_ws_event_t *ev) {
    size_t pos = 0;
    int rc;
    ev->type = MX_WS_EV_NONE;
    ev->opcode = 0;
    ev->data = mx__empty;
    ev->len = 0;
    ev->close_code = 0;
    if (r->state == MX__RS_DEAD)
        return r->err;
    if (r->delivered) {
        /* The last message's buffer: the caller took it, or it is dropped now (a small one is
         * kept for the next message to save a malloc). */
        r->delivered = 0;
        r->msg_len = 0;
        if (r->msg_cap > MX__KEEP_BUF) {
            free(r->msg);
            r->msg = NULL;
            r->msg_cap = 0;
        }
    }
    if (r->state == MX__RS_CLOSED)
        return (ssize_t)len;

    while (pos < len) {
        if (r->state == MX__RS_HEAD) {
            rc = mx__head_byte(r, in[pos++]);
            if (rc < 0)
                return mx__fail(r, rc, ev);
            if (rc == 0)
                continue;
            rc = mx__frame_begin(r);
            if (rc < 0)
                return mx__fail(r, rc, ev);
        } else {
            size_t n = len - pos;
            if (n > r->left)
                n = (size_t)r->left;
            rc = mx__payload(r, in + pos, n);
            if (rc < 0)
                return mx__fail(r, rc, ev);
            pos += n;
            r->left -= n;
        }
        if (r->state == MX__RS_PAYLOAD && r->left == 0) {
            rc = mx__frame_end(r, ev);
            if (rc < 0)
                return mx__fail(r, rc, ev);
            if (ev->type != MX_WS_EV_NONE)
                return (ssize_t)pos;
        }
    }
    return (ssize_t)pos;
}

/* ---------------------------------------------------------------------------------------------
 * Writing frames (RFC 6455 5.2, RFC 7692 7.2.1)
 * ------------------------------------------------------------------------------------------- */

size_t mx_ws_frame_header(uint8_t out[10], int fin, int rsv1, int opcode, uint64_t len) {
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int k = 0; k < 8; k++)
        out[2 + k] = (uint8_t)(len >> (56 - 8 * k));
    return 10;
}

struct mx_ws_deflater {
    int window_bits;  /* passed to zlib negated (raw DEFLATE): 9..15 */
    int huffman_only; /* server_max_window_bits=8: no back-references at all */
    int no_context;   /* server_no_context_takeover */
    int z_init;
    z_stream zs;
};

mx_ws_deflater_t *mx_ws_deflater_new(const mx_ws_deflate_params_t *p) {
    mx_ws_deflater_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    int bits = p ? mx__clamp_bits(p->server_max_window_bits) : 15;
    /* zlib refuses a raw stream with windowBits 8 (since 1.2.9). Huffman-only output has no
     * matches, so its window size is irrelevant and any client window can decode it. */
    d->huffman_only = bits == 8;
    d->window_bits = bits == 8 ? 9 : bits;
    d->no_context = p ? p->server_no_context_takeover : 0;
    return d;
}

void mx_ws_deflater_free(mx_ws_deflater_t *d) {
    if (d == NULL)
        return;
    if (d->z_init)
        deflateEnd(&d->zs);
    free(d);
}

/*
 * Compresses in[0..len) into a new buffer with headroom free bytes before the data. Sets *buf to
 * NULL when the result would not be shorter than the input; the output space is capped at that
 * size, so an incompressible message costs no more memory than itself.
 */
static int mx__deflate_into(mx_ws_deflater_t *d, const uint8_t *in, size_t len, size_t headroom,
                            uint8_t **buf, size_t *out_len) {
    *buf = NULL;
    *out_len = 0;
    if (len > SIZE_MAX / 2 - headroom)
        return 0;
    if (len == 0) { /* an empty stored block, RFC 7692 7.2.3.6: zlib would have nothing to flush */
        uint8_t *e = malloc(headroom + 1);
        if (!e)
            return MX_ENOMEM;
        e[headroom] = 0x00;
        *buf = e;
        *out_len = 1;
        return 0;
    }
    if (!d->z_init) {
        memset(&d->zs, 0, sizeof d->zs);
        switch (deflateInit2(&d->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -d->window_bits, 8,
                             d->huffman_only ? Z_HUFFMAN_ONLY : Z_DEFAULT_STRATEGY)) {
        case Z_OK:
            break;
        case Z_MEM_ERROR:
            return MX_ENOMEM;
        default:
            return MX_EINVAL;
        }
        d->z_init = 1;
    }

    /* Every message is compressed once compression is negotiated, even when that makes it a few
     * bytes longer: some clients (kosoku, running the Autobahn cases) mishandle uncompressed
     * messages on a compressed connection although RFC 7692 6 allows them. deflateBound plus
     * the sync flush's empty stored block (5 bytes, of which 00 00 ff ff is then cut) is room
     * enough for any input. */
    size_t cap = (size_t)deflateBound(&d->zs, (uLong)len) + 16;
    uint8_t *p = malloc(headroom + cap);
    if (p == NULL)
        return MX_ENOMEM;
    d->zs.next_in = (Bytef *)(uintptr_t)in;
    d->zs.next_out = p + headroom;
    size_t in_left = len, out_left = cap;
    int zrc, full = 0;
    for (;;) {
        uInt in_chunk = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
        uInt out_chunk = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
        int last = in_chunk == in_left;
        d->zs.avail_in = in_chunk;
        d->zs.avail_out = out_chunk;
        zrc = deflate(&d->zs, last ? Z_SYNC_FLUSH : Z_NO_FLUSH);
        in_left -= in_chunk - d->zs.avail_in;
        out_left -= out_chunk - d->zs.avail_out;
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            free(p);
            deflateReset(&d->zs);
            return zrc == Z_MEM_ERROR ? MX_ENOMEM : MX_EINVAL;
        }
        if (out_left == 0) {
            full = 1; /* it does not shrink: stop here */
            break;
        }
        /* With output space left, a sync flush that returns has written everything. */
        if (last && in_left == 0 && d->zs.avail_out != 0)
            break;
    }
    size_t n = cap - out_left;
    uint8_t *z = p + headroom;
    if (full || n < 4 || memcmp(z + n - 4, mx__z_tail, 4) != 0) {
        /* Sent uncompressed. Resetting is always allowed: the sender merely stops referring to
         * older messages, which the client's window still holds either way. */
        free(p);
        deflateReset(&d->zs);
        return 0;
    }
    if (d->no_context)
        deflateReset(&d->zs);
    *buf = p;
    *out_len = n - 4;
    return 0;
}

int mx_ws_deflate(mx_ws_deflater_t *d, const uint8_t *in, size_t len, uint8_t **out,
                  size_t *out_len) {
    uint8_t *p;
    int rc;
    *out = NULL;
    *out_len = 0;
    if (d == NULL || (in == NULL && len != 0))
        return MX_EINVAL;
    rc = mx__deflate_into(d, in, len, 0, &p, out_len);
    if (rc < 0 || p == NULL)
        return rc;
    /* Give back the slack: most messages shrink a lot. A failed shrink keeps the larger block. */
    uint8_t *small = realloc(p, *out_len > 0 ? *out_len : 1);
    *out = small != NULL ? small : p;
    return 0;
}

int mx_ws_build_frame(mx_ws_deflater_t *d, int opcode, const uint8_t *payload, size_t len,
                      uint8_t **out, size_t *out_len) {
    uint8_t hdr[10], *buf = NULL;
    size_t zlen = 0, hlen;
    int rc;
    *out = NULL;
    *out_len = 0;
    if (payload == NULL && len != 0)
        return MX_EINVAL;
    switch (opcode) {
    case MX_WS_OP_CLOSE:
    case MX_WS_OP_PING:
    case MX_WS_OP_PONG:
        if (len > 125)
            return MX_EINVAL;
        break;
    case MX_WS_OP_TEXT:
    case MX_WS_OP_BINARY:
        if (d != NULL) {
            /* Compress straight into the frame: the header's 10 bytes are left free in front,
             * and the frame is slid down over what the shorter header does not use. */
            rc = mx__deflate_into(d, payload, len, 10, &buf, &zlen);
            if (rc < 0)
                return rc;
        }
        break;
    default:
        return MX_EINVAL;
    }
    if (buf != NULL) {
        hlen = mx_ws_frame_header(hdr, 1, 1, opcode, zlen);
        memcpy(buf + 10 - hlen, hdr, hlen);
        if (hlen < 10)
            memmove(buf, buf + 10 - hlen, hlen + zlen);
        *out = buf;
        *out_len = hlen + zlen;
        return 0;
    }
    hlen = mx_ws_frame_header(hdr, 1, 0, opcode, len);
    if (len > SIZE_MAX - hlen)
        return MX_ENOMEM;
    buf = malloc(hlen + len);
    if (buf == NULL)
        return MX_ENOMEM;
    memcpy(buf, hdr, hlen);
    if (len > 0)
        memcpy(buf + hlen, payload, len);
    *out = buf;
    *out_len = hlen + len;
    return 0;
}

int mx_ws_build_close(int code, const char *reason, size_t reason_len, uint8_t **out,
                      size_t *out_len) {
    uint8_t payload[125];
    size_t n = 0;
    *out = NULL;
    *out_len = 0;
    if (code != 0 && code != 1005) {
        if (!mx_ws_close_code_valid(code))
            return MX_EINVAL;
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        n = 2;
        if (reason == NULL)
            reason_len = 0;
        /* 125 bytes of payload leave 123 for the reason; a cut inside a multi-byte sequence
         * backs up to that sequence's lead byte so the reason stays valid UTF-8. */
        if (reason_len > 123) {
            reason_len = 123;
            while (reason_len > 0 && ((unsigned char)reason[reason_len] & 0xC0) == 0x80)
                reason_len--;
        }
        if (reason_len > 0)
            memcpy(payload + 2, reason, reason_len);
        n += reason_len;
    }
    return mx_ws_build_frame(NULL, MX_WS_OP_CLOSE, payload, n, out, out_len);
}
