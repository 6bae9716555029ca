/*
 * multipart.c: request.multipart() and its types, mummyx.MultipartReader (an iterator of parts)
 * and mummyx.Part; and request.form() (the Python side lives in mummyx/forms.py). Invalid
 * content raises mummyx.BadRequest (module.c), which gives the client a 4xx instead of a 500.
 *
 * A reader owns one streaming parser (csrc/core/multipart.c). On a stream=True route it parses
 * the body where the core received it (mx_req_peek/mx_req_consume: the request's bounded ring),
 * so memory stays flat whatever the upload's size and Part.save writes file bytes straight from
 * there; on other routes it parses the buffered body in place. Neither copies the body. Only the
 * current part is readable: the reader hands out body bytes of one part at a time, and moving on
 * skips what the handler left unread.
 *
 * Runs on the handler's thread. Everything that may block or touch many bytes (waiting for body
 * bytes, skipping a part, writing a part to a file) runs without the GIL and touches only C data;
 * a reader is used by one call at a time (the busy flag, checked with the GIL held).
 */
#include "module.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "multipart.h"

/* The first allocation of Part.read's result. */
#define MPR_BUF 65536
/* Bytes after the close delimiter (the epilogue) read and dropped, so the connection can be
 * reused; a longer epilogue is left for the core to discard by closing the connection. */
#define MPR_EPILOGUE_MAX (1024 * 1024)
/* A reader's own error for a body that ended before its close delimiter (mx_mp_finish gives
 * MX_MP_E_SYNTAX for it; this keeps the message precise). Not an MX_E* or MX_MP_E_* value. */
#define MPR_E_TRUNCATED (-1400)

typedef struct {
    PyObject_HEAD
    MxRequestObject *request; /* strong: keeps the mx_req_t (and a buffered body) alive */
    mx_mp_t mp;
    size_t max_parts, max_part_headers; /* effective limits, for messages */
    int streamed;
    const char *in; /* the current input: borrowed from the request's ring (streamed: see
                     * borrowing), or the buffered body itself */
    size_t in_len, in_pos;
    int borrowing;  /* streamed: in is borrowed with mx_req_peek, given back at the next refill */
    int eof;           /* no input will follow what is in [in_pos, in_len) */
    const char *pend;  /* DATA bytes of the current part not handed out yet; they point */
    size_t pend_len;   /* into in or into mp, both stable until the next mx_mp_next */
    Py_ssize_t nparts; /* PART events so far: the number of the current part */
    int in_part;       /* the current part's body has not ended */
    int done;          /* the close delimiter was seen: iteration is over */
    int err;           /* sticky: the first error (MX_MP_E_*, MPR_E_TRUNCATED, MX_E*) */
    int busy;          /* a call runs without the GIL */
} MxMultipartReaderObject;

typedef struct {
    PyObject_HEAD
    MxMultipartReaderObject *reader; /* strong */
    Py_ssize_t index;                /* readable while reader->nparts == index */
    PyObject *name;                  /* str */
    PyObject *filename;              /* str or None */
    PyObject *content_type;          /* str or None */
    PyObject *raw_headers;           /* bytes: the header block as received */
    PyObject *headers;               /* Headers, built on first access */
} MxPartObject;


/* ---- pulling the body through the parser (no GIL) ---- */

/* The next parser event, refilling the input from the body as needed. No GIL needed. Returns
 * PART, DATA, PART_END or DONE, or an error: MX_MP_E_*, MPR_E_TRUNCATED or a mx_req_read code. */
