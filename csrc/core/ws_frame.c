/*
 * ws_frame.c: WebSocket frames (RFC 6455 5, with permessage-deflate from RFC 7692 6-7): the
 * incremental reader that turns a client's bytes into messages and control events (unmasking,
 * reassembling fragments, inflating, checking UTF-8 as bytes arrive), and the writers for the
 * server's frames (headers, deflate, close frames).
 *
 * No I/O and no locks. A reader belongs to the thread that feeds it (the I/O thread); a deflater
 * to the thread that sends a connection's messages, one at a time; the header and close-frame
 * builders run on any thread. The reader never reads outside the ranges it is given.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "compress.h"
#include "ws.h"

/* The codes a Close frame may carry (RFC 6455 7.4.1, 7.4.2): both the reader and build_close
 * check against this one list. */
int mx_ws_close_code_valid(int code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* ---------------------------------------------------------------------------------------------
 * Frame reader (RFC 6455 5.2-5.5, RFC 7692 6-7.2.2)
 * ------------------------------------------------------------------------------------------- */

enum {
    MX__RS_HEAD,    /* reading a frame header */
    MX__RS_PAYLOAD, /* reading a frame's payload */
    MX__RS_CLOSED,  /* a Close frame arrived: the rest is discarded */
    MX__RS_DEAD     /* a protocol error: every call returns err */
};

/* A delivered message buffer at most this large is kept for the next message. */
#define MX__KEEP_BUF 4096
/* Compressed payload is unmasked through a stack buffer of this size before inflating. */
#define MX__ZCHUNK 4096

static const uint8_t mx__empty[1] = {0};
static const uint8_t mx__z_tail[4] = {0x00, 0x00, 0xff, 0xff};

struct mx_ws_reader {
    size_t max_len;
    int state, err;
    int deflate;    /* permessage-deflate negotiated: RSV1 may start a compressed message */
    int reset_each; /* client_no_context_takeover: each message is its own deflate stream */
    int z_init;     /* zs is initialised (from the first compressed message on) */
    int z_fresh;    /* inflate sits at a stream or message boundary and has had no input since */
    z_stream zs;

    /* the frame being read */
    uint8_t head[14]; /* 2 fixed bytes, up to 8 length bytes, 4 mask bytes */
    unsigned head_have, head_need;
    int fin, rsv1, opcode;
    uint8_t mask[4];
    unsigned mask_pos; /* offset into mask of the next payload byte */
    uint64_t left;     /* payload bytes of this frame still to come */

    /* the data message being assembled (msg_op 0: none in progress) */
    int msg_op, msg_z;
    uint8_t *msg;
    size_t msg_len, msg_cap;
    mx_utf8_t utf8;
    int delivered; /* a MESSAGE event went out; the next call drops or reuses its buffer */

    /* the control frame being read; its payload is at most 125 bytes (RFC 6455 5.5) */
    uint8_t ctl[125];
    size_t ctl_len;
};

mx_ws_reader_t *mx_ws_reader_new(size_t max_message_len, const mx_ws_deflate_params_t *deflate) {
    mx_ws_reader_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    /* No message can come near SIZE_MAX / 4 bytes anyway; the clamp keeps max_len + 1 (the
     * inflater writes one byte past the limit to detect it) and every 64-bit frame length at or
     * above 2^62 clear of overflow. */
    r->max_len = max_message_len < SIZE_MAX / 4 ? max_message_len : SIZE_MAX / 4;
    r->state = MX__RS_HEAD;
    r->deflate = deflate != NULL;
    r->reset_each = deflate != NULL && deflate->client_no_context_takeover;
    return r;
}

void mx_ws_reader_free(mx_ws_reader_t *r) {
    if (r == NULL)
        return;
    if (r->z_init)
        inflateEnd(&r->zs);
    free(r->msg);
    free(r);
}

size_t mx_ws_reader_buffered(const mx_ws_reader_t *r) { return r->msg_cap; }

uint8_t *mx_ws_reader_take(mx_ws_reader_t *r, size_t *len) {
    uint8_t *p = NULL;
    *len = 0;
    if (r->delivered && r->msg != NULL && r->msg_len > 0) {
        p = r->msg;
        *len = r->msg_len;
        r->msg = NULL;
        r->msg_len = r->msg_cap = 0;
    }
    return p;
}

/* XORs src[0..n) with the mask (starting at mask offset pos) into dst; dst may equal src. */
typedef uint8_t mx__v16 __attribute__((vector_size(16))); /* one SSE2/NEON register */

static void mx__unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
                       unsigned pos) {
    uint8_t m8[16];
    uint64_t m;
    mx__v16 mv;
    size_t i = 0;
    for (int k = 0; k < 16; k++)
        m8[k] = mask[(pos + (unsigned)k) & 3];
    memcpy(&m, m8, 8);
    memcpy(&mv, m8, 16);
    /* 16 and 8 are multiples of 4, so the rotated mask stays in phase across the steps. */
    for (; n - i >= 32; i += 32) {
        mx__v16 a, b;
        memcpy(&a, src + i, 16);
        memcpy(&b, src + i + 16, 16);
        a ^= mv;
        b ^= mv;
        memcpy(dst + i, &a, 16);
        memcpy(dst + i + 16, &b, 16);
    }
    for (; n - i >= 8; i += 8) {
        uint64_t x;
        memcpy(&x, src + i, 8);
        x ^= m;
        memcpy(dst + i, &x, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ m8[i & 7];
}

/* Makes room for at least need bytes of message, growing geometrically but never past hint
 * (what the frame announced, or the inflate limit) unless need itself is larger. */
static int mx__reserve(mx_ws_reader_t *r, size_t need, size_t hint) {
    if (need <= r->msg_cap)
        return 0;
    size_t cap = r->msg_cap < 256 ? 256 : r->msg_cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > hint)
        cap = hint;
    if (cap < need)
        cap = need;
    uint8_t *p = realloc(r->msg, cap);
    if (p == NULL)
        return MX_WS_EINTERNAL;
    r->msg = p;
    r->msg_cap = cap;
    return 0;
}

/* Counts got freshly inflated bytes at msg + msg_len: text is validated up to the limit, then
 * anything past the limit is too big. Validating first keeps the verdict independent of how
 * much output one inflate call happened to produce. */
static int mx__took_output(mx_ws_reader_t *r, size_t got) {
    size_t within = got;
    if (r->msg_len + got > r->max_len)
        within = r->max_len - r->msg_len;
    if (r->msg_op == MX_WS_OP_TEXT && mx_utf8_feed(&r->utf8, r->msg + r->msg_len, within) < 0)
        return MX_WS_EDATA;
    r->msg_len += got;
    return r->msg_len > r->max_len ? MX_WS_ETOOBIG : 0;
}

/*
 * A deflate stream ended (a block with BFINAL set, RFC 7692 7.2.3.4). What follows in the
 * message, if anything, starts a new stream. Unless the client resets its context per message
 * it may still refer back to the old data, so the window must survive: inflateResetKeep (exported
 * and declared by zlib.h, though not in the manual) restarts the stream and keeps the window,
 * with no copy. Copying the window out and back as a dictionary would work too, but would cost
 * 64 KiB of memory traffic for every two-byte stream a client cares to send.
 */
static int mx__z_restart(mx_ws_reader_t *r) {
    int zrc = r->reset_each ? inflateReset(&r->zs) : inflateResetKeep(&r->zs);
    return zrc == Z_OK ? 0 : MX_WS_EINTERNAL;
}

/*
 * Inflates src[0..n) into the message. The buffer grows only while output keeps coming and never
 * past max_len + 1 bytes: one byte past the limit proves the message too big.
 */
static int mx__inflate(mx_ws_reader_t *r, const uint8_t *src, size_t n) {
    size_t limit = r->max_len + 1;
    int rc;
    if (n == 0)
        return 0;
    r->zs.next_in = (Bytef *)(uintptr_t)src; /* zlib does not write through next_in */
    r->zs.avail_in = (uInt)n;                /* n <= MX__ZCHUNK */
    r->z_fresh = 0;
    for (;;) {
        if (r->msg_len == r->msg_cap) {
            size_t want = r->msg_cap < 1024 ? 1024 : r->msg_cap * 2;
            rc = mx__reserve(r, r->msg_len + 1, want < limit ? want : limit);
            if (rc < 0)
                return rc;
        }
        size_t room = r->msg_cap - r->msg_len;
        if (room > UINT_MAX)
            room = UINT_MAX;
        r->zs.next_out = r->msg + r->msg_len;
        r->zs.avail_out = (uInt)room;
        int zrc = inflate(&r->zs, Z_SYNC_FLUSH);
        rc = mx__took_output(r, room - r->zs.avail_out);
        if (rc < 0)
            return rc;
        switch (zrc) {
        case Z_STREAM_END:
            rc = mx__z_restart(r);
            if (rc < 0)
                return rc;
            if (r->zs.avail_in == 0) {
                r->z_fresh = 1;
                return 0;
            }
            continue;
        case Z_OK:
        case Z_BUF_ERROR: /* no progress possible: input used up and nothing pending */
            break;
        case Z_DATA_ERROR:
        case Z_NEED_DICT:
            return MX_WS_EDATA;
        default:
            return MX_WS_EINTERNAL;
        }
        /* inflate stops only when the input is used up or the output is full; with room left,
         * everything decodable so far has been written. */
        if (r->zs.avail_out != 0)
            return 0;
    }
}

/* Ends a compressed message: RFC 7692 7.2.2 appends 00 00 ff ff and inflates the lot. */
static int mx__inflate_finish(mx_ws_reader_t *r) {
    int rc;
    /* Nothing since the last boundary (an empty payload, or a stream that ended exactly at the
     * message's end): there is no block to close. */
    if (!r->z_fresh) {
        rc = mx__inflate(r, mx__z_tail, sizeof mx__z_tail);
        if (rc < 0)
            return rc;
        /* The tail is an empty stored block; after it inflate must wait for a new block header
         * (zlib reports that as bit 128 of data_type). Anything else means the client's data was
         * cut inside a block, and the next message would be decoded from a broken state. */
        if (!r->z_fresh && !(r->zs.data_type & 128))
            return MX_WS_EDATA;
    }
    if (r->reset_each && inflateReset(&r->zs) != Z_OK)
        return MX_WS_EINTERNAL;
    r->z_fresh = 1;
    return 0;
}

/*
 * The length bytes of the header are all in (the 4 mask bytes follow): records the payload
 * length and refuses an uncompressed data frame that would take the message past max_len, before
 * a byte of it is buffered. Compressed sizes say nothing about the inflated size; the inflater
 * checks those.
 */
static int mx__length_known(mx_ws_reader_t *r) {
    unsigned len7 = r->head[1] & 0x7F;
    uint64_t len = len7;
    if (len7 == 126) {
        len = (uint64_t)r->head[2] << 8 | r->head[3];
    } else if (len7 == 127) {
        len = 0;
        for (int k = 0; k < 8; k++)
            len = len << 8 | r->head[2 + k];
    }
    r->left = len;
    if (r->opcode >= 8)
        return 0;
    int compressed = r->opcode == MX_WS_OP_CONT ? r->msg_z : r->rsv1;
    size_t have = r->opcode == MX_WS_OP_CONT ? r->msg_len : 0;
    if (!compressed && len > r->max_len - have)
        return MX_WS_ETOOBIG;
    return 0;
}

/* Reads one header byte. Returns 1 when the header is complete, 0 when more is needed, or an
 * error. Each check runs on the byte that decides it. */
static int mx__head_byte(mx_ws_reader_t *r, uint8_t b) {
    r->head[r->head_have++] = b;
    if (r->head_have == 1) {
        r->fin = b >> 7;
        r->rsv1 = (b >> 6) & 1;
        r->opcode = b & 0x0F;
        if (b & 0x30)
            return MX_WS_EPROTO; /* RSV2, RSV3: no extension we speak defines them (5.2) */
        switch (r->opcode) {
        case MX_WS_OP_CLOSE:
        case MX_WS_OP_PING:
        case MX_WS_OP_PONG:
            /* Control frames are never fragmented (5.5) nor compressed (RFC 7692 6). */
            if (!r->fin || r->rsv1)
                return MX_WS_EPROTO;
            return 0;
        case MX_WS_OP_CONT:
            /* RSV1 marks only the first frame of a compressed message (RFC 7692 6.1). */
            if (r->msg_op == 0 || r->rsv1)
                return MX_WS_EPROTO;
            return 0;
        case MX_WS_OP_TEXT:
        case MX_WS_OP_BINARY:
            if (r->msg_op != 0 || (r->rsv1 && !r->deflate))
                return MX_WS_EPROTO; /* 5.4: a new message may not interrupt a fragmented one */
            return 0;
        default:
            return MX_WS_EPROTO; /* a reserved opcode (5.2) */
        }
    }
    if (r->head_have == 2) {
        unsigned len7 = b & 0x7F;
        if (!(b & 0x80))
            return MX_WS_EPROTO; /* a client must mask every frame (5.1) */
        if (r->opcode >= 8 && len7 > 125)
            return MX_WS_EPROTO; /* control payloads are at most 125 bytes (5.5) */
        r->head_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
    } else if (r->head_have == 3 && (r->head[1] & 0x7F) == 127 && (b & 0x80)) {
        return MX_WS_EPROTO; /* the most significant bit of a 64-bit length must be 0 (5.2) */
    }
    if (r->head_have == r->head_need - 4)
        return mx__length_known(r);
    return r->head_have == r->head_need;
}

/* The header is complete: sets up the payload and any message it starts. */
static int mx__frame_begin(mx_ws_reader_t *r) {
    memcpy(r->mask, r->head + r->head_need - 4, 4);
    r->mask_pos = 0;
    r->head_have = 0;
    r->state = MX__RS_PAYLOAD;

    if (r->opcode >= 8) {
        r->ctl_len = 0;
        return 0;
    }
    if (r->opcode != MX_WS_OP_CONT) {
        r->msg_op = r->opcode;
        r->msg_z = r->rsv1;
        r->msg_len = 0;
        mx_utf8_init(&r->utf8);
        if (r->msg_z) {
            if (!r->z_init) {
                memset(&r->zs, 0, sizeof r->zs);
                /* -15: raw DEFLATE with the largest window, which decodes data made with any
                 * smaller one, so client_max_window_bits never needs to reach zlib. */
                if (inflateInit2(&r->zs, -15) != Z_OK)
                    return MX_WS_EINTERNAL;
                r->z_init = 1;
            }
            r->z_fresh = 1;
        }
    }
    return 0;
}

/* Takes in[0..n) of the current frame's payload (n <= left). */
static int mx__payload(mx_ws_reader_t *r, const uint8_t *in, size_t n) {
    int rc;
    if (r->opcode >= 8) {
        mx__unmask(r->ctl + r->ctl_len, in, n, r->mask, r->mask_pos);
        r->ctl_len += n;
    } else if (r->msg_z) {
        uint8_t chunk[MX__ZCHUNK];
        unsigned pos = r->mask_pos;
        for (size_t off = 0; off < n;) {
            size_t k = n - off < sizeof chunk ? n - off : sizeof chunk;
            mx__unmask(chunk, in + off, k, r->mask, pos);
            pos = (pos + (unsigned)k) & 3;
            rc = mx__inflate(r, chunk, k);
            if (rc < 0)
                return rc;
            off += k;
        }
    } else {
        /* Grow towards what the frame announced (not past it: a client that announces a big
         * frame and trickles it in only costs memory for what it actually sent, times two). */
        size_t frame_end = r->msg_len + (size_t)r->left;
        rc = mx__reserve(r, r->msg_len + n, frame_end);
        if (rc < 0)
            return rc;
        uint8_t *dst = r->msg + r->msg_len;
        mx__unmask(dst, in, n, r->mask, r->mask_pos);
        if (r->msg_op == MX_WS_OP_TEXT && mx_utf8_feed(&r->utf8, dst, n) < 0)
            return MX_WS_EDATA;
        r->msg_len += n;
    }
    r->mask_pos = (r->mask_pos + (unsigned)(n & 3)) & 3;
    return 0;
}

/* The frame's payload is complete: produces an event when it completes one. */
static int mx__frame_end(mx_ws_reader_t *r, mx_ws_event_t *ev) {
    r->state = MX__RS_HEAD;
    if (r->opcode >= 8) {
        ev->opcode = r->opcode;
        ev->data = r->ctl;
        ev->len = r->ctl_len;
        if (r->opcode == MX_WS_OP_PING) {
            ev->type = MX_WS_EV_PING;
        } else if (r->opcode == MX_WS_OP_PONG) {
            ev->type = MX_WS_EV_PONG;
        } else {
            /* 5.5.1: an optional 2-byte code, then an optional UTF-8 reason. */
            if (r->ctl_len == 1)
                return MX_WS_EPROTO;
            ev->close_code = 1005;
            if (r->ctl_len >= 2) {
                ev->close_code = r->ctl[0] << 8 | r->ctl[1];
                if (!mx_ws_close_code_valid(ev->close_code))
                    return MX_WS_EPROTO;
                if (!mx_utf8_valid(r->ctl + 2, r->ctl_len - 2))
                    return MX_WS_EDATA;
                ev->data = r->ctl + 2;
                ev->len = r->ctl_len - 2;
            }
            ev->type = MX_WS_EV_CLOSE;
            r->state = MX__RS_CLOSED;
        }
        return 0;
    }
    if (!r->fin)
        return 0;
    if (r->msg_z) {
        int rc = mx__inflate_finish(r);
        if (rc < 0)
            return rc;
    }
    if (r->msg_op == MX_WS_OP_TEXT && !mx_utf8_complete(&r->utf8))
        return MX_WS_EDATA; /* the text ends inside a sequence (8.1) */
    ev->type = MX_WS_EV_MESSAGE;
    ev->opcode = r->msg_op;
    ev->data = r->msg != NULL ? r->msg : mx__empty;
    ev->len = r->msg_len;
    r->msg_op = 0;
    r->msg_z = 0;
    r->delivered = 1;
    return 0;
}

static ssize_t mx__fail(mx_ws_reader_t *r, int err, mx_ws_event_t *ev) {
    r->state = MX__RS_DEAD;
    r->err = err;
    ev->type = MX_WS_EV_NONE;
    ev->data = mx__empty;
    ev->len = 0;
    ev->close_code = 0;
    return err;
}

ssize_t mx_ws_read(mx_ws_reader_t *r, const uint8_t *in, size_t len, mx_ws_event_t *ev) {
    size_t pos = 0;
    int rc;
    ev->type = MX_WS_EV_NONE;
    ev->opcode = 0;
    ev->data = mx__empty;
    ev->len = 0;
    ev->close_code = 0;
    if (r->state == MX__RS_DEAD)
        return r->err;
    if (r->delivered) {
        /* The last message's buffer: the caller took it, or it is dropped now (a small one is
         * kept for the next message to save a malloc). */
        r->delivered = 0;
        r->msg_len = 0;
        if (r->msg_cap > MX__KEEP_BUF) {
            free(r->msg);
            r->msg = NULL;
            r->msg_cap = 0;
        }
    }
    if (r->state == MX__RS_CLOSED)
        return (ssize_t)len;

    while (pos < len) {
        if (r->state == MX__RS_HEAD) {
            rc = mx__head_byte(r, in[pos++]);
            if (rc < 0)
                return mx__fail(r, rc, ev);
            if (rc == 0)
                continue;
            rc = mx__frame_begin(r);
            if (rc < 0)
                return mx__fail(r, rc, ev);
        } else {
            size_t n = len - pos;
            if (n > r->left)
                n = (size_t)r->left;
            rc = mx__payload(r, in + pos, n);
            if (rc < 0)
                return mx__fail(r, rc, ev);
            pos += n;
            r->left -= n;
        }
        if (r->state == MX__RS_PAYLOAD && r->left == 0) {
            rc = mx__frame_end(r, ev);
            if (rc < 0)
                return mx__fail(r, rc, ev);
            if (ev->type != MX_WS_EV_NONE)
                return (ssize_t)pos;
        }
    }
    return (ssize_t)pos;
}

/* ---------------------------------------------------------------------------------------------
 * Writing frames (RFC 6455 5.2, RFC 7692 7.2.1)
 * ------------------------------------------------------------------------------------------- */

size_t mx_ws_frame_header(uint8_t out[10], int fin, int rsv1, int opcode, uint64_t len) {
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int k = 0; k < 8; k++)
        out[2 + k] = (uint8_t)(len >> (56 - 8 * k));
    return 10;
}

