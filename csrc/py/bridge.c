/*
 * bridge.c: the only code that enters Python from a worker thread (STYLE.md rule 3).
 *
 * Each worker makes its Python thread state once, when the pool starts it, and keeps it; it
 * holds the GIL only while running handlers, and after one request it takes any others already
 * queued before letting the GIL go, so under load one acquisition serves many requests.
 * A handler's exception or missing response never escapes: it becomes a logged 500.
 */
#include "module.h"

#include <string.h>
#include <time.h>

/* Per worker thread: the state made by PyGILState_Ensure at start, released at stop. */
static _Thread_local PyThreadState *worker_ts;
static _Thread_local PyGILState_STATE worker_gstate;

static void worker_start(void *ctx) {
    (void)ctx;
    worker_gstate = PyGILState_Ensure();
    worker_ts = PyEval_SaveThread();
}

static void worker_stop(void *ctx) {
    (void)ctx;
    PyEval_RestoreThread(worker_ts);
    PyGILState_Release(worker_gstate);
    worker_ts = NULL;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Calls fn(args...) and swallows (prints) any error: these callbacks must not fail silently,
 * but nothing above them could handle an exception either. */
static void call_quietly(PyObject *fn, PyObject *a, PyObject *b) {
    PyObject *r = b ? PyObject_CallFunctionObjArgs(fn, a, b, NULL) : PyObject_CallOneArg(fn, a);
    if (!r)
        PyErr_WriteUnraisable(fn);
    Py_XDECREF(r);
}

/* Last resort when even the Python error path failed: a plain 500 from C. */
static void respond_500(MxRequestObject *ro) {
    if (!atomic_load(&ro->req->responded))
        mx_req_respond_error(ro->req, 500);
}

static void handle_one(MxCoreObject *core, mx_req_t *req) {
    double t0 = core->on_access ? now_seconds() : 0.0;
    PyObject *ro = pymx_request_new(core, req);
    if (!ro) {
        PyErr_WriteUnraisable((PyObject *)core);
        mx_req_respond_error(req, 500);
        return;
    }
    if (req->log_only)
        goto log;
    if (core->max_queue_ns && req->super.t_popped_ns - req->super.t_queued_ns > core->max_queue_ns) {
        /* Waited too long for a free worker: shed it now rather than answer late (the I/O
         * thread sheds once per pass; this catches one taken between passes). */
        mx_req_respond_error(req, 503);
        goto log;
    }
    PyObject *handler;
    if (req->kind == MX_REQ_NOT_FOUND && !core->not_found) {
        mx_req_respond_error(req, 404);
        goto log;
    }
    if (req->kind == MX_REQ_METHOD_NOT_ALLOWED && !core->not_allowed) {
        mx_req_respond_error(req, 405);
        goto log;
    }
    if (req->kind == MX_REQ_NOT_FOUND)
        handler = core->not_found;
    else if (req->kind == MX_REQ_METHOD_NOT_ALLOWED)
        handler = core->not_allowed;
    else if (core->nroutes > 0 && req->route_id >= 0 && req->route_id < core->nroutes)
        handler = core->routes[req->route_id].handler;
    else
        handler = core->handler;
    PyObject *res = handler ? PyObject_CallOneArg(handler, ro) : NULL;
    if (!handler)
        PyErr_SetString(PyExc_RuntimeError, "no handler for this request");
    if (!res) {
        PyObject *exc = PyErr_GetRaisedException_compat();
        call_quietly(core->on_error, ro, exc ? exc : Py_None);
        Py_XDECREF(exc);
    } else {
        if (res != Py_None && !atomic_load(&req->responded)) {
            if (pymx_respond_value((MxRequestObject *)ro, res) < 0) {
                PyObject *exc = PyErr_GetRaisedException_compat();
                call_quietly(core->on_error, ro, exc ? exc : Py_None);
                Py_XDECREF(exc);
            }
        } else if (!atomic_load(&req->responded)) {
            call_quietly(core->on_no_response, ro, NULL);
        }
        Py_DECREF(res);
    }
    respond_500((MxRequestObject *)ro);
log:
    if (core->on_access) {
        PyObject *dt = PyFloat_FromDouble(now_seconds() - t0);
        if (dt) {
            call_quietly(core->on_access, ro, dt);
            Py_DECREF(dt);
        } else {
            PyErr_Clear();
        }
    }
    Py_DECREF(ro);
}

/* At most this many requests per GIL acquisition, so a flood cannot starve other threads of
 * the interpreter (the GIL's own switch interval still applies inside handlers). */
#define BATCH_MAX 256

static void run(void *ctx, mx_task_t *task) {
    MxCoreObject *core = ctx;
    PyEval_RestoreThread(worker_ts);
    pymx_release_pending(&pymx_state_of(core)->releases);
    int n = 0;
    do {
        if (task->kind == MX_TASK_REQUEST)
            handle_one(core, (mx_req_t *)task);
        else
            pymx_websocket_deliver(core, (mx_stream_t *)task);
        mx_task_done(core->server, task);
    } while (++n < BATCH_MAX && (task = mx_pool_trypop(core->server)));
    worker_ts = PyEval_SaveThread();
}

void pymx_bridge_hooks(MxCoreObject *core, mx_hooks_t *hooks) {
    hooks->ctx = core;
    hooks->worker_start = worker_start;
    hooks->worker_stop = worker_stop;
    hooks->run = run;
}
