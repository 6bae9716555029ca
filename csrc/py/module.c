/*
 * module.c: mummyx._mummyx, multi-phase initialisation, module state, the exception types
 * (mummyx.Error and its subclasses) with the one mapper from core codes to them, and the
 * module-level functions. Runs on whatever Python thread imports or calls it, with the GIL.
 */
#include "module.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static struct PyModuleDef pymx_module;

mx_state *pymx_state_from_type(PyTypeObject *tp) {
    PyObject *m = PyType_GetModule(tp);
    return m ? (mx_state *)PyModule_GetState(m) : NULL;
}

/* The message for a code when the caller has nothing more precise to say. */
static const char *default_message(int code) {
    switch (code) {
    case MX_ECLOSED:
        return "the client connection is gone";
    case MX_EFULL:
        return "the client stopped reading; connection closed";
    case MX_EALREADY:
        return "a response was already sent for this request";
    case MX_EINVAL:
        return "invalid argument";
    default:
        return "internal error";
    }
}

/*
 * The one place that turns a core code into a Python exception: a gone or stuck peer is the
 * module's ConnectionClosed, a second response RuntimeError, a refused value ValueError, a
 * failed system call OSError (with the file name when given). st may be NULL where no object
 * of the module is at hand (the SSE encoder) or while the module is torn down: the built-in
 * ConnectionError then stands in for ConnectionClosed.
 */
PyObject *pymx_raise_file(mx_state *st, int code, const char *what, PyObject *filename) {
    if (!what)
        what = default_message(code);
    switch (code) {
    case MX_ENOMEM:
        return PyErr_NoMemory();
    case MX_ECLOSED:
    case MX_EFULL:
        PyErr_SetString(st && st->connection_closed ? st->connection_closed
                                                    : PyExc_ConnectionError,
                        what);
        return NULL;
    case MX_EALREADY:
        PyErr_SetString(PyExc_RuntimeError, what);
        return NULL;
    case MX_EINVAL:
        PyErr_SetString(PyExc_ValueError, what);
        return NULL;
    case MX_ESYS:
        /* errno is still the failed call's: nothing since has touched it */
        return filename ? PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, filename)
                        : PyErr_SetFromErrno(PyExc_OSError);
    default:
        return PyErr_Format(PyExc_RuntimeError, "%s (error %d)", what, code);
    }
}

PyObject *pymx_raise(mx_state *st, int code, const char *what) {
    return pymx_raise_file(st, code, what, NULL);
}

/* Reading a body ends the same way wherever it is read (Request.read, save_body, a multipart
 * Part): MX_EINVAL there means the client was already answered 400/413 and the connection is
 * finished, so the handler sees the connection as gone rather than a bad argument. */
PyObject *pymx_raise_body(mx_state *st, int code, PyObject *filename) {
    if (code == MX_ECLOSED)
        return pymx_raise(st, code,
                          "the client closed the connection before sending the whole body");
    if (code == MX_EINVAL)
        return pymx_raise(st, MX_ECLOSED, "the request body was malformed or too large; the "
                                          "client was answered");
    return pymx_raise_file(st, code, "cannot read the body", filename);
}

/* ---- mummyx.BadRequest ---- */

/* BadRequest.__init__(self, message='', status=400): a plain ValueError whose args are
 * (message,), plus a status attribute. Installed on a class made by PyErr_NewException, so
 * instances are ordinary exception objects (subclassable, picklable with their status). */
static PyObject *bad_request_init(PyObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"message", "status", NULL};
    PyObject *message = NULL;
    int status = 400;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Oi:BadRequest", kwlist, &message, &status))
        return NULL;
    if (status < 400 || status > 499) {
        PyErr_Format(PyExc_ValueError, "BadRequest status must be a 4xx code, not %d", status);
        return NULL;
    }
    PyObject *a = message ? PyTuple_Pack(1, message) : PyTuple_New(0);
    PyObject *st = a ? PyLong_FromLong(status) : NULL;
    int rc = st ? PyObject_SetAttrString(self, "args", a) : -1;
    if (rc == 0)
        rc = PyObject_SetAttrString(self, "status", st);
    Py_XDECREF(a);
    Py_XDECREF(st);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef bad_request_init_def = {
    "__init__", (PyCFunction)(void (*)(void))bad_request_init, METH_VARARGS | METH_KEYWORDS,
    "__init__($self, /, message='', status=400)\n--\n\n"
    "status is the 4xx the client gets when the handler lets this exception escape."};

