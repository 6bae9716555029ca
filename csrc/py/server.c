/*
 * server.c: mummyx._mummyx.Core, the Python owner of one mx_server_t. mummyx.Server (Python)
 * builds it from a Router and options; this file turns those into the core's route table and
 * configuration (checking the options against the table in csrc/core/options.c, which it also
 * exports as mummyx._mummyx.OPTIONS), and starts and stops the server. Runs on the calling
 * Python thread; every blocking call releases the GIL, because the workers need it to finish
 * their requests.
 */
#include "module.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/options.h"

static int core_traverse(MxCoreObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->request_type);
    for (Py_ssize_t i = 0; i < self->nroutes; i++)
        Py_VISIT(self->routes[i].handler);
    Py_VISIT(self->handler);
    Py_VISIT(self->not_found);
    Py_VISIT(self->not_allowed);
    Py_VISIT(self->on_error);
    Py_VISIT(self->on_no_response);
    Py_VISIT(self->on_access);
    Py_VISIT(self->json_dumps);
    Py_VISIT(self->make_headers);
    Py_VISIT(self->make_query);
    Py_VISIT(self->ws_handler);
    Py_VISIT(self->on_ws_error);
    Py_VISIT(self->ws_events);
    Py_VISIT(self->ws_kinds);
    Py_VISIT(self->ws_message);
    Py_VISIT(self->websocket_type);
    Py_VISIT(self->sse_type);
    return 0;
}

static int core_clear(MxCoreObject *self) {
    /* Only reachable once the server is stopped: a running server's workers keep the Core
     * alive through their requests, and Server.close() stops it first. */
    for (Py_ssize_t i = 0; i < self->nroutes; i++)
        Py_CLEAR(self->routes[i].handler);
    Py_CLEAR(self->request_type);
    Py_CLEAR(self->handler);
    Py_CLEAR(self->not_found);
    Py_CLEAR(self->not_allowed);
    Py_CLEAR(self->on_error);
    Py_CLEAR(self->on_no_response);
    Py_CLEAR(self->on_access);
    Py_CLEAR(self->json_dumps);
    Py_CLEAR(self->make_headers);
    Py_CLEAR(self->make_query);
    Py_CLEAR(self->ws_handler);
    Py_CLEAR(self->on_ws_error);
    Py_CLEAR(self->ws_events);
    Py_CLEAR(self->ws_kinds);
    Py_CLEAR(self->ws_message);
    Py_CLEAR(self->websocket_type);
    Py_CLEAR(self->sse_type);
    return 0;
}

/* Returns how many workers were left running in a stuck handler (mx_server_stop). */
static int core_stop_nogil(MxCoreObject *self, double timeout) {
    if (!self->server || !self->started || self->stopped)
        return 0;
    self->stopped = 1;
    mx_server_t *s = self->server;
    int left;
    Py_BEGIN_ALLOW_THREADS
    left = mx_server_stop(s, timeout);
    Py_END_ALLOW_THREADS
    /* A worker left in a stuck handler still runs the bridge with this Core as its context
     * (core->server, the callbacks) once the handler returns: the Core is leaked with the server
     * it owns, on purpose, rather than freed under it. */
    if (left > 0)
        Py_INCREF(self);
    return left;
}

