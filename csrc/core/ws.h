/*
 * ws.h: the WebSocket codec: opening-handshake helpers (RFC 6455 4.2) and permessage-deflate
 * negotiation (RFC 7692 7.1), in ws_handshake.c; an incremental reader for the frames a client
 * sends and writers for the frames the server sends, in ws_frame.c; and, through utf8.h, the
 * incremental UTF-8 validator (utf8.c). ws_conn.c and the binding include this one header.
 *
 * No I/O, no threads, no globals. The handshake, UTF-8 and frame-writing helpers are pure and may
 * run on any thread. A reader (mx_ws_reader_t) belongs to the one thread that feeds it, normally
 * the I/O thread; a deflater (mx_ws_deflater_t) holds a compression context and must be used by
 * one thread at a time (the caller serializes the frames of a connection anyway, because with
 * context takeover the order in which messages are compressed is the order they must be sent).
 * Everything allocates with malloc; memory handed to the caller is freed with free().
 */
#ifndef MX_WS_H
#define MX_WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common.h"
#include "utf8.h"

/* Opcodes (RFC 6455 5.2). 0x3-0x7 and 0xB-0xF are reserved. */
#define MX_WS_OP_CONT 0x0
#define MX_WS_OP_TEXT 0x1
#define MX_WS_OP_BINARY 0x2
#define MX_WS_OP_CLOSE 0x8
#define MX_WS_OP_PING 0x9
#define MX_WS_OP_PONG 0xA

/* Errors from mx_ws_read: minus the close code the server should send (RFC 6455 7.4.1). */
#define MX_WS_EPROTO (-1002)    /* protocol error */
#define MX_WS_EDATA (-1007)     /* invalid UTF-8 in a text message or close reason, or
                                   compressed data that does not inflate */
#define MX_WS_ETOOBIG (-1009)   /* message longer than max_message_len */
#define MX_WS_EINTERNAL (-1011) /* out of memory, or zlib failed in a way input cannot cause */

/* ---------------------------------------------------------------------------------------------
 * Handshake helpers (RFC 6455 4.2.1, 4.2.2), in ws_handshake.c
 * ------------------------------------------------------------------------------------------- */

/*
 * 1 if the comma-separated field value (RFC 9110 5.6.1 list syntax: OWS around items, empty
 * items allowed) holds an item equal to token, compared case-insensitively; else 0. An item
 * matches only as a whole ("websocket/13" is not "websocket"). Reads value[0..len) only.
 */
int mx_ws_token_list_has(const char *value, size_t len, const char *token);

/*
 * Checks a Sec-WebSocket-Key value and computes the Sec-WebSocket-Accept value for it
 * (RFC 6455 4.2.2 step 5.4): base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
 * Leading and trailing OWS are trimmed first. The key must be the base64 encoding (with "=="
 * padding, standard alphabet) of exactly 16 bytes: 24 characters. Writes the 28 characters and
 * a NUL into out and returns 0, or returns -1 (out untouched) when the key is invalid.
 */
int mx_ws_accept_key(const char *key, size_t key_len, char out[29]);

/*
 * Picks the subprotocol (RFC 6455 4.2.2 step 5.5 /subprotocol/): offered is the client's
 * Sec-WebSocket-Protocol value (several fields joined by ", "), supported an array of n names.
 * The FIRST name in the client's list that is also in supported wins (the client lists them in
 * its order of preference). Names compare exactly (case-sensitively), as protocol identifiers are
 * registered. Returns the index into supported, or -1 when there is no common name.
 */
int mx_ws_select_protocol(const char *offered, size_t len, const char *const *supported,
                          size_t n);

/* ---------------------------------------------------------------------------------------------
 * permessage-deflate negotiation (RFC 7692 7.1), in ws_handshake.c
 * ------------------------------------------------------------------------------------------- */

typedef struct mx_ws_deflate_params {
    int server_no_context_takeover; /* the server resets its compressor after each message */
    int client_no_context_takeover; /* the client resets its compressor after each message */
    int server_max_window_bits;     /* 8..15; 15 when not limited */
    int client_max_window_bits;     /* 8..15; 15 when not limited */
} mx_ws_deflate_params_t;

/* Internal (ws_handshake.c, ws_frame.c): a window size brought into the 8..15 bits RFC 7692 7.1.2
 * allows, for limits and parameters that did not come through negotiation. Any thread. */
static inline int mx__ws_clamp_bits(int b) { return b < 8 ? 8 : b > 15 ? 15 : b; }

/* Room for the longest response value mx_ws_negotiate_deflate writes, NUL included. */
#define MX_WS_DEFLATE_RESP_MAX 128