static int mpr_event(MxMultipartReaderObject *r, mx_mp_event_t *ev) {
    for (;;) {
        size_t used = 0;
        int t = mx_mp_next(&r->mp, r->in + r->in_pos, r->in_len - r->in_pos, &used, ev);
        r->in_pos += used;
        if (t != MX_MP_NEED_MORE)
            return t;
        /* All input consumed (a possible delimiter start is held inside the parser). */
        if (r->eof) {
            int rc = mx_mp_finish(&r->mp);
            return rc == MX_MP_E_SYNTAX ? MPR_E_TRUNCATED : rc ? rc : MX_MP_DONE;
        }
        /* Nothing of the old input is referenced any more (DATA handed out, held delimiter
         * bytes live in the parser): give it back and borrow what follows. */
        mx_req_t *req = r->request->req;
        if (r->borrowing) {
            mx_req_consume(req, r->in_len);
            r->borrowing = 0;
        }
        const char *d;
        ssize_t n = mx_req_peek(req, &d);
        if (n < 0)
            return (int)n;
        r->in = n ? d : "";
        r->in_pos = 0;
        r->in_len = (size_t)n;
        r->borrowing = n > 0;
        if (n == 0)
            r->eof = 1;
    }
}

/* Hands out up to max bytes of the current part's body: returns 1 with *data and *len set (valid
 * until the next call), 0 when the part has ended, or an error (made sticky). No GIL needed. */
static int mpr_take(MxMultipartReaderObject *r, const char **data, size_t *len, size_t max) {
    if (r->err)
        return r->err;
    while (r->pend_len == 0) {
        if (!r->in_part)
            return 0;
        mx_mp_event_t ev;
        int t = mpr_event(r, &ev);
        if (t == MX_MP_DATA) {
            r->pend = ev.data;
            r->pend_len = ev.len;
        } else if (t == MX_MP_PART_END) {
            r->in_part = 0;
        } else {
            /* inside a part only DATA or PART_END can come (or an error) */
            r->err = t < 0 ? t : MX_MP_E_SYNTAX;
            return r->err;
        }
    }
    size_t k = r->pend_len < max ? r->pend_len : max;
    *data = r->pend;
    *len = k;
    r->pend += k;
    r->pend_len -= k;
    return 1;
}

/* Copies up to n bytes of the current part into dst. Returns the bytes copied (fewer than n only
 * at the part's end) or an error. No GIL needed. */
static ssize_t mpr_read_into(MxMultipartReaderObject *r, char *dst, size_t n) {
    size_t got = 0;
    while (got < n) {
        const char *d;
        size_t k;
        int rc = mpr_take(r, &d, &k, n - got);
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
        memcpy(dst + got, d, k);
        got += k;
    }
    return (ssize_t)got;
}

/* Drops the rest of the current part, then returns the next event (PART or DONE) or an error.
 * After DONE, reads and drops a short epilogue so that the connection stays usable. No GIL. */
static int mpr_advance(MxMultipartReaderObject *r, mx_mp_event_t *ev) {
    const char *d;
    size_t k;
    int rc;
    while ((rc = mpr_take(r, &d, &k, SIZE_MAX)) > 0)
        ;
    if (rc < 0)
        return rc;
    rc = mpr_event(r, ev);
    if (rc < 0) {
        r->err = rc;
        return rc;
    }
    if (rc == MX_MP_DONE && r->streamed && !r->eof) {
        size_t dropped = 0;
        mx_req_t *req = r->request->req;
        if (r->borrowing) {
            mx_req_consume(req, r->in_len);
            r->borrowing = 0;
        }
        while (dropped < MPR_EPILOGUE_MAX) {
            const char *d;
            ssize_t n = mx_req_peek(req, &d);
            if (n <= 0)
                break; /* the end, or an error nobody needs to hear about: the form is whole */
            mx_req_consume(req, (size_t)n);
            dropped += (size_t)n;
        }
        r->eof = 1;
        r->in_pos = r->in_len = 0;
    }
    if (rc != MX_MP_PART && rc != MX_MP_DONE) {
        r->err = MX_MP_E_SYNTAX; /* DATA or PART_END outside a part cannot come */
        return r->err;
    }
    return rc;
}