static void core_dealloc(MxCoreObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    core_stop_nogil(self, 0.0);
    if (self->server) {
        mx_server_free(self->server);
        self->server = NULL;
    }
    core_clear(self);
    PyMem_Free(self->routes);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int opt_callable(PyObject *o, const char *name) {
    if (o && o != Py_None && !PyCallable_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be callable", name);
        return -1;
    }
    return 0;
}

static PyObject *none_to_null(PyObject *o) {
    if (!o || o == Py_None)
        return NULL;
    Py_INCREF(o);
    return o;
}

/* ---- options: the table in csrc/core/options.c, as Python sees it ---- */

static const char *kind_name(mx_opt_kind_t kind) {
    switch (kind) {
    case MX_OPT_INT:
    case MX_OPT_SIZE:
        return "int";
    case MX_OPT_DOUBLE:
        return "float";
    default:
        return "bool";
    }
}

/* A number of the table as the Python type of its option's kind. */
static PyObject *option_number(const mx_option_t *o, double v) {
    if (o->kind == MX_OPT_DOUBLE)
        return PyFloat_FromDouble(v);
    if (o->kind == MX_OPT_BOOL)
        return PyBool_FromLong(v != 0);
    return PyLong_FromLongLong((long long)v);
}

PyObject *pymx_options_export(void) {
    PyObject *all = PyTuple_New((Py_ssize_t)mx_num_options);
    for (size_t i = 0; all && i < mx_num_options; i++) {
        const mx_option_t *o = &mx_options[i];
        /* Unset (None) is the default of an automatic option and of one that is off by default */
        int unset = (o->flags & MX_OPT_AUTO) || ((o->flags & MX_OPT_NONE_OFF) && o->def == 0);
        PyObject *item = Py_BuildValue(
            "(ssNsNN)", o->name, o->kind == MX_OPT_SIZE ? "size" : kind_name(o->kind),
            unset ? Py_NewRef(Py_None) : option_number(o, o->def), o->doc,
            (o->flags & MX_OPT_HAS_MIN) ? option_number(o, o->min) : Py_NewRef(Py_None),
            (o->flags & MX_OPT_HAS_MAX) ? option_number(o, o->max) : Py_NewRef(Py_None));
        if (!item)
            Py_CLEAR(all);
        else
            PyTuple_SET_ITEM(all, (Py_ssize_t)i, item);
    }
    return all;
}

/* Sets ValueError saying which values o takes. */
static int option_range_error(const mx_option_t *o) {
    char msg[160];
    int integral = o->kind != MX_OPT_DOUBLE;
    const char *fmt = integral ? "%.0f" : "%g";
    char lo[32], hi[32];
    snprintf(lo, sizeof(lo), fmt, o->min);
    snprintf(hi, sizeof(hi), fmt, o->max);
    if (o->kind == MX_OPT_BOOL)
        snprintf(msg, sizeof(msg), "%s must be a bool", o->name);
    else if ((o->flags & MX_OPT_HAS_MIN) && (o->flags & MX_OPT_HAS_MAX))
        snprintf(msg, sizeof(msg), "%s must be between %s and %s", o->name, lo, hi);
    else if ((o->flags & MX_OPT_HAS_MIN) && o->min == 0)
        snprintf(msg, sizeof(msg), "%s must not be negative", o->name);
    else if (o->flags & MX_OPT_HAS_MIN)
        snprintf(msg, sizeof(msg), "%s must be at least %s", o->name, lo);
    else if (integral)
        snprintf(msg, sizeof(msg), "%s is out of range", o->name);
    else
        snprintf(msg, sizeof(msg), "%s must be a number", o->name);
    PyErr_SetString(PyExc_ValueError, msg);
    return -1;
}

/* Applies one option's Python value to cfg: TypeError for a value of the wrong type (None for
 * an option that must be set), ValueError for one out of bounds. */
static int apply_option(mx_config_t *cfg, const mx_option_t *o, PyObject *value) {
    int rc;
    if (value == Py_None) {
        rc = mx_option_unset(cfg, o);
    } else if (o->kind == MX_OPT_DOUBLE && (PyFloat_Check(value) || PyLong_Check(value))) {
        double v = PyFloat_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred())
            return -1;
        rc = mx_option_set_double(cfg, o, v);
    } else if (o->kind == MX_OPT_BOOL && PyBool_Check(value)) {
        rc = mx_option_set_int(cfg, o, value == Py_True);
    } else if (o->kind != MX_OPT_DOUBLE && o->kind != MX_OPT_BOOL && PyLong_Check(value)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (v == -1 && PyErr_Occurred())
            return -1;
        rc = overflow ? MX_EINVAL : mx_option_set_int(cfg, o, v);
    } else {
        PyErr_Format(PyExc_TypeError, "%s must be %s, not %.100s", o->name, kind_name(o->kind),
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    if (rc == 0)
        return 0;
    if (value == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s must be %s, not None", o->name, kind_name(o->kind));
        return -1;
    }
    return option_range_error(o);
}

/* cfg from the defaults and options (a dict of name: value; None or NULL: none given). */
static int config_from_options(mx_config_t *cfg, PyObject *options) {
    mx_config_defaults(cfg);
    if (!options || options == Py_None)
        return 0;
    if (!PyDict_Check(options)) {
        PyErr_Format(PyExc_TypeError, "options must be a dict, not %.100s",
                     Py_TYPE(options)->tp_name);
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(options, &pos, &k, &v)) {
        Py_ssize_t len;
        const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8AndSize(k, &len) : NULL;
        const mx_option_t *o = name ? mx_option_find(name, (size_t)len) : NULL;
        if (!o) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "unknown server option %R", k);
            return -1;
        }
        if (apply_option(cfg, o, v) < 0)
            return -1;
    }
    return 0;
}

