/*
 * http1.c: the HTTP/1.x request-head parser, the reader of its framing fields, and the chunked
 * body decoder (RFC 9112).
 *
 * Every function here is pure: no allocation, no I/O, no globals but constant tables, so the I/O
 * thread calls them on hostile bytes and the fuzzers drive them directly. The head parser's only
 * memory between calls is a small caller-owned state that says where the last call stopped, so a
 * head trickling in costs work linear in its length. Each verdict is decided by the first byte
 * that makes it certain: a prefix of the input is PARTIAL exactly when some continuation could
 * still be valid, and once a prefix is INVALID every longer prefix gets the same status. A client
 * that sends byte by byte therefore gets the same answer as one that sends everything at once,
 * and resuming is safe because nothing before the resume point can change the verdict. Bytes past
 * max_head_len are never looked at, which keeps that property at the size limit too.
 */
#include "http1.h"

#include <limits.h>
#include <string.h>

#include "common.h"

/* ---------------------------------------------------------------------------------------------
 * Character classes: one table lookup per byte on the hot path.
 * ------------------------------------------------------------------------------------------- */

enum {
    MX__C_TCHAR = 1,   /* RFC 9110 5.6.2 tchar */
    MX__C_TARGET = 2,  /* request-target bytes we accept: visible ASCII 0x21-0x7E */
    MX__C_VALUE = 4,   /* field-value bytes: HTAB, SP, VCHAR, obs-text (RFC 9110 5.5) */
    MX__C_HEX = 8,     /* HEXDIG */
    MX__C_QDTEXT = 16, /* quoted-string text: HTAB, SP, 0x21, 0x23-0x5B, 0x5D-0x7E, obs-text */
    MX__C_HOST = 32,   /* uri-host and port bytes (RFC 3986 3.2.2): unreserved, sub-delims, %:[] */
};