/* Sets the Python exception for an error of the functions above. Returns NULL. */
static PyObject *mpr_raise_file(MxMultipartReaderObject *r, int rc, PyObject *filename) {
    mx_state *st = pymx_state_of((PyObject *)r);
    switch (rc) {
    case MX_MP_E_SYNTAX:
        return pymx_raise_bad_request(st, 400, "malformed multipart/form-data body");
    case MPR_E_TRUNCATED:
        return pymx_raise_bad_request(
            st, 400, "the multipart/form-data body ended before its close delimiter");
    case MX_MP_E_TOO_MANY_PARTS:
        return pymx_raise_bad_request(
            st, 413, "more than %zu parts in the multipart/form-data body", r->max_parts);
    case MX_MP_E_HEADERS_TOO_BIG:
        return pymx_raise_bad_request(st, 431, "a part's header block is larger than %zu bytes",
                                      r->max_part_headers);
    default:
        return pymx_raise_body(st, rc, filename);
    }
}

static PyObject *mpr_raise(MxMultipartReaderObject *r, int rc) {
    return mpr_raise_file(r, rc, NULL);
}

/* Checks that r may be used now; -1 with an exception when another call runs or r failed. */
static int mpr_enter(MxMultipartReaderObject *r) {
    if (r->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the multipart reader is in use by another thread");
        return -1;
    }
    if (r->err) {
        mpr_raise(r, r->err);
        return -1;
    }
    return 0;
}

/* ---- mummyx.Part ---- */

static PyObject *utf8(const char *s, size_t n) {
    return PyUnicode_DecodeUTF8(s ? s : "", (Py_ssize_t)n, "replace");
}

static PyObject *part_new(MxMultipartReaderObject *r, const mx_mp_event_t *ev) {
    mx_state *st = pymx_state_of((PyObject *)r);
    MxPartObject *self = PyObject_GC_New(MxPartObject, st->part_type);
    if (!self)
        return NULL;
    Py_INCREF(r);
    self->reader = r;
    self->index = r->nparts;
    self->name = utf8(ev->name, ev->name_len);
    self->filename = ev->filename ? utf8(ev->filename, ev->filename_len) : Py_NewRef(Py_None);
    self->content_type =
        ev->content_type ? utf8(ev->content_type, ev->content_type_len) : Py_NewRef(Py_None);
    self->raw_headers = PyBytes_FromStringAndSize(ev->headers, (Py_ssize_t)ev->headers_len);
    self->headers = NULL;
    PyObject_GC_Track(self);
    if (!self->name || !self->filename || !self->content_type || !self->raw_headers) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int part_traverse(MxPartObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->reader);
    Py_VISIT(self->headers);
    return 0;
}

static int part_clear(MxPartObject *self) {
    Py_CLEAR(self->reader);
    Py_CLEAR(self->headers);
    return 0;
}

static void part_dealloc(MxPartObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    part_clear(self);
    Py_CLEAR(self->name);
    Py_CLEAR(self->filename);
    Py_CLEAR(self->content_type);
    Py_CLEAR(self->raw_headers);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* The reader of a part that may be read now; NULL with an exception otherwise. */
static MxMultipartReaderObject *part_reader(MxPartObject *self) {
    MxMultipartReaderObject *r = self->reader;
    if (!r) {
        PyErr_SetString(PyExc_RuntimeError, "this part is no longer readable");
        return NULL;
    }
    if (mpr_enter(r) < 0)
        return NULL;
    if (r->nparts != self->index) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this part can no longer be read: the multipart reader has moved on to "
                        "a later part");
        return NULL;
    }
    return r;
}

/* read(n=-1) -> bytes: up to n bytes of the rest of this part (all of it when n < 0); fewer
 * only at the part's end, b"" after it. */
