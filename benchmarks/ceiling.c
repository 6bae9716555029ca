/*
 * ceiling - the smallest C server for the WebSocket and SSE scenarios: what the load generators
 * can measure on this machine (the "C ceiling" rows, like nginx for plain HTTP). One thread, epoll.
 *
 *   cc -O2 -o ceiling benchmarks/ceiling.c
 *   ./ceiling PORT [RATE [SUBSCRIBERS]]
 *
 *   GET /ws      -> WebSocket upgrade; every frame is sent back unmasked with the same opcode/FIN
 *                   (so messages, fragmented or not, come back unchanged); ping -> pong; close -> close.
 *   GET /events  -> 200 text/event-stream, chunked; RATE times a second (default 1000; timerfd) the
 *                   event `event: tick` / `data: <CLOCK_REALTIME ns>` is appended to every subscriber
 *                   as one chunk and written at once; timer ticks missed while busy are made up in
 *                   the next chunk (up to 100 events). Publishing starts once SUBSCRIBERS streams are
 *                   open (default 1) or 30 s after the first. A subscriber with more than 4 MiB
 *                   unsent drops events until it drains.
 *   PUT /upload  -> the body (Content-Length) goes to $UPLOAD_DIR/blob (default "."): splice(2)
 *                   socket -> pipe -> a temporary file, renamed when complete; 200 with the byte
 *                   count. No copy through user space: the least any server can do.
 *   POST /form   -> multipart/form-data (Content-Length): read(2) into a 1 MiB buffer, memmem for
 *                   the delimiter, file parts write(2)n to $UPLOAD_DIR/file (temporary file +
 *                   rename), other parts dropped; 200 with the file bytes. What a server that looks
 *                   at every byte must do at least.
 *                   Uploads are handled blocking, one at a time (the loop waits meanwhile), and
 *                   answered with Connection: close.
 *   anything else -> 404.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* ---- SHA-1 + base64 for Sec-WebSocket-Accept */
#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f, k, t;
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (int i = 0; i < 80; i++) {
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6; }
        t = ROL(a, 5) + f + e + k + w[i];
        e = d; d = c; c = ROL(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}
static void sha1(const uint8_t *m, size_t n, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    uint8_t buf[64];
    uint64_t bits = (uint64_t)n * 8;
    while (n >= 64) { sha1_block(h, m); m += 64; n -= 64; }
    memcpy(buf, m, n);
    buf[n++] = 0x80;
    if (n > 56) { memset(buf + n, 0, 64 - n); sha1_block(h, buf); n = 0; }
    memset(buf + n, 0, 56 - n);
    for (int i = 0; i < 8; i++) buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_block(h, buf);
    for (int i = 0; i < 20; i++) out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
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

/* ---- connections */
enum { S_HTTP, S_WS, S_SSE };
typedef struct conn {
    int fd, state, want_out, closing, dead;
    struct conn *next_dead;
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
} conn_t;

static int epfd, lfd, tfd;
static conn_t **subs;
static int n_subs, cap_subs, wait_for = 1, publishing = 0;
static time_t first_sub;
static conn_t *graveyard; /* closed during this loop iteration; freed after it */

static void out_append(conn_t *c, const void *p, size_t n) {
    if (c->out_off && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) { /* compact */
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        while (c->out_len + n > c->out_cap) c->out_cap = c->out_cap ? c->out_cap * 2 : 65536;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void close_conn(conn_t *c) {
    if (c->dead) return;
    c->dead = 1;
    if (c->state == S_SSE)
        for (int i = 0; i < n_subs; i++)
            if (subs[i] == c) { subs[i] = subs[--n_subs]; break; }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->next_dead = graveyard;
    graveyard = c;
}

/* Write what is pending; returns 0 if the connection was closed. */
static int flush(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w > 0) { c->out_off += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                c->want_out = 1;
            }
            return 1;
        }
        close_conn(c);
        return 0;
    }
    c->out_off = c->out_len = 0;
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
    if (c->closing) { close_conn(c); return 0; }
    return 1;
}

static int header(const char *head, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r' && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2, *e = strstr(l, "\r\n");
        if (!e) return 0;
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            l += nl + 1;
            while (*l == ' ') l++;
            size_t n = (size_t)(e - l) < cap - 1 ? (size_t)(e - l) : cap - 1;
            memcpy(out, l, n);
            out[n] = 0;
            return 1;
        }
    }
    return 0;
}