static int core_init(MxCoreObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"routes", "handler", "not_found", "not_allowed", "on_error",
                             "on_no_response", "on_access", "json_dumps", "make_headers",
                             "make_query", "websocket_handler", "on_ws_error", "ws_support",
                             "options", NULL};
    PyObject *ws_handler = Py_None, *on_ws_error = Py_None, *ws_support = Py_None;
    PyObject *options = Py_None;
    PyObject *routes, *handler, *not_found, *not_allowed, *on_error, *on_no_response, *on_access;
    PyObject *json_dumps, *make_headers, *make_query;
    mx_config_t cfg;
    if (self->server) {
        PyErr_SetString(PyExc_RuntimeError, "Core is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOOOOO|OOOO:Core", kwlist, &routes,
                                     &handler, &not_found, &not_allowed, &on_error,
                                     &on_no_response, &on_access, &json_dumps, &make_headers,
                                     &make_query, &ws_handler, &on_ws_error, &ws_support,
                                     &options))
        return -1;
    if (opt_callable(ws_handler, "websocket_handler") || opt_callable(on_ws_error, "on_ws_error"))
        return -1;
    if (ws_support != Py_None &&
        !(PyTuple_Check(ws_support) && PyTuple_GET_SIZE(ws_support) == 3 &&
          PyTuple_Check(PyTuple_GET_ITEM(ws_support, 0)) &&
          PyTuple_GET_SIZE(PyTuple_GET_ITEM(ws_support, 0)) == 4 &&
          PyTuple_Check(PyTuple_GET_ITEM(ws_support, 1)) &&
          PyTuple_GET_SIZE(PyTuple_GET_ITEM(ws_support, 1)) == 4)) {
        PyErr_SetString(PyExc_TypeError, "ws_support must be (events, kinds, Message)");
        return -1;
    }
    if (opt_callable(handler, "handler") || opt_callable(not_found, "not_found_handler") ||
        opt_callable(not_allowed, "method_not_allowed_handler") ||
        opt_callable(on_error, "on_error") || opt_callable(on_no_response, "on_no_response") ||
        opt_callable(on_access, "on_access"))
        return -1;
    if (config_from_options(&cfg, options) < 0)
        return -1;
    self->workers = cfg.workers;
    self->max_queue_ns = cfg.max_queue_time > 0 ? (int64_t)(cfg.max_queue_time * 1e9) : 0;
    /* A request line that alone fills the head limit is reported as 414, not 431. */
    cfg.max_target_len = cfg.max_headers_len - 64;
    self->ws_handler = none_to_null(ws_handler);
    self->on_ws_error = none_to_null(on_ws_error);
    if (ws_support != Py_None) {
        self->ws_events = Py_NewRef(PyTuple_GET_ITEM(ws_support, 0));
        self->ws_kinds = Py_NewRef(PyTuple_GET_ITEM(ws_support, 1));
        self->ws_message = Py_NewRef(PyTuple_GET_ITEM(ws_support, 2));
    }
    self->not_found = none_to_null(not_found);
    self->not_allowed = none_to_null(not_allowed);
    cfg.route_not_found = self->not_found != NULL;
    cfg.route_not_allowed = self->not_allowed != NULL;
    cfg.access_log = on_access != Py_None;
    self->handler = none_to_null(handler);
    self->on_error = none_to_null(on_error);
    self->on_no_response = none_to_null(on_no_response);
    self->on_access = none_to_null(on_access);
    self->json_dumps = none_to_null(json_dumps);
    self->make_headers = none_to_null(make_headers);
    self->make_query = none_to_null(make_query);
    self->interp = PyThreadState_Get()->interp;
    mx_state *st = pymx_state_from_type(Py_TYPE(self));
    if (!st)
        return -1;
    Py_INCREF(st->request_type);
    self->request_type = st->request_type;
    self->websocket_type = (PyTypeObject *)Py_NewRef(st->websocket_type);
    self->sse_type = (PyTypeObject *)Py_NewRef(st->sse_type);

    mx_router_t *router = NULL;
    Py_ssize_t n = 0;
    if (routes != Py_None) {
        PyObject *seq = PySequence_Fast(routes, "routes must be a sequence");
        if (!seq)
            return -1;
        n = PySequence_Fast_GET_SIZE(seq);
        self->routes = PyMem_Calloc((size_t)(n ? n : 1), sizeof(pymx_route_t));
        router = mx_router_new();
        if (!self->routes || !router) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            goto error;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
            const char *method, *pattern;
            Py_ssize_t mlen, plen, route_max;
            PyObject *h;
            int stream = 0;
            if (!PyArg_ParseTuple(item,
                                  "s#s#On|p;route must be (method, pattern, handler, max_body, stream)",
                                  &method, &mlen, &pattern, &plen, &h, &route_max, &stream)) {
                Py_DECREF(seq);
                goto error;
            }
            char err[256] = "invalid route";
            /* route_max < 0: no limit on this route's body */
            mx_route_opts_t opts = {route_max < 0 ? SIZE_MAX : (size_t)route_max, stream};
            int rc = mx_router_add(router, method, (size_t)mlen, pattern, (size_t)plen, (int)i,
                                   &opts, err, sizeof(err));
            if (rc != 0) {
                Py_DECREF(seq);
                pymx_raise(st, rc, err);
                goto error;
            }
            Py_INCREF(h);
            self->routes[i].handler = h;
            self->nroutes = i + 1;
        }
        Py_DECREF(seq);
    } else if (!self->handler) {
        PyErr_SetString(PyExc_TypeError, "either routes or handler is required");
        goto error;
    }
    mx_hooks_t hooks;
    pymx_bridge_hooks(self, &hooks);
    self->server = mx_server_new(&cfg, router, &hooks);
    router = NULL; /* owned by the server now, even on failure */
    if (!self->server) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
