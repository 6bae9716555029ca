/*
 * server.c: the server's life cycle (new, listen, start, stop, free), accepting connections, and
 * the drain when stopping. The event loop itself is loop.c, the workers pool.c, each connection
 * conn.c.
 *
 * The I/O thread runs the loop with the listener registered (on_accept) and one pass hook
 * (server_pass: resumes a paused accept, drives the drain when stopping). Everything here runs on
 * the I/O thread, except the mx_server_* calls the binding makes, which say which thread.
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

/* Workers a stop may still wait for once the drain's deadline has passed: enough for one that
 * is finishing its access log line, far short of a stuck handler. */
#define MX_STOP_GRACE_NS 250000000LL
/* How long a draining worker process leaves idle keep-alive connections open (server_pass). */
#define MX_DRAIN_IDLE_GRACE_MS 250

static void on_accept(mx_io_t *io, uint32_t events);
static int server_pass(void *arg);

mx_server_t *mx_server_new(const mx_config_t *cfg, mx_router_t *router,
                           const mx_hooks_t *hooks) {
    mx_server_t *s = calloc(1, sizeof(*s));
    if (!s)
        goto error;
    s->cfg = *cfg;
    if (s->cfg.workers < 1)
        s->cfg.workers = 1;
    if (s->cfg.max_pipeline < 1)
        s->cfg.max_pipeline = 1;
    s->listen_io.fd = -1;
    s->listen_io.on_events = on_accept;
    if (mx_loop_init(&s->loop) != 0)
        goto error;
    if (mx_loop_on_pass(&s->loop, server_pass, s) || mx_loop_on_pass(&s->loop, mx_pool_pass, &s->pool) ||
        mx_loop_before_sleep(&s->loop, mx_pool_before_sleep, &s->pool)) {
        mx_loop_free(&s->loop);
        goto error;
    }
    mx_pool_init(&s->pool, s->cfg.workers, hooks, s->cfg.max_queue_time);
    pthread_mutex_init(&s->life_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->life_cv, &ca);
    pthread_condattr_destroy(&ca);
    s->router = router; /* owned from here on, also on the error path below */
    return s;
error:
    if (s) {
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
    s->listen_io.fd = fd;
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
    s->listen_io.fd = fd;
    s->is_unix = 1;
    s->unix_path = strdup(path);
    return 0;
}

int mx_server_listen_fd(mx_server_t *s, int fd, char *err, size_t errlen) {
    int listening = 0;
    socklen_t len = sizeof(listening);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    /* Only a listening stream socket will do: anything else would fail at the first accept. */
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        int saved = errno ? errno : EINVAL;
        snprintf(err, errlen, "descriptor %d is not a listening socket", fd);
        errno = listening ? saved : EINVAL;
        return MX_ESYS;
    }
    set_nonblock(fd); /* shared with the other processes: they want it non-blocking too */
    if (ss.ss_family == AF_INET)
        s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
        s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        s->is_unix = 1; /* no unix_path: the socket file is whoever bound it's to remove */
    s->listen_io.fd = fd;
    s->shared_listener = 1;
    return 0;
}

int mx_server_port(const mx_server_t *s) { return s->port; }

/* ---- accepting ---- */

/* What the listener waits for. EPOLLEXCLUSIVE: when several processes wait on one inherited
 * socket (worker processes), a new connection wakes one of them instead of all (the thundering
 * herd); alone it changes nothing. Only EPOLL_CTL_ADD accepts it, which is all the listener
 * uses (pausing removes and re-adds it). */
#ifdef EPOLLEXCLUSIVE
#define MX_LISTEN_EVENTS (EPOLLIN | EPOLLEXCLUSIVE)
#else
#define MX_LISTEN_EVENTS EPOLLIN
#endif

static void accept_pause(mx_server_t *s, int pause) {
    if (s->listen_io.fd < 0 || s->accept_paused == pause)
        return;
    if (pause)
        mx_loop_io_remove(&s->loop, &s->listen_io);
    else
        mx_loop_io_add(&s->loop, &s->listen_io, MX_LISTEN_EVENTS);
    s->accept_paused = pause;
}

