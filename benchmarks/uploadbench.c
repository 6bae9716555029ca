/* uploadbench: one timed HTTP/1.1 upload of a file's bytes over one connection.
 *
 *   uploadbench -p PORT -f FILE [-H host] [-u path] [-m method] [-n bytes] [-c content-type]
 *               [-P prefix] [-S suffix] [-t timeout-s] [-q]
 *
 * The request body is PREFIX + the first N bytes of FILE (all of it by default) + SUFFIX, sent
 * with a Content-Length (never chunked) and `Connection: close`; the file part goes out with
 * sendfile(2), so the client does next to no work per byte (with the file in the page cache it
 * is not the bottleneck: see client_cpu). -P/-S wrap the file in a multipart/form-data body:
 * pass the preamble (first delimiter, other fields, the file part's headers) and the
 * "\r\n--BOUNDARY--\r\n" close delimiter as they are (argv bytes, CRLFs included).
 *
 * The clock starts before connect() and stops when the whole response is in (the server
 * answers after it has stored the body). Prints one JSON object on stdout:
 *   status, response_body (up to 4 KiB), file_bytes, body_bytes, sent_bytes, seconds,
 *   send_seconds (until the last byte was handed to the kernel), mb_per_s (file bytes / seconds /
 *   10^6), client_cpu (CPU seconds used / seconds), error (null or a string).
 * Exit status 0 when the whole body was sent and a complete response was read.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_RESPONSE (1 << 20)
#define MAX_BODY_ECHO 4096

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_used(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static char errbuf[512];
static int quiet;

static void set_error(const char *fmt, ...) {
    if (errbuf[0])
        return; /* keep the first */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    if (!quiet)
        fprintf(stderr, "uploadbench: %s\n", errbuf);
}

static void json_str(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int send_all(int fd, const char *p, size_t n, int flags) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | flags);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: uploadbench -p PORT -f FILE [-H host] [-u path] [-m method] [-n bytes] "
                    "[-c content-type] [-P prefix] [-S suffix] [-t timeout-s] [-q]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *path = "/upload", *method = "PUT", *file = NULL;
    const char *ctype = "application/octet-stream", *prefix = "", *suffix = "";
    int port = 0, opt;
    long long limit = -1;
    double timeout = 300;
    while ((opt = getopt(argc, argv, "p:f:H:u:m:n:c:P:S:t:q")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'f': file = optarg; break;
        case 'H': host = optarg; break;
        case 'u': path = optarg; break;
        case 'm': method = optarg; break;
        case 'n': limit = atoll(optarg); break;
        case 'c': ctype = optarg; break;
        case 'P': prefix = optarg; break;
        case 'S': suffix = optarg; break;
        case 't': timeout = atof(optarg); break;
        case 'q': quiet = 1; break;
        default: usage();
        }
    }
    if (!port || !file)
        usage();
    signal(SIGPIPE, SIG_IGN);

    int ffd = open(file, O_RDONLY);
    struct stat st;
    if (ffd < 0 || fstat(ffd, &st) < 0) {
        fprintf(stderr, "uploadbench: %s: %s\n", file, strerror(errno));
        return 2;
    }
    long long file_bytes = st.st_size;
    if (limit >= 0 && limit < file_bytes)
        file_bytes = limit;
    size_t plen = strlen(prefix), slen = strlen(suffix);
    long long body_bytes = (long long)plen + file_bytes + (long long)slen;

    char head[2048];
    int hlen = snprintf(head, sizeof head,
                        "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: uploadbench\r\nContent-Type: %s\r\n"
                        "Content-Length: %lld\r\nConnection: close\r\n\r\n",
                        method, path, host, port, ctype, body_bytes);
    if (hlen <= 0 || hlen >= (int)sizeof head) {
        fprintf(stderr, "uploadbench: request head too long\n");
        return 2;
    }

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        struct hostent *he = gethostbyname(host);
        if (!he) {
            fprintf(stderr, "uploadbench: cannot resolve %s\n", host);
            return 2;
        }
        memcpy(&sa.sin_addr, he->h_addr_list[0], sizeof sa.sin_addr);
    }

    double cpu0 = cpu_used(), t0 = now(), t_sent = 0, t_done = 0;
    long long sent = 0;
    int status = 0, complete = 0;
    char *resp = malloc(MAX_RESPONSE + 1);
    size_t rlen = 0;
    const char *rbody = NULL;
    size_t rbody_len = 0;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = (time_t)timeout, .tv_usec = (suseconds_t)((timeout - (time_t)timeout) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        set_error("connect: %s", strerror(errno));
        goto out;
    }
    /* Head and prefix with MSG_MORE: the kernel coalesces them with the first file bytes. */
    int more = file_bytes || slen ? MSG_MORE : 0;
    if (send_all(fd, head, (size_t)hlen, plen ? MSG_MORE : more) < 0 ||
        (plen && send_all(fd, prefix, plen, more) < 0)) {
        set_error("send head: %s", strerror(errno));
        goto read_response;
    }
    sent = plen;
    off_t off = 0;
    while (off < file_bytes) {
        size_t want = (size_t)(file_bytes - off);
        if (want > (1u << 30))
            want = 1u << 30;
        ssize_t w = sendfile(fd, ffd, &off, want);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            set_error("sendfile after %lld of %lld file bytes: %s", (long long)off, file_bytes,
                      errno == EAGAIN ? "timed out" : strerror(errno));
            break;
        }
        if (w == 0) {
            set_error("sendfile: %s ended after %lld bytes", file, (long long)off);
            break;
        }
    }
    sent += off;
    if (off == file_bytes) {
        if (slen && send_all(fd, suffix, slen, 0) < 0)
            set_error("send suffix: %s", strerror(errno));
        else
            sent += slen;
    }
    t_sent = now();