error:
    mx_router_free(router);
    return -1;
}

static PyObject *core_listen_tcp(MxCoreObject *self, PyObject *args) {
    const char *host;
    int port;
    if (!PyArg_ParseTuple(args, "zi:listen_tcp", &host, &port))
        return NULL;
    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "server already started");
        return NULL;
    }
    char err[256] = "";
    int rc;
    Py_BEGIN_ALLOW_THREADS /* getaddrinfo may block */
    rc = mx_server_listen_tcp(self->server, host, port, err, sizeof(err));
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        PyErr_Format(PyExc_OSError, "%s", err);
        return NULL;
    }
    return PyLong_FromLong(mx_server_port(self->server));
}

static PyObject *core_listen_unix(MxCoreObject *self, PyObject *arg) {
    PyObject *bytes;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    char err[256] = "";
    int rc = mx_server_listen_unix(self->server, PyBytes_AS_STRING(bytes), err, sizeof(err));
    Py_DECREF(bytes);
    if (rc != 0) {
        PyErr_Format(PyExc_OSError, "%s", err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *core_listen_fd(MxCoreObject *self, PyObject *arg) {
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0)
        return NULL;
    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "server already started");
        return NULL;
    }
    char err[256] = "";
    if (mx_server_listen_fd(self->server, fd, err, sizeof(err)) != 0) {
        PyErr_Format(PyExc_OSError, "%s", err);
        return NULL;
    }
    return PyLong_FromLong(mx_server_port(self->server));
}

static PyObject *core_start(MxCoreObject *self, PyObject *unused) {
    (void)unused;
    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "server already started");
        return NULL;
    }
    int rc = mx_server_start(self->server);
    if (rc != 0)
        return pymx_raise(pymx_state_of(self), rc, "cannot start the server");
    self->started = 1;
    Py_RETURN_NONE;
}

static PyObject *core_stop(MxCoreObject *self, PyObject *arg) {
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(core_stop_nogil(self, timeout));
}

static PyObject *core_wait(MxCoreObject *self, PyObject *arg) {
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    if (!self->started || self->stopped)
        Py_RETURN_TRUE;
    int done;
    mx_server_t *s = self->server;
    Py_BEGIN_ALLOW_THREADS
    done = mx_server_wait(s, timeout);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(done);
}

static PyObject *core_get_port(MxCoreObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->server ? mx_server_port(self->server) : 0);
}

static PyMethodDef core_methods[] = {
    {"listen_tcp", (PyCFunction)core_listen_tcp, METH_VARARGS, "listen_tcp(host, port) -> port"},
    {"listen_unix", (PyCFunction)core_listen_unix, METH_O, "listen_unix(path)"},
    {"listen_fd", (PyCFunction)core_listen_fd, METH_O,
     "listen_fd(fd) -> port: serve on an inherited listening socket (owns it from then on)"},
    {"start", (PyCFunction)core_start, METH_NOARGS, "start the I/O thread and the workers"},
    {"stop", (PyCFunction)core_stop, METH_O,
     "stop(timeout) -> threads left in a stuck handler: drain, then close everything"},
    {"wait", (PyCFunction)core_wait, METH_O, "wait(timeout) -> True once stopped"},
    {NULL, NULL, 0, NULL},
};

static PyObject *core_get_workers(MxCoreObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->workers);
}

static PyGetSetDef core_getset[] = {
    {"port", (getter)core_get_port, NULL, "the bound TCP port", NULL},
    {"workers", (getter)core_get_workers, NULL, "worker threads, as configured", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot core_slots[] = {
    {Py_tp_doc, "The C server core behind mummyx.Server (internal)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, core_init},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_methods, core_methods},
    {Py_tp_getset, core_getset},
    {0, NULL},
};

PyType_Spec pymx_core_spec = {
    .name = "mummyx._mummyx.Core",
    .basicsize = sizeof(MxCoreObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = core_slots,
};
