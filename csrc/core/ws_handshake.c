/*
 * ws_handshake.c: the WebSocket opening handshake's arithmetic (RFC 6455 4.2): the token-list and
 * subprotocol helpers for Connection, Upgrade and Sec-WebSocket-Protocol, SHA-1 and base64 for
 * Sec-WebSocket-Accept, and the permessage-deflate offer negotiation (RFC 7692 7.1).
 *
 * Pure functions over caller-owned memory: no allocation, no I/O, no globals but constant tables,
 * so any thread may call them (the I/O thread does, while it answers an upgrade). They never read
 * outside the ranges they are given. The frames that follow the handshake are ws_frame.c's.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "text.h"
#include "ws.h"

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

/* Writes the response for an accepted offer, applying the server's limits. Returns 1, or 0 when
 * resp is too small. */
static int mx__pmd_accept(const mx__pmd_offer_t *o, const mx_ws_deflate_params_t *limits,
                          mx_ws_deflate_params_t *p, char *resp, size_t resp_cap) {
    int lim_s = limits ? mx__ws_clamp_bits(limits->server_max_window_bits) : 15;
    int lim_c = limits ? mx__ws_clamp_bits(limits->client_max_window_bits) : 15;
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
