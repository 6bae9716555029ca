/*
 * multipart.c: the streaming multipart/form-data parser (RFC 7578 on top of RFC 2046 5.1) and
 * the boundary extractor for its Content-Type.
 *
 * Pure C over caller-owned memory, no I/O and no globals but constant data, so whichever thread
 * owns a request (normally a worker reading its body) drives that request's parser. The state is
 * a fixed struct plus one header buffer allocated in mx_mp_init, so memory never grows with the
 * body.
 *
 * How the body is scanned. The pattern searched for is delim = CRLF "--" boundary (see
 * mx__mp_find for the search itself). Because a boundary cannot contain CR or LF (RFC 2046
 * bchars), CR occurs in the pattern only at its first byte, so a prefix of the pattern can never
 * overlap another one except at a CR. A candidate that runs into the end of the input is held
 * back: the parser only remembers how many bytes of delim matched (those bytes ARE
 * delim[0..match), so no copy is needed), and when the next input proves it was not a delimiter
 * they are handed out as DATA pointing into delim itself, and scanning resumes at the byte that
 * broke the match (any CR among the held bytes is their first one, so nothing is missed). At most
 * dlen - 1 = boundary length + 3 bytes are ever held back.
 *
 * Everything after the boundary (padding, CRLF or "--", and the part headers) is small and goes
 * through byte-at-a-time state machines, so every decision is taken at the byte that proves it,
 * whatever the input split.
 */
#include "multipart.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

enum {
    MX__MP_PREAMBLE, /* looking for the first delimiter; bytes are discarded */
    MX__MP_BODY,     /* inside a part's body, looking for the next delimiter */
    MX__MP_DTAIL,    /* just after "--" boundary: padding, CR or '-' */
    MX__MP_DPAD,     /* in transport padding: SP/HTAB or CR */
    MX__MP_DLF,      /* CR seen after the boundary: LF starts a part */
    MX__MP_DCLOSE,   /* '-' seen after the boundary: '-' ends the body */
    MX__MP_HLINE,    /* at the start of a header line (CR here ends the block) */
    MX__MP_HNAME,    /* inside a header name */
    MX__MP_HVALUE,   /* inside a header value */
    MX__MP_HLF,      /* CR seen at the end of a header line */
    MX__MP_HEND,     /* CR seen on an empty line: LF ends the header block */
    MX__MP_DONE,     /* close delimiter seen: swallow the epilogue */
    MX__MP_ERROR     /* sticky: p->err says why */
};

/* ---------------------------------------------------------------------------------------------
 * Character classes (RFC 9110 5.6.2 tchar, 5.5 field-value; RFC 2046 5.1.1 bchars; RFC 8187
 * attr-char)
 * ------------------------------------------------------------------------------------------- */

static inline int mx__mp_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline int mx__mp_tchar(unsigned char c) {
    return mx__mp_alnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A byte allowed in a header value: HTAB, SP, VCHAR, obs-text (no NUL, CR, LF, other CTL, DEL). */
static inline int mx__mp_vchar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static inline int mx__mp_bchar(unsigned char c) {
    return mx__mp_alnum(c) || (c != 0 && strchr("'()+_,-./:=? ", c) != NULL);
}

/* RFC 8187 3.2.1 attr-char (the unencoded bytes of an ext-value). */
static inline int mx__mp_attr_char(unsigned char c) {
    return mx__mp_alnum(c) || (c != 0 && strchr("!#$&+-.^_`|~", c) != NULL);
}

static inline int mx__mp_hexval(unsigned char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Case-insensitive ASCII comparison against a lowercase literal. */
static int mx__mp_eq(const char *s, size_t n, const char *lower_lit) {
    size_t k = strlen(lower_lit);
    if (n != k)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c | 0x20);
        if (c != (unsigned char)lower_lit[i])
            return 0;
    }
    return 1;
}

static inline void mx__mp_ows(const char *s, size_t n, size_t *i) {
    while (*i < n && (s[*i] == ' ' || s[*i] == '\t'))
        (*i)++;
}

static size_t mx__mp_token(const char *s, size_t n, size_t *i) {
    size_t start = *i;
    while (*i < n && mx__mp_tchar((unsigned char)s[*i]))
        (*i)++;
    return *i - start;
}

