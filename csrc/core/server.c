/*
 * server.c: the server's life cycle and the I/O thread's event loop (after redis ae.c and libuv).
 *
 * One I/O thread runs epoll over the listening socket, an eventfd and every connection. Workers
 * hand responses back through a mutex-protected queue and wake the loop through the eventfd only
 * when that queue goes from empty to non-empty. Timers are one list per timeout kind, each kept
 * sorted by appending (all entries of a kind share one duration). Connections are never freed
 * inside their own callbacks: mx__conn_close() marks them and the loop frees them at the end of
 * the pass. Everything here runs on the I/O thread, except the mx_server_* calls the binding
 * makes (start, stop, wait, free), which say so.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* epoll user data for the two non-connection descriptors; connections use their mx_conn_t. */
static char listen_tag, wake_tag;

int64_t mx__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

mx_server_t *mx_server_new(const mx_config_t *cfg, mx_router_t *router,
                           const size_t *route_max_body, size_t n, const mx_hooks_t *hooks) {
    mx_server_t *s = calloc(1, sizeof(*s));
    if (!s)
        goto error;
    s->cfg = *cfg;
    if (s->cfg.workers < 1)
        s->cfg.workers = 1;
    if (s->cfg.max_pipeline < 1)
        s->cfg.max_pipeline = 1;
    s->hooks = *hooks;
    s->listen_fd = -1;
    s->epfd = -1;
    s->wake_fd = -1;
    s->next_conn_id = 1;
    if (n) {
        s->route_max_body = malloc(n * sizeof(size_t));
        if (!s->route_max_body)
            goto error;
        memcpy(s->route_max_body, route_max_body, n * sizeof(size_t));
        s->n_route_max_body = n;
    }
    pthread_mutex_init(&s->out_mu, NULL);
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    pthread_mutex_init(&s->life_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->life_cv, &ca);
    pthread_condattr_destroy(&ca);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->epfd < 0 || s->wake_fd < 0)
        goto error;
    s->router = router; /* owned from here on, also on the error path below */
    return s;
error:
    if (s) {
        if (s->epfd >= 0)
            close(s->epfd);
        if (s->wake_fd >= 0)
            close(s->wake_fd);
        free(s->route_max_body);
        free(s);
    }
    mx_router_free(router);
    return NULL;
}

static int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int mx_server_listen_tcp(mx_server_t *s, const char *host, int port, char *err, size_t errlen) {
    struct addrinfo hints, *res = NULL, *ai;
    char portstr[16];
    int fd = -1, gai;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%d", port);
    /* Strip the brackets of an IPv6 literal such as "[::1]". */
    char hbuf[256];
    if (host && host[0] == '[') {
        size_t hl = strlen(host);
        if (hl >= 2 && hl - 2 < sizeof(hbuf) && host[hl - 1] == ']') {
            memcpy(hbuf, host + 1, hl - 2);
            hbuf[hl - 2] = 0;
            host = hbuf;
        }
    }
    if (host && !*host)
        host = NULL;
    gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host ? host : "*", gai_strerror(gai));
        errno = EINVAL;
        return MX_ESYS;
    }
    int saved = 0;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, s->cfg.backlog) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        errno = saved;
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host ? host : "*", port,
                 strerror(saved));
        return MX_ESYS;
    }
    set_nonblock(fd);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    s->listen_fd = fd;
    return 0;
}

int mx_server_listen_unix(mx_server_t *s, const char *path, char *err, size_t errlen) {
    struct sockaddr_un sa;
    struct stat st;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "unix socket path too long: %s", path);
        errno = ENAMETOOLONG;
        return MX_ESYS;
    }
    strcpy(sa.sun_path, path);
    /* A stale socket file left by an earlier run would make bind fail; other files are kept. */
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, s->cfg.backlog) != 0) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        errno = saved;
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(saved));
        return MX_ESYS;
    }
    set_nonblock(fd);
    s->listen_fd = fd;
    s->is_unix = 1;
    s->unix_path = strdup(path);
    return 0;
}

int mx_server_port(const mx_server_t *s) { return s->port; }