read_response:
    /* Read until the response is complete (Content-Length) or the server closes. */
    for (;;) {
        if (rlen == MAX_RESPONSE) {
            set_error("response larger than %d bytes", MAX_RESPONSE);
            break;
        }
        ssize_t r = recv(fd, resp + rlen, MAX_RESPONSE - rlen, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            set_error("recv: %s", errno == EAGAIN ? "timed out" : strerror(errno));
            break;
        }
        rlen += (size_t)r;
        resp[rlen] = 0;
        char *eoh = strstr(resp, "\r\n\r\n");
        if (eoh) {
            if (!status && sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
                status = -1;
            rbody = eoh + 4;
            rbody_len = rlen - (size_t)(rbody - resp);
            long long clen = -1;
            for (char *l = strstr(resp, "\r\n"); l && l < eoh; l = strstr(l + 2, "\r\n")) {
                if (strncasecmp(l + 2, "content-length:", 15) == 0)
                    clen = atoll(l + 17);
            }
            if (clen >= 0 && (long long)rbody_len >= clen) {
                rbody_len = (size_t)clen;
                complete = 1;
                break;
            }
        }
        if (r == 0) {
            complete = rbody != NULL; /* body delimited by close */
            if (!complete)
                set_error("connection closed before a complete response");
            break;
        }
    }
    t_done = now();
    if (!t_sent)
        t_sent = t_done;

out:;
    double secs = (t_done ? t_done : now()) - t0;
    double cpu = cpu_used() - cpu0;
    if (fd >= 0)
        close(fd);
    if (complete && sent != body_bytes)
        set_error("server answered %d after %lld of %lld body bytes", status, sent, body_bytes);
    printf("{\"status\":%d,\"response_body\":", status);
    json_str(rbody ? rbody : "", rbody ? (rbody_len > MAX_BODY_ECHO ? MAX_BODY_ECHO : rbody_len) : 0);
    printf(",\"file_bytes\":%lld,\"body_bytes\":%lld,\"sent_bytes\":%lld,\"seconds\":%.6f,\"send_seconds\":%.6f,"
           "\"mb_per_s\":%.3f,\"client_cpu\":%.4f,\"error\":",
           file_bytes, body_bytes, sent, secs, t_sent ? t_sent - t0 : 0.0,
           secs > 0 && sent == body_bytes ? file_bytes / secs / 1e6 : 0.0, secs > 0 ? cpu / secs : 0.0);
    if (errbuf[0])
        json_str(errbuf, strlen(errbuf));
    else
        fputs("null", stdout);
    puts("}");
    free(resp);
    return (complete && sent == body_bytes && !errbuf[0]) ? 0 : 1;
}