/* ---- uploads (blocking; the event loop waits) */
static const char *upload_dir(void) {
    const char *d = getenv("UPLOAD_DIR");
    return d && *d ? d : ".";
}

/* Read up to n bytes of the body (blocking); 0 at its end or on error. */
static size_t body_read(int fd, uint8_t *p, size_t n, long long *left) {
    if ((long long)n > *left) n = (size_t)*left;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r > 0) { *left -= r; return (size_t)r; }
        if (r < 0 && errno == EINTR) continue;
        return 0;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int open_tmp(char *tmp, size_t cap) {
    snprintf(tmp, cap, "%s/.ceiling-upload-XXXXXX", upload_dir());
    return mkostemp(tmp, O_CLOEXEC);
}

/* PUT /upload: `have` body bytes are already in `pre`; the rest (left) is spliced to the file. */
static long long upload_raw(int sock, const uint8_t *pre, size_t have, long long left, const char **err) {
    char tmp[4096], dst[4096];
    int fd = open_tmp(tmp, sizeof tmp), p[2] = {-1, -1};
    long long total = 0;
    if (fd < 0) { *err = "cannot create the file"; return -1; }
    if (write_all(fd, pre, have) < 0) { *err = "write failed"; goto fail; }
    total = (long long)have;
    if (pipe2(p, O_CLOEXEC) < 0) { *err = "pipe failed"; goto fail; }
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    while (left > 0) {
        ssize_t r = splice(sock, NULL, p[1], NULL, left < (1 << 20) ? (size_t)left : (1 << 20), SPLICE_F_MOVE | SPLICE_F_MORE);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { *err = "body ended early"; goto fail; }
        left -= r;
        for (ssize_t out = 0; out < r;) {
            ssize_t w = splice(p[0], NULL, fd, NULL, (size_t)(r - out), SPLICE_F_MOVE | SPLICE_F_MORE);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { *err = "splice to the file failed"; goto fail; }
            out += w;
        }
        total += r;
    }
    close(p[0]);
    close(p[1]);
    snprintf(dst, sizeof dst, "%s/blob", upload_dir());
    if (close(fd) != 0 || rename(tmp, dst) != 0) { *err = "rename failed"; unlink(tmp); return -1; }
    return total;
fail:
    if (p[0] >= 0) { close(p[0]); close(p[1]); }
    close(fd);
    unlink(tmp);
    return -1;
}

/* POST /form: a streaming multipart/form-data parser, just strict enough for the benchmark's body. */
static long long upload_form(int sock, const char *ctype, const uint8_t *pre, size_t have, long long left, const char **err) {
    const char *b = strcasestr(ctype, "boundary=");
    if (!b) { *err = "no boundary"; return -1; }
    b += 9;
    char delim[256]; /* "\r\n--" boundary */
    size_t blen = strcspn(b, "; \t\"");
    if (blen == 0 || blen > 200) { *err = "bad boundary"; return -1; }
    int dl = snprintf(delim, sizeof delim, "\r\n--%.*s", (int)blen, b);
    size_t cap = 1 << 20, len = 2, pos = 0;
    uint8_t *buf = malloc(cap);
    buf[0] = '\r'; buf[1] = '\n'; /* so the first delimiter looks like the others */
    memcpy(buf + len, pre, have);
    len += have;
    char tmp[4096], dst[4096];
    int fd = -1, in_headers = 0, done = 0;
    long long total = 0;
    for (;;) {
        if (!in_headers) { /* in a part's data (or before the first delimiter) */
            uint8_t *hit = memmem(buf + pos, len - pos, delim, (size_t)dl);
            size_t end = hit ? (size_t)(hit - buf) : (len - pos > (size_t)dl ? len - (size_t)dl : pos);
            if (fd >= 0 && end > pos) {
                if (write_all(fd, buf + pos, end - pos) < 0) { *err = "write failed"; goto fail; }
                total += (long long)(end - pos);
            }
            pos = end;
            if (hit && len - pos >= (size_t)dl + 2) {
                if (fd >= 0) { /* a file part ends */
                    snprintf(dst, sizeof dst, "%s/file", upload_dir());
                    if (close(fd) != 0 || rename(tmp, dst) != 0) { fd = -1; *err = "rename failed"; goto fail; }
                    fd = -1;
                }
                pos += (size_t)dl;
                if (buf[pos] == '-' && buf[pos + 1] == '-') { done = 1; break; }
                in_headers = 1;
                continue;
            }
        } else { /* the rest of the delimiter line, then the part's headers */
            buf[len] = 0;
            uint8_t *eoh = memmem(buf + pos, len - pos, "\r\n\r\n", 4);
            if (eoh) {
                *eoh = 0;
                if (strstr((char *)buf + pos, "filename=")) {
                    fd = open_tmp(tmp, sizeof tmp);
                    if (fd < 0) { *err = "cannot create the file"; goto fail; }
                }
                pos = (size_t)(eoh - buf) + 4;
                in_headers = 0;
                continue;
            }
            if (len - pos > 65536) { *err = "part headers too long"; goto fail; }
        }
        /* need more input: keep the unconsumed tail */
        memmove(buf, buf + pos, len - pos);
        len -= pos;
        pos = 0;
        size_t r = body_read(sock, buf + len, cap - len - 1, &left);
        if (r == 0) break;
        len += r;
    }
    free(buf);
    if (!done) { *err = "body ended before the close delimiter"; if (fd >= 0) { close(fd); unlink(tmp); } return -1; }
    return total;
fail:
    free(buf);
    if (fd >= 0) { close(fd); unlink(tmp); }
    return -1;
}