int mx_server_set_route_stream(mx_server_t *s, const unsigned char *flags, size_t n) {
    unsigned char *copy = n ? malloc(n) : NULL;
    if (n && !copy)
        return MX_ENOMEM;
    if (n)
        memcpy(copy, flags, n);
    free(s->route_stream);
    s->route_stream = copy;
    s->n_route_stream = n;
    return 0;
}

/* ---- timers ---- */

static void timer_unlink(mx_conn_t *c) {
    if (c->timer_kind == MX_TIMER_NONE)
        return;
    mx_server_t *s = c->server;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        s->timers[c->timer_kind].head = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        s->timers[c->timer_kind].tail = c->tprev;
    c->tprev = c->tnext = NULL;
    c->timer_kind = MX_TIMER_NONE;
}

/* Puts c on the timer list of kind, due in seconds from now; kind NONE or seconds <= 0 only
 * removes it. Re-arming the same kind keeps the original deadline (a slow head must not extend
 * its own limit by trickling bytes). */
void mx__timer_restart(mx_conn_t *c, int kind, double seconds) {
    timer_unlink(c);
    mx__timer_set(c, kind, seconds);
}

void mx__timer_set(mx_conn_t *c, int kind, double seconds) {
    if (kind == c->timer_kind && kind != MX_TIMER_NONE)
        return;
    timer_unlink(c);
    if (kind == MX_TIMER_NONE || seconds <= 0)
        return;
    mx_server_t *s = c->server;
    c->timer_kind = kind;
    c->deadline_ms = s->now_ms + (int64_t)(seconds * 1000.0);
    c->tprev = s->timers[kind].tail;
    c->tnext = NULL;
    if (c->tprev)
        c->tprev->tnext = c;
    else
        s->timers[kind].head = c;
    s->timers[kind].tail = c;
}

static int next_timeout_ms(mx_server_t *s) {
    int64_t best = 1000; /* wake at least once a second: the stop flag and date are checked */
    for (int k = 1; k < MX_TIMER__N; k++) {
        mx_conn_t *c = s->timers[k].head;
        if (c) {
            int64_t d = c->deadline_ms - s->now_ms;
            if (d < best)
                best = d < 0 ? 0 : d;
        }
    }
    return (int)best;
}

static void run_timers(mx_server_t *s) {
    for (int k = 1; k < MX_TIMER__N; k++) {
        mx_conn_t *c;
        while ((c = s->timers[k].head) && c->deadline_ms <= s->now_ms) {
            timer_unlink(c);
            mx__conn_on_timeout(c, k);
        }
    }
}

/* ---- connections ---- */

void mx__conn_set_events(mx_conn_t *c, uint32_t events) {
    if (c->closing || events == c->ep_events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(c->server->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->ep_events = events;
}

void mx__conn_close(mx_conn_t *c) {
    if (c->closing)
        return;
    mx_server_t *s = c->server;
    c->closing = 1;
    timer_unlink(c);
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->next_closing = s->closing;
    s->closing = c;
}

static void free_closing(mx_server_t *s) {
    while (s->closing) {
        mx_conn_t *c = s->closing;
        s->closing = c->next_closing;
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        s->nconns--;
        mx__conn_free(c);
    }
}

static void accept_pause(mx_server_t *s, int pause) {
    if (s->listen_fd < 0 || s->accept_paused == pause)
        return;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
    epoll_ctl(s->epfd, pause ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, s->listen_fd, &ev);
    s->accept_paused = pause;
}

static void on_accept(mx_server_t *s) {
    /* A bounded batch per pass keeps a connection storm from starving established clients. */
    for (int i = 0; i < 64; i++) {
        if ((int)s->nconns >= s->cfg.max_connections) {
            accept_pause(s, 1);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment rather than spin. */
                accept_pause(s, 1);
                s->accept_resume_at = s->now_ms + 100;
            }
            return; /* EAGAIN, or a connection that died in the backlog */
        }
        if (!s->is_unix) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        mx_conn_t *c = mx__conn_new(s, fd);
        if (!c) {
            close(fd);
            continue;
        }
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, c->remote_addr, sizeof(c->remote_addr));
            c->remote_port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, c->remote_addr, sizeof(c->remote_addr));
            c->remote_port = ntohs(a->sin6_port);
        } else {
            c->is_unix = 1;
        }
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        c->ep_events = ev.events;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            mx__conn_close(c);
            continue;
        }
        mx__timer_set(c, MX_TIMER_IDLE, s->cfg.idle_timeout);
    }
}

