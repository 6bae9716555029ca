/*
 * module.c: mummyx._mummyx, multi-phase initialisation, module state, exception types, and the
 * module-level functions. Runs on whatever Python thread imports or calls it, with the GIL.
 */
#include "module.h"

#include <errno.h>
#include <string.h>

static struct PyModuleDef pymx_module;

mx_state *pymx_state_from_type(PyTypeObject *tp) {
    PyObject *m = PyType_GetModule(tp);
    return m ? (mx_state *)PyModule_GetState(m) : NULL;
}

/* Maps a core error code to a Python exception. */
void pymx_raise_core_error(int rc, const char *what) {
    switch (rc) {
    case MX_ENOMEM:
        PyErr_NoMemory();
        break;
    case MX_EINVAL:
        PyErr_Format(PyExc_ValueError, "%s", what);
        break;
    case MX_EALREADY:
        PyErr_Format(PyExc_RuntimeError, "%s", what);
        break;
    case MX_ESYS:
        PyErr_SetFromErrno(PyExc_OSError);
        break;
    default:
        PyErr_Format(PyExc_RuntimeError, "%s (error %d)", what, rc);
    }
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
    {"_debug_live_requests", debug_live_requests, METH_NOARGS,
     "_debug_live_requests($module, /)\n--\n\nHow many native requests exist now, in every "
     "server; None unless built with MUMMYX_DEBUG=1 or MUMMYX_SANITIZE=1."},
    {NULL, NULL, 0, NULL},
};

static int pymx_exec(PyObject *m) {
    mx_state *st = PyModule_GetState(m);
    st->core_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pymx_core_spec, NULL);
    if (!st->core_type || PyModule_AddType(m, st->core_type) < 0)
        return -1;
    st->request_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pymx_request_spec, NULL);
    if (!st->request_type || PyModule_AddType(m, st->request_type) < 0)
        return -1;
    st->websocket_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pymx_websocket_spec, NULL);
    if (!st->websocket_type || PyModule_AddType(m, st->websocket_type) < 0)
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
    st->bad_request = pymx_bad_request_type_new();
    if (!st->bad_request)
        return -1;
    Py_INCREF(st->bad_request);
    if (PyModule_AddObject(m, "BadRequest", st->bad_request) < 0) {
        Py_DECREF(st->bad_request);
        return -1;
    }
    st->handshake_refused = PyErr_NewExceptionWithDoc(
        "mummyx.HandshakeRefused",
        "The request is not a valid WebSocket handshake; the client was answered 400 or 426.",
        PyExc_ValueError, NULL);
    if (!st->handshake_refused)
        return -1;
    Py_INCREF(st->handshake_refused);
    if (PyModule_AddObject(m, "HandshakeRefused", st->handshake_refused) < 0) {
        Py_DECREF(st->handshake_refused);
        return -1;
    }
    st->connection_closed = PyErr_NewExceptionWithDoc(
        "mummyx.ConnectionClosed", "The client connection is gone.", PyExc_ConnectionError, NULL);
    if (!st->connection_closed)
        return -1;
    Py_INCREF(st->connection_closed);
    if (PyModule_AddObject(m, "ConnectionClosed", st->connection_closed) < 0) {
        Py_DECREF(st->connection_closed);
        return -1;
    }
    return 0;
}

static int pymx_traverse(PyObject *m, visitproc visit, void *arg) {
    mx_state *st = PyModule_GetState(m);
    Py_VISIT(st->core_type);
    Py_VISIT(st->request_type);
    Py_VISIT(st->connection_closed);
    Py_VISIT(st->handshake_refused);
    Py_VISIT(st->websocket_type);
    Py_VISIT(st->sse_type);
    Py_VISIT(st->multipart_type);
    Py_VISIT(st->part_type);
    Py_VISIT(st->bad_request);
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
    Py_CLEAR(st->multipart_type);
    Py_CLEAR(st->part_type);
    Py_CLEAR(st->bad_request);
    return 0;
}

static void pymx_free(void *m) { pymx_clear((PyObject *)m); }

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