#define MX__ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define MX__DIGIT(c) ((c) >= '0' && (c) <= '9')
#define MX__TCHAR(c)                                                                               \
    (MX__ALPHA(c) || MX__DIGIT(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||       \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||          \
     (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define MX__HEX(c) (MX__DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define MX__VALUE(c) ((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f))
#define MX__QDTEXT(c) (MX__VALUE(c) && (c) != '"' && (c) != '\\')
#define MX__HOST(c)                                                                                \
    (MX__ALPHA(c) || MX__DIGIT(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' ||       \
     (c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||          \
     (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=' || (c) == '%' ||           \
     (c) == ':' || (c) == '[' || (c) == ']')
#define MX__CLS(c)                                                                                 \
    ((MX__TCHAR(c) ? MX__C_TCHAR : 0) | ((c) >= 0x21 && (c) <= 0x7e ? MX__C_TARGET : 0) |          \
     (MX__VALUE(c) ? MX__C_VALUE : 0) | (MX__HEX(c) ? MX__C_HEX : 0) |                             \
     (MX__QDTEXT(c) ? MX__C_QDTEXT : 0) | (MX__HOST(c) ? MX__C_HOST : 0))
#define MX__R4(b) MX__CLS(b), MX__CLS((b) + 1), MX__CLS((b) + 2), MX__CLS((b) + 3)
#define MX__R16(b) MX__R4(b), MX__R4((b) + 4), MX__R4((b) + 8), MX__R4((b) + 12)
#define MX__R64(b) MX__R16(b), MX__R16((b) + 16), MX__R16((b) + 32), MX__R16((b) + 48)

/* Built at compile time from the macros above, so the table cannot drift from the grammar. */
static const unsigned char mx__cls[256] = {MX__R64(0), MX__R64(64), MX__R64(128), MX__R64(192)};

static inline unsigned char mx__lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/*
 * Eight bytes at a time: the usual bit tricks answer "does any byte fall outside the class"
 * exactly (a borrow or carry only starts at a byte that is itself flagged), so a clean word is
 * skipped whole and anything else falls back to the byte loop.
 */
#define MX__ONES 0x0101010101010101ull
#define MX__HIGHS 0x8080808080808080ull

static inline uint64_t mx__load8(const unsigned char *p) {
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* Nonzero when some byte is < 0x21 or > 0x7e (not a request-target byte). */
static inline uint64_t mx__swar_not_target(uint64_t x) {
    uint64_t lt = (x - MX__ONES * 0x21) & ~x & MX__HIGHS;
    uint64_t gt = ((x + MX__ONES * 0x01) | x) & MX__HIGHS;
    return lt | gt;
}

/* Nonzero when some byte is < 0x20 or 0x7f; HTAB is flagged too and handled by the byte loop. */
static inline uint64_t mx__swar_not_value(uint64_t x) {
    uint64_t lt = (x - MX__ONES * 0x20) & ~x & MX__HIGHS;
    uint64_t y = x ^ (MX__ONES * 0x7f);
    uint64_t del = (y - MX__ONES) & ~y & MX__HIGHS;
    return lt | del;
}

/* ---------------------------------------------------------------------------------------------
 * Request head (RFC 9112 2-5)
 * ------------------------------------------------------------------------------------------- */

/*
 * Layout of the decisions, in byte order (each rejection happens at the byte that proves it):
 *   method:  tchar+ then one SP                         (other byte, or empty method -> 400)
 *   target:  0x21-0x7E+ then one SP                     (byte max_target_len + 1 -> 414)
 *   version: "HTTP/" DIGIT "." DIGIT CR LF              (mismatch -> 400; at the LF, not 1.0/1.1
 *                                                        -> 505)
 *   fields:  line start: CR -> LF ends the head; else, with 100 fields stored, 431; SP/HTAB
 *            -> 400 (obs-fold, RFC 9112 5.2, or whitespace before the first field, 2.2); then
 *            tchar+ ":" OWS value CR LF                 (non-tchar before ':' -> 400)
 * Running out of bytes anywhere is PARTIAL, or 431/414 once the limit is reached.
 *
 * Each part of that layout is a section with a label; a resumed call jumps to the label of the
 * section it stopped in. Sections that scan a run of one byte class (method, target, field name,
 * field value) resume at the byte where the run stopped; the version and the start of a field
 * line resume at their first byte, at most ten bytes back. Fields complete before the resume
 * point are not stored again, so a resumed call that finds the end of the head parses the whole
 * head once more from its first byte to fill in *req: about 2n bytes in all for an n-byte head.
 */
enum { MX__H_METHOD = 0, MX__H_TARGET, MX__H_VERSION, MX__H_LINE, MX__H_NAME, MX__H_VALUE };

/* Forgets the head in progress (the examined counter runs on across heads). */
static void mx__head_reset(mx_http1_head_state_t *st) {
    st->pos = st->mark = 0;
    st->section = MX__H_METHOD;
    st->num_headers = 0;
}

int mx_http1_parse_request(const char *buf, size_t len, size_t max_head_len, size_t max_target_len,
                           mx_http1_request_t *req, int *status, mx_http1_head_state_t *state) {
    mx_http1_head_state_t scratch = {0};
    mx_http1_head_state_t *st = state ? state : &scratch;
    const unsigned char *const start = (const unsigned char *)buf;
    if (max_head_len > INT_MAX) /* the head length is returned as an int */
        max_head_len = INT_MAX;
    /* Never look past max_head_len: a head that has not ended there is too long whatever the
     * later bytes say, and ignoring them keeps the verdict independent of how bytes arrive. */
    const unsigned char *const end = start + (len < max_head_len ? len : max_head_len);
    if (st->pos > (size_t)(end - start) || st->section > MX__H_VALUE)
        mx__head_reset(st); /* fewer bytes than last time: not the same head, start over */
    const unsigned char *const resume = start + st->pos;
    const unsigned char *p = resume;
    /* where the current section began: the target, the version, a field line or its name */
    const unsigned char *mark = start + st->mark;
    int section = (int)st->section;
    const unsigned char *value = p;
    size_t name_len = 0;
    int major, minor;

    req->num_headers = st->num_headers;
    switch (section) {
    case MX__H_TARGET:
        goto target;
    case MX__H_VERSION:
        goto version;
    case MX__H_LINE:
        goto line;
    case MX__H_NAME:
        goto name;
    case MX__H_VALUE:
        goto value;
    default:
        break;
    }

    /* method = token (RFC 9112 3.1) */
    while (p < end && (mx__cls[*p] & MX__C_TCHAR))
        p++;
    if (p == end)
        goto partial;
    if (*p != ' ' || p == start)
        goto bad;
    req->method = buf;
    req->method_len = (size_t)(p - start);
    p++;
    section = MX__H_TARGET;
    mark = p;

target:
    /* request-target (RFC 9112 3.2): we take any visible ASCII and leave the form to the router;
     * SP, CTL, DEL and non-ASCII bytes are all rejected here. */
    while (end - p >= 8 && !mx__swar_not_target(mx__load8(p)))
        p += 8;
    while (p < end && (mx__cls[*p] & MX__C_TARGET))
        p++;
    /* Bytes up to the stopping byte were all valid, so an over-long target was proved before
     * whatever stopped the scan: 414 wins over a later bad byte. */
    if ((size_t)(p - mark) > max_target_len) {
        *status = 414;
        goto invalid;
    }
    if (p == end)
        goto partial;
    if (*p != ' ' || p == mark) /* exactly one SP between the parts, and a non-empty target */
        goto bad;
    req->target = (const char *)mark;
    req->target_len = (size_t)(p - mark);
    p++;
    section = MX__H_VERSION;
    mark = p;

version:
    /* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 2.3), then CRLF. */
    if (MX_LIKELY(end - p >= 10) && memcmp(p, "HTTP/1.", 7) == 0 && (p[7] == '1' || p[7] == '0') &&
        p[8] == '\r' && p[9] == '\n') {
        major = 1;
        minor = p[7] - '0';
        p += 10;
    } else {
        static const char proto[5] = {'H', 'T', 'T', 'P', '/'};
        for (int i = 0; i < 5; i++, p++) {
            if (p == end)
                goto partial;
            if (*p != (unsigned char)proto[i])
                goto bad;
        }
        if (p == end)
            goto partial;
        if (!MX__DIGIT(*p))
            goto bad;
        major = *p++ - '0';
        if (p == end)
            goto partial;
        if (*p++ != '.')
            goto bad;
        if (p == end)
            goto partial;
        if (!MX__DIGIT(*p))
            goto bad;
        minor = *p++ - '0';
        if (p == end)
            goto partial;
        if (*p++ != '\r')
            goto bad;
        if (p == end)
            goto partial;
        if (*p++ != '\n')
            goto bad;
        /* Well-formed but not ours. RFC 9110 6.2 would let us answer 1.2 as 1.1; we are strict
         * and only speak the two versions that exist. */
        if (major != 1 || minor > 1) {
            *status = 505;
            goto invalid;
        }
    }
    req->minor_version = minor;

    /* field lines (RFC 9112 5) */
    for (;;) {
        section = MX__H_LINE;
        mark = p;
    line:
        if (p == end)
            goto partial;
        if (*p == '\r') {
            if (++p == end)
                goto partial;
            if (*p != '\n')
                goto bad;
            p++;
            break;
        }
        if (req->num_headers == MX_HTTP1_MAX_HEADERS) {
            /* a new field starts (its first byte is not CR) and there is no room for it; an
             * obs-fold line would have been a 400, but it is too late to matter */
            *status = 431;
            goto invalid;
        }
        section = MX__H_NAME;
        mark = p;
    name:
        while (p < end && (mx__cls[*p] & MX__C_TCHAR))
            p++;
        if (p == end)
            goto partial;
        /* Anything but ':' after the name: whitespace before the colon (RFC 9112 5.1), a bare LF,
         * obs-fold or a blank-ish line starting with SP/HTAB (5.2, 2.2), or a CTL. */
        if (*p != ':' || p == mark)
            goto bad;
        name_len = (size_t)(p - mark);
        p++;
        section = MX__H_VALUE; /* mark stays on the name */
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        value = p;
    value:
        /* A resumed call lands here with p inside the OWS or the value: both are value bytes,
         * so the check is the same; only the stored field would be off, and it is re-parsed. */
        while (end - p >= 8 && !mx__swar_not_value(mx__load8(p)))
            p += 8;
        while (p < end && (mx__cls[*p] & MX__C_VALUE))
            p++;
        if (p == end)
            goto partial;
        if (*p != '\r') /* NUL, a CTL, DEL or a bare LF inside the value */
            goto bad;
        if (p + 1 == end) /* stop on the CR, so a resumed value scan ends on it at once */
            goto partial;
        if (p[1] != '\n')
            goto bad;
        const unsigned char *vend = p;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        p += 2;
        mx_header_t *h = &req->headers[req->num_headers++];
        h->name = (const char *)mark;
        h->name_len = name_len;
        h->value = (const char *)value;
        h->value_len = (size_t)(vend - value);
    }

    /* The head is complete. A call that resumed past its start stored only the fields after the
     * resume point, so parse it once more from the first byte (this is the "full parse runs
     * once" half of the cost). */
    st->examined += (size_t)(p - resume);
    if (resume != start) {
        mx__head_reset(st);
        return mx_http1_parse_request(buf, len, max_head_len, max_target_len, req, status, st);
    }
    mx__head_reset(st);
    return (int)(p - start);

partial:
    st->examined += (size_t)(end - resume);
    if (len >= max_head_len) {
        /* The head cannot end within the limit. When the request line alone already fills more
         * than max_target_len bytes, the target is what the client should shorten. */
        *status = (section <= MX__H_VERSION && max_head_len > max_target_len) ? 414 : 431;
        mx__head_reset(st);
        return MX_HTTP1_INVALID;
    }
    /* The version and a line's first two bytes are re-read from their start next time; every
     * other section continues from the byte where this scan ran out. */
    if (section == MX__H_VERSION || section == MX__H_LINE)
        p = mark;
    st->pos = (size_t)(p - start);
    st->mark = (size_t)(mark - start);
    st->section = (unsigned)section;
    st->num_headers = (unsigned)req->num_headers;
    return MX_HTTP1_PARTIAL;

bad:
    *status = 400;
invalid:
    st->examined += (size_t)(p - resume) + (p < end);
    mx__head_reset(st);
    return MX_HTTP1_INVALID;
}

/* ---------------------------------------------------------------------------------------------
 * Framing and connection fields (RFC 9112 6, 9.3; RFC 9110 7.2, 7.8, 10.1.1)
 * ------------------------------------------------------------------------------------------- */

/* Inlined by analyze(); the exported mx_http1_name_eq wraps it. */
static inline int mx__name_eq(const char *name, size_t len, const char *lower_lit, size_t lit_len) {
    if (len != lit_len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (mx__lower((unsigned char)name[i]) != (unsigned char)lower_lit[i])
            return 0;
    return 1;
}

int mx_http1_name_eq(const char *name, size_t len, const char *lower_lit, size_t lit_len) {
    return mx__name_eq(name, len, lower_lit, lit_len);
}

int mx_http1_is_token(const char *s, size_t len) {
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!(mx__cls[(unsigned char)s[i]] & MX__C_TCHAR))
            return 0;
    return 1;
}

int mx_http1_is_field_value(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!(mx__cls[(unsigned char)s[i]] & MX__C_VALUE))
            return 0;
    return 1;
}

#define MX__EQ(s, n, lit) mx__name_eq((s), (n), lit, sizeof(lit) - 1)

/*
 * Steps through a comma-separated list (RFC 9110 5.6.1), across one field value. Empty elements
 * are skipped as the RFC requires; each element comes back with its OWS trimmed. Returns 0 at the
 * end of the list.
 */
static int mx__list_next(const char **pos, const char *end, const char **el, size_t *el_len) {
    while (*pos < end) {
        const char *s = *pos;
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *e = comma ? comma : end;
        *pos = comma ? comma + 1 : end;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (s < e) {
            *el = s;
            *el_len = (size_t)(e - s);
            return 1;
        }
    }
    return 0;
}

int mx_http1_analyze(const mx_http1_request_t *req, mx_http1_info_t *info, int *status) {
    int bad = 0, unimplemented = 0, expectation_failed = 0;
    int saw_cl = 0, saw_te = 0, saw_upgrade = 0;
    int te_codings = 0, te_chunked = 0, te_last_chunked = 0, te_other = 0;
    int conn_close = 0, conn_keep_alive = 0, conn_upgrade = 0, expect_continue = 0;
    int64_t content_length = -1;
    unsigned num_host = 0;
    const char *host = NULL;
    size_t host_len = 0;

    for (size_t i = 0; i < req->num_headers; i++) {
        const mx_header_t *h = &req->headers[i];
        const char *v = h->value, *vend = h->value + h->value_len;
        const char *el;
        size_t el_len;
        /* switch on the length first, so most fields cost one comparison */
        switch (h->name_len) {
        case 4:
            if (!MX__EQ(h->name, 4, "host"))
                break;
            /* RFC 9112 3.2: more than one Host, or an invalid value, is a 400 on any version.
             * Host = uri-host [":" port]; we check the character set, not the structure. */
            if (num_host++ == 0) {
                host = v;
                host_len = h->value_len;
                for (size_t k = 0; k < host_len; k++)
                    if (!(mx__cls[(unsigned char)v[k]] & MX__C_HOST))
                        bad = 1;
            }
            break;
        case 6:
            if (!MX__EQ(h->name, 6, "expect"))
                break;
            /* RFC 9110 10.1.1: 100-continue is the only expectation defined. */
            while (mx__list_next(&v, vend, &el, &el_len)) {
                if (MX__EQ(el, el_len, "100-continue"))
                    expect_continue = 1;
                else
                    expectation_failed = 1;
            }
            break;
        case 7:
            if (MX__EQ(h->name, 7, "upgrade") && h->value_len > 0)
                saw_upgrade = 1;
            break;
        case 10:
            if (!MX__EQ(h->name, 10, "connection"))
                break;
            /* RFC 9110 7.6.1: a list of connection options; unknown ones are ignored here. */
            while (mx__list_next(&v, vend, &el, &el_len)) {
                if (MX__EQ(el, el_len, "close"))
                    conn_close = 1;
                else if (MX__EQ(el, el_len, "keep-alive"))
                    conn_keep_alive = 1;
                else if (MX__EQ(el, el_len, "upgrade"))
                    conn_upgrade = 1;
            }
            break;
        case 14:
            if (!MX__EQ(h->name, 14, "content-length"))
                break;
            /* RFC 9112 6.3: a repeated or list-valued Content-Length is an unrecoverable framing
             * error. We also refuse the "identical values" case the RFC permits: a smuggling
             * defence costs nothing to a real client. */
            if (saw_cl++ || h->value_len == 0) {
                bad = 1;
                break;
            }
            content_length = 0;
            for (size_t k = 0; k < h->value_len; k++) {
                unsigned char c = (unsigned char)v[k];
                if (!MX__DIGIT(c) || content_length > (INT64_MAX - (c - '0')) / 10) {
                    bad = 1;
                    content_length = -1;
                    break;
                }
                content_length = content_length * 10 + (c - '0');
            }
            break;
        case 17:
            if (!MX__EQ(h->name, 17, "transfer-encoding"))
                break;
            /* RFC 9112 6.1: the codings of every Transfer-Encoding field form one list, in
             * order; chunked must be the last one and may appear only once. */
            saw_te = 1;
            while (mx__list_next(&v, vend, &el, &el_len)) {
                size_t n = 0;
                while (n < el_len && (mx__cls[(unsigned char)el[n]] & MX__C_TCHAR))
                    n++;
                int is_chunked = MX__EQ(el, n, "chunked");
                if (n < el_len) {
                    /* something after the coding name: only "; parameters" is allowed, and
                     * chunked has no parameters */
                    size_t k = n;
                    while (k < el_len && (el[k] == ' ' || el[k] == '\t'))
                        k++;
                    if (n == 0 || is_chunked || k == el_len || el[k] != ';')
                        bad = 1;
                }
                te_codings++;
                te_chunked += is_chunked;
                te_other += !is_chunked;
                te_last_chunked = is_chunked;
            }
            break;
        default:
            break;
        }
    }

    if (saw_te) {
        if (saw_cl || req->minor_version == 0) /* RFC 9112 6.1, 6.3 item 3 */
            bad = 1;
        else if (te_codings == 0 || !te_last_chunked || te_chunked > 1) /* 6.3 item 4 */
            bad = 1;
        else if (te_other) /* 6.1: a coding we do not understand */
            unimplemented = 1;
    }
    if (num_host > 1 || (num_host == 0 && req->minor_version == 1))
        bad = 1;

    info->content_length = saw_te ? -1 : content_length;
    info->chunked = (saw_te && !bad && !unimplemented) ? 1 : 0;
    /* RFC 9112 9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive"; "close" wins. */
    info->keep_alive = !conn_close && (req->minor_version == 1 || conn_keep_alive);
    /* RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored. */
    info->expect_continue = expect_continue && req->minor_version == 1;
    /* RFC 9110 7.8: Upgrade in an HTTP/1.0 request MUST be ignored. */
    info->upgrade = conn_upgrade && saw_upgrade && req->minor_version == 1;
    info->num_host = num_host;
    info->host = host;
    info->host_len = host_len;

    if (bad) {
        *status = 400;
        return MX_HTTP1_INVALID;
    }
    if (unimplemented) {
        *status = 501;
        return MX_HTTP1_INVALID;
    }
    if (expectation_failed) {
        *status = 417;
        return MX_HTTP1_INVALID;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Chunked transfer coding (RFC 9112 7.1)
 * ------------------------------------------------------------------------------------------- */

/* One state per grammar position. The states of the size line come first and those of the
 * trailer section after the data states, so the line-length accounting is two range checks.
 *
 *   chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-val = token / quoted-string
 *   last-chunk = 1*("0") [ chunk-ext ] CRLF
 *   trailer-section = *( field-line CRLF ), then CRLF
 */
enum {
    MX__CH_SIZE_START = 0, /* first hex digit of a size (zero-initialized state) */
    MX__CH_SIZE,           /* more hex digits */
    MX__CH_SIZE_BWS,       /* BWS that must be followed by ';' */
    MX__CH_EXT_NAME_BWS,   /* after ';': BWS, then a name */
    MX__CH_EXT_NAME,       /* in a name */
    MX__CH_EXT_AFTER_NAME, /* BWS after a name: '=' or ';' next */
    MX__CH_EXT_VAL_BWS,    /* after '=': BWS, then a token or a quoted string */
    MX__CH_EXT_VAL_TOKEN,  /* in a token value */
    MX__CH_EXT_QS,         /* in a quoted-string value */
    MX__CH_EXT_QS_ESC,     /* after a backslash in a quoted string */
    MX__CH_EXT_AFTER_QS,   /* after the closing quote */
    MX__CH_SIZE_LF,        /* after the CR that ends the size line */
    MX__CH_DATA,           /* copying remaining payload bytes */
    MX__CH_DATA_CR,        /* CRLF that must follow the payload */
    MX__CH_DATA_LF,
    MX__CH_TRAILER_START, /* start of a trailer line, or the final CRLF */
    MX__CH_TRAILER_NAME,  /* in a field name */
    MX__CH_TRAILER_VALUE, /* after the colon, up to CR */
    MX__CH_TRAILER_LF,    /* after the CR of a field line */
    MX__CH_END_LF,        /* after the CR of the final empty line */
    MX__CH_DONE,          /* body complete; nothing more is consumed */
    MX__CH_ERROR,         /* sticky: every later call fails too */
};

#define MX__CH_MAX_LINE 4096     /* a size line or a trailer line, CRLF included */
#define MX__CH_MAX_TRAILER 16384 /* the whole trailer section, final CRLF included */

ssize_t mx_chunked_decode(mx_chunked_t *d, const char *in, size_t len, char *out, size_t *out_len,
                          int *done) {
    const unsigned char *p = (const unsigned char *)in;
    const unsigned char *const end = p + len;
    size_t w = 0;
    int st = d->state;

    if (st == MX__CH_ERROR)
        goto fail;
    while (p < end && st != MX__CH_DONE) {
        if (st == MX__CH_DATA) {
            size_t avail = (size_t)(end - p);
            size_t n = d->remaining < avail ? (size_t)d->remaining : avail;
            if (out + w != (const char *)p) /* out == in: already in place after chunk 1 */
                memmove(out + w, p, n);
            w += n;
            p += n;
            d->remaining -= n;
            if (d->remaining == 0)
                st = MX__CH_DATA_CR;
            continue;
        }
        unsigned char c = *p++;
        if (st <= MX__CH_SIZE_LF) {
            if (++d->line_len > MX__CH_MAX_LINE)
                goto fail;
        } else if (st >= MX__CH_TRAILER_START) {
            if (++d->line_len > MX__CH_MAX_LINE || ++d->trailer_len > MX__CH_MAX_TRAILER)
                goto fail;
        }
        switch (st) {
        case MX__CH_SIZE_START: /* no sign, no "0x", no leading whitespace */
        case MX__CH_SIZE:
            if (mx__cls[c] & MX__C_HEX) {
                unsigned v = MX__DIGIT(c) ? c - '0' : (c | 0x20) - 'a' + 10;
                if (d->remaining > ((uint64_t)INT64_MAX - v) / 16) /* past 2^63 - 1 */
                    goto fail;
                d->remaining = d->remaining * 16 + v;
                st = MX__CH_SIZE;
            } else if (st == MX__CH_SIZE_START) {
                goto fail;
            } else if (c == ';') {
                st = MX__CH_EXT_NAME_BWS;
            } else if (c == ' ' || c == '\t') {
                st = MX__CH_SIZE_BWS;
            } else if (c == '\r') {
                st = MX__CH_SIZE_LF;
            } else {
                goto fail;
            }
            break;
        case MX__CH_SIZE_BWS: /* BWS is only allowed before ';' */
            if (c == ';')
                st = MX__CH_EXT_NAME_BWS;
            else if (c != ' ' && c != '\t')
                goto fail;
            break;
        case MX__CH_EXT_NAME_BWS:
            if (mx__cls[c] & MX__C_TCHAR)
                st = MX__CH_EXT_NAME;
            else if (c != ' ' && c != '\t')
                goto fail;
            break;
        case MX__CH_EXT_NAME:
            if (mx__cls[c] & MX__C_TCHAR)
                break;
            if (c == '=')
                st = MX__CH_EXT_VAL_BWS;
            else if (c == ';')
                st = MX__CH_EXT_NAME_BWS;
            else if (c == ' ' || c == '\t')
                st = MX__CH_EXT_AFTER_NAME;
            else if (c == '\r')
                st = MX__CH_SIZE_LF;
            else
                goto fail;
            break;
        case MX__CH_EXT_AFTER_NAME:
            if (c == '=')
                st = MX__CH_EXT_VAL_BWS;
            else if (c == ';')
                st = MX__CH_EXT_NAME_BWS;
            else if (c != ' ' && c != '\t')
                goto fail;
            break;
        case MX__CH_EXT_VAL_BWS:
            if (mx__cls[c] & MX__C_TCHAR)
                st = MX__CH_EXT_VAL_TOKEN;
            else if (c == '"')
                st = MX__CH_EXT_QS;
            else if (c != ' ' && c != '\t')
                goto fail;
            break;
        case MX__CH_EXT_VAL_TOKEN:
        case MX__CH_EXT_AFTER_QS:
            if (st == MX__CH_EXT_VAL_TOKEN && (mx__cls[c] & MX__C_TCHAR))
                break;
            if (c == ';')
                st = MX__CH_EXT_NAME_BWS;
            else if (c == ' ' || c == '\t')
                st = MX__CH_SIZE_BWS;
            else if (c == '\r')
                st = MX__CH_SIZE_LF;
            else
                goto fail;
            break;
        case MX__CH_EXT_QS: /* RFC 9110 5.6.4 */
            if (c == '"')
                st = MX__CH_EXT_AFTER_QS;
            else if (c == '\\')
                st = MX__CH_EXT_QS_ESC;
            else if (!(mx__cls[c] & MX__C_QDTEXT))
                goto fail;
            break;
        case MX__CH_EXT_QS_ESC: /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
            if (!(mx__cls[c] & MX__C_VALUE))
                goto fail;
            st = MX__CH_EXT_QS;
            break;
        case MX__CH_SIZE_LF:
            if (c != '\n')
                goto fail;
            if (d->limit && d->remaining > d->limit - d->total) {
                d->state = MX__CH_ERROR;
                *out_len = 0;
                *done = 0;
                return MX_HTTP1_TOO_LARGE;
            }
            d->total += d->remaining;
            d->line_len = 0;
            st = d->remaining ? MX__CH_DATA : MX__CH_TRAILER_START;
            break;
        case MX__CH_DATA_CR:
            if (c != '\r')
                goto fail;
            st = MX__CH_DATA_LF;
            break;
        case MX__CH_DATA_LF:
            if (c != '\n')
                goto fail;
            st = MX__CH_SIZE_START;
            break;
        case MX__CH_TRAILER_START:
            if (c == '\r')
                st = MX__CH_END_LF;
            else if (mx__cls[c] & MX__C_TCHAR) /* no obs-fold, no empty name */
                st = MX__CH_TRAILER_NAME;
            else
                goto fail;
            break;
        case MX__CH_TRAILER_NAME:
            if (c == ':')
                st = MX__CH_TRAILER_VALUE;
            else if (!(mx__cls[c] & MX__C_TCHAR))
                goto fail;
            break;
        case MX__CH_TRAILER_VALUE:
            if (c == '\r')
                st = MX__CH_TRAILER_LF;
            else if (!(mx__cls[c] & MX__C_VALUE))
                goto fail;
            break;
        case MX__CH_TRAILER_LF:
            if (c != '\n')
                goto fail;
            d->line_len = 0;
            st = MX__CH_TRAILER_START;
            break;
        case MX__CH_END_LF:
            if (c != '\n')
                goto fail;
            st = MX__CH_DONE;
            break;
        default: /* unreachable: DATA and DONE are handled above */
            goto fail;
        }
    }
    d->state = st;
    *out_len = w;
    *done = st == MX__CH_DONE;
    return (ssize_t)((const char *)p - in);

fail:
    d->state = MX__CH_ERROR;
    *out_len = w;
    *done = 0;
    return MX_HTTP1_INVALID;
}
