/*
 * multipart.h: a strict, bounded, streaming multipart/form-data parser (RFC 7578, RFC 2046 5.1).
 *
 * Pull-style: the caller feeds body bytes in pieces of any size and gets one event per call
 * (a part's headers, some body bytes, the end of a part, the end of the body). The parser keeps
 * a fixed-size state struct plus one header buffer allocated once by mx_mp_init (twice the
 * max_part_headers limit); nothing grows with the body, so a multi-GB upload streams through in
 * constant memory. Body bytes are handed out as pointers into the caller's input wherever
 * possible. No I/O, no globals, no threads: one parser belongs to one request, and whichever
 * thread owns that request (a worker, a "save part to file" loop) may drive it.
 *
 * Events do not depend on how the input is split: whole, in random pieces or byte by byte, the
 * sequence of PART / PART_END / DONE events and errors is identical and the concatenated DATA
 * bytes are equal (only the number of DATA events differs).
 */
#ifndef MX_MULTIPART_H
#define MX_MULTIPART_H

#include <stddef.h>

/* RFC 2046 5.1.1: a boundary is 1 to 70 characters. */
#define MX_MULTIPART_BOUNDARY_MAX 70

/* Defaults used when a limit is 0 or no limits are given. */
#define MX_MP_DEFAULT_MAX_PART_HEADERS 8192
#define MX_MP_DEFAULT_MAX_PARTS 1000

/* Event types (mx_mp_event_t.type, and the non-negative return values of mx_mp_next). */
enum {
    MX_MP_NEED_MORE = 0, /* all input consumed; nothing to report yet */
    MX_MP_PART,          /* the header block of a new part is complete */
    MX_MP_DATA,          /* some body bytes of the current part (len > 0) */
    MX_MP_PART_END,      /* the current part's body ended (a delimiter followed it) */
    MX_MP_DONE           /* the close delimiter was seen; everything after it is ignored */
};

/* Errors: negative, and minus the HTTP status the client should get. Errors are sticky. */
#define MX_MP_E_SYNTAX (-400)          /* malformed delimiter line, part headers or parameters */
#define MX_MP_E_HEADERS_TOO_BIG (-431) /* one part's header block exceeds max_part_headers */
#define MX_MP_E_TOO_MANY_PARTS (-413)  /* more than max_parts parts */

typedef struct mx_mp_limits {
    size_t max_part_headers; /* bytes of one part's header block (its lines with their CRLFs,
                                not the blank line ending it); 0 means 8192 */
    size_t max_parts;        /* parts per body; 0 means 1000 */
} mx_mp_limits_t;

/* Parser state. Embed it or allocate it; all fields are private. */
typedef struct mx_mp {
    int state;
    int err;            /* sticky error code, 0 when none */
    size_t match;       /* bytes of delim matched at the end of the consumed input: held back */
    size_t dlen;        /* 4 + boundary length */
    size_t hlen;        /* bytes of the current header block stored in hbuf */
    size_t nparts;      /* parts begun so far */
    size_t max_headers; /* effective limits */
    size_t max_parts;
    char *hbuf; /* 2 * max_headers bytes: the raw header block, then decoded values */
    char delim[4 + MX_MULTIPART_BOUNDARY_MAX]; /* "\r\n--" boundary: the pattern searched for */
} mx_mp_t;

typedef struct mx_mp_event {
    int type; /* one of the event types above (or the error); equals mx_mp_next's return value */
    /* MX_MP_DATA: body bytes of the current part. They point into the input, or into the parser
     * itself for bytes that were held back as a possible delimiter start and turned out not to
     * be one. Valid until the next call on this parser (and while the input lives). */
    const char *data;
    size_t len;
    /* MX_MP_PART, valid until the next call on this parser (copy what you keep); NULL/0 for
     * other events. None of these strings is NUL-terminated. */
    const char *name; /* Content-Disposition name, decoded (never NULL for PART; may be empty) */
    size_t name_len;
    /* The decoded filename* (RFC 8187, UTF-8 only) if present and decodable, else the decoded
     * filename parameter (raw bytes, usually UTF-8 but not checked), else NULL. Never holds NUL,
     * CR or LF, but may hold HTAB, '/', '\\', ".." or be empty: sanitize it before use. */
    const char *filename;
    size_t filename_len;
    const char *content_type; /* the Content-Type value, OWS trimmed; NULL when absent */
    size_t content_type_len;
    const char *headers; /* the raw header block, "Name: value\r\n" lines, as received */
    size_t headers_len;
} mx_mp_event_t;