struct mx_ws_deflater {
    int window_bits;  /* passed to zlib negated (raw DEFLATE): 9..15 */
    int huffman_only; /* server_max_window_bits=8: no back-references at all */
    int no_context;   /* server_no_context_takeover */
    int z_init;
    z_stream zs;
};

mx_ws_deflater_t *mx_ws_deflater_new(const mx_ws_deflate_params_t *p) {
    mx_ws_deflater_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    int bits = p ? mx__ws_clamp_bits(p->server_max_window_bits) : 15;
    /* zlib refuses a raw stream with windowBits 8 (since 1.2.9). Huffman-only output has no
     * matches, so its window size is irrelevant and any client window can decode it. */
    d->huffman_only = bits == 8;
    d->window_bits = bits == 8 ? 9 : bits;
    d->no_context = p ? p->server_no_context_takeover : 0;
    return d;
}

void mx_ws_deflater_free(mx_ws_deflater_t *d) {
    if (d == NULL)
        return;
    if (d->z_init)
        deflateEnd(&d->zs);
    free(d);
}

/*
 * Compresses in[0..len) into a new buffer with headroom free bytes before the data. Sets *buf to
 * NULL when the result would not be shorter than the input; the output space is capped at that
 * size, so an incompressible message costs no more memory than itself.
 */
