/*
 * module.h: shared declarations of the CPython binding (after CPython's Modules/_sqlite).
 * The binding is the only code that includes Python.h; it reaches the server core through mx.h.
 */
#ifndef PYMX_MODULE_H
#define PYMX_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <pthread.h>
#include <stdatomic.h>

#include "../core/mx.h"

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef_compat(PyObject *o) {
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) Py_NewRef_compat((PyObject *)(o))
static inline int PyModule_AddObjectRef(PyObject *m, const char *name, PyObject *o) {
    Py_INCREF(o);
    if (PyModule_AddObject(m, name, o) < 0) {
        Py_DECREF(o);
        return -1;
    }
    return 0;
}
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

/* Sets exc (a reference is stolen) as the raised exception (PyErr_SetRaisedException before 3.12). */
static inline void PyErr_SetRaisedException_compat(PyObject *exc) {
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/*
 * Python objects whose bytes the core borrowed (mx_bytes_borrow: a large WebSocket message, a
 * replayed SSE event) and has given back. The core's release callback (pymx_release_later) runs
 * on any thread, usually the I/O thread, without the GIL, so it only queues the object here; the
 * next thread of ours holding the GIL drops them (pymx_release_pending: workers before each batch,
 * senders, and the module's end). Lock order: mu is a leaf.
 */
typedef struct {
    pthread_mutex_t mu;
    PyObject **items; /* malloc'ed (no GIL when it grows) */
    size_t n, cap;
    atomic_int pending; /* n > 0, readable without mu */
} pymx_releases_t;
void pymx_release_later(void *releases, void *owner); /* any thread, no GIL needed */
void pymx_release_pending(pymx_releases_t *r);       /* GIL held */

/* Per-module state: the heap types and the exception types. Every object of one of these
 * types reaches it with pymx_state_of (its type holds the module). */
typedef struct {
    PyTypeObject *core_type;
    PyTypeObject *request_type;
    PyObject *error;             /* mummyx.Error, the base of the three below */
    PyObject *connection_closed; /* mummyx.ConnectionClosed (also a ConnectionError) */
    PyObject *handshake_refused; /* mummyx.HandshakeRefused (also a ValueError) */
    PyTypeObject *websocket_type;
    PyTypeObject *sse_type;
    PyTypeObject *writer_type;    /* mummyx.ResponseStream */
    PyTypeObject *multipart_type; /* mummyx.MultipartReader */
    PyTypeObject *part_type;      /* mummyx.Part */
    PyObject *bad_request;        /* mummyx.BadRequest (also a ValueError, with a 4xx status) */
    pymx_releases_t releases;     /* borrowed bytes the core gave back */
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
    int64_t max_queue_ns;         /* max_queue_time: older requests get 503; 0: none */
    int workers;                  /* the pool's size, as configured (Core.workers) */
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
    PyObject *last_event_id; /* str or None */
    PyObject *dict;
} MxSSEStreamObject;

/* A streamed response body handed to Python (mummyx.ResponseStream). */
typedef struct {
    PyObject_HEAD
    mx_stream_t *st;
    int done; /* closed or aborted from Python */
} MxResponseStreamObject;

extern PyType_Spec pymx_core_spec;
extern PyType_Spec pymx_request_spec;
extern PyType_Spec pymx_websocket_spec;
extern PyType_Spec pymx_sse_spec;
extern PyType_Spec pymx_writer_spec;
extern PyType_Spec pymx_multipart_reader_spec;
extern PyType_Spec pymx_part_spec;

/* websocket.c */
PyObject *pymx_websocket_new(MxCoreObject *core, mx_stream_t *st, PyObject *handler,
                             PyObject *remote_addr, PyObject *subprotocol);
void pymx_websocket_deliver(MxCoreObject *core, mx_stream_t *st);

/* sse.c */
PyObject *pymx_sse_new(MxCoreObject *core, mx_stream_t *st, PyObject *last_event_id);
/* writer.c: request.respond_stream() and a handler's returned iterator. GIL held. */
PyObject *pymx_request_respond_stream(MxRequestObject *self, PyObject *args, PyObject *kwds);
/* Sends an iterator of str/bytes as a streamed response (headers: the response headers or
 * NULL); returns 0, or -1 with an exception set when nothing could be sent. A failure after the
 * head went out cuts the connection (mx_stream_abort) and is reported like a handler error. */
int pymx_respond_iterator(MxRequestObject *self, PyObject *it, int status, PyObject *headers);
PyObject *pymx_sse_encode(PyObject *mod, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames);
PyObject *pymx_sse_fanout(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *pymx_sse_publish(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);


/* multipart.c: request.multipart() and request.form() */
PyObject *pymx_request_multipart(MxRequestObject *self, PyObject *args, PyObject *kwds);
PyObject *pymx_request_form(MxRequestObject *self, PyObject *args, PyObject *kwds);

/* request.c: the Request type and responding. GIL held. */
PyObject *pymx_request_new(MxCoreObject *core, mx_req_t *req);
/* The one place a handler's (or error handler's) return value becomes a response: str as text,
 * bytes-like as octet-stream, dict or list as JSON. 0, or -1 with an exception (TypeError for
 * any other type). */
int pymx_respond_value(MxRequestObject *self, PyObject *value);
PyObject *pymx_respond_impl(MxRequestObject *self, int status, PyObject *headers, PyObject *body);
/* respond_value(request, value, /): pymx_respond_value for mummyx.server's error path. */
PyObject *pymx_respond_value_py(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);

/* headers.c: header marshalling. GIL held. */
/* The request's headers as the Headers object core->make_headers builds (values Latin-1). */
PyObject *pymx_headers_to_python(MxCoreObject *core, const mx_header_t *headers, size_t n);
/* Response headers gathered from Python for mx_req_respond: items point into strings that keep
 * holds (a strong reference each, in a C array: no Python list per call), so the array is valid
 * until pymx_resp_headers_release. */
typedef struct {
    mx_resp_header_t *items;
    size_t n, cap;
    mx_resp_header_t stack[24];
    PyObject **keep; /* the objects whose UTF-8 buffers items point into (names and values) */
    size_t nkeep, keep_cap;
    PyObject *keep_stack[48];
    int has_ctype; /* a Content-Type was given */
} pymx_resp_headers_t;
int pymx_resp_headers_init(pymx_resp_headers_t *h);      /* -1 on ENOMEM (error set) */
void pymx_resp_headers_release(pymx_resp_headers_t *h); /* always safe after init */
/* Adds a mapping or an iterable of (name, value) pairs (None: nothing); -1 with an error. */
int pymx_resp_headers_collect(pymx_resp_headers_t *h, PyObject *headers);
/* Adds one header whose bytes the caller keeps alive; -1 on ENOMEM. */
int pymx_resp_headers_add(pymx_resp_headers_t *h, const char *name, size_t name_len,
                          const char *value, size_t value_len);
/* Raises for a refused respond call (rc, and bad: the index of the refused header or -1), naming
 * the header. Returns NULL. */
PyObject *pymx_resp_headers_raise(mx_state *st, const pymx_resp_headers_t *h, int rc, int bad);

/* upgrade.c: Request.respond_sse() and Request.upgrade_to_websocket(). GIL held. */
PyObject *pymx_request_respond_sse(MxRequestObject *self, PyObject *args, PyObject *kwds);
PyObject *pymx_request_upgrade(MxRequestObject *self, PyObject *args, PyObject *kwds);

/* server.c: the option table as a tuple of (name, kind, default, doc, min, max); None for an
 * automatic or off-by-default value and for a missing bound. */
PyObject *pymx_options_export(void);

/* bridge.c: the hooks the core calls on worker threads */
void pymx_bridge_hooks(MxCoreObject *core, mx_hooks_t *hooks);

/* module.c. All with the GIL held. */
mx_state *pymx_state_from_type(PyTypeObject *tp);
/* The module state of an instance of one of the module's types. */
#define pymx_state_of(o) pymx_state_from_type(Py_TYPE(o))
/*
 * The one mapper from core codes (MX_E*) to exceptions: MX_ECLOSED and MX_EFULL raise
 * ConnectionClosed, MX_EALREADY RuntimeError, MX_EINVAL ValueError, MX_ENOMEM MemoryError,
 * MX_ESYS OSError from errno (with filename, when not NULL), anything else RuntimeError. what
 * is the message (NULL: a default for the code). st may be NULL when no object of the module is
 * at hand. Always returns NULL, for `return pymx_raise()`.
 */
PyObject *pymx_raise(mx_state *st, int code, const char *what);
PyObject *pymx_raise_file(mx_state *st, int code, const char *what, PyObject *filename);
/* An error from reading a request body (mx_req_read and friends): MX_ECLOSED and MX_EINVAL
 * (the client was answered and the connection is finished) both raise ConnectionClosed. */
PyObject *pymx_raise_body(mx_state *st, int code, PyObject *filename);
/* Raises mummyx.BadRequest(message, status); the message is printf-formatted. Returns NULL. */
PyObject *pymx_raise_bad_request(mx_state *st, int status, const char *fmt, ...);
PyObject *pymx_chunk_iter(PyObject *obj, Py_ssize_t size);

#endif