/*
 * offers: all Sec-WebSocket-Extensions values of the request joined by ", ". Walks the offers in
 * order and accepts the first permessage-deflate offer whose parameters are all valid (RFC 7692
 * 7.1: an unknown parameter, a parameter given twice, a value where none is allowed, a missing
 * value, or a window size that is not a plain 8..15 declines that offer; the next one is tried).
 * Values may be tokens or quoted-strings (RFC 6455 9.1). Offers of other extensions are skipped.
 * On acceptance fills *p, writes the response field VALUE, e.g.
 *   "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"
 * NUL-terminated into resp[0..resp_cap), and returns 1. Returns 0 when nothing acceptable was
 * offered or resp_cap is too small (MX_WS_DEFLATE_RESP_MAX is always enough); *p and resp are
 * then unspecified. The response echoes what the client asked for: its no_context_takeover
 * parameters, server_max_window_bits, and client_max_window_bits when the offer gave a value
 * (without a value the parameter only says the client could take a limit; none is set).
 */
int mx_ws_negotiate_deflate(const char *offers, size_t len, mx_ws_deflate_params_t *p, char *resp,
                            size_t resp_cap);

/*
 * As mx_ws_negotiate_deflate, with the server's own policy in limits (NULL: none):
 *   server_no_context_takeover = 1  always reset our compressor (saves nothing on memory, but
 *                                   makes every message independent);
 *   client_no_context_takeover = 1  always ask the client to reset its compressor;
 *   server_max_window_bits < 15     cap our compressor's window (RFC 7692 7.1.2.1 lets the
 *                                   server announce a smaller window than offered, or any when
 *                                   none was offered): halves memory per bit;
 *   client_max_window_bits < 15     cap the client's window when its offer allows (the offer
 *                                   must hold client_max_window_bits, RFC 7692 7.1.2.2).
 */
int mx_ws_negotiate_deflate_ex(const char *offers, size_t len,
                               const mx_ws_deflate_params_t *limits, mx_ws_deflate_params_t *p,
                               char *resp, size_t resp_cap);

/* ---------------------------------------------------------------------------------------------
 * Close codes (RFC 6455 7.4), in ws_frame.c
 * ------------------------------------------------------------------------------------------- */

/*
 * 1 if a Close frame from a peer may carry this code: 1000-1003, 1007-1014 (1012-1014 from the
 * IANA registry), or 3000-4999 (registered and private use). 1004-1006 and 1015 are never sent.
 */
int mx_ws_close_code_valid(int code);

/* ---------------------------------------------------------------------------------------------
 * Reading client frames (RFC 6455 5, RFC 7692 6-7), in ws_frame.c
 * ------------------------------------------------------------------------------------------- */

typedef struct mx_ws_reader mx_ws_reader_t;

#define MX_WS_EV_NONE 0
#define MX_WS_EV_MESSAGE 1
#define MX_WS_EV_PING 2
#define MX_WS_EV_PONG 3
#define MX_WS_EV_CLOSE 4

typedef struct mx_ws_event {
    int type;            /* MX_WS_EV_* */
    int opcode;          /* MESSAGE: MX_WS_OP_TEXT or MX_WS_OP_BINARY; others: the frame's */
    const uint8_t *data; /* payload: the message (inflated), the ping/pong payload, or the close
                            reason (UTF-8, without the code). Never NULL, even when len is 0.
                            Valid until the next mx_ws_read or mx_ws_reader_free */
    size_t len;
    int close_code; /* CLOSE: the code, or 1005 when the frame had no payload; else 0 */
} mx_ws_event_t;

/*
 * Creates a reader for one connection. Messages (all fragments together, after inflating) longer
 * than max_message_len bytes fail with MX_WS_ETOOBIG. deflate: the negotiated permessage-deflate
 * parameters, or NULL when the extension was not negotiated (then RSV1 is a protocol error).
 * Returns NULL on out of memory. Memory: the message being assembled (never more than
 * max_message_len + 1 bytes) plus, with deflate, zlib's inflate state (about 7 KiB, and a 32 KiB
 * window from the first compressed message on).
 */
mx_ws_reader_t *mx_ws_reader_new(size_t max_message_len, const mx_ws_deflate_params_t *deflate);

/* Frees the reader and any message it holds. NULL is a no-op. */
void mx_ws_reader_free(mx_ws_reader_t *r);

/*
 * Consumes up to len bytes of what the client sent. Returns the number of bytes consumed; when
 * an event completed, ev->type is not MX_WS_EV_NONE and the call stopped right after the frame
 * that completed it, so the caller handles that one event and calls again with the rest. When
 * no event completed, everything was consumed (the return value is len).
 *
 * Returns a negative MX_WS_E* code when the client broke the protocol; the close code to send is
 * its negation. The reader is then dead: every later call returns the same code.
 *   MX_WS_EPROTO   unmasked frame; RSV2/RSV3 set, or RSV1 without negotiated deflate, on a
 *                  control or continuation frame; a reserved opcode; a control frame without
 *                  FIN or longer than 125 bytes; a 64-bit length with the top bit set; a
 *                  continuation frame with no message in progress, or a text or binary frame
 *                  while one is; a close frame with a 1-byte payload or a code that
 *                  mx_ws_close_code_valid rejects.
 *   MX_WS_EDATA    invalid UTF-8 in a text message (checked as bytes arrive, across fragments
 *                  and after inflating) or in a close reason; compressed data that is corrupt or
 *                  does not end on a block boundary.
 *   MX_WS_ETOOBIG  the message exceeds max_message_len: decided on a frame's announced length
 *                  before any of it is buffered, or while inflating, so a compressed bomb never
 *                  grows the buffer past max_message_len + 1.
 *   MX_WS_EINTERNAL out of memory (or an impossible zlib state).
 * Header checks fire on the byte that decides them (the too-big check on the last length byte),
 * UTF-8 checks of a data message on the offending byte (or on the frame that ends the message
 * inside a sequence), close-frame checks when the frame is complete. The events and the verdict
 * never depend on how the input is split across calls. Lengths need not be minimal (a 16-bit
 * length below 126 is accepted).
 *
 * After a CLOSE event the reader discards everything that follows (returns len, no event): a
 * peer must not send after its Close (RFC 6455 5.5.1).
 */
