/*
 * ssebench - Server-Sent Events fan-out load generator, one thread, epoll, non-blocking.
 *
 * Opens C connections doing `GET PATH` (HTTP/1.1) and keeps them subscribed: each response must be
 * 200 with Content-Type text/event-stream; the body may be chunked or delimited by the connection.
 * The event stream is parsed (text/event-stream rules: CRLF, LF or CR line ends, comments,
 * `field: value`); an event is counted when it is dispatched (blank line) and has data. The first
 * data line is read as the publisher's CLOCK_REALTIME send time in nanoseconds (time.time_ns()),
 * so publish-to-receive latency = our CLOCK_REALTIME at the read() that completed the event - data
 * (same machine: same clock). Events dispatched during the measured window (after an optional
 * warm-up, which starts once every connection got its response headers) give events/s; latencies
 * go into a log-linear histogram (< 1 % error). One JSON object on stdout; progress on stderr.
 *
 *   cc -O2 -o ssebench benchmarks/ssebench.c
 *   ./ssebench -p 8000 [-H 127.0.0.1] [-u /events] [-c 1000] [-d 10] [-w 2]
 *
 * Exit status: 0 if events were measured and no error happened, 1 otherwise, 2 on usage.
 */
#define _GNU_SOURCE
#include <errno.h>
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
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ time, histogram */

static uint64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
#define mono_ns() clock_ns(CLOCK_MONOTONIC)
#define real_ns() clock_ns(CLOCK_REALTIME)

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
    unsigned s = msb - 6u;
    return 128u + (s - 1u) * H_SUB + (unsigned)((v >> s) - 64u);
}