static PyObject *part_read(MxPartObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"n", NULL};
    Py_ssize_t n = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:read", kwlist, &n))
        return NULL;
    MxMultipartReaderObject *r = part_reader(self);
    if (!r)
        return NULL;
    size_t want = n < 0 ? (size_t)PY_SSIZE_T_MAX : (size_t)n;
    size_t cap = want < MPR_BUF ? want : MPR_BUF, len = 0;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (!out)
        return NULL;
    /* Grow the bytes object as data comes: read(10**9) does not allocate a gigabyte upfront. */
    while (r->in_part || r->pend_len) {
        if (len == cap) {
            if (cap == want)
                break;
            size_t ncap = cap <= want / 2 ? cap * 2 : want;
            if (_PyBytes_Resize(&out, (Py_ssize_t)ncap) < 0)
                return NULL;
            cap = ncap;
        }
        ssize_t got;
        char *dst = PyBytes_AS_STRING(out) + len; /* nobody else sees out yet */
        r->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        got = mpr_read_into(r, dst, cap - len);
        Py_END_ALLOW_THREADS
        r->busy = 0;
        if (got < 0) {
            Py_DECREF(out);
            return mpr_raise(r, (int)got);
        }
        len += (size_t)got;
    }
    if (len != cap && _PyBytes_Resize(&out, (Py_ssize_t)len) < 0)
        return NULL;
    return out;
}

/* iter_chunks(chunk_size=65536): an iterator of read(chunk_size) results up to the part's end. */
static PyObject *part_iter_chunks(MxPartObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"chunk_size", NULL};
    Py_ssize_t size = 65536;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:iter_chunks", kwlist, &size))
        return NULL;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "chunk_size must be positive");
        return NULL;
    }
    return pymx_chunk_iter((PyObject *)self, size);
}


static int pull_part(void *ctx, const char **data, size_t *len) {
    return mpr_take((MxMultipartReaderObject *)ctx, data, len, SIZE_MAX);
}

/* Writes the rest of the current part to path, atomically (mx_save_to_file). No GIL needed. */
static int mpr_save(MxMultipartReaderObject *r, const char *path, uint64_t *written) {
    return mx_save_to_file(path, pull_part, r, written);
}

/* save(path) -> int: the rest of this part into a file, in C without the GIL. */
static PyObject *part_save(MxPartObject *self, PyObject *arg) {
    PyObject *bytes;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    MxMultipartReaderObject *r = part_reader(self);
    if (!r) {
        Py_DECREF(bytes);
        return NULL;
    }
    uint64_t written = 0;
    int rc;
    const char *path = PyBytes_AS_STRING(bytes);
    r->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    rc = mpr_save(r, path, &written);
    Py_END_ALLOW_THREADS
    r->busy = 0;
    Py_DECREF(bytes);
    if (rc != 0)
        return mpr_raise_file(r, rc, arg);
    return PyLong_FromUnsignedLongLong(written);
}

static PyObject *part_get_name(MxPartObject *self, void *c) {
    (void)c;
    return Py_NewRef(self->name);
}

static PyObject *part_get_filename(MxPartObject *self, void *c) {
    (void)c;
    return Py_NewRef(self->filename);
}

static PyObject *part_get_content_type(MxPartObject *self, void *c) {
    (void)c;
    return Py_NewRef(self->content_type);
}

/* headers: the part's header block as a Headers multi-mapping (values decoded as UTF-8). The
 * parser already checked each line is token ":" value CRLF. */