/*
 * Reads a parameter value at s[*i..n): a token, or a quoted-string whose quoted-pairs are
 * decoded (RFC 9110 5.6.4). Writes the value to out (NULL: only validate) unless it would exceed
 * cap bytes. Returns 0 with *olen set and *i past the value, or -1. The decoded value is never
 * longer than its source, so a value decoded into a buffer as large as the source always fits.
 */
static int mx__mp_value(const char *s, size_t n, size_t *i, char *out, size_t cap, size_t *olen) {
    size_t o = 0;
    if (*i < n && s[*i] == '"') {
        size_t k = *i + 1;
        for (;;) {
            if (k == n)
                return -1; /* unterminated */
            unsigned char c = (unsigned char)s[k++];
            if (c == '"')
                break;
            if (c == '\\') {
                if (k == n)
                    return -1;
                c = (unsigned char)s[k++];
            }
            if (!mx__mp_vchar(c))
                return -1;
            if (o == cap)
                return -1;
            if (out)
                out[o] = (char)c;
            o++;
        }
        *i = k;
    } else {
        size_t start = *i;
        o = mx__mp_token(s, n, i);
        if (o == 0 || o > cap)
            return -1;
        if (out)
            memcpy(out, s + start, o);
    }
    *olen = o;
    return 0;
}

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static int mx__mp_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf)
            k = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* past U+10FFFF */
        } else
            return 0;
        if (n - i - 1 < k || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
        i += k + 1;
    }
    return 1;
}

/*
 * Decodes an RFC 8187 ext-value (charset "'" [language] "'" value-chars) in place. Only UTF-8 is
 * decodable: we hand out UTF-8 and other charsets would need a conversion that can grow the
 * value. Returns 0 with the decoded length in *out_len, or -1 when the value is malformed, not
 * UTF-8, or decodes to a control character (a filename with CR, LF or NUL is no filename).
 */
static int mx__mp_ext_value(char *v, size_t n, size_t *out_len) {
    size_t i = 0, o = 0;
    if (n < 6 || !mx__mp_eq(v, 5, "utf-8") || v[5] != '\'')
        return -1;
    i = 6;
    while (i < n && v[i] != '\'') { /* language tag (RFC 5646), loosely: ALPHA / DIGIT / "-" */
        if (!mx__mp_alnum((unsigned char)v[i]) && v[i] != '-')
            return -1;
        i++;
    }
    if (i == n)
        return -1;
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '%') {
            int hi = i + 2 < n ? mx__mp_hexval((unsigned char)v[i + 1]) : -1;
            int lo = hi >= 0 ? mx__mp_hexval((unsigned char)v[i + 2]) : -1;
            if (lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
            if (c < 0x20 || c == 0x7f)
                return -1;
        } else if (!mx__mp_attr_char(c))
            return -1;
        v[o++] = (char)c; /* o <= i: decoding in place never overtakes the reader */
    }
    if (!mx__mp_utf8((const unsigned char *)v, o))
        return -1;
    *out_len = o;
    return 0;
}