static int mx__deflate_into(mx_ws_deflater_t *d, const uint8_t *in, size_t len, size_t headroom,
                            uint8_t **buf, size_t *out_len) {
    *buf = NULL;
    *out_len = 0;
    if (len > SIZE_MAX / 2 - headroom)
        return 0;
    if (len == 0) { /* an empty stored block, RFC 7692 7.2.3.6: zlib would have nothing to flush */
        uint8_t *e = malloc(headroom + 1);
        if (!e)
            return MX_ENOMEM;
        e[headroom] = 0x00;
        *buf = e;
        *out_len = 1;
        return 0;
    }
    if (!d->z_init) {
        int rc = mx_deflate_init(&d->zs, Z_DEFAULT_COMPRESSION, -d->window_bits,
                                 d->huffman_only ? Z_HUFFMAN_ONLY : Z_DEFAULT_STRATEGY);
        if (rc != 0)
            return rc;
        d->z_init = 1;
    }

    /* Every message is compressed once compression is negotiated, even when that makes it a few
     * bytes longer: some clients (kosoku, running the Autobahn cases) mishandle uncompressed
     * messages on a compressed connection although RFC 7692 6 allows them. deflateBound plus
     * the sync flush's empty stored block (5 bytes, of which 00 00 ff ff is then cut) is room
     * enough for any input. */
    size_t cap = (size_t)deflateBound(&d->zs, (uLong)len) + 16;
    uint8_t *p = malloc(headroom + cap);
    if (p == NULL)
        return MX_ENOMEM;
    d->zs.next_in = (Bytef *)(uintptr_t)in;
    d->zs.next_out = p + headroom;
    size_t in_left = len, out_left = cap;
    int zrc, full = 0;
    for (;;) {
        uInt in_chunk = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
        uInt out_chunk = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
        int last = in_chunk == in_left;
        d->zs.avail_in = in_chunk;
        d->zs.avail_out = out_chunk;
        zrc = deflate(&d->zs, last ? Z_SYNC_FLUSH : Z_NO_FLUSH);
        in_left -= in_chunk - d->zs.avail_in;
        out_left -= out_chunk - d->zs.avail_out;
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            free(p);
            deflateReset(&d->zs);
            return zrc == Z_MEM_ERROR ? MX_ENOMEM : MX_EINVAL;
        }
        if (out_left == 0) {
            full = 1; /* it does not shrink: stop here */
            break;
        }
        /* With output space left, a sync flush that returns has written everything. */
        if (last && in_left == 0 && d->zs.avail_out != 0)
            break;
    }
    size_t n = cap - out_left;
    uint8_t *z = p + headroom;
    if (full || n < 4 || memcmp(z + n - 4, mx__z_tail, 4) != 0) {
        /* Sent uncompressed. Resetting is always allowed: the sender merely stops referring to
         * older messages, which the client's window still holds either way. */
        free(p);
        deflateReset(&d->zs);
        return 0;
    }
    if (d->no_context)
        deflateReset(&d->zs);
    *buf = p;
    *out_len = n - 4;
    return 0;
}

