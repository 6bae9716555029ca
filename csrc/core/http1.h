/*
 * http1.h: the HTTP/1.x request-head parser and the chunked body decoder.
 *
 * Pure functions over caller-owned memory: no allocation, no I/O, no globals, so any thread may
 * call them and the fuzzers can drive them directly. The parser follows picohttpparser's shape
 * (return bytes consumed, partial, or invalid) but is strict in the ways RFC 9112 allows a server
 * to be: CRLF line endings only, no whitespace before a header colon, no obs-fold, no control
 * bytes. Every rejection carries the HTTP status the client should get.
 */
#ifndef MX_HTTP1_H
#define MX_HTTP1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MX_HTTP1_PARTIAL (-2) /* need more bytes */
#define MX_HTTP1_INVALID (-1) /* reject; *status holds the response status (see each function) */
#define MX_HTTP1_TOO_LARGE (-3) /* chunked: a chunk size would take the body past its limit */

/* Upper bound on the number of header fields a request may carry (more gives 431). */
#define MX_HTTP1_MAX_HEADERS 100

typedef struct mx_header {
    const char *name; /* points into the parsed buffer; not NUL-terminated */
    size_t name_len;
    const char *value; /* leading and trailing SP/HTAB already trimmed */
    size_t value_len;
} mx_header_t;

typedef struct mx_http1_request {
    const char *method; /* points into the parsed buffer */
    size_t method_len;
    const char *target; /* the raw request-target, as sent */
    size_t target_len;
    int minor_version; /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    size_t num_headers;
    mx_header_t headers[MX_HTTP1_MAX_HEADERS];
} mx_http1_request_t;

/*
 * Where an unfinished head's parse stopped, so the next call with more bytes resumes there instead
 * of re-reading the head from its first byte (picohttpparser's last_len, made exact). Zero it
 * before the first call for a head; the parser resets it itself after every verdict other than
 * PARTIAL, so a connection can keep one for all its heads. The fields are offsets from the head's
 * first byte, so the caller may move or grow its buffer between calls.
 */
typedef struct mx_http1_head_state {
    size_t pos;           /* private: bytes already found to be a valid prefix; resume here */
    size_t mark;          /* private: offset where the section at pos began */
    unsigned section;     /* private: which part of the grammar pos is in */
    unsigned num_headers; /* private: field lines complete before pos */
    size_t examined;      /* bytes looked at, summed over every call (tests prove linearity) */
} mx_http1_head_state_t;

/*
 * Parses one request head (request line, header fields, and the empty line) from buf[0..len).
 * Returns the number of bytes the head occupies (> 0, at most max_head_len) on success;
 * MX_HTTP1_PARTIAL when the head is not complete yet and could still become valid;
 * MX_HTTP1_INVALID when it cannot, with *status set to the response status:
 *   400 malformed request line, method, target or header field (bare CR or LF, NUL and other
 *       control bytes, whitespace between a field name and its colon, obs-fold, empty name,
 *       a request-target byte outside 0x21-0x7E, more than one SP between the parts)
 *   414 request-target longer than max_target_len (detected even before the line is complete)
 *   431 head longer than max_head_len, or more than MX_HTTP1_MAX_HEADERS fields
 *   505 an HTTP version other than 1.0 or 1.1 (a well-formed "HTTP/d.d" CRLF that we do not
 *       speak; a malformed version is a 400)
 * *status is written only on MX_HTTP1_INVALID; *req is complete only on success (on PARTIAL or
 * INVALID its contents are unspecified). Pointers in *req point into buf.
 *
 * Every verdict is decided by the first byte that makes it certain, and bytes at or beyond
 * buf[max_head_len] are never read, so a prefix of a byte stream is PARTIAL exactly when it may
 * still become valid, and every longer prefix gets the same verdict and status as the first one
 * that was not PARTIAL: a client sending byte by byte gets the same answer as one sending it all
 * at once. In detail: 414 comes at target byte max_target_len + 1 (even if a bad byte follows);
 * 505 once the request line's CRLF is in; 431 for too many fields at the first byte of field 101.
 * A head that is still PARTIAL once len >= max_head_len is INVALID: 414 when the parser is still
 * inside the request line and max_head_len > max_target_len (the line alone is already longer
 * than any acceptable target), else 431.
 * len may exceed max_head_len (pipelined requests, a body); only the head is consumed.
 * Leading empty lines before the request line are NOT skipped (RFC 9112 2.2 allows either).
 *
 * state may be NULL: the parse starts from buf[0] every time, and a head that arrives in k pieces
 * costs up to k times its length. With a state, each call looks only at the bytes that arrived
 * since the previous one (plus at most ten bytes before them), and the head is parsed once more
 * in full when it completes: the work for an n-byte head is about 2n however it is split. The
 * caller must pass the same head (the bytes given before unchanged, at a new address if it
 * likes), the same limits, and a len that never shrinks; the verdicts are then exactly those of
 * the stateless parse of the same bytes. A call with fewer bytes than the state has seen starts
 * over. Any thread may call this; the state belongs to the caller.
 */
