/*
 * module.h: shared declarations of the CPython binding (after CPython's Modules/_sqlite).
 * The binding is the only code that includes Python.h; it reaches the server core through mx.h.
 */
#ifndef PYMX_MODULE_H
#define PYMX_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "../core/mx.h"

/* The raised exception, taken out of the error indicator (PyErr_GetRaisedException before 3.12). */
static inline PyObject *PyErr_GetRaisedException_compat(void) {
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v && tb)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
#endif
}

/* Per-module state: the heap types and the exception types. */
typedef struct {
    PyTypeObject *core_type;
    PyTypeObject *request_type;
    PyObject *connection_closed; /* mummyx.ConnectionClosed (a ConnectionError) */
} mx_state;

/* One route's Python side, indexed by the core's route_id. */
typedef struct {
    PyObject *handler;
} pymx_route_t;

/* The Python object that owns one mx_server_t (mummyx._mummyx.Core; wrapped by mummyx.Server). */
typedef struct {
    PyObject_HEAD
    mx_server_t *server;
    PyInterpreterState *interp;
    PyTypeObject *request_type; /* strong */
    pymx_route_t *routes;
    Py_ssize_t nroutes;
    PyObject *handler;        /* used when there is no router */
    PyObject *not_found;      /* callable(request) or NULL */
    PyObject *not_allowed;    /* callable(request) or NULL */
    PyObject *on_error;       /* callable(request, exc): logs, runs error_handler, answers 500 */
    PyObject *on_no_response; /* callable(request): warns and answers 500 */
    PyObject *on_access;      /* callable(request, seconds) or NULL */
    PyObject *json_dumps;     /* callable(obj) -> str */
    PyObject *make_headers;   /* callable(list of (name, value)) -> Headers */
    PyObject *make_query;     /* callable(str) -> QueryParams */
    int started;
    int stopped;
} MxCoreObject;

/* A request handed to a Python handler. Holds a reference to its mx_req_t. */
typedef struct {
    PyObject_HEAD
    mx_req_t *req;
    MxCoreObject *core; /* strong */
    PyObject *method, *path, *uri, *query, *path_params, *headers, *body;
    PyObject *dict; /* attributes users hang on a request (request.user = ...) */
} MxRequestObject;

extern PyType_Spec pymx_core_spec;
extern PyType_Spec pymx_request_spec;

/* request.c */
PyObject *pymx_request_new(MxCoreObject *core, mx_req_t *req);
int pymx_respond_value(MxRequestObject *self, PyObject *value);
PyObject *pymx_respond_impl(MxRequestObject *self, int status, PyObject *headers, PyObject *body);

/* bridge.c: the hooks the core calls on worker threads */
void pymx_bridge_hooks(MxCoreObject *core, mx_hooks_t *hooks);

/* module.c */
mx_state *pymx_state_from_type(PyTypeObject *tp);
void pymx_raise_core_error(int rc, const char *what);

#endif