/* ---- the response queue ---- */

/* Whether the I/O thread has nothing from other threads to look at. out_mu held. */
static int handoff_empty_locked(const mx_server_t *s) {
    return s->out_head == NULL && s->notify_head == NULL && s->rnotify_head == NULL;
}

/* Wakes the loop for what was just handed over, when the hand-over lists were empty before it
 * (otherwise the wake-up is already on its way). EAGAIN means the counter is already non-zero. */
static void wake_io(mx_server_t *s, int was_empty) {
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(s->wake_fd, &one, sizeof(one));
        MX_UNUSED(w);
    }
}

/* Any thread. Hands one reference to r to the I/O thread. */
void mx__post_response(mx_server_t *s, mx_req_t *r) {
    pthread_mutex_lock(&s->out_mu);
    if (s->io_done) { /* nobody will write it: the client is gone with the server */
        pthread_mutex_unlock(&s->out_mu);
        if (r->stream)
            mx__stream_detach(r->stream);
        mx_req_decref(r);
        return;
    }
    int was_empty = handoff_empty_locked(s);
    r->next_out = NULL;
    if (s->out_tail)
        s->out_tail->next_out = r;
    else
        s->out_head = r;
    s->out_tail = r;
    pthread_mutex_unlock(&s->out_mu);
    wake_io(s, was_empty);
}

/* Any thread: a streamed body's reader has news for the I/O thread (room, or 100 Continue). */
void mx__req_notify(mx_req_t *r) {
    mx_server_t *s = r->server;
    pthread_mutex_lock(&s->out_mu);
    int was_empty = 0;
    if (!r->notify_pending && !s->io_done) {
        r->notify_pending = 1;
        mx_req_incref(r);
        was_empty = handoff_empty_locked(s);
        r->next_notify = NULL;
        if (s->rnotify_tail)
            s->rnotify_tail->next_notify = r;
        else
            s->rnotify_head = r;
        s->rnotify_tail = r;
    }
    pthread_mutex_unlock(&s->out_mu);
    wake_io(s, was_empty);
}

/* Any thread: the stream has news for the I/O thread (data, its end, room to read again). */
void mx__stream_notify(mx_stream_t *st) {
    mx_server_t *s = st->server;
    pthread_mutex_lock(&s->out_mu);
    int was_empty = 0;
    if (!st->notify_pending && !s->io_done) {
        st->notify_pending = 1;
        mx_stream_incref(st);
        was_empty = handoff_empty_locked(s);
        st->next_notify = NULL;
        if (s->notify_tail)
            s->notify_tail->next_notify = st;
        else
            s->notify_head = st;
        s->notify_tail = st;
    }
    pthread_mutex_unlock(&s->out_mu);
    wake_io(s, was_empty);
}

