/*
 * wsbench - WebSocket echo load generator (RFC 6455 client), one thread, epoll, non-blocking.
 *
 * Opens C connections to ws://HOST:PORT/PATH (HTTP/1.1 Upgrade handshake, Sec-WebSocket-Accept
 * checked), then keeps K messages of S bytes in flight on every connection: each echo that comes
 * back is checked (opcode, length, every byte) and answered with the next message. Echoes counted
 * during the measured window (after an optional warm-up) give msgs/s; each message's round trip
 * (queued for sending -> its echo fully received, CLOCK_MONOTONIC) goes into a log-linear histogram
 * (< 1 % error) for p50/p90/p99/p99.9. One JSON object is printed on stdout; progress on stderr.
 *
 *   cc -O2 -o wsbench benchmarks/wsbench.c
 *   ./wsbench -p 8000 [-H 127.0.0.1] [-u /ws] [-c 100] [-s 32] [-k 1] [-d 10] [-w 2] [-T]
 *
 * Client frames are masked as the RFC requires; to keep the client cheap every frame uses the same
 * fixed masking key, so the masked frame is built once and re-sent (servers do not check keys).
 * Server pings are answered with pongs; a server close frame, EOF or reset counts as an error.
 * Exit status: 0 if at least one echo was measured and no error happened, 1 otherwise, 2 on usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ time, histogram */

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Log-linear histogram of nanoseconds: exact below 128, then 64 sub-buckets per power of two. */
#define H_SUB 64
#define H_BUCKETS (128 + 58 * H_SUB)
typedef struct {
    uint64_t n[H_BUCKETS];
    uint64_t count, max;
    double sum;
} hist_t;

static unsigned h_index(uint64_t v) {
    if (v < 128) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned s = msb - 6u; /* v >> s in [64, 128) */
    return 128u + (s - 1u) * H_SUB + (unsigned)((v >> s) - 64u);
}

static double h_value(unsigned i) { /* midpoint of bucket i */
    if (i < 128) return (double)i;
    unsigned s = (i - 128u) / H_SUB + 1u;
    uint64_t lo = ((uint64_t)((i - 128u) % H_SUB) + 64u) << s;
    return (double)lo + (double)(1ull << s) / 2.0;
}

static void h_add(hist_t *h, uint64_t v) {
    unsigned i = h_index(v);
    if (i >= H_BUCKETS) i = H_BUCKETS - 1;
    h->n[i]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max) h->max = v;
}

