/*
 * pool.c: the worker threads and their queue (after libuv's threadpool.c).
 *
 * The I/O thread pushes complete requests; workers pop them and run them through the binding's
 * hooks. A worker that holds the GIL may take more work with mx_pool_trypop() instead of going
 * back to sleep, so under load one GIL acquisition serves many requests. Workers never touch
 * sockets: a response travels back through mx__post_response().
 *
 * Lock order: pool_mu is a leaf (nothing else is taken while holding it, and never Python).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdlib.h>

#include "internal.h"

static mx_req_t *pool_pop_locked(mx_server_t *s) {
    mx_req_t *r = s->task_head;
    if (r) {
        s->task_head = r->next_task;
        if (!s->task_head)
            s->task_tail = NULL;
        r->next_task = NULL;
    }
    return r;
}

/* Called by the I/O thread. Ownership of one reference to r passes to the pool. */
void mx__pool_push(mx_server_t *s, mx_req_t *r) {
    atomic_fetch_add(&s->running, 1);
    pthread_mutex_lock(&s->pool_mu);
    r->next_task = NULL;
    if (s->task_tail)
        s->task_tail->next_task = r;
    else
        s->task_head = r;
    s->task_tail = r;
    /* Wake one sleeper only when someone sleeps: a worker that is busy will find the request
     * with mx_pool_trypop when it finishes, without a futex round trip. */
    int wake = s->idle_workers > 0;
    pthread_mutex_unlock(&s->pool_mu);
    if (wake)
        pthread_cond_signal(&s->pool_cv);
}

mx_req_t *mx_pool_trypop(mx_server_t *s) {
    if (!s->task_head) /* racy peek; a miss only means the request waits for a sleeper */
        return NULL;
    pthread_mutex_lock(&s->pool_mu);
    mx_req_t *r = pool_pop_locked(s);
    pthread_mutex_unlock(&s->pool_mu);
    return r;
}

static void *worker_main(void *arg) {
    mx_server_t *s = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the main thread */
    if (s->hooks.worker_start)
        s->hooks.worker_start(s->hooks.ctx);
    for (;;) {
        pthread_mutex_lock(&s->pool_mu);
        mx_req_t *r;
        while (!(r = pool_pop_locked(s)) && !s->pool_stop) {
            s->idle_workers++;
            pthread_cond_wait(&s->pool_cv, &s->pool_mu);
            s->idle_workers--;
        }
        /* A request still queued when stopping is run anyway: its client is waiting, and the
         * drain already bounded how long that may take. */
        int more = s->task_head != NULL && s->idle_workers > 0;
        pthread_mutex_unlock(&s->pool_mu);
        if (!r)
            break;
        if (more) /* pass the baton: let a sleeper pick up the rest in parallel */
            pthread_cond_signal(&s->pool_cv);
        s->hooks.run(s->hooks.ctx, r); /* calls mx_req_done */
    }
    if (s->hooks.worker_stop)
        s->hooks.worker_stop(s->hooks.ctx);
    return NULL;
}

int mx__pool_start(mx_server_t *s) {
    s->workers = calloc((size_t)s->cfg.workers, sizeof(pthread_t));
    if (!s->workers)
        return MX_ENOMEM;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20); /* Python handlers recurse; 1 MiB like CPython's */
    for (int i = 0; i < s->cfg.workers; i++) {
        if (pthread_create(&s->workers[i], &attr, worker_main, s) != 0) {
            pthread_attr_destroy(&attr);
            mx__pool_stop(s);
            return MX_ESYS;
        }
        s->nworkers++;
    }
    pthread_attr_destroy(&attr);
    return 0;
}

/* Stops and joins every worker once the queue is empty. Binding thread; no GIL held. */
void mx__pool_stop(mx_server_t *s) {
    pthread_mutex_lock(&s->pool_mu);
    s->pool_stop = 1;
    pthread_cond_broadcast(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    s->nworkers = 0;
    free(s->workers);
    s->workers = NULL;
}