static void drain_responses(mx_server_t *s) {
    uint64_t v;
    ssize_t rd = read(s->wake_fd, &v, sizeof(v));
    MX_UNUSED(rd);
    pthread_mutex_lock(&s->out_mu);
    mx_req_t *r = s->out_head;
    s->out_head = s->out_tail = NULL;
    /* The taken lists stay linked through next_notify while they are walked below, so each
     * item's pending flag is cleared (under the lock) only after its successor has been read:
     * a sender that notifies it again from then on links it into the new list, which rewrites
     * next_notify and would otherwise cut the rest of this list off (lost wake-ups, leaked
     * references). */
    mx_stream_t *st = s->notify_head;
    s->notify_head = s->notify_tail = NULL;
    mx_req_t *rn = s->rnotify_head;
    s->rnotify_head = s->rnotify_tail = NULL;
    pthread_mutex_unlock(&s->out_mu);
    while (rn) {
        pthread_mutex_lock(&s->out_mu);
        mx_req_t *next = rn->next_notify;
        rn->notify_pending = 0;
        pthread_mutex_unlock(&s->out_mu);
        mx_conn_t *c = rn->conn;
        if (c && !c->closing)
            mx__conn_req_notify(c, rn);
        mx_req_decref(rn);
        rn = next;
    }
    while (r) {
        mx_req_t *next = r->next_out;
        r->next_out = NULL;
        mx_conn_t *c = r->conn;
        r->resp_ready = 1;
        if (c && !c->closing)
            mx__conn_response_ready(c);
        else if (r->stream)
            mx__stream_detach(r->stream); /* its connection is already gone */
        mx_req_decref(r);
        r = next;
    }
    while (st) {
        pthread_mutex_lock(&s->out_mu);
        mx_stream_t *next = st->next_notify;
        st->notify_pending = 0;
        pthread_mutex_unlock(&s->out_mu);
        mx__stream_on_notify(st);
        mx_stream_decref(st);
        st = next;
    }
}

/* Called once per pass while stopping: closes connections with nothing in flight. */
static void drain_idle_conns(mx_server_t *s) {
    for (mx_conn_t *c = s->conns; c; c = c->next) {
        if (c->closing)
            continue;
        if (atomic_load(&s->stopping) >= 2 || (!c->pipe_head && c->rpos == c->rlen)) {
            mx__conn_close(c);
            continue;
        }
        c->no_more_requests = 1;
        if (c->stream && !c->stream_shut) {
            c->stream_shut = 1;
            mx__stream_shutdown(c->stream); /* WebSockets get 1001, SSE streams their end */
        }
    }
}

static void *io_main(void *arg) {
    mx_server_t *s = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    mx__thread_batch_policy();
    mx__pool_io_thread(s);
    struct epoll_event evs[256];
    s->now_ms = mx__now_ms();
    int listening = 1;
    for (;;) {
        int stopping = atomic_load(&s->stopping);
        if (stopping) {
            if (listening) {
                accept_pause(s, 1);
                close(s->listen_fd);
                s->listen_fd = -1;
                listening = 0;
            }
            drain_idle_conns(s);
            free_closing(s);
            if (s->nconns == 0)
                break;
        }
        int timeout = next_timeout_ms(s);
        if (timeout > 1 && mx__pool_has_queued(s))
            timeout = 1; /* watch for a stalled queue (see pool.c) */
        mx__pool_flush_wakes(s);
        int n = epoll_wait(s->epfd, evs, 256, timeout);
        s->now_ms = mx__now_ms();
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &listen_tag) {
                on_accept(s);
                continue;
            }
            if (p == &wake_tag) {
                drain_responses(s);
                continue;
            }
            mx_conn_t *c = p;
            if (c->closing)
                continue;
            uint32_t e = evs[i].events;
            if ((e & (EPOLLHUP | EPOLLERR)) && !(e & EPOLLIN)) {
                mx__conn_close(c); /* both directions are gone: nobody to answer */
                continue;
            }
            if (e & EPOLLIN)
                mx__conn_on_readable(c);
            if (!c->closing && (e & EPOLLOUT))
                mx__conn_on_writable(c);
        }
        if (s->accept_paused && listening && s->accept_resume_at && s->now_ms >= s->accept_resume_at) {
            s->accept_resume_at = 0;
            accept_pause(s, 0);
        } else if (s->accept_paused && listening && !s->accept_resume_at &&
                   (int)s->nconns < s->cfg.max_connections) {
            accept_pause(s, 0);
        }
        run_timers(s);
        mx__pool_shed(s);
        mx__pool_check_stall(s);
        free_closing(s);
    }
    /* Closing: every connection is gone; requests still held by workers see conn == NULL. */
    for (mx_conn_t *c = s->conns; c; c = c->next)
        mx__conn_close(c);
    free_closing(s);
    /* Whatever was posted meanwhile is dropped (streams marked closed), and later posts are
     * refused at once: no stream may wait for a loop that is gone. */
    drain_responses(s);
    pthread_mutex_lock(&s->out_mu);
    s->io_done = 1;
    pthread_mutex_unlock(&s->out_mu);
    drain_responses(s);
    mx__pool_flush_wakes(s);
    pthread_mutex_lock(&s->life_mu);
    s->stopped = 1;
    pthread_cond_broadcast(&s->life_cv);
    pthread_mutex_unlock(&s->life_mu);
    return NULL;
}