int mx_http1_parse_request(const char *buf, size_t len, size_t max_head_len, size_t max_target_len,
                           mx_http1_request_t *req, int *status, mx_http1_head_state_t *state);

/* What the server needs to know about a parsed head, read from its header fields. */
typedef struct mx_http1_info {
    int64_t content_length;  /* -1 when absent */
    unsigned chunked : 1;    /* Transfer-Encoding is exactly chunked (content_length is then -1) */
    unsigned keep_alive : 1; /* default by version, then Connection: close / keep-alive */
    unsigned expect_continue : 1; /* Expect: 100-continue */
    unsigned upgrade : 1;         /* HTTP/1.1, Connection has "upgrade" and Upgrade is non-empty */
    unsigned num_host;            /* how many Host fields */
    const char *host;             /* value of the first Host field, or NULL */
    size_t host_len;
} mx_http1_info_t;

/*
 * Reads the framing and connection fields of a parsed request (RFC 9112 6, 9.3; RFC 9110 10.1.1).
 * Returns 0, or MX_HTTP1_INVALID with *status set:
 *   400 Content-Length together with Transfer-Encoding; Content-Length repeated (even with
 *       equal values, or comma-joined), empty, or not a plain decimal number, or too large for
 *       int64; a Transfer-Encoding whose final coding is not "chunked" (an empty one included),
 *       "chunked" applied twice or given parameters, or a malformed coding; Transfer-Encoding
 *       on HTTP/1.0; missing Host on HTTP/1.1; more than one Host, or a Host value with bytes
 *       that cannot appear in uri-host [":" port], on any version (RFC 9112 3.2)
 *   417 an Expect list holding anything other than 100-continue
 *   501 a Transfer-Encoding coding we do not implement (anything but chunked before the final
 *       chunked, e.g. "gzip, chunked") -- reported as 501 per RFC 9112 6.1
 * When several apply, 400 wins over 501, and 501 over 417. *info is filled in either way.
 * Token comparisons are case-insensitive and handle comma-separated lists with optional
 * whitespace, across repeated fields; empty list elements are ignored (RFC 9110 5.6.1).
 * HTTP/1.0 requests never get expect_continue (RFC 9110 10.1.1) nor upgrade (7.8).
 */
int mx_http1_analyze(const mx_http1_request_t *req, mx_http1_info_t *info, int *status);

/* Incremental chunked transfer-coding decoder (RFC 9112 7.1). Zero-initialize before use. */
typedef struct mx_chunked {
    int state;          /* private */
    uint64_t remaining; /* private: bytes left in the current chunk */
    size_t line_len;    /* private: bytes of the current size/trailer line seen so far */
    size_t trailer_len; /* private: total trailer bytes seen */
    int saw_digit;      /* private (unused) */
    uint64_t limit;     /* set by the caller before the first call: body bytes allowed, 0 = any */
    uint64_t total;     /* private: payload bytes announced so far */
} mx_chunked_t;

/*
 * Decodes chunked data from in[0..len): copies the chunk payload bytes to out (out must have room
 * for len bytes; out may equal in, decoding in place), and sets *out_len to how many were written.
 * Returns the number of input bytes consumed, which is len unless the body ended inside in[]:
 * then *done = 1 and the bytes after the final CRLF belong to the next request and are not
 * consumed. Once done, later calls consume nothing and return 0 with *done = 1.
 * Returns MX_HTTP1_TOO_LARGE as soon as a size line announces more payload than limit allows (so
 * the verdict does not depend on how the input is split), and MX_HTTP1_INVALID on malformed input:
 * a size that is not plain hex (no sign, "0x" or leading whitespace) or exceeds 2^63-1, a malformed
 * extension, a missing CRLF after the data, a bare CR or LF, a trailer line that is not token ":"
 * field-value, a size line or trailer line longer than 4096 bytes (CRLF included), or a trailer
 * section longer than 16384 bytes. On INVALID, *done = 0 and *out_len still counts the payload
 * written before the bad byte; the state is sticky, so every later call fails too. Chunk extensions
 * (RFC 9112 7.1.1) are skipped but must be well-formed: BWS ";" BWS name [BWS "=" BWS (token /
 * quoted-string)]; whitespace after the size is allowed only before ';'. The result does not depend
 * on how the input is split across calls.
 */
ssize_t mx_chunked_decode(mx_chunked_t *d, const char *in, size_t len, char *out, size_t *out_len,
                          int *done);

/* Case-insensitive ASCII comparison of a header name against a lowercase literal. */
int mx_http1_name_eq(const char *name, size_t len, const char *lower_lit, size_t lit_len);

/* 1 when tok is a valid RFC 9110 token (tchar+), else 0. Used to validate response headers. */
int mx_http1_is_token(const char *s, size_t len);

/* 1 when s is a valid field value for a response (no CR, LF, NUL or other CTL but HTAB). */
int mx_http1_is_field_value(const char *s, size_t len);

#endif