/* Raises BadRequest(message, status) (a 4xx for the client). Returns NULL. */
PyObject *pymx_raise_bad_request(mx_state *st, int status, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    PyObject *exc = PyObject_CallFunction(st->bad_request, "si", msg, status);
    if (exc) {
        PyErr_SetObject(st->bad_request, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* Makes the exception class mummyx.<name> with bases (mummyx.Error, base) (or only Error when
 * base is NULL), stores it in *slot and adds it to the module. dict may be NULL. */
static int add_exception(PyObject *m, mx_state *st, const char *name, const char *doc,
                         PyObject *base, PyObject *dict, PyObject **slot) {
    char qualname[64];
    snprintf(qualname, sizeof(qualname), "mummyx.%s", name);
    PyObject *bases = base ? PyTuple_Pack(2, st->error, base) : Py_NewRef(st->error);
    if (!bases)
        return -1;
    *slot = PyErr_NewExceptionWithDoc(qualname, doc, bases, dict);
    Py_DECREF(bases);
    if (!*slot)
        return -1;
    return PyModule_AddObjectRef(m, name, *slot);
}

/* Creates mummyx.Error and every exception type that derives from it. */
static int add_exceptions(PyObject *m, mx_state *st) {
    st->error = PyErr_NewExceptionWithDoc(
        "mummyx.Error",
        "The base class of every exception mummyx defines (BadRequest, ConnectionClosed, "
        "HandshakeRefused). Each also keeps its built-in base (ValueError, ConnectionError).",
        PyExc_Exception, NULL);
    if (!st->error || PyModule_AddObjectRef(m, "Error", st->error) < 0)
        return -1;
    PyObject *dict = Py_BuildValue("{si}", "status", 400);
    if (!dict)
        return -1;
    int rc = add_exception(
        m, st, "BadRequest",
        "The request's content is invalid (a malformed or over-limit form, say). A handler that "
        "lets it escape makes the client get its status (400 by default, 413, 431, ...) and it "
        "is logged at INFO, not as an error.",
        PyExc_ValueError, dict, &st->bad_request);
    Py_DECREF(dict);
    if (rc < 0)
        return -1;
    PyObject *init = PyDescr_NewMethod((PyTypeObject *)st->bad_request, &bad_request_init_def);
    if (!init || PyObject_SetAttrString(st->bad_request, "__init__", init) < 0) {
        Py_XDECREF(init);
        return -1;
    }
    Py_DECREF(init);
    if (add_exception(m, st, "HandshakeRefused",
                      "The request is not a valid WebSocket handshake; the client was answered "
                      "400 or 426.",
                      PyExc_ValueError, NULL, &st->handshake_refused) < 0)
        return -1;
    return add_exception(m, st, "ConnectionClosed", "The client connection is gone.",
                         PyExc_ConnectionError, NULL, &st->connection_closed);
}

/* iter(partial(obj.read, size), b""): an iterator of read(size) results until b"" (used by
 * Request.iter_body and Part.iter_chunks). */
PyObject *pymx_chunk_iter(PyObject *obj, Py_ssize_t size) {
    PyObject *read = PyObject_GetAttrString(obj, "read");
    PyObject *functools = read ? PyImport_ImportModule("functools") : NULL;
    PyObject *partial = functools ? PyObject_GetAttrString(functools, "partial") : NULL;
    PyObject *n = partial ? PyLong_FromSsize_t(size) : NULL;
    PyObject *fn = n ? PyObject_CallFunctionObjArgs(partial, read, n, NULL) : NULL;
    PyObject *empty = fn ? PyBytes_FromStringAndSize("", 0) : NULL;
    PyObject *it = empty ? PyCallIter_New(fn, empty) : NULL;
    Py_XDECREF(read);
    Py_XDECREF(functools);
    Py_XDECREF(partial);
    Py_XDECREF(n);
    Py_XDECREF(fn);
    Py_XDECREF(empty);
    return it;
}

/* validate_pattern(pattern: str) -> None; raises ValueError with the router's reason. */
static PyObject *validate_pattern(PyObject *mod, PyObject *arg) {
    (void)mod;
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "route pattern must be str, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    Py_ssize_t len;
    const char *p = PyUnicode_AsUTF8AndSize(arg, &len);
    if (!p)
        return NULL;
    char err[256] = "invalid route pattern";
    if (mx_router_validate(p, (size_t)len, err, sizeof(err)) != 0) {
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* status_reason(status: int) -> str */
static PyObject *status_reason(PyObject *mod, PyObject *arg) {
    (void)mod;
    long st = PyLong_AsLong(arg);
    if (st == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(mx_status_reason((int)st));
}

/* _debug_live_requests() -> int | None: native requests alive now (debug builds only). */
static PyObject *debug_live_requests(PyObject *mod, PyObject *unused) {
    (void)mod;
    (void)unused;
    long n = mx_debug_live_requests();
    if (n < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(n);
}

static PyMethodDef pymx_methods[] = {
    {"validate_pattern", validate_pattern, METH_O,
     "validate_pattern($module, pattern, /)\n--\n\n"
     "Raise ValueError if pattern is not a valid route."},
    {"status_reason", status_reason, METH_O,
     "status_reason($module, status, /)\n--\n\nThe standard reason phrase of an HTTP status."},
    {"sse_encode", (PyCFunction)(void (*)(void))pymx_sse_encode, METH_FASTCALL | METH_KEYWORDS,
     "sse_encode($module, data, event, id, retry, /)\n--\n\nOne event in the event-stream "
     "format, as bytes."},
    {"sse_fanout", (PyCFunction)(void (*)(void))pymx_sse_fanout, METH_FASTCALL,
     "sse_fanout($module, streams, payload, /)\n--\n\nQueue the same encoded event on every "
     "stream; return how many took it."},
    {"sse_publish", (PyCFunction)(void (*)(void))pymx_sse_publish, METH_FASTCALL,
     "sse_publish($module, streams, data, event, id, retry, keep, /)\n--\n\nEncode one event and "
     "queue it on every open stream; returns (reached, payload or None)."},
    {"respond_value", (PyCFunction)(void (*)(void))pymx_respond_value_py, METH_FASTCALL,
     "respond_value($module, request, value, /)\n--\n\nRespond with what a handler returned: "
     "str as text, bytes as octet-stream, dict or list as JSON; TypeError for anything else."},
    {"_debug_live_requests", debug_live_requests, METH_NOARGS,
     "_debug_live_requests($module, /)\n--\n\nHow many native requests exist now, in every "
     "server; None unless built with MUMMYX_DEBUG=1 or MUMMYX_SANITIZE=1."},
    {NULL, NULL, 0, NULL},
};

void pymx_release_later(void *releases, void *owner) {
    pymx_releases_t *r = releases;
    pthread_mutex_lock(&r->mu);
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        PyObject **items = realloc(r->items, cap * sizeof(*items));
        if (!items) { /* out of memory: the object is leaked rather than dropped without the GIL */
            pthread_mutex_unlock(&r->mu);
            return;
        }
        r->items = items;
        r->cap = cap;
    }
    r->items[r->n++] = owner;
    atomic_store_explicit(&r->pending, 1, memory_order_release);
    pthread_mutex_unlock(&r->mu);
}

void pymx_release_pending(pymx_releases_t *r) {
    if (!atomic_load_explicit(&r->pending, memory_order_acquire))
        return;
    pthread_mutex_lock(&r->mu);
    PyObject **items = r->items;
    size_t n = r->n;
    r->items = NULL;
    r->n = r->cap = 0;
    atomic_store_explicit(&r->pending, 0, memory_order_relaxed);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < n; i++)
        Py_DECREF(items[i]); /* may run arbitrary code: no lock is held */
    free(items);
}

static int pymx_exec(PyObject *m) {
    mx_state *st = PyModule_GetState(m);
    pthread_mutex_init(&st->releases.mu, NULL);
    st->core_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pymx_core_spec, NULL);
    if (!st->core_type || PyModule_AddType(m, st->core_type) < 0)
        return -1;
    st->request_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pymx_request_spec, NULL);
    if (!st->request_type || PyModule_AddType(m, st->request_type) < 0)
        return -1;
    st->websocket_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pymx_websocket_spec, NULL);
    if (!st->websocket_type || PyModule_AddType(m, st->websocket_type) < 0)
        return -1;
    st->writer_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pymx_writer_spec, NULL);
    if (!st->writer_type || PyModule_AddType(m, st->writer_type) < 0)
        return -1;
    st->sse_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pymx_sse_spec, NULL);
    if (!st->sse_type || PyModule_AddType(m, st->sse_type) < 0)
        return -1;
    st->multipart_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(m, &pymx_multipart_reader_spec, NULL);
    if (!st->multipart_type || PyModule_AddType(m, st->multipart_type) < 0)
        return -1;
    st->part_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pymx_part_spec, NULL);
    if (!st->part_type || PyModule_AddType(m, st->part_type) < 0)
        return -1;
    PyObject *options = pymx_options_export();
    if (!options || PyModule_AddObjectRef(m, "OPTIONS", options) < 0) {
        Py_XDECREF(options);
        return -1;
    }
    Py_DECREF(options);
    return add_exceptions(m, st);
}