ssize_t mx_ws_read(mx_ws_reader_t *r, const uint8_t *in, size_t len, mx_ws_event_t *ev);

/*
 * Right after a MESSAGE event: hands over the malloc'ed message buffer (the caller frees it),
 * so the message can go to another thread without a copy; *len gets its length. Returns NULL
 * (and *len = 0) for an empty message or when the last event was not a MESSAGE. The event's
 * data pointer stays valid (it is the returned buffer) but now belongs to the caller.
 */
uint8_t *mx_ws_reader_take(mx_ws_reader_t *r, size_t *len);

/* Bytes of message buffer the reader holds now (for memory accounting and tests). */
size_t mx_ws_reader_buffered(const mx_ws_reader_t *r);

/* ---------------------------------------------------------------------------------------------
 * Writing server frames (never masked, RFC 6455 5.1), in ws_frame.c
 * ------------------------------------------------------------------------------------------- */

/* Writes the header of an unmasked frame whose payload is len bytes; returns its size: 2, 4 or
 * 10. Lengths use the shortest form (RFC 6455 5.2). len must be below 2^63. */
size_t mx_ws_frame_header(uint8_t out[10], int fin, int rsv1, int opcode, uint64_t len);

typedef struct mx_ws_deflater mx_ws_deflater_t;

/*
 * Creates a compressor for the server's messages with the negotiated parameters (it uses
 * server_max_window_bits and server_no_context_takeover). zlib's state is allocated on the first
 * message worth compressing: at 15 window bits about 256 KiB, halving per bit less. Returns NULL
 * on out of memory.
 */
mx_ws_deflater_t *mx_ws_deflater_new(const mx_ws_deflate_params_t *p);

/* Frees the deflater; NULL is a no-op. */
void mx_ws_deflater_free(mx_ws_deflater_t *d);

/*
 * Compresses one whole message (RFC 7692 7.2.1: DEFLATE, flushed with an empty stored block whose
 * 00 00 ff ff is then removed). On success returns 0 and sets *out (malloc'ed; caller frees) and
 * *out_len; send it with RSV1 set. Every message is compressed, even one that grows a little
 * (clients exist that mishandle uncompressed messages on a compressed connection). Sets *out to
 * NULL (and returns 0) only if zlib could not finish the message in deflateBound's room; send it
 * uncompressed with RSV1 clear then, which RFC 7692 6 allows per message. (The compressor is then
 * reset, which is always safe: a sender may stop referring to older data whenever it likes.) The
 * context is reset after every message when server_no_context_takeover was negotiated. zlib cannot
 * write a raw stream with an 8-bit window, so with server_max_window_bits=8 it compresses with
 * Huffman coding only: no back-references at all, which any window can decode. Returns MX_ENOMEM
 * (or MX_EINVAL on a zlib failure), with *out NULL.
 */
int mx_ws_deflate(mx_ws_deflater_t *d, const uint8_t *in, size_t len, uint8_t **out,
                  size_t *out_len);

/*
 * Builds one complete unfragmented frame (header and payload) in a malloc'ed buffer: *out,
 * *out_len; the caller frees it. If d is non-NULL and opcode is TEXT or BINARY the payload is
 * compressed when that pays (RSV1 then set). Control frames are never compressed and must be at
 * most 125 bytes. Returns 0, MX_ENOMEM, or MX_EINVAL (bad opcode, control payload too long).
 */
int mx_ws_build_frame(mx_ws_deflater_t *d, int opcode, const uint8_t *payload, size_t len,
                      uint8_t **out, size_t *out_len);

/*
 * Builds a Close frame (RFC 6455 5.5.1): payload = 2-byte code + reason, the reason cut to 123
 * bytes at a UTF-8 sequence boundary (the reason itself is not validated: pass UTF-8). code 0 or
 * 1005 gives an empty payload (no code, no reason). Returns 0 with *out malloc'ed (caller frees),
 * MX_ENOMEM, or MX_EINVAL for any other code that mx_ws_close_code_valid rejects (1004, 1006 and
 * 1015 must never be sent, RFC 6455 7.4.1).
 */
int mx_ws_build_close(int code, const char *reason, size_t reason_len, uint8_t **out,
                      size_t *out_len);

#endif