static int mx__mp_valid_boundary(const char *b, size_t n) {
    if (n < 1 || n > MX_MULTIPART_BOUNDARY_MAX || b[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!mx__mp_bchar((unsigned char)b[i]))
            return 0;
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Content-Type: multipart/form-data; boundary=...
 * ------------------------------------------------------------------------------------------- */

/* media-type = type "/" subtype parameters; parameters = *( OWS ";" OWS [ parameter ] );
 * parameter = name "=" ( token / quoted-string ), no whitespace around "=" (RFC 9110 5.6.6). */
int mx_multipart_boundary(const char *content_type, size_t len, char *out, size_t cap) {
    const char *s = content_type;
    size_t i = 0, t;
    char b[MX_MULTIPART_BOUNDARY_MAX];
    size_t blen = 0;
    int seen = 0;

    mx__mp_ows(s, len, &i);
    t = i;
    if (!mx__mp_eq(s + t, mx__mp_token(s, len, &i), "multipart"))
        return -1;
    if (i == len || s[i] != '/')
        return -1;
    i++;
    t = i;
    if (!mx__mp_eq(s + t, mx__mp_token(s, len, &i), "form-data"))
        return -1;
    for (;;) {
        mx__mp_ows(s, len, &i);
        if (i == len)
            break;
        if (s[i] != ';')
            return -1;
        i++;
        mx__mp_ows(s, len, &i);
        if (i == len || s[i] == ';')
            continue; /* an empty parameter is allowed */
        t = i;
        size_t nlen = mx__mp_token(s, len, &i);
        if (nlen == 0 || i == len || s[i] != '=')
            return -1;
        i++;
        size_t vlen;
        if (mx__mp_eq(s + t, nlen, "boundary")) {
            if (seen++) /* which of two boundaries would the sender use? */
                return -1;
            if (mx__mp_value(s, len, &i, b, sizeof(b), &blen) < 0)
                return -1;
        } else if (mx__mp_value(s, len, &i, NULL, SIZE_MAX, &vlen) < 0)
            return -1;
    }
    if (!seen || !mx__mp_valid_boundary(b, blen) || cap < blen + 1)
        return -1;
    memcpy(out, b, blen);
    out[blen] = '\0';
    return (int)blen;
}

/* ---------------------------------------------------------------------------------------------
 * Parser setup
 * ------------------------------------------------------------------------------------------- */

int mx_mp_init(mx_mp_t *p, const char *boundary, size_t blen, const mx_mp_limits_t *lim) {
    memset(p, 0, sizeof(*p));
    if (!mx__mp_valid_boundary(boundary, blen))
        return MX_EINVAL;
    p->max_headers =
        lim && lim->max_part_headers ? lim->max_part_headers : MX_MP_DEFAULT_MAX_PART_HEADERS;
    p->max_parts = lim && lim->max_parts ? lim->max_parts : MX_MP_DEFAULT_MAX_PARTS;
    if (p->max_headers > SIZE_MAX / 4)
        return MX_EINVAL;
    p->hbuf = malloc(2 * p->max_headers);
    if (!p->hbuf)
        return MX_ENOMEM;
    memcpy(p->delim, "\r\n--", 4);
    memcpy(p->delim + 4, boundary, blen);
    p->dlen = 4 + blen;
    /* RFC 2046 5.1.1: the first delimiter may start the body without the CRLF before it (the
     * CRLF belongs to the preamble). Pretending it was already seen makes "--boundary" at
     * offset 0 match; any other first byte breaks the pretend match, which is then discarded
     * like the rest of the preamble. */
    p->match = 2;
    p->state = MX__MP_PREAMBLE;
    return 0;
}

void mx_mp_free(mx_mp_t *p) {
    free(p->hbuf);
    p->hbuf = NULL;
}

int mx_mp_finish(const mx_mp_t *p) {
    if (p->err)
        return p->err;
    return p->state == MX__MP_DONE ? 0 : MX_MP_E_SYNTAX;
}

/* ---------------------------------------------------------------------------------------------
 * Delimiter search
 * ------------------------------------------------------------------------------------------- */

/*
 * Continues a held-back partial match (p->match > 0) with in[0..len), len > 0. Returns 1 when
 * delim is now complete (*n bytes of in used), 0 when in matched to its end (*n = len), -1 when
 * it proved the held bytes were not a delimiter (nothing used).
 */
static int mx__mp_continue(const mx_mp_t *p, const unsigned char *in, size_t len, size_t *n) {
    size_t need = p->dlen - p->match;
    size_t k = len < need ? len : need;
    if (memcmp(in, p->delim + p->match, k) != 0)
        return -1;
    *n = k;
    return k == need;
}

/*
 * Finds in in[0..len) the first CR that starts either a whole delim (*full = 1) or a prefix of
 * delim running to the end of the input (*full = 0). Returns its index, or len when there is
 * neither. Each candidate is compared byte by byte up to its first mismatch, and the scan resumes
 * AT that byte: the bytes skipped equal delim[1..k), which holds no CR, so no candidate is missed
 * and no byte is looked at twice. The scan is linear whatever the data (and the client picks both
 * the boundary and the data). memchr finds the next CR unless the mismatching byte is one.
 * Random binary (file uploads) has a CR every 256 bytes, so memchr stopped that often: on x86-64
 * the scan looks for the delimiter's fixed first four bytes "\r\n--" 16 positions at a time
 * instead (SSE2, part of the x86-64 baseline), and no other CR can start a delimiter that fits
 * in the input; only the last few bytes, where a delimiter may begin without fitting, go
 * through memchr. glibc's memmem was fast on text but fell to 0.07 GB/s on a body of '-' with
 * the boundary "-"; this stays linear whatever the data.
 */
static size_t mx__mp_next_cr(const unsigned char *in, size_t i, size_t len) {
#if defined(__SSE2__)
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n'), dash = _mm_set1_epi8('-');
    while (len - i >= 16 + 3) { /* positions i..i+15, each with its 3 following bytes */
        __m128i a = _mm_loadu_si128((const __m128i *)(in + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(in + i + 1));
        __m128i c = _mm_loadu_si128((const __m128i *)(in + i + 2));
        __m128i e = _mm_loadu_si128((const __m128i *)(in + i + 3));
        __m128i m = _mm_and_si128(_mm_and_si128(_mm_cmpeq_epi8(a, cr), _mm_cmpeq_epi8(b, lf)),
                                  _mm_and_si128(_mm_cmpeq_epi8(c, dash), _mm_cmpeq_epi8(e, dash)));
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (bits)
            return i + (size_t)__builtin_ctz(bits);
        i += 16;
    }
#endif
    const unsigned char *p = memchr(in + i, '\r', len - i);
    return p ? (size_t)(p - in) : len;
}

static size_t mx__mp_find(const mx_mp_t *p, const unsigned char *in, size_t len, int *full) {
    const unsigned char *d = (const unsigned char *)p->delim;
    const size_t dlen = p->dlen;
    size_t i = 0;
    while (i < len) {
        if (in[i] != '\r') {
            i = mx__mp_next_cr(in, i, len);
            if (i == len)
                return len;
        }
        /* in[i] is CR, delim's first byte */
        size_t avail = len - i, lim = avail < dlen ? avail : dlen, k = 1;
        while (k < lim && in[i + k] == d[k])
            k++;
        if (k == dlen) {
            *full = 1;
            return i;
        }
        if (k == avail) {
            *full = 0;
            return i;
        }
        i += k;
    }
    return len;
}

/* ---------------------------------------------------------------------------------------------
 * Part headers
 * ------------------------------------------------------------------------------------------- */

/*
 * Feeds header bytes from in[*pos..len) through the line grammar of RFC 7578 4.8 / RFC 5322
 * (strict: CRLF only, no obs-fold, token ':' value), storing each line in hbuf. Returns 1 when
 * the blank line ending the block has been read (*pos just past it), 0 when the input ran out,
 * or an error.
 */
static int mx__mp_header_bytes(mx_mp_t *p, const unsigned char *in, size_t len, size_t *pos) {
    size_t i = *pos;
    int st = p->state;
    int rc = 0;
    while (i < len) {
        unsigned char c = in[i++];
        switch (st) {
        case MX__MP_HLINE:
            if (c == '\r') {
                st = MX__MP_HEND; /* the blank line's CR is not part of the block */
                continue;
            }
            /* SP/HTAB here is obs-fold (RFC 5322 3.2.2, RFC 9112 5.2): refused */
            if (!mx__mp_tchar(c))
                goto bad;
            st = MX__MP_HNAME;
            break;
        case MX__MP_HNAME:
            if (c == ':')
                st = MX__MP_HVALUE;
            else if (!mx__mp_tchar(c)) /* whitespace before ':', CTLs, bare CR/LF */
                goto bad;
            break;
        case MX__MP_HVALUE:
            if (c == '\r')
                st = MX__MP_HLF;
            else if (!mx__mp_vchar(c)) /* NUL, bare LF, other CTLs, DEL */
                goto bad;
            break;
        case MX__MP_HLF:
            if (c != '\n')
                goto bad;
            st = MX__MP_HLINE;
            break;
        default: /* MX__MP_HEND */
            if (c != '\n')
                goto bad;
            rc = 1;
            goto out;
        }
        if (p->hlen == p->max_headers) {
            rc = MX_MP_E_HEADERS_TOO_BIG;
            goto out;
        }
        p->hbuf[p->hlen++] = (char)c;
    }
out:
    p->state = st;
    *pos = i;
    return rc;
bad:
    rc = MX_MP_E_SYNTAX;
    goto out;
}

/*
 * Content-Disposition: form-data; name="x"; filename="y" (RFC 7578 4.2, RFC 6266 4.1):
 * disposition-type *( OWS ";" OWS param ), param = token OWS "=" OWS ( token / quoted-string ).
 * Values are decoded into the second half of hbuf. Each decoded value is no longer than its
 * source and the sources are disjoint pieces of the header block, so they all fit.
 */
static int mx__mp_disposition(mx_mp_t *p, const char *s, size_t n, mx_mp_event_t *ev) {
    char *dec = p->hbuf + p->max_headers;
    size_t dpos = 0, i = 0;
    const char *fstar = NULL, *fname = NULL;
    size_t fstar_len = 0, fname_len = 0;
    int seen_fstar = 0;

    if (!mx__mp_eq(s, mx__mp_token(s, n, &i), "form-data"))
        return MX_MP_E_SYNTAX;
    for (;;) {
        mx__mp_ows(s, n, &i);
        if (i == n)
            break;
        if (s[i] != ';')
            return MX_MP_E_SYNTAX;
        i++;
        mx__mp_ows(s, n, &i);
        size_t t = i;
        size_t nlen = mx__mp_token(s, n, &i);
        if (nlen == 0) /* includes a trailing ';' */
            return MX_MP_E_SYNTAX;
        mx__mp_ows(s, n, &i);
        if (i == n || s[i] != '=')
            return MX_MP_E_SYNTAX;
        i++;
        mx__mp_ows(s, n, &i);
        char *out = dec + dpos;
        size_t olen;
        if (mx__mp_value(s, n, &i, out, SIZE_MAX, &olen) < 0)
            return MX_MP_E_SYNTAX;
        /* RFC 6266 4.1: a repeated parameter makes the field invalid. */
        if (mx__mp_eq(s + t, nlen, "name")) {
            if (ev->name)
                return MX_MP_E_SYNTAX;
            ev->name = out;
            ev->name_len = olen;
        } else if (mx__mp_eq(s + t, nlen, "filename")) {
            if (fname)
                return MX_MP_E_SYNTAX;
            fname = out;
            fname_len = olen;
        } else if (mx__mp_eq(s + t, nlen, "filename*")) {
            if (seen_fstar++)
                return MX_MP_E_SYNTAX;
            if (mx__mp_ext_value(out, olen, &fstar_len) == 0)
                fstar = out;
        } else
            continue; /* other parameters are ignored (RFC 7578 4.2); out is reused */
        dpos += olen;
    }
    if (!ev->name)
        return MX_MP_E_SYNTAX; /* RFC 7578 4.2: the name parameter is required */
    if (fstar) {
        ev->filename = fstar;
        ev->filename_len = fstar_len;
    } else if (fname) {
        ev->filename = fname;
        ev->filename_len = fname_len;
    }
    return 0;
}

/* Reads the complete header block in hbuf into a PART event. */
static int mx__mp_part(mx_mp_t *p, mx_mp_event_t *ev) {
    const char *h = p->hbuf, *end = p->hbuf + p->hlen;
    const char *cd = NULL;
    size_t cd_len = 0;
    ev->headers = p->hbuf;
    ev->headers_len = p->hlen;
    while (h < end) {
        /* mx__mp_header_bytes guarantees each line is token ':' value CRLF, no CR in value */
        const char *colon = memchr(h, ':', (size_t)(end - h));
        const char *v = colon + 1;
        const char *ve = memchr(v, '\r', (size_t)(end - v));
        size_t nlen = (size_t)(colon - h);
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (mx__mp_eq(h, nlen, "content-disposition")) {
            if (cd)
                return MX_MP_E_SYNTAX;
            cd = v;
            cd_len = (size_t)(ve - v);
        } else if (mx__mp_eq(h, nlen, "content-type")) {
            if (ev->content_type)
                return MX_MP_E_SYNTAX;
            ev->content_type = v;
            ev->content_type_len = (size_t)(ve - v);
        }
        h = (const char *)memchr(colon, '\r', (size_t)(end - colon)) + 2;
    }
    if (!cd)
        return MX_MP_E_SYNTAX; /* RFC 7578 4.2: each part MUST have a Content-Disposition */
    return mx__mp_disposition(p, cd, cd_len, ev);
}

/* ---------------------------------------------------------------------------------------------
 * The event loop
 * ------------------------------------------------------------------------------------------- */

int mx_mp_next(mx_mp_t *p, const char *in_, size_t len, size_t *consumed, mx_mp_event_t *ev) {
    const unsigned char *in = (const unsigned char *)in_;
    size_t pos = 0, n, i;
    int rc = MX_MP_NEED_MORE, r, full = 0;

    memset(ev, 0, sizeof(*ev));
    *consumed = 0;
    if (p->err) {
        ev->type = p->err;
        return p->err;
    }

    while (pos < len) {
        switch (p->state) {
        case MX__MP_PREAMBLE:
            if (p->match) {
                r = mx__mp_continue(p, in + pos, len - pos, &n);
                if (r < 0) {
                    p->match = 0; /* preamble bytes: discarded; rescan this byte */
                    break;
                }
                pos += n;
                if (r == 0) {
                    p->match += n;
                    break;
                }
                p->match = 0;
                p->state = MX__MP_DTAIL;
                break;
            }
            i = mx__mp_find(p, in + pos, len - pos, &full);
            if (i == len - pos) {
                pos = len;
            } else if (full) {
                pos += i + p->dlen;
                p->state = MX__MP_DTAIL;
            } else {
                p->match = len - pos - i;
                pos = len;
            }
            break;

        case MX__MP_BODY:
            if (p->match) {
                r = mx__mp_continue(p, in + pos, len - pos, &n);
                if (r < 0) {
                    /* The held bytes were data after all: they equal delim[0..match). */
                    ev->data = p->delim;
                    ev->len = p->match;
                    p->match = 0;
                    rc = MX_MP_DATA;
                    goto out;
                }
                pos += n;
                if (r == 0) {
                    p->match += n;
                    break;
                }
                p->match = 0;
                p->state = MX__MP_DTAIL;
                rc = MX_MP_PART_END;
                goto out;
            }
            i = mx__mp_find(p, in + pos, len - pos, &full);
            if (i > 0) {
                ev->data = (const char *)in + pos;
                ev->len = i;
                rc = MX_MP_DATA;
            }
            if (i == len - pos) {
                pos = len;
            } else if (full) {
                if (i > 0) {
                    pos += i; /* report the data first; the delimiter on the next call */
                } else {
                    pos += p->dlen;
                    p->state = MX__MP_DTAIL;
                    rc = MX_MP_PART_END;
                }
            } else {
                p->match = len - pos - i; /* hold back the possible delimiter start */
                pos = len;
            }
            if (rc != MX_MP_NEED_MORE)
                goto out;
            break;

        /* RFC 2046 5.1.1: dash-boundary transport-padding CRLF, or close-delimiter. */
        case MX__MP_DTAIL:
        case MX__MP_DPAD: {
            unsigned char c = in[pos++];
            if (c == '-' && p->state == MX__MP_DTAIL)
                p->state = MX__MP_DCLOSE;
            else if (c == ' ' || c == '\t')
                p->state = MX__MP_DPAD;
            else if (c == '\r')
                p->state = MX__MP_DLF;
            else {
                rc = MX_MP_E_SYNTAX; /* the boundary is a prefix of a longer line */
                goto fail;
            }
            break;
        }
        case MX__MP_DLF:
            if (in[pos++] != '\n') {
                rc = MX_MP_E_SYNTAX;
                goto fail;
            }
            if (p->nparts == p->max_parts) {
                rc = MX_MP_E_TOO_MANY_PARTS;
                goto fail;
            }
            p->nparts++;
            p->hlen = 0;
            p->state = MX__MP_HLINE;
            break;
        case MX__MP_DCLOSE:
            if (in[pos++] != '-') {
                rc = MX_MP_E_SYNTAX;
                goto fail;
            }
            p->state = MX__MP_DONE;
            rc = MX_MP_DONE;
            goto out;

        case MX__MP_HLINE:
        case MX__MP_HNAME:
        case MX__MP_HVALUE:
        case MX__MP_HLF:
        case MX__MP_HEND:
            r = mx__mp_header_bytes(p, in, len, &pos);
            if (r < 0) {
                rc = r;
                goto fail;
            }
            if (r == 1) {
                r = mx__mp_part(p, ev);
                if (r < 0) {
                    rc = r;
                    goto fail;
                }
                p->state = MX__MP_BODY;
                rc = MX_MP_PART;
                goto out;
            }
            break;

        default: /* MX__MP_DONE: the epilogue is ignored (RFC 2046 5.1.1) */
            pos = len;
            break;
        }
    }
    if (p->state == MX__MP_DONE)
        rc = MX_MP_DONE;
out:
    *consumed = pos;
    ev->type = rc;
    return rc;
fail:
    memset(ev, 0, sizeof(*ev));
    ev->type = rc;
    p->err = rc;
    p->state = MX__MP_ERROR;
    return rc;
}