static int pymx_traverse(PyObject *m, visitproc visit, void *arg) {
    mx_state *st = PyModule_GetState(m);
    Py_VISIT(st->core_type);
    Py_VISIT(st->request_type);
    Py_VISIT(st->connection_closed);
    Py_VISIT(st->handshake_refused);
    Py_VISIT(st->websocket_type);
    Py_VISIT(st->sse_type);
    Py_VISIT(st->writer_type);
    Py_VISIT(st->multipart_type);
    Py_VISIT(st->part_type);
    Py_VISIT(st->bad_request);
    Py_VISIT(st->error);
    return 0;
}

static int pymx_clear(PyObject *m) {
    mx_state *st = PyModule_GetState(m);
    Py_CLEAR(st->core_type);
    Py_CLEAR(st->request_type);
    Py_CLEAR(st->connection_closed);
    Py_CLEAR(st->handshake_refused);
    Py_CLEAR(st->websocket_type);
    Py_CLEAR(st->sse_type);
    Py_CLEAR(st->writer_type);
    Py_CLEAR(st->multipart_type);
    Py_CLEAR(st->part_type);
    Py_CLEAR(st->bad_request);
    Py_CLEAR(st->error);
    return 0;
}

static void pymx_free(void *m) {
    mx_state *st = PyModule_GetState((PyObject *)m);
    if (st) {
        pymx_release_pending(&st->releases); /* every server and stream is gone by now */
        pthread_mutex_destroy(&st->releases.mu);
    }
    pymx_clear((PyObject *)m);
}

static PyModuleDef_Slot pymx_slots[] = {
    {Py_mod_exec, pymx_exec},
    {0, NULL},
};

static struct PyModuleDef pymx_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mummyx._mummyx",
    .m_doc = "The C core of mummyx: an epoll HTTP/1.1 server with a native worker pool.",
    .m_size = sizeof(mx_state),
    .m_methods = pymx_methods,
    .m_slots = pymx_slots,
    .m_traverse = pymx_traverse,
    .m_clear = pymx_clear,
    .m_free = pymx_free,
};

PyMODINIT_FUNC PyInit__mummyx(void) { return PyModuleDef_Init(&pymx_module); }