/*
 * Extracts the boundary parameter from a Content-Type field value (RFC 9110 8.3.1, 5.6.6).
 * The media type must be multipart/form-data (case-insensitive); parameter names are
 * case-insensitive and the boundary value may be a token or a quoted-string; it must appear
 * exactly once and be 1..70 characters of the RFC 2046 bchars set, not ending in a space.
 * Returns the boundary length, with the boundary copied into out and NUL-terminated (cap must
 * be at least length + 1), or -1. Pure; any thread; never reads content_type[len] or beyond.
 */
int mx_multipart_boundary(const char *content_type, size_t len, char *out, size_t cap);

/*
 * Prepares p to parse one body with the given boundary (as returned by mx_multipart_boundary;
 * it is validated again). lim may be NULL for the defaults. Allocates the header buffer
 * (2 * max_part_headers bytes) with malloc. Returns 0; MX_EINVAL (common.h) for a bad boundary
 * or an absurd limit, MX_ENOMEM when the allocation fails (either way p then needs no
 * mx_mp_free, though calling it is harmless). Re-initializing a parser without mx_mp_free leaks.
 */
int mx_mp_init(mx_mp_t *p, const char *boundary, size_t blen, const mx_mp_limits_t *lim);

/* Releases what mx_mp_init allocated. Safe to call twice, or on a zero-filled struct. */
void mx_mp_free(mx_mp_t *p);

/*
 * Consumes input from in[0..len) and reports at most one event. Returns ev->type (>= 0) with
 * *consumed set to the bytes used (<= len), or a negative MX_MP_E_* error (then *consumed is 0,
 * and every later call returns the same error).
 *   NEED_MORE  everything was consumed (*consumed == len) without completing an event:
 *              get more input.
 *   PART, DATA, PART_END  the event, possibly with *consumed < len, or even 0 (a DATA event of
 *              held-back bytes): call again with the rest of the input.
 *   DONE       the close delimiter ended the body. Later calls consume all their input
 *              (the epilogue) and return DONE again.
 * So the caller loops: pos += consumed; call again with in + pos until NEED_MORE or DONE.
 * Per part the events are PART, DATA*, PART_END; then DONE. A DATA event comes as soon as bytes
 * are known not to start a delimiter; at most boundary length + 3 bytes are ever held back.
 * Grammar enforced (RFC 2046 5.1.1, RFC 7578 4):
 *   - the preamble before the first delimiter is ignored; the first delimiter may lack its CRLF;
 *   - a delimiter is CRLF "--" boundary, then optional SP/HTAB padding and CRLF, or "--" for
 *     the close delimiter; anything else after the boundary is a syntax error (RFC 2046
 *     forbids the delimiter as the prefix of a body line); a close delimiter directly after
 *     the preamble ends an empty form with no parts (browsers send that);
 *   - part headers are CRLF-terminated "token ':' value" lines: no obs-fold, no whitespace
 *     before ':', no bare CR or LF, no NUL or other control byte but HTAB in values;
 *   - exactly one Content-Disposition, of type form-data (case-insensitive), with exactly one
 *     name parameter; at most one Content-Type; name, filename and filename* at most once each;
 *     parameter values are tokens or quoted-strings (backslash escapes decoded).
 */
int mx_mp_next(mx_mp_t *p, const char *in, size_t len, size_t *consumed, mx_mp_event_t *ev);

/*
 * Call when the body has ended. Returns 0 when the close delimiter was seen (DONE), the sticky
 * error if the parser failed, else MX_MP_E_SYNTAX (a truncated body).
 */
int mx_mp_finish(const mx_mp_t *p);

#endif