/* PUT /upload or POST /form whose head ends at `used`: consumes the whole body, answers, closes. */
static void on_upload(conn_t *c, size_t used, int form) {
    char cl[32] = "", ct[512] = "", resp[256];
    const char *head = (const char *)c->in, *err = NULL;
    header(head, "Content-Length", cl, sizeof cl);
    long long clen = atoll(cl), total;
    size_t have = c->in_len - used < (size_t)clen ? c->in_len - used : (size_t)clen;
    int flags = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
    if (form) {
        header(head, "Content-Type", ct, sizeof ct);
        total = upload_form(c->fd, ct, c->in + used, have, clen - (long long)have, &err);
    } else {
        total = upload_raw(c->fd, c->in + used, have, clen - (long long)have, &err);
    }
    fcntl(c->fd, F_SETFL, flags);
    c->in_len = used; /* the body is consumed: drop what was buffered of it */
    int n;
    if (total >= 0) {
        char num[32];
        int k = snprintf(num, sizeof num, "%lld", total);
        n = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", k, num);
    } else {
        n = snprintf(resp, sizeof resp, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(err), err);
    }
    out_append(c, resp, (size_t)n);
    c->closing = 1;
}

/* Consume one request head from c->in; returns bytes used, 0 if incomplete. */
static size_t on_http(conn_t *c) {
    c->in[c->in_len] = 0;
    char *end = strstr((char *)c->in, "\r\n\r\n");
    if (!end) return 0;
    size_t used = (size_t)(end - (char *)c->in) + 4;
    char key[128], resp[512];
    const char *head = (const char *)c->in;
    if (strncmp(head, "GET /ws ", 8) == 0 && header(head, "Sec-WebSocket-Key", key, sizeof key)) {
        char cat[256], acc[40];
        uint8_t dg[20];
        snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
        sha1((uint8_t *)cat, strlen(cat), dg);
        base64(dg, 20, acc);
        int n = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
        out_append(c, resp, (size_t)n);
        c->state = S_WS;
    } else if (strncmp(head, "GET /events ", 12) == 0) {
        static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
        out_append(c, h, sizeof h - 1);
        c->state = S_SSE;
        if (n_subs == cap_subs) subs = realloc(subs, (size_t)(cap_subs = cap_subs ? cap_subs * 2 : 1024) * sizeof *subs);
        subs[n_subs++] = c;
        if (n_subs == 1) first_sub = time(NULL);
    } else if (strncmp(head, "PUT /upload ", 12) == 0 || strncmp(head, "POST /form ", 11) == 0) {
        on_upload(c, used, head[1] == 'O');
    } else {
        static const char h[] = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nNot Found";
        out_append(c, h, sizeof h - 1);
    }
    return used;
}