static double h_pct(const hist_t *h, double p) {
    if (!h->count) return 0;
    uint64_t rank = (uint64_t)(p * (double)h->count + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t cum = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        cum += h->n[i];
        if (cum >= rank) {
            double v = h_value(i);
            return v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

/* ------------------------------------------------------------------ SHA-1, base64 (handshake) */

typedef struct {
    uint32_t h[5];
    uint64_t len;
    uint8_t buf[64];
    size_t blen;
} sha1_t;

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void sha1_block(sha1_t *c, const uint8_t *p) {
    uint32_t w[80], a, b, d, e, f, k, t, cc;
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = c->h[0]; b = c->h[1]; cc = c->h[2]; d = c->h[3]; e = c->h[4];
    for (int i = 0; i < 80; i++) {
        if (i < 20) { f = (b & cc) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ cc ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & cc) | (b & d) | (cc & d); k = 0x8F1BBCDC; }
        else { f = b ^ cc ^ d; k = 0xCA62C1D6; }
        t = ROL(a, 5) + f + e + k + w[i];
        e = d; d = cc; cc = ROL(b, 30); b = a; a = t;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e;
}

static void sha1(const uint8_t *data, size_t n, uint8_t out[20]) {
    sha1_t c = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
    c.len = (uint64_t)n * 8;
    while (n >= 64) { sha1_block(&c, data); data += 64; n -= 64; }
    memcpy(c.buf, data, n);
    c.buf[n++] = 0x80;
    if (n > 56) { memset(c.buf + n, 0, 64 - n); sha1_block(&c, c.buf); n = 0; }
    memset(c.buf + n, 0, 56 - n);
    for (int i = 0; i < 8; i++) c.buf[56 + i] = (uint8_t)(c.len >> (56 - 8 * i));
    sha1_block(&c, c.buf);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(c.h[i] >> 24); out[4 * i + 1] = (uint8_t)(c.h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c.h[i] >> 8); out[4 * i + 3] = (uint8_t)c.h[i];
    }
}

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = T[v >> 18 & 63];
        out[o++] = T[v >> 12 & 63];
        out[o++] = i + 1 < n ? T[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? T[v & 63] : '=';
    }
    out[o] = 0;
}

/* ------------------------------------------------------------------ config, state */

static const char *opt_host = "127.0.0.1", *opt_path = "/ws";
static int opt_port = 0, opt_conns = 100, opt_inflight = 1, opt_text = 0, opt_quiet = 0;
static size_t opt_size = 32;
static double opt_duration = 10, opt_warmup = 0, opt_connect_timeout = 10;

enum { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DEAD };

typedef struct {
    int fd, state, want_out;
    /* handshake */
    char *hs;
    size_t hs_len, req_len, req_off;
    char accept[32];
    /* output: pending whole data frames (first possibly half-written), pending control bytes */
    uint64_t out_frames;
    size_t out_off;
    uint8_t ctl[256];
    size_t ctl_len, ctl_off;
    /* send timestamps of in-flight messages (FIFO ring of opt_inflight) */
    uint64_t *ts;
    unsigned ts_head, ts_cnt;
    /* frame parser */
    uint8_t hdr[14];
    unsigned hdr_have, in_payload, opcode, fin;
    uint64_t pay_left;
    uint8_t cbuf[125];
    unsigned cbuf_len;
    int in_msg;
    uint64_t msg_len;
    uint64_t echoes; /* measured echoes on this connection */
} conn_t;

static conn_t *conns;
static int epfd;
static uint8_t *frame, *expect; /* the masked frame we send; the payload we expect back */
static size_t frame_len;
static char host_hdr[300];
static hist_t hist;
static int measuring = 0, traffic = 0;
static uint64_t measured = 0, measured_bytes = 0;
static struct {
    uint64_t connect, handshake, closed, protocol, mismatch;
} err;
static char first_error[512];
static int n_open = 0, n_dead = 0;

static void note_error(const conn_t *c, const char *what) {
    if (!first_error[0]) snprintf(first_error, sizeof first_error, "conn %d: %s", (int)(c - conns), what);
    if (!opt_quiet) fprintf(stderr, "wsbench: conn %d: %s\n", (int)(c - conns), what);
}

static void kill_conn(conn_t *c) {
    if (c->state == C_DEAD) return;
    if (c->state == C_OPEN) n_open--;
    c->state = C_DEAD;
    n_dead++;
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

static void set_out(conn_t *c, int on) {
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

static void queue_msg(conn_t *c, uint64_t now) {
    unsigned slot = (c->ts_head + c->ts_cnt) % (unsigned)opt_inflight;
    c->ts[slot] = now;
    c->ts_cnt++;
    c->out_frames++;
}

static void queue_ctl(conn_t *c, unsigned opcode, const uint8_t *p, unsigned n) {
    if (c->ctl_len + 6 + n > sizeof c->ctl) return; /* drop: far too many pings */
    uint8_t *o = c->ctl + c->ctl_len;
    static const uint8_t key[4] = {0x3c, 0x5a, 0xa5, 0xc3};
    o[0] = (uint8_t)(0x80 | opcode);
    o[1] = (uint8_t)(0x80 | n);
    memcpy(o + 2, key, 4);
    for (unsigned i = 0; i < n; i++) o[6 + i] = p[i] ^ key[i & 3];
    c->ctl_len += 6 + n;
}

static void try_write(conn_t *c) {
    while (c->state == C_OPEN && (c->out_frames || c->ctl_off < c->ctl_len)) {
        ssize_t w;
        if (c->out_off == 0 && c->ctl_off < c->ctl_len) {
            w = write(c->fd, c->ctl + c->ctl_off, c->ctl_len - c->ctl_off);
            if (w > 0) {
                c->ctl_off += (size_t)w;
                if (c->ctl_off == c->ctl_len) c->ctl_off = c->ctl_len = 0;
                continue;
            }
        } else {
            struct iovec iov[64];
            int n = 0;
            iov[n].iov_base = frame + c->out_off;
            iov[n++].iov_len = frame_len - c->out_off;
            while ((uint64_t)n < c->out_frames && n < 64) {
                iov[n].iov_base = frame;
                iov[n++].iov_len = frame_len;
            }
            w = writev(c->fd, iov, n);
            if (w > 0) {
                size_t left = (size_t)w;
                while (left) {
                    size_t rem = frame_len - c->out_off;
                    if (left >= rem) { left -= rem; c->out_frames--; c->out_off = 0; }
                    else { c->out_off += left; left = 0; }
                }
                continue;
            }
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { set_out(c, 1); return; }
        if (w < 0 && errno == EINTR) continue;
        err.closed++;
        note_error(c, w < 0 ? strerror(errno) : "write returned 0");
        kill_conn(c);
        return;
    }
    if (c->state == C_OPEN) set_out(c, 0);
}

/* One complete data message came back. */
static void on_message(conn_t *c, uint64_t now) {
    if (c->msg_len != opt_size) {
        err.mismatch++;
        char b[96];
        snprintf(b, sizeof b, "echo of %llu bytes, expected %zu", (unsigned long long)c->msg_len, opt_size);
        note_error(c, b);
        kill_conn(c);
        return;
    }
    if (!c->ts_cnt) {
        err.protocol++;
        note_error(c, "message received with none in flight");
        kill_conn(c);
        return;
    }
    uint64_t sent = c->ts[c->ts_head];
    c->ts_head = (c->ts_head + 1) % (unsigned)opt_inflight;
    c->ts_cnt--;
    if (measuring) {
        measured++;
        measured_bytes += opt_size;
        c->echoes++;
        h_add(&hist, now - sent);
    }
    if (traffic) queue_msg(c, now);
}

static void on_frame_done(conn_t *c, uint64_t now) {
    c->in_payload = 0;
    if (c->opcode >= 8) {
        if (c->opcode == 9) queue_ctl(c, 10, c->cbuf, c->cbuf_len); /* ping -> pong */
        else if (c->opcode == 8) {
            err.closed++;
            char b[96];
            unsigned code = c->cbuf_len >= 2 ? (unsigned)c->cbuf[0] << 8 | c->cbuf[1] : 0;
            snprintf(b, sizeof b, "server sent a close frame (code %u)", code);
            note_error(c, b);
            kill_conn(c);
        }
        return;
    }
    if (c->fin) {
        c->in_msg = 0;
        on_message(c, now);
    }
}

static void proto_error(conn_t *c, const char *what) {
    err.protocol++;
    note_error(c, what);
    kill_conn(c);
}

static void on_ws_bytes(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
    while (n && c->state == C_OPEN) {
        if (!c->in_payload) {
            unsigned need = 2;
            if (c->hdr_have >= 2) {
                unsigned l7 = c->hdr[1] & 0x7f;
                need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->hdr[1] & 0x80) ? 4 : 0);
            }
            while (n && c->hdr_have < need) {
                c->hdr[c->hdr_have++] = *p++;
                n--;
                if (c->hdr_have == 2) {
                    unsigned l7 = c->hdr[1] & 0x7f;
                    need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->hdr[1] & 0x80) ? 4 : 0);
                }
            }
            if (c->hdr_have < need) return;
            c->hdr_have = 0;
            c->fin = c->hdr[0] >> 7;
            c->opcode = c->hdr[0] & 0x0f;
            if (c->hdr[0] & 0x70) { proto_error(c, "RSV bits set (no extension was negotiated)"); return; }
            if (c->hdr[1] & 0x80) { proto_error(c, "masked frame from the server"); return; }
            uint64_t len = c->hdr[1] & 0x7f;
            if (len == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            else if (len == 127) { len = 0; for (int i = 0; i < 8; i++) len = len << 8 | c->hdr[2 + i]; }
            if (c->opcode >= 8) {
                if (c->opcode > 10) { proto_error(c, "reserved control opcode"); return; }
                if (!c->fin || len > 125) { proto_error(c, "fragmented or oversized control frame"); return; }
                c->cbuf_len = 0;
            } else if (c->opcode == 0) {
                if (!c->in_msg) { proto_error(c, "continuation frame outside a message"); return; }
            } else if (c->opcode == 1 || c->opcode == 2) {
                if (c->in_msg) { proto_error(c, "new data frame inside a fragmented message"); return; }
                if ((int)c->opcode != (opt_text ? 1 : 2)) {
                    err.mismatch++;
                    note_error(c, opt_text ? "echo is a binary frame, sent text" : "echo is a text frame, sent binary");
                    kill_conn(c);
                    return;
                }
                c->in_msg = 1;
                c->msg_len = 0;
            } else {
                { proto_error(c, "reserved data opcode"); return; }
            }
            c->pay_left = len;
            c->in_payload = 1;
            if (len == 0) { on_frame_done(c, now); continue; }
        }
        size_t take = n < c->pay_left ? n : (size_t)c->pay_left;
        if (c->opcode >= 8) {
            memcpy(c->cbuf + c->cbuf_len, p, take);
            c->cbuf_len += (unsigned)take;
        } else {
            if (c->msg_len + take > opt_size || memcmp(p, expect + c->msg_len, take) != 0) {
                err.mismatch++;
                note_error(c, c->msg_len + take > opt_size ? "echo longer than the message sent" : "echo payload differs from the message sent");
                kill_conn(c);
                return;
            }
            c->msg_len += take;
        }
        c->pay_left -= take;
        p += take;
        n -= take;
        if (c->pay_left == 0) on_frame_done(c, now);
    }
}

/* ------------------------------------------------------------------ connect, handshake */

static struct sockaddr_storage addr;
static socklen_t addr_len;

static void start_conn(conn_t *c) {
    c->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) { err.connect++; note_error(c, strerror(errno)); c->state = C_DEAD; n_dead++; return; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = C_CONNECTING;
    int r = connect(c->fd, (struct sockaddr *)&addr, addr_len);
    if (r < 0 && errno != EINPROGRESS) {
        err.connect++;
        note_error(c, strerror(errno));
        close(c->fd);
        c->fd = -1;
        c->state = C_DEAD;
        n_dead++;
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    c->want_out = 1;
}

static void build_request(conn_t *c) {
    uint8_t rnd[16], digest[20];
    char key[32], cat[96];
    for (int i = 0; i < 16; i++) rnd[i] = (uint8_t)(rand() >> 7);
    base64(rnd, 16, key);
    snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    sha1((const uint8_t *)cat, strlen(cat), digest);
    base64(digest, 20, c->accept);
    c->hs = malloc(8192);
    c->req_len = (size_t)snprintf(c->hs, 8192,
                                  "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                                  opt_path, host_hdr, key);
    c->req_off = 0;
}

/* Case-insensitive search for a header's value in the response head; copies it into out. */
static int find_header(const char *head, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] != '\r' && p[2]) {
        const char *line = p + 2;
        const char *end = strstr(line, "\r\n");
        if (!end) break;
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (v < end && (*v == ' ' || *v == '\t')) v++;
            const char *ve = end;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            size_t len = (size_t)(ve - v) < cap - 1 ? (size_t)(ve - v) : cap - 1;
            memcpy(out, v, len);
            out[len] = 0;
            return 1;
        }
        p = end;
    }
    return 0;
}