static PyObject *part_get_headers(MxPartObject *self, void *c) {
    (void)c;
    if (!self->headers) {
        if (!self->reader) {
            PyErr_SetString(PyExc_RuntimeError, "this part is no longer usable");
            return NULL;
        }
        PyObject *list = PyList_New(0);
        if (!list)
            return NULL;
        const char *h = PyBytes_AS_STRING(self->raw_headers);
        const char *end = h + PyBytes_GET_SIZE(self->raw_headers);
        while (h < end) {
            const char *colon = memchr(h, ':', (size_t)(end - h));
            const char *eol = colon ? memchr(colon, '\r', (size_t)(end - colon)) : NULL;
            if (!eol)
                break;
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            PyObject *pair = Py_BuildValue("(NN)", utf8(h, (size_t)(colon - h)),
                                           utf8(v, (size_t)(ve - v)));
            if (!pair || PyList_Append(list, pair) < 0) {
                Py_XDECREF(pair);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(pair);
            h = eol + 2;
        }
        self->headers = PyObject_CallOneArg(self->reader->request->core->make_headers, list);
        Py_DECREF(list);
        if (!self->headers)
            return NULL;
    }
    return Py_NewRef(self->headers);
}

static PyObject *part_repr(MxPartObject *self) {
    if (self->filename == Py_None)
        return PyUnicode_FromFormat("<Part name=%R>", self->name);
    return PyUnicode_FromFormat("<Part name=%R filename=%R>", self->name, self->filename);
}

static PyObject *new_forbidden(PyTypeObject *tp, PyObject *a, PyObject *k) {
    (void)a;
    (void)k;
    PyErr_Format(PyExc_TypeError, "cannot create '%.100s' instances: use request.multipart()",
                 tp->tp_name);
    return NULL;
}

static PyMethodDef part_methods[] = {
    {"read", (PyCFunction)(void (*)(void))part_read, METH_VARARGS | METH_KEYWORDS,
     "read($self, n=-1)\n--\n\nUp to n bytes of the rest of this part (all of it when n < 0); "
     "fewer only at the part's end, b'' after it."},
    {"iter_chunks", (PyCFunction)(void (*)(void))part_iter_chunks, METH_VARARGS | METH_KEYWORDS,
     "iter_chunks($self, chunk_size=65536)\n--\n\nIterate over the rest of this part in chunks."},
    {"save", (PyCFunction)part_save, METH_O,
     "save($self, path, /)\n--\n\nWrite the rest of this part to path (a temporary file renamed "
     "into place when complete; nothing is left on failure), in C without the GIL; return the "
     "bytes written."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef part_getset[] = {
    {"name", (getter)part_get_name, NULL, "the form field name (Content-Disposition name)", NULL},
    {"filename", (getter)part_get_filename, NULL,
     "the filename as sent (filename* preferred), or None; untrusted: never use it as a path",
     NULL},
    {"content_type", (getter)part_get_content_type, NULL, "the part's Content-Type, or None",
     NULL},
    {"headers", (getter)part_get_headers, NULL, "the part's header fields (Headers)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot part_slots[] = {
    {Py_tp_doc, "One part of a multipart/form-data body (from iterating request.multipart())."},
    {Py_tp_new, new_forbidden},
    {Py_tp_dealloc, part_dealloc},
    {Py_tp_traverse, part_traverse},
    {Py_tp_clear, part_clear},
    {Py_tp_methods, part_methods},
    {Py_tp_getset, part_getset},
    {Py_tp_repr, part_repr},
    {0, NULL},
};

PyType_Spec pymx_part_spec = {
    .name = "mummyx.Part",
    .basicsize = sizeof(MxPartObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = part_slots,
};

/* ---- mummyx.MultipartReader ---- */

static int mpr_traverse(MxMultipartReaderObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->request);
    return 0;
}

static int mpr_clear(MxMultipartReaderObject *self) {
    (void)self; /* the request is kept until dealloc: parsed input may point into its body */
    return 0;
}

static void mpr_dealloc(MxMultipartReaderObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    mx_mp_free(&self->mp);
    if (self->borrowing) /* give the ring back: the rest of the input is dropped */
        mx_req_consume(self->request->req, self->in_len);
    Py_CLEAR(self->request);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *mpr_iternext(MxMultipartReaderObject *self) {
    if (mpr_enter(self) < 0)
        return NULL;
    if (self->done)
        return NULL; /* StopIteration */
    mx_mp_event_t ev;
    int rc;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    rc = mpr_advance(self, &ev);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (rc < 0)
        return mpr_raise(self, rc);
    if (rc == MX_MP_DONE) {
        self->done = 1;
        return NULL;
    }
    /* A PART event: its names and header block are valid until the next mx_mp_next. */
    self->nparts++;
    self->in_part = 1;
    self->pend_len = 0;
    return part_new(self, &ev);
}

static PyType_Slot mpr_slots[] = {
    {Py_tp_doc, "An iterator over the parts of a multipart/form-data body (request.multipart())."},
    {Py_tp_new, new_forbidden},
    {Py_tp_dealloc, mpr_dealloc},
    {Py_tp_traverse, mpr_traverse},
    {Py_tp_clear, mpr_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, mpr_iternext},
    {0, NULL},
};

PyType_Spec pymx_multipart_reader_spec = {
    .name = "mummyx.MultipartReader",
    .basicsize = sizeof(MxMultipartReaderObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = mpr_slots,
};

/* ---- request methods ---- */

/* request.multipart(max_parts=1000, max_part_headers=8192) -> MultipartReader */
PyObject *pymx_request_multipart(MxRequestObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_parts", "max_part_headers", NULL};
    Py_ssize_t max_parts = MX_MP_DEFAULT_MAX_PARTS, max_headers = MX_MP_DEFAULT_MAX_PART_HEADERS;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|nn:multipart", kwlist, &max_parts,
                                     &max_headers))
        return NULL;
    if (max_parts <= 0 || max_headers <= 0 || max_headers > (Py_ssize_t)(1 << 24)) {
        PyErr_SetString(PyExc_ValueError,
                        "max_parts must be positive and max_part_headers between 1 and 16 MiB");
        return NULL;
    }
    mx_state *st = pymx_state_of((PyObject *)self);
    if (!st)
        return NULL;
    mx_req_t *req = self->req;
    const mx_header_t *ct = mx_req_header(req, "content-type", 12);
    char boundary[MX_MULTIPART_BOUNDARY_MAX + 1];
    int blen = ct ? mx_multipart_boundary(ct->value, ct->value_len, boundary, sizeof(boundary))
                  : -1;
    if (blen < 0) {
        /* Say which: another media type, or a bad boundary parameter. */
        static const char mt[] = "multipart/form-data";
        size_t i = 0, n = ct ? ct->value_len : 0;
        while (i < n && (ct->value[i] == ' ' || ct->value[i] == '\t'))
            i++;
        if (ct && n - i >= sizeof(mt) - 1 && strncasecmp(ct->value + i, mt, sizeof(mt) - 1) == 0)
            return pymx_raise_bad_request(st, 400,
                                     "the multipart/form-data Content-Type has no valid boundary");
        return pymx_raise_bad_request(st, 400, "the request body is not multipart/form-data");
    }
    MxMultipartReaderObject *r = PyObject_GC_New(MxMultipartReaderObject, st->multipart_type);
    if (!r)
        return NULL;
    memset((char *)r + sizeof(PyObject), 0, sizeof(*r) - sizeof(PyObject));
    Py_INCREF(self);
    r->request = self;
    r->max_parts = (size_t)max_parts;
    r->max_part_headers = (size_t)max_headers;
    r->streamed = mx_req_streamed(req);
    mx_mp_limits_t lim = {(size_t)max_headers, (size_t)max_parts};
    int rc = mx_mp_init(&r->mp, boundary, (size_t)blen, &lim);
    if (rc == 0 && r->streamed) {
        r->in = ""; /* the first event borrows the body's first bytes */
    } else if (rc == 0) {
        /* Parse the buffered body in place: each reader starts from its beginning. */
        r->in = req->body ? req->body : "";
        r->in_len = req->body ? req->body_len : 0;
        r->eof = 1;
    }
    PyObject_GC_Track(r);
    if (rc != 0) {
        Py_DECREF(r);
        return pymx_raise(st, rc, "cannot start the multipart parser");
    }
    return (PyObject *)r;
}

/* request.form(**options) -> FormData: mummyx.forms does the work, in Python. */
PyObject *pymx_request_form(MxRequestObject *self, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "form() takes keyword arguments only");
        return NULL;
    }
    PyObject *forms = PyImport_ImportModule("mummyx.forms");
    PyObject *fn = forms ? PyObject_GetAttrString(forms, "_request_form") : NULL;
    Py_XDECREF(forms);
    if (!fn)
        return NULL;
    PyObject *a = Py_BuildValue("(OO)", self, mx_req_streamed(self->req) ? Py_True : Py_False);
    PyObject *res = a ? PyObject_Call(fn, a, kwds) : NULL;
    Py_XDECREF(a);
    Py_DECREF(fn);
    return res;
}