int mx_ws_deflate(mx_ws_deflater_t *d, const uint8_t *in, size_t len, uint8_t **out,
                  size_t *out_len) {
    uint8_t *p;
    int rc;
    *out = NULL;
    *out_len = 0;
    if (d == NULL || (in == NULL && len != 0))
        return MX_EINVAL;
    rc = mx__deflate_into(d, in, len, 0, &p, out_len);
    if (rc < 0 || p == NULL)
        return rc;
    /* Give back the slack: most messages shrink a lot. A failed shrink keeps the larger block. */
    uint8_t *small = realloc(p, *out_len > 0 ? *out_len : 1);
    *out = small != NULL ? small : p;
    return 0;
}

int mx_ws_build_frame(mx_ws_deflater_t *d, int opcode, const uint8_t *payload, size_t len,
                      uint8_t **out, size_t *out_len) {
    uint8_t hdr[10], *buf = NULL;
    size_t zlen = 0, hlen;
    int rc;
    *out = NULL;
    *out_len = 0;
    if (payload == NULL && len != 0)
        return MX_EINVAL;
    switch (opcode) {
    case MX_WS_OP_CLOSE:
    case MX_WS_OP_PING:
    case MX_WS_OP_PONG:
        if (len > 125)
            return MX_EINVAL;
        break;
    case MX_WS_OP_TEXT:
    case MX_WS_OP_BINARY:
        if (d != NULL) {
            /* Compress straight into the frame: the header's 10 bytes are left free in front,
             * and the frame is slid down over what the shorter header does not use. */
            rc = mx__deflate_into(d, payload, len, 10, &buf, &zlen);
            if (rc < 0)
                return rc;
        }
        break;
    default:
        return MX_EINVAL;
    }
    if (buf != NULL) {
        hlen = mx_ws_frame_header(hdr, 1, 1, opcode, zlen);
        memcpy(buf + 10 - hlen, hdr, hlen);
        if (hlen < 10)
            memmove(buf, buf + 10 - hlen, hlen + zlen);
        *out = buf;
        *out_len = hlen + zlen;
        return 0;
    }
    hlen = mx_ws_frame_header(hdr, 1, 0, opcode, len);
    if (len > SIZE_MAX - hlen)
        return MX_ENOMEM;
    buf = malloc(hlen + len);
    if (buf == NULL)
        return MX_ENOMEM;
    memcpy(buf, hdr, hlen);
    if (len > 0)
        memcpy(buf + hlen, payload, len);
    *out = buf;
    *out_len = hlen + len;
    return 0;
}

int mx_ws_build_close(int code, const char *reason, size_t reason_len, uint8_t **out,
                      size_t *out_len) {
    uint8_t payload[125];
    size_t n = 0;
    *out = NULL;
    *out_len = 0;
    if (code != 0 && code != 1005) {
        if (!mx_ws_close_code_valid(code))
            return MX_EINVAL;
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        n = 2;
        if (reason == NULL)
            reason_len = 0;
        /* 125 bytes of payload leave 123 for the reason; a cut inside a multi-byte sequence
         * backs up to that sequence's lead byte so the reason stays valid UTF-8. */
        if (reason_len > 123) {
            reason_len = 123;
            while (reason_len > 0 && ((unsigned char)reason[reason_len] & 0xC0) == 0x80)
                reason_len--;
        }
        if (reason_len > 0)
            memcpy(payload + 2, reason, reason_len);
        n += reason_len;
    }
    return mx_ws_build_frame(NULL, MX_WS_OP_CLOSE, payload, n, out, out_len);
}