int mx_server_start(mx_server_t *s) {
    if (s->started)
        return MX_EINVAL;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &wake_tag};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wake_fd, &ev) != 0)
        return MX_ESYS;
    if (s->listen_fd >= 0) {
        ev.data.ptr = &listen_tag;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) != 0)
            return MX_ESYS;
    }
    int rc = mx__pool_start(s);
    if (rc)
        return rc;
    if (pthread_create(&s->io_thread, NULL, io_main, s) != 0) {
        mx__pool_stop(s);
        return MX_ESYS;
    }
    s->io_started = 1;
    s->started = 1;
    return 0;
}

static void wake_loop(mx_server_t *s) {
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof(one));
    MX_UNUSED(w);
}

static int wait_stopped_until(mx_server_t *s, const struct timespec *deadline) {
    pthread_mutex_lock(&s->life_mu);
    while (!s->stopped) {
        if (!deadline) {
            pthread_cond_wait(&s->life_cv, &s->life_mu);
        } else if (pthread_cond_timedwait(&s->life_cv, &s->life_mu, deadline) == ETIMEDOUT) {
            break;
        }
    }
    int stopped = s->stopped;
    pthread_mutex_unlock(&s->life_mu);
    return stopped;
}

static void deadline_in(struct timespec *ts, double seconds) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    if (seconds < 0)
        seconds = 0;
    if (seconds > 1e7)
        seconds = 1e7;
    time_t whole = (time_t)seconds;
    ts->tv_sec += whole;
    ts->tv_nsec += (long)((seconds - (double)whole) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int mx_server_wait(mx_server_t *s, double timeout) {
    if (!s->io_started)
        return 1;
    struct timespec ts;
    deadline_in(&ts, timeout);
    return wait_stopped_until(s, timeout < 0 ? NULL : &ts);
}

void mx_server_stop(mx_server_t *s, double timeout) {
    if (!s->io_started) {
        if (s->nworkers)
            mx__pool_stop(s);
        return;
    }
    struct timespec ts;
    deadline_in(&ts, timeout);
    int expected = 0;
    atomic_compare_exchange_strong(&s->stopping, &expected, 1);
    wake_loop(s);
    if (!wait_stopped_until(s, &ts)) {
        atomic_store(&s->stopping, 2); /* the drain ran out of time: close what is left */
        wake_loop(s);
        wait_stopped_until(s, NULL);
    }
    pthread_join(s->io_thread, NULL);
    s->io_started = 0;
    mx__pool_stop(s);
    if (s->unix_path) {
        unlink(s->unix_path);
        free(s->unix_path);
        s->unix_path = NULL;
    }
}

void mx_server_free(mx_server_t *s) {
    if (!s)
        return;
    mx_server_stop(s, 0);
    /* Responses posted after the loop ended were never written; drop them. */
    mx_req_t *r = s->out_head;
    while (r) {
        mx_req_t *next = r->next_out;
        if (r->stream)
            mx__stream_detach(r->stream);
        mx_req_decref(r);
        r = next;
    }
    for (mx_req_t *x = s->rnotify_head; x;) {
        mx_req_t *next = x->next_notify;
        mx_req_decref(x);
        x = next;
    }
    mx_stream_t *st = s->notify_head;
    while (st) {
        mx_stream_t *next = st->next_notify;
        mx_stream_decref(st);
        st = next;
    }
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    close(s->epfd);
    close(s->wake_fd);
    mx_router_free(s->router);
    free(s->route_max_body);
    free(s->route_stream);
    pthread_mutex_destroy(&s->out_mu);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->pool_cv);
    pthread_mutex_destroy(&s->life_mu);
    pthread_cond_destroy(&s->life_cv);
    free(s);
}