static double h_value(unsigned i) {
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

/* ------------------------------------------------------------------ state */

static const char *opt_host = "127.0.0.1", *opt_path = "/events";
static int opt_port = 0, opt_conns = 1000, opt_quiet = 0;
static double opt_duration = 10, opt_warmup = 0, opt_connect_timeout = 20;

enum { C_CONNECTING, C_REQUEST, C_HEAD, C_BODY, C_DEAD };
enum { B_IDENTITY, B_CHUNK_SIZE, B_CHUNK_DATA, B_CHUNK_END, B_DONE };
#define HEAD_MAX 8192
#define LINE_MAX_ 256

typedef struct {
    int fd, state;
    char *head; /* request while sending, then the response head */
    size_t head_len, req_len, req_off;
    /* body framing */
    int bstate, chunk_ext;
    uint64_t chunk_left, chunk_size;
    /* event stream parser */
    char line[LINE_MAX_];
    unsigned line_len;
    int line_long, skip_lf, has_data, ts_ok;
    uint64_t ts;
    uint64_t events; /* measured */
} conn_t;

static conn_t *conns;
static int epfd;
static char host_hdr[300];
static hist_t hist;
static int measuring = 0;
static uint64_t measured = 0, measured_bytes = 0, events_total = 0, bad_data = 0, future_ts = 0;
static uint64_t now_real; /* CLOCK_REALTIME of the current read */
static struct {
    uint64_t connect, status, content_type, closed, protocol;
} err;
static char first_error[512];
static int n_subscribed = 0, n_dead = 0;

static void note_error(const conn_t *c, const char *what) {
    if (!first_error[0]) snprintf(first_error, sizeof first_error, "conn %d: %s", (int)(c - conns), what);
    if (!opt_quiet) fprintf(stderr, "ssebench: conn %d: %s\n", (int)(c - conns), what);
}

static void kill_conn(conn_t *c) {
    if (c->state == C_DEAD) return;
    if (c->state == C_BODY) n_subscribed--;
    c->state = C_DEAD;
    n_dead++;
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    free(c->head);
    c->head = NULL;
}

static void fail(conn_t *c, uint64_t *counter, const char *what) {
    (*counter)++;
    note_error(c, what);
    kill_conn(c);
}

/* ------------------------------------------------------------------ event stream */

static void on_line(conn_t *c, const char *l, unsigned n) {
    if (n == 0) { /* dispatch */
        if (c->has_data) {
            events_total++;
            if (measuring) {
                measured++;
                c->events++;
                if (c->ts_ok) {
                    if (c->ts > now_real) { future_ts++; h_add(&hist, 0); }
                    else h_add(&hist, now_real - c->ts);
                } else bad_data++;
            }
        }
        c->has_data = 0;
        return;
    }
    if (l[0] == ':') return; /* comment (keep-alive pings) */
    if (n >= 4 && memcmp(l, "data", 4) == 0 && (n == 4 || l[4] == ':')) {
        if (!c->has_data) {
            unsigned i = 5;
            if (i < n && l[i] == ' ') i++;
            uint64_t v = 0;
            int digits = 0;
            for (; i < n && l[i] >= '0' && l[i] <= '9' && digits < 20; i++, digits++) v = v * 10 + (uint64_t)(l[i] - '0');
            c->ts_ok = digits > 0 && i == n && !c->line_long;
            c->ts = v;
        }
        c->has_data = 1;
    }
    /* event:, id:, retry: and unknown fields are ignored */
}

static void sse_feed(conn_t *c, const char *p, size_t n) {
    measured_bytes += measuring ? n : 0;
    const char *end = p + n;
    while (p < end) {
        if (c->skip_lf) {
            c->skip_lf = 0;
            if (*p == '\n') { p++; continue; }
        }
        const char *q = p;
        while (q < end && *q != '\n' && *q != '\r') q++;
        size_t take = (size_t)(q - p);
        if (c->line_len + take > LINE_MAX_) {
            size_t room = LINE_MAX_ - c->line_len;
            memcpy(c->line + c->line_len, p, room);
            c->line_len = LINE_MAX_;
            c->line_long = 1;
        } else {
            memcpy(c->line + c->line_len, p, take);
            c->line_len += (unsigned)take;
        }
        if (q == end) return;
        if (*q == '\r') c->skip_lf = 1;
        on_line(c, c->line, c->line_len);
        c->line_len = 0;
        c->line_long = 0;
        p = q + 1;
    }
}

/* Body bytes: strip chunked framing if any, feed the event stream. */
static void body_feed(conn_t *c, const char *p, size_t n) {
    while (n && c->state == C_BODY) {
        switch (c->bstate) {
        case B_IDENTITY:
            sse_feed(c, p, n);
            return;
        case B_CHUNK_SIZE: {
            char ch = *p++;
            n--;
            if (ch == '\n') {
                if (c->chunk_size == 0) { c->bstate = B_DONE; break; }
                c->chunk_left = c->chunk_size;
                c->chunk_size = 0;
                c->chunk_ext = 0;
                c->bstate = B_CHUNK_DATA;
            } else if (c->chunk_ext || ch == '\r' || ch == ' ' || ch == '\t') {
            } else if (ch == ';') {
                c->chunk_ext = 1;
            } else {
                int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
                if (v < 0 || c->chunk_size > (1ull << 40)) { fail(c, &err.protocol, "bad chunk size line"); return; }
                c->chunk_size = c->chunk_size * 16 + (uint64_t)v;
            }
            break;
        }
        case B_CHUNK_DATA: {
            size_t take = n < c->chunk_left ? n : (size_t)c->chunk_left;
            sse_feed(c, p, take);
            p += take;
            n -= take;
            c->chunk_left -= take;
            if (!c->chunk_left) c->bstate = B_CHUNK_END;
            break;
        }
        case B_CHUNK_END:
            if (*p == '\n') c->bstate = B_CHUNK_SIZE;
            else if (*p != '\r') { fail(c, &err.protocol, "no CRLF after chunk data"); return; }
            p++;
            n--;
            break;
        case B_DONE:
            fail(c, &err.closed, "server ended the chunked stream");
            return;
        }
    }
    if (c->state == C_BODY && c->bstate == B_DONE) fail(c, &err.closed, "server ended the chunked stream");
}

/* ------------------------------------------------------------------ HTTP */

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

/* Response head complete in c->head[0..head_len): check it, switch to C_BODY. */
static int on_head(conn_t *c, size_t head_len) {
    char saved = c->head[head_len];
    c->head[head_len] = 0;
    int status = 0;
    char val[256], msg[300];
    if (sscanf(c->head, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
        const char *e = strstr(c->head, "\r\n");
        size_t l = e ? (size_t)(e - c->head) : strlen(c->head);
        snprintf(msg, sizeof msg, "status line %.*s", (int)(l < 120 ? l : 120), c->head);
        fail(c, &err.status, msg);
        return 0;
    }
    if (!find_header(c->head, "Content-Type", val, sizeof val) || strncasecmp(val, "text/event-stream", 17) != 0) {
        snprintf(msg, sizeof msg, "Content-Type %s, expected text/event-stream", find_header(c->head, "Content-Type", val, sizeof val) ? val : "missing");
        fail(c, &err.content_type, msg);
        return 0;
    }
    c->bstate = B_IDENTITY;
    if (find_header(c->head, "Transfer-Encoding", val, sizeof val) && strcasestr(val, "chunked")) c->bstate = B_CHUNK_SIZE;
    c->head[head_len] = saved;
    c->state = C_BODY;
    n_subscribed++;
    return 1;
}

static struct sockaddr_storage addr;
static socklen_t addr_len;

static void start_conn(conn_t *c) {
    c->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) { err.connect++; note_error(c, strerror(errno)); c->state = C_DEAD; n_dead++; return; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = C_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&addr, addr_len) < 0 && errno != EINPROGRESS) {
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
}

static void on_writable(conn_t *c) {
    if (c->state == C_CONNECTING) {
        int e = 0;
        socklen_t l = sizeof e;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e) { fail(c, &err.connect, strerror(e)); return; }
        c->state = C_REQUEST;
        c->head = malloc(HEAD_MAX + 1);
        c->req_len = (size_t)snprintf(c->head, HEAD_MAX, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n", opt_path, host_hdr);
        c->req_off = 0;
    }
    while (c->state == C_REQUEST && c->req_off < c->req_len) {
        ssize_t w = write(c->fd, c->head + c->req_off, c->req_len - c->req_off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (w <= 0) { fail(c, &err.connect, strerror(errno)); return; }
        c->req_off += (size_t)w;
    }
    if (c->state == C_REQUEST) {
        c->state = C_HEAD;
        c->head_len = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static void on_readable(conn_t *c, char *buf, size_t cap) {
    for (;;) {
        ssize_t r;
        if (c->state == C_HEAD) {
            if (c->head_len >= HEAD_MAX) { fail(c, &err.protocol, "response head larger than 8 KiB"); return; }
            r = read(c->fd, c->head + c->head_len, HEAD_MAX - c->head_len);
        } else {
            r = read(c->fd, buf, cap);
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r <= 0) {
            fail(c, &err.closed, r == 0 ? (c->state == C_HEAD ? "connection closed before the response head" : "server closed the stream")
                                         : strerror(errno));
            return;
        }
        now_real = real_ns();
        if (c->state == C_HEAD) {
            c->head_len += (size_t)r;
            c->head[c->head_len] = 0;
            char *e = strstr(c->head, "\r\n\r\n");
            if (!e) continue;
            size_t hl = (size_t)(e - c->head) + 4, extra = c->head_len - hl;
            if (!on_head(c, hl)) return;
            if (extra) {
                memcpy(buf, c->head + hl, extra);
                body_feed(c, buf, extra);
            }
            free(c->head);
            c->head = NULL;
            if (c->state != C_BODY) return;
            continue;
        }
        body_feed(c, buf, (size_t)r);
        if (c->state != C_BODY || (size_t)r < cap) return;
    }
}

/* ------------------------------------------------------------------ main */

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s -p PORT [options]\n"
            "  -H HOST   server address (default 127.0.0.1)\n"
            "  -p PORT   server port (required)\n"
            "  -u PATH   request path (default /events)\n"
            "  -c N      subscribed connections (default 1000)\n"
            "  -d SEC    measured duration (default 10)\n"
            "  -w SEC    warm-up after all are subscribed, not counted (default 0)\n"
            "  -t SEC    time allowed for all connections to get their response head (default 20)\n"
            "  -q        no per-error messages on stderr\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv) {
    int o;
    while ((o = getopt(argc, argv, "H:p:u:c:d:w:t:qh")) != -1) {
        switch (o) {
        case 'H': opt_host = optarg; break;
        case 'p': opt_port = atoi(optarg); break;
        case 'u': opt_path = optarg; break;
        case 'c': opt_conns = atoi(optarg); break;
        case 'd': opt_duration = atof(optarg); break;
        case 'w': opt_warmup = atof(optarg); break;
        case 't': opt_connect_timeout = atof(optarg); break;
        case 'q': opt_quiet = 1; break;
        default: usage(argv[0]);
        }
    }
    if (opt_port <= 0 || opt_port > 65535 || opt_conns < 1 || opt_duration <= 0 || opt_warmup < 0) usage(argv[0]);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt_conns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)opt_conns + 64)
            fprintf(stderr, "ssebench: warning: open-file limit %llu is below %d connections\n", (unsigned long long)rl.rlim_cur, opt_conns);
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", opt_port);
    int gai = getaddrinfo(opt_host, portstr, &hints, &ai);
    if (gai) { fprintf(stderr, "ssebench: %s: %s\n", opt_host, gai_strerror(gai)); return 2; }
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    addr_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    snprintf(host_hdr, sizeof host_hdr, strchr(opt_host, ':') ? "[%s]:%d" : "%s:%d", opt_host, opt_port);

    conns = calloc((size_t)opt_conns, sizeof *conns);
    for (int i = 0; i < opt_conns; i++) conns[i].fd = -1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    static char buf[1 << 16];
    struct epoll_event evs[1024];

    /* Subscribe everyone, at most 100 requests without a response head at a time. */
    int next = 0;
    uint64_t t0 = mono_ns(), deadline = t0 + (uint64_t)(opt_connect_timeout * 1e9);
    for (;;) {
        int pending = 0;
        for (int i = 0; i < next; i++) pending += conns[i].state < C_BODY;
        while (next < opt_conns && pending < 100) { start_conn(&conns[next++]); pending++; }
        if (next == opt_conns && pending == 0) break;
        if (mono_ns() > deadline) break;
        int n = epoll_wait(epfd, evs, 1024, 100);
        for (int i = 0; i < n; i++) {
            conn_t *c = &conns[evs[i].data.u32];
            if ((c->state == C_CONNECTING || c->state == C_REQUEST) && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) on_writable(c);
            if ((c->state == C_HEAD || c->state == C_BODY) && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(c, buf, sizeof buf);
        }
    }
    for (int i = 0; i < opt_conns; i++)
        if (conns[i].state < C_BODY) fail(&conns[i], &err.connect, "no response head before the subscribe timeout");
    int subscribed = n_subscribed;
    double connect_s = (double)(mono_ns() - t0) / 1e9;
    if (!opt_quiet) fprintf(stderr, "ssebench: %d/%d connections subscribed in %.2fs\n", subscribed, opt_conns, connect_s);

    struct rusage ru0, ru1;
    uint64_t start = mono_ns(), wstart = start + (uint64_t)(opt_warmup * 1e9), wend = wstart + (uint64_t)(opt_duration * 1e9);
    if (opt_warmup <= 0) { measuring = 1; getrusage(RUSAGE_SELF, &ru0); }
    uint64_t now = start;
    while (now < wend && n_subscribed > 0) {
        int timeout_ms = (int)((((measuring ? wend : wstart) - now) / 1000000ull) + 1);
        if (timeout_ms > 100) timeout_ms = 100;
        int n = epoll_wait(epfd, evs, 1024, timeout_ms);
        now = mono_ns();
        if (!measuring && now >= wstart) { measuring = 1; getrusage(RUSAGE_SELF, &ru0); }
        for (int i = 0; i < n; i++) {
            conn_t *c = &conns[evs[i].data.u32];
            if (c->state == C_BODY) on_readable(c, buf, sizeof buf);
        }
    }
    uint64_t stop = now;
    getrusage(RUSAGE_SELF, &ru1);
    if (!measuring) ru0 = ru1;
    double window = measuring ? (double)(stop - wstart) / 1e9 : 0;
    if (measuring && stop < wstart) window = 0;
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    uint64_t pmin = UINT64_MAX, pmax = 0, psum = 0;
    int counted = 0;
    for (int i = 0; i < opt_conns; i++) {
        if (conns[i].state != C_BODY && conns[i].events == 0) continue; /* never subscribed */
        counted++;
        psum += conns[i].events;
        if (conns[i].events < pmin) pmin = conns[i].events;
        if (conns[i].events > pmax) pmax = conns[i].events;
    }
    if (!counted) pmin = 0;
    uint64_t errors = err.connect + err.status + err.content_type + err.closed + err.protocol;
    /* Every subscriber should see every event: the busiest connection's count is a lower bound
       for what was published in the window, so delivered / (that * subscribers) shows how many
       deliveries were missed (dropped or still queued in the server). */
    double pub = window > 0 ? (double)pmax / window : 0;
    printf("{\"tool\": \"ssebench\", \"host\": \"%s\", \"port\": %d, \"path\": \"%s\", \"connections\": %d, "
           "\"subscribed\": %d, \"subscribed_at_end\": %d, \"subscribe_s\": %.3f, \"warmup_s\": %.3f, \"duration_s\": %.3f, "
           "\"events\": %llu, \"events_per_s\": %.1f, \"bytes_per_s\": %.1f, "
           "\"per_conn_events\": {\"min\": %llu, \"max\": %llu, \"mean\": %.1f}, \"published_per_s_estimate\": %.1f, "
           "\"delivery_ratio\": %.4f, "
           "\"latency_us\": {\"mean\": %.1f, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f}, "
           "\"events_without_timestamp\": %llu, \"timestamps_in_future\": %llu, \"client_cpu\": %.3f, "
           "\"errors\": {\"connect\": %llu, \"status\": %llu, \"content_type\": %llu, \"closed\": %llu, \"protocol\": %llu}, "
           "\"error_count\": %llu, \"first_error\": \"",
           opt_host, opt_port, opt_path, opt_conns, subscribed, n_subscribed, connect_s, opt_warmup, window,
           (unsigned long long)measured, window > 0 ? (double)measured / window : 0.0,
           window > 0 ? (double)measured_bytes / window : 0.0, (unsigned long long)pmin, (unsigned long long)pmax,
           counted ? (double)psum / counted : 0.0, pub, pmax && counted ? (double)psum / ((double)pmax * counted) : 0.0,
           hist.count ? hist.sum / (double)hist.count / 1e3 : 0.0, h_pct(&hist, 0.50) / 1e3, h_pct(&hist, 0.90) / 1e3,
           h_pct(&hist, 0.99) / 1e3, h_pct(&hist, 0.999) / 1e3, (double)hist.max / 1e3, (unsigned long long)bad_data,
           (unsigned long long)future_ts, window > 0 ? cpu / window : 0.0, (unsigned long long)err.connect,
           (unsigned long long)err.status, (unsigned long long)err.content_type, (unsigned long long)err.closed,
           (unsigned long long)err.protocol, (unsigned long long)errors);
    for (const char *p = first_error; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        if ((unsigned char)*p >= 0x20) putchar(*p);
    }
    printf("\"}\n");
    (void)events_total;
    return (measured > 0 && errors == 0) ? 0 : 1;
}
