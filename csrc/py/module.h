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

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef_compat(PyObject *o) {
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) Py_NewRef_compat((PyObject *)(o))
#endif

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
    PyObject *handshake_refused; /* mummyx.HandshakeRefused (a ValueError) */
    PyTypeObject *websocket_type;
    PyTypeObject *sse_type;
    PyTypeObject *multipart_type; /* mummyx.MultipartReader */
    PyTypeObject *part_type;      /* mummyx.Part */
    PyObject *bad_request;        /* mummyx.BadRequest (a ValueError with a 4xx status) */
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
    PyObject *ws_handler;     /* the server's websocket_handler, or NULL */
    PyObject *on_ws_error;    /* callable(websocket, exc): logs a websocket handler's exception */
    PyObject *ws_events;      /* (OPEN, MESSAGE, ERROR, CLOSE) WebSocketEvent members */
    PyObject *ws_kinds;       /* (TEXT, BINARY, PING, PONG) MessageKind members */
    PyObject *ws_message;     /* the Message class: Message(kind, data) */
    PyTypeObject *websocket_type; /* strong */
    PyTypeObject *sse_type;       /* strong */
    PyObject *connection_closed;  /* strong */
    PyObject *handshake_refused;  /* strong */
    int64_t max_queue_ns;         /* max_queue_time: older requests get 503; 0: none */
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

/* A WebSocket handed to Python (mummyx.WebSocket). */
typedef struct {
    PyObject_HEAD
    mx_stream_t *st;
    MxCoreObject *core;    /* strong */
    PyObject *handler;     /* strong until the CLOSE event was delivered */
    PyObject *remote_addr; /* str */
    PyObject *subprotocol; /* str or None */
    PyObject *close_code;  /* None until CLOSE */
    PyObject *close_reason;
    PyObject *dict;
} MxWebSocketObject;

/* An SSE stream handed to Python (mummyx.SSEStream). */
typedef struct {
    PyObject_HEAD
    mx_stream_t *st;
    PyObject *connection_closed; /* strong */
    PyObject *last_event_id;     /* str or None */
    PyObject *dict;
} MxSSEStreamObject;

extern PyType_Spec pymx_core_spec;
extern PyType_Spec pymx_request_spec;
extern PyType_Spec pymx_websocket_spec;
extern PyType_Spec pymx_sse_spec;
extern PyType_Spec pymx_multipart_reader_spec;
extern PyType_Spec pymx_part_spec;

/* websocket.c */
PyObject *pymx_websocket_new(MxCoreObject *core, mx_stream_t *st, PyObject *handler,
                             PyObject *remote_addr, PyObject *subprotocol);
void pymx_websocket_deliver(MxCoreObject *core, mx_stream_t *st);

/* sse.c */
PyObject *pymx_sse_new(MxCoreObject *core, mx_stream_t *st, PyObject *last_event_id);
PyObject *pymx_sse_encode(PyObject *mod, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames);
PyObject *pymx_sse_fanout(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);


/* multipart.c: request.multipart() and request.form(), and the BadRequest class */
PyObject *pymx_request_multipart(MxRequestObject *self, PyObject *args, PyObject *kwds);
PyObject *pymx_request_form(MxRequestObject *self, PyObject *args, PyObject *kwds);
PyObject *pymx_bad_request_type_new(void);

/* request.c */
PyObject *pymx_request_new(MxCoreObject *core, mx_req_t *req);
int pymx_respond_value(MxRequestObject *self, PyObject *value);
PyObject *pymx_respond_impl(MxRequestObject *self, int status, PyObject *headers, PyObject *body);

/* bridge.c: the hooks the core calls on worker threads */
void pymx_bridge_hooks(MxCoreObject *core, mx_hooks_t *hooks);

/* module.c */
mx_state *pymx_state_from_type(PyTypeObject *tp);
void pymx_raise_core_error(int rc, const char *what);
PyObject *pymx_chunk_iter(PyObject *obj, Py_ssize_t size);

#endif