/* Echo every complete frame in c->in; returns bytes used. */
static size_t on_ws(conn_t *c) {
    size_t pos = 0;
    while (c->in_len - pos >= 2) {
        uint8_t *p = c->in + pos;
        uint64_t len = p[1] & 0x7f;
        size_t h = 2;
        if (len == 126) { if (c->in_len - pos < 4) break; len = (uint64_t)p[2] << 8 | p[3]; h = 4; }
        else if (len == 127) { if (c->in_len - pos < 10) break; len = 0; for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i]; h = 10; }
        int masked = p[1] >> 7;
        size_t mh = h + (masked ? 4 : 0);
        if (c->in_len - pos < mh + len) break;
        uint8_t *m = p + h, *d = p + mh;
        if (masked) { /* unmask 8 bytes at a time */
            uint32_t k32;
            memcpy(&k32, m, 4);
            uint64_t k64 = (uint64_t)k32 << 32 | k32, w;
            uint64_t i = 0;
            for (; i + 8 <= len; i += 8) { memcpy(&w, d + i, 8); w ^= k64; memcpy(d + i, &w, 8); }
            for (; i < len; i++) d[i] ^= m[i & 3];
        }
        unsigned op = p[0] & 0x0f;
        uint8_t oh[10];
        size_t ohl = 0;
        oh[ohl++] = (uint8_t)((p[0] & 0x80) | (op == 9 ? 10 : op));
        if (len < 126) oh[ohl++] = (uint8_t)len;
        else if (len < 65536) { oh[ohl++] = 126; oh[ohl++] = (uint8_t)(len >> 8); oh[ohl++] = (uint8_t)len; }
        else { oh[ohl++] = 127; for (int i = 7; i >= 0; i--) oh[ohl++] = (uint8_t)(len >> (8 * i)); }
        if (op != 10) { /* pongs are not answered */
            out_append(c, oh, ohl);
            out_append(c, d, (size_t)len);
        }
        if (op == 8) c->closing = 1;
        pos += mh + (size_t)len;
    }
    return pos;
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->in_cap - c->in_len < 65536) c->in = realloc(c->in, c->in_cap = c->in_cap ? c->in_cap * 2 : 131072);
        size_t want = c->in_cap - c->in_len - 1;
        ssize_t r = read(c->fd, c->in + c->in_len, want);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (r <= 0) { close_conn(c); return; }
        c->in_len += (size_t)r;
        if ((size_t)r < want) break;
    }
    size_t used;
    do {
        used = c->state == S_HTTP ? on_http(c) : c->state == S_WS ? on_ws(c) : c->in_len; /* SSE: ignore input */
        if (used) { memmove(c->in, c->in + used, c->in_len - used); c->in_len -= used; }
    } while (used && c->in_len && c->state == S_WS);
    flush(c);
}

/* Publishes `n` events (the timer ticks since the last wake-up: missed ticks are made up, as one
   chunk per subscriber, so a busy server writes bigger chunks instead of falling behind). */
static void publish(unsigned n) {
    static char chunk[16 + 100 * 48];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long now = (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
    char body[100 * 48];
    int blen = 0;
    if (n > 100) n = 100;
    for (unsigned i = 0; i < n; i++) blen += snprintf(body + blen, sizeof body - (size_t)blen, "event: tick\ndata: %llu\n\n", now);
    int m = snprintf(chunk, sizeof chunk, "%x\r\n", blen);
    memcpy(chunk + m, body, (size_t)blen);
    m += blen;
    chunk[m++] = '\r';
    chunk[m++] = '\n';
    for (int i = n_subs - 1; i >= 0; i--) {
        conn_t *c = subs[i];
        if (c->out_len - c->out_off > (4u << 20)) continue; /* slow subscriber: drop */
        out_append(c, chunk, (size_t)m);
        flush(c); /* may remove subs[i]; iterating downwards keeps the rest in place */
    }
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s PORT [RATE [SUBSCRIBERS]]\n", argv[0]); return 2; }
    int port = atoi(argv[1]);
    double rate = argc > 2 ? atof(argv[2]) : 1000;
    wait_for = argc > 3 ? atoi(argv[3]) : 1;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) { perror("bind/listen"); return 1; }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    long ns = (long)(1e9 / (rate > 0 ? rate : 1000));
    struct itimerspec its = {.it_interval = {ns / 1000000000L, ns % 1000000000L}, .it_value = {ns / 1000000000L, ns % 1000000000L}};
    timerfd_settime(tfd, 0, &its, NULL);
    ev.data.ptr = &tfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(epfd, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &lfd) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e2);
                }
            } else if (evs[i].data.ptr == &tfd) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof ticks) != sizeof ticks) continue;
                if (!publishing && n_subs && (n_subs >= wait_for || time(NULL) - first_sub >= 30)) publishing = 1;
                if (publishing) publish((unsigned)ticks);
            }
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &lfd || evs[i].data.ptr == &tfd) continue;
            conn_t *c = evs[i].data.ptr;
            if (c->dead) continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
            else if (evs[i].events & EPOLLOUT) flush(c);
        }
        while (graveyard) {
            conn_t *c = graveyard;
            graveyard = c->next_dead;
            free(c->in);
            free(c->out);
            free(c);
        }
    }
}