static void handshake_fail(conn_t *c, const char *why) {
    err.handshake++;
    char b[400];
    snprintf(b, sizeof b, "handshake failed: %s", why);
    note_error(c, b);
    kill_conn(c);
}

/* Reads the 101 response; on success switches to C_OPEN and feeds any extra bytes to the parser. */
static void on_handshake_readable(conn_t *c, uint64_t now) {
    for (;;) {
        if (c->hs_len >= 8191) { handshake_fail(c, "response head larger than 8 KiB"); return; }
        ssize_t r = read(c->fd, c->hs + c->hs_len, 8191 - c->hs_len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r <= 0) { handshake_fail(c, r == 0 ? "connection closed before the 101 response" : strerror(errno)); return; }
        c->hs_len += (size_t)r;
        c->hs[c->hs_len] = 0;
        char *end = strstr(c->hs, "\r\n\r\n");
        if (!end) continue;
        size_t head_len = (size_t)(end - c->hs) + 4;
        char saved = c->hs[head_len];
        c->hs[head_len] = 0;
        char val[128], line[160];
        int status = 0;
        if (sscanf(c->hs, "HTTP/1.%*d %d", &status) != 1 || status != 101) {
            const char *e = strstr(c->hs, "\r\n");
            size_t l = e ? (size_t)(e - c->hs) : strlen(c->hs);
            snprintf(line, sizeof line, "status line %.*s", (int)(l < 120 ? l : 120), c->hs);
            { handshake_fail(c, line); return; }
        }
        if (!find_header(c->hs, "Sec-WebSocket-Accept", val, sizeof val) || strcmp(val, c->accept) != 0)
            { handshake_fail(c, "missing or wrong Sec-WebSocket-Accept"); return; }
        if (find_header(c->hs, "Sec-WebSocket-Extensions", val, sizeof val))
            { handshake_fail(c, "server negotiated an extension nobody asked for"); return; }
        c->hs[head_len] = saved;
        size_t extra = c->hs_len - head_len;
        c->state = C_OPEN;
        n_open++;
        set_out(c, 0);
        if (extra) {
            uint8_t tmp[8192];
            memcpy(tmp, c->hs + head_len, extra);
            on_ws_bytes(c, tmp, extra, now);
        }
        free(c->hs);
        c->hs = NULL;
        return;
    }
}