/* The listener is readable: accept a bounded batch per pass, which keeps a connection storm from
 * starving established clients. */
static void on_accept(mx_io_t *io, uint32_t events) {
    mx_server_t *s = (mx_server_t *)((char *)io - offsetof(mx_server_t, listen_io));
    MX_UNUSED(events);
    for (int i = 0; i < 64; i++) {
        if ((int)s->nconns >= s->cfg.max_connections) {
            accept_pause(s, 1);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->listen_io.fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment rather than spin. */
                accept_pause(s, 1);
                s->accept_resume_at = mx_loop_now(&s->loop) + 100;
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
        mx__conn_open(c);
    }
}

/* ---- the pass hook: accept resumption and the drain ---- */

/* Whether a request the loop has not read yet waits in c's socket. A keep-alive client sends its
 * next request as soon as the previous answer is in: closing the connection then would reset a
 * request nobody answered (a failed request in a rolling restart), where reading it gets it
 * answered, with Connection: close, as a stopping server answers every request. */
static int has_unread_input(const mx_conn_t *c) {
    char byte;
    return c->io.fd >= 0 && recv(c->io.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* While stopping: closes connections with nothing in flight (once idle_too, see server_pass),
 * tells streams the server is going. */
static void drain_idle_conns(mx_server_t *s, int idle_too) {
    for (mx_conn_t *c = s->conns; c; c = c->next) {
        if (c->io.closing)
            continue;
        int idle = !c->pipe_head && c->rpos == c->rlen;
        if (idle && !c->stream && !idle_too && atomic_load(&s->stopping) < 2)
            continue; /* may still bring one more request, answered with Connection: close */
        if (atomic_load(&s->stopping) >= 2 ||
            (idle && (c->stream || !has_unread_input(c)))) {
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

/* Before a worker process closes its own SO_REUSEPORT listener: the connections the kernel
 * already queued on it would be reset by the close (no sibling takes them over), so they are
 * accepted and served, as in-flight requests are. An inherited shared socket needs none of this:
 * closing this process's copy leaves its queue to the siblings. */
static void accept_queued(mx_server_t *s) {
    int reuse = 0;
    socklen_t len = sizeof(reuse);
    if (!s->shared_listener ||
        getsockopt(s->listen_io.fd, SOL_SOCKET, SO_REUSEPORT, &reuse, &len) != 0 || !reuse)
        return;
    for (int round = 0; round < 16; round++) /* each accepts up to 64; EAGAIN ends it early */
        on_accept(&s->listen_io, EPOLLIN);
}

/* Once per loop pass (loop.h). When stopping, the listener closes, idle connections close, and
 * the loop ends in the pass where the last connection is closed. */
static int server_pass(void *arg) {
    mx_server_t *s = arg;
    if (atomic_load(&s->stopping)) {
        int64_t now = mx_loop_now(&s->loop);
        if (s->listen_io.fd >= 0) {
            accept_queued(s);
            accept_pause(s, 1);
            close(s->listen_io.fd);
            s->listen_io.fd = -1;
        }
        if (!s->drain_since)
            s->drain_since = now ? now : 1; /* 0 means "not yet" */
        /* On a shared listener (a rolling restart: a sibling serves on), an idle keep-alive
         * connection gets a moment to send the request its client may be writing right now, so
         * that it is answered rather than reset; alone, nothing would serve that client anyway. */
        int64_t wait = s->shared_listener ? s->drain_since + MX_DRAIN_IDLE_GRACE_MS - now : 0;
        drain_idle_conns(s, wait <= 0);
        size_t open = 0;
        for (mx_conn_t *c = s->conns; c; c = c->next)
            open += !c->io.closing;
        if (open == 0)
            mx_loop_stop(&s->loop); /* the closed ones are freed at the end of this pass */
        return wait > 0 ? (int)wait : -1;
    }
    if (!s->accept_paused)
        return -1;
    int64_t now = mx_loop_now(&s->loop);
    if (s->accept_resume_at && now >= s->accept_resume_at) {
        s->accept_resume_at = 0;
        accept_pause(s, 0);
    } else if (!s->accept_resume_at && (int)s->nconns < s->cfg.max_connections) {
        accept_pause(s, 0);
    }
    return s->accept_resume_at ? (int)(s->accept_resume_at > now ? s->accept_resume_at - now : 0)
                               : -1;
}

static void *io_main(void *arg) {
    mx_server_t *s = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    mx_thread_batch_policy();
    mx_pool_hold_wakes_here(&s->pool);
    mx_loop_run(&s->loop); /* until server_pass stops it: every connection is gone by then */
    pthread_mutex_lock(&s->life_mu);
    s->stopped = 1;
    pthread_cond_broadcast(&s->life_cv);
    pthread_mutex_unlock(&s->life_mu);
    return NULL;
}

/* ---- the binding's calls ---- */

mx_task_t *mx_pool_trypop(mx_server_t *s) { return mx_pool_next(&s->pool); }

void mx_task_done(mx_server_t *s, mx_task_t *t) { mx_pool_done(&s->pool, t); }

int mx_server_start(mx_server_t *s) {
    if (s->started)
        return MX_EINVAL;
    if (s->listen_io.fd >= 0 && mx_loop_io_add(&s->loop, &s->listen_io, MX_LISTEN_EVENTS) != 0)
        return MX_ESYS;
    int rc = mx_pool_start(&s->pool);
    if (rc)
        return rc;
    if (pthread_create(&s->io_thread, NULL, io_main, s) != 0) {
        mx_pool_stop(&s->pool);
        return MX_ESYS;
    }
    s->io_started = 1;
    s->started = 1;
    return 0;
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

/* The same moment as the monotonic deadline ts, on CLOCK_REALTIME (pthread_timedjoin_np's). */
static void realtime_of(const struct timespec *ts, struct timespec *rt) {
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, rt);
    int64_t left = ((int64_t)ts->tv_sec - mono.tv_sec) * 1000000000LL +
                   (ts->tv_nsec - mono.tv_nsec);
    if (left < 0)
        left = 0;
    left += MX_STOP_GRACE_NS;
    rt->tv_sec += (time_t)(left / 1000000000LL);
    rt->tv_nsec += (long)(left % 1000000000LL);
    if (rt->tv_nsec >= 1000000000L) {
        rt->tv_sec++;
        rt->tv_nsec -= 1000000000L;
    }
}

int mx_server_stop(mx_server_t *s, double timeout) {
    if (!s->io_started) {
        mx_pool_stop(&s->pool); /* a start that failed half-way, or none: no handler ran */
        return 0;
    }
    struct timespec ts, rt;
    deadline_in(&ts, timeout);
    int expected = 0;
    atomic_compare_exchange_strong(&s->stopping, &expected, 1);
    mx_loop_wake(&s->loop);
    if (!wait_stopped_until(s, &ts)) {
        atomic_store(&s->stopping, 2); /* the drain ran out of time: close what is left */
        mx_loop_wake(&s->loop);
        wait_stopped_until(s, NULL);
    }
    pthread_join(s->io_thread, NULL);
    s->io_started = 0;
    /* Handlers get what is left of the timeout (their clients may be gone already); one stuck
     * beyond it is left running, so that stop, and the process, end in bounded time. */
    realtime_of(&ts, &rt);
    int left = mx_pool_stop_by(&s->pool, &rt);
    if (s->unix_path) {
        unlink(s->unix_path);
        free(s->unix_path);
        s->unix_path = NULL;
    }
    return left;
}

void mx_server_free(mx_server_t *s) {
    if (!s)
        return;
    mx_server_stop(s, 0);
    if (s->pool.abandoned)
        return; /* a worker left running still reaches s through its task: leak it all */
    if (s->listen_io.fd >= 0)
        close(s->listen_io.fd);
    mx_loop_free(&s->loop); /* drops what was posted to a loop that never ran */
    mx_pool_free(&s->pool);
    mx_router_free(s->router);
    pthread_mutex_destroy(&s->life_mu);
    pthread_cond_destroy(&s->life_cv);
    free(s);
}