static void on_writable_connecting(conn_t *c) {
    if (c->state == C_CONNECTING) {
        int e = 0;
        socklen_t l = sizeof e;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e) { err.connect++; note_error(c, strerror(e)); kill_conn(c); return; }
        c->state = C_HANDSHAKE;
        build_request(c);
    }
    while (c->req_off < c->req_len) {
        ssize_t w = write(c->fd, c->hs + c->req_off, c->req_len - c->req_off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (w <= 0) { handshake_fail(c, strerror(errno)); return; }
        c->req_off += (size_t)w;
    }
    c->hs_len = 0;
    set_out(c, 0);
}

static void on_readable(conn_t *c, uint8_t *buf, size_t cap) {
    for (;;) {
        ssize_t r = read(c->fd, buf, cap);
        if (r > 0) {
            on_ws_bytes(c, buf, (size_t)r, mono_ns());
            if (c->state != C_OPEN || (size_t)r < cap) return;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        err.closed++;
        note_error(c, r == 0 ? "server closed the connection" : strerror(errno));
        kill_conn(c);
        return;
    }
}

/* ------------------------------------------------------------------ main */

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s -p PORT [options]\n"
            "  -H HOST   server address (default 127.0.0.1)\n"
            "  -p PORT   server port (required)\n"
            "  -u PATH   request path (default /ws)\n"
            "  -c N      connections (default 100)\n"
            "  -s BYTES  message size (default 32)\n"
            "  -k N      messages in flight per connection (default 1)\n"
            "  -d SEC    measured duration (default 10)\n"
            "  -w SEC    warm-up before measuring, not counted (default 0)\n"
            "  -t SEC    time allowed for all connections to open (default 10)\n"
            "  -T        text frames (ASCII payload) instead of binary\n"
            "  -q        no per-error messages on stderr\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv) {
    int o;
    while ((o = getopt(argc, argv, "H:p:u:c:s:k:d:w:t:Tqh")) != -1) {
        switch (o) {
        case 'H': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'u': opt_path = optarg; break;
        case 'c': opt_conns = atoi(optarg); break;
        case 's': opt_size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'k': opt_inflight = atoi(optarg); break;
        case 'd': opt_duration = atof(optarg); break;
        case 'w': opt_warmup = atof(optarg); break;
        case 't': opt_connect_timeout = atof(optarg); break;
        case 'T': opt_text = 1; break;
        case 'q': opt_quiet = 1; break;
        default: usage(argv[0]);
        }
    }
    if (opt_port <= 0 || opt_port > 65535 || opt_conns < 1 || opt_inflight < 1 || opt_duration <= 0 || opt_warmup < 0)
        usage(argv[0]);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt_conns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", opt_port);
    int gai = getaddrinfo(opt_host, portstr, &hints, &ai);
    if (gai) { fprintf(stderr, "wsbench: %s: %s\n", opt_host, gai_strerror(gai)); return 2; }
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    addr_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    snprintf(host_hdr, sizeof host_hdr, strchr(opt_host, ':') ? "[%s]:%d" : "%s:%d", opt_host, opt_port);
    srand((unsigned)mono_ns());

    /* the payload and the one masked frame carrying it */
    expect = malloc(opt_size ? opt_size : 1);
    for (size_t i = 0; i < opt_size; i++)
        expect[i] = opt_text ? (uint8_t)('a' + i % 26) : (uint8_t)((i * 131 + 7) & 0xff);
    frame = malloc(opt_size + 14);
    size_t h = 0;
    frame[h++] = (uint8_t)(0x80 | (opt_text ? 1 : 2));
    if (opt_size < 126) frame[h++] = (uint8_t)(0x80 | opt_size);
    else if (opt_size < 65536) { frame[h++] = 0x80 | 126; frame[h++] = (uint8_t)(opt_size >> 8); frame[h++] = (uint8_t)opt_size; }
    else { frame[h++] = 0x80 | 127; for (int i = 7; i >= 0; i--) frame[h++] = (uint8_t)((uint64_t)opt_size >> (8 * i)); }
    static const uint8_t mask[4] = {0x5b, 0x2d, 0x91, 0xe7};
    memcpy(frame + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < opt_size; i++) frame[h + i] = expect[i] ^ mask[i & 3];
    frame_len = h + opt_size;

    conns = calloc((size_t)opt_conns, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < opt_conns; i++) {
        conns[i].fd = -1;
        conns[i].ts = calloc((size_t)opt_inflight, sizeof(uint64_t));
    }

    /* Open connections with at most 64 handshakes pending at a time (gentle on accept queues). */
    int next = 0, pending = 0;
    struct epoll_event evs[512];
    static uint8_t buf[1 << 18];
    uint64_t t0 = mono_ns(), connect_deadline = t0 + (uint64_t)(opt_connect_timeout * 1e9);
    for (;;) {
        while (next < opt_conns && pending < 64) { start_conn(&conns[next++]); pending++; }
        pending = 0;
        for (int i = 0; i < next; i++) pending += conns[i].state == C_CONNECTING || conns[i].state == C_HANDSHAKE;
        if (next == opt_conns && pending == 0) break;
        if (mono_ns() > connect_deadline) break;
        int n = epoll_wait(epfd, evs, 512, 100);
        uint64_t now = mono_ns();
        for (int i = 0; i < n; i++) {
            conn_t *c = &conns[evs[i].data.u32];
            if (c->state == C_CONNECTING || (c->state == C_HANDSHAKE && c->req_off < c->req_len)) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable_connecting(c);
            }
            if (c->state == C_HANDSHAKE && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_handshake_readable(c, now);
            else if (c->state == C_OPEN && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(c, buf, sizeof buf);
            if (c->state == C_OPEN) try_write(c);
        }
    }
    int opened = n_open;
    for (int i = 0; i < opt_conns; i++) {
        if (conns[i].state == C_CONNECTING || conns[i].state == C_HANDSHAKE) {
            err.handshake++;
            note_error(&conns[i], "not open before the connect timeout");
            kill_conn(&conns[i]);
        }
    }
    double connect_s = (double)(mono_ns() - t0) / 1e9;
    if (!opt_quiet)
        fprintf(stderr, "wsbench: %d/%d connections open in %.2fs; %zu-byte %s messages, %d in flight each\n", opened,
                opt_conns, connect_s, opt_size, opt_text ? "text" : "binary", opt_inflight);

    /* Traffic: warm-up, then the measured window. */
    struct rusage ru0, ru1;
    uint64_t start = mono_ns(), wstart = start + (uint64_t)(opt_warmup * 1e9), wend = wstart + (uint64_t)(opt_duration * 1e9);
    traffic = 1;
    for (int i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[i];
        if (c->state != C_OPEN) continue;
        for (int k = 0; k < opt_inflight; k++) queue_msg(c, start);
        try_write(c);
    }
    if (opt_warmup <= 0) { measuring = 1; getrusage(RUSAGE_SELF, &ru0); }
    uint64_t now = start;
    while (now < wend && n_open > 0) {
        int timeout_ms = (int)((((measuring ? wend : wstart) - now) / 1000000ull) + 1);
        if (timeout_ms > 100) timeout_ms = 100;
        int n = epoll_wait(epfd, evs, 512, timeout_ms);
        now = mono_ns();
        if (!measuring && now >= wstart) {
            measuring = 1;
            getrusage(RUSAGE_SELF, &ru0);
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = &conns[evs[i].data.u32];
            if (c->state != C_OPEN) continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, buf, sizeof buf);
            if (c->state == C_OPEN) try_write(c);
        }
    }
    uint64_t stop = now;
    getrusage(RUSAGE_SELF, &ru1);
    if (!measuring) ru0 = ru1;
    double window = measuring ? (double)(stop - (wstart > start ? wstart : start)) / 1e9 : 0;
    if (stop < wend) { /* every connection died early */
        if (!opt_quiet) fprintf(stderr, "wsbench: all connections closed before the end\n");
    }
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    uint64_t per_min = UINT64_MAX, per_max = 0;
    for (int i = 0; i < opt_conns; i++) {
        if (conns[i].echoes < per_min) per_min = conns[i].echoes;
        if (conns[i].echoes > per_max) per_max = conns[i].echoes;
    }
    uint64_t errors = err.connect + err.handshake + err.closed + err.protocol + err.mismatch;
    printf("{\"tool\": \"wsbench\", \"host\": \"%s\", \"port\": %d, \"path\": \"%s\", \"connections\": %d, "
           "\"opened\": %d, \"open_at_end\": %d, \"connect_s\": %.3f, \"message_bytes\": %zu, \"mode\": \"%s\", "
           "\"in_flight\": %d, \"warmup_s\": %.3f, \"duration_s\": %.3f, \"messages\": %llu, \"msgs_per_s\": %.1f, "
           "\"echo_bytes_per_s\": %.1f, \"per_conn_messages\": {\"min\": %llu, \"max\": %llu}, "
           "\"latency_us\": {\"mean\": %.1f, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f}, "
           "\"client_cpu\": %.3f, \"errors\": {\"connect\": %llu, \"handshake\": %llu, \"closed\": %llu, "
           "\"protocol\": %llu, \"mismatch\": %llu}, \"error_count\": %llu, \"first_error\": \"",
           opt_host, opt_port, opt_path, opt_conns, opened, n_open, connect_s, opt_size, opt_text ? "text" : "binary",
           opt_inflight, opt_warmup, window, (unsigned long long)measured, window > 0 ? (double)measured / window : 0.0,
           window > 0 ? (double)measured_bytes / window : 0.0, (unsigned long long)(per_min == UINT64_MAX ? 0 : per_min),
           (unsigned long long)per_max, hist.count ? hist.sum / (double)hist.count / 1e3 : 0.0,
           h_pct(&hist, 0.50) / 1e3, h_pct(&hist, 0.90) / 1e3, h_pct(&hist, 0.99) / 1e3, h_pct(&hist, 0.999) / 1e3,
           (double)hist.max / 1e3, window > 0 ? cpu / window : 0.0, (unsigned long long)err.connect,
           (unsigned long long)err.handshake, (unsigned long long)err.closed, (unsigned long long)err.protocol,
           (unsigned long long)err.mismatch, (unsigned long long)errors);
    for (const char *p = first_error; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        if ((unsigned char)*p >= 0x20) putchar(*p);
    }
    printf("\"}\n");
    return (measured > 0 && errors == 0) ? 0 : 1;
}
