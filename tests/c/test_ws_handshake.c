/*
 * test_ws_handshake.c: unit tests of the WebSocket handshake helpers (ws_handshake.c): the
 * Sec-WebSocket-Accept key (RFC 6455 4.2.2, with the RFC's own example), token lists,
 * subprotocol choice, and permessage-deflate negotiation (RFC 7692 7.1) with and without the
 * server's limits. Every input is a guarded copy (harness.h), so a read past its end faults.
 */
#include <string.h>

#include "harness.h"
#include "ws.h"

/* ---------------------------------------------------------------------------------------------
 * Handshake helpers
 * ------------------------------------------------------------------------------------------- */

static int accept_is(const char *key, const char *want) {
    char out[29];
    memset(out, 'x', sizeof out);
    guarded_t g;
    const char *k = guard_copy(&g, key, strlen(key));
    int rc = mx_ws_accept_key(k, strlen(key), out);
    guard_free(&g);
    if (want == NULL)
        return rc == -1 && out[0] == 'x';
    return rc == 0 && strcmp(out, want) == 0;
}

static void test_accept_key(void) {
    /* RFC 6455 1.3 */
    CHECK(accept_is("dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "RFC 6455 1.3");
    CHECK(accept_is("x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="), "key 2");
    CHECK(accept_is("AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI="), "zeros");
    CHECK(accept_is("/////////////////////w==", "XXpj4jYzLM2yUE0C7TIgMwTQh2g="), "ones");
    CHECK(accept_is("+/+/+/+/+/+/+/+/+/+/+w==", "M0DUs3om0SqzerhOhYSMM7WQuBQ="), "+/");
    CHECK(accept_is(" \tdGhlIHNhbXBsZSBub25jZQ== \t", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "OWS");
    CHECK(accept_is("", NULL), "empty key");
    CHECK(accept_is("dGhlIHNhbXBsZSBub25jZQ=", NULL), "23 chars");
    CHECK(accept_is("dGhlIHNhbXBsZSBub25jZQ===", NULL), "25 chars");
    CHECK(accept_is("dGhlIHNhbXBsZSBub25jZQAA", NULL), "no padding");
    CHECK(accept_is("dGhlIHNhbXBsZSBub25jZWE=", NULL), "17 bytes");
    CHECK(accept_is("dGhlIHNhbXBsZSBub25j====", NULL), "15 bytes");
    CHECK(accept_is("dGhlIHNhbXBsZSBub25jZ-==", NULL), "url-safe alphabet");
    CHECK(accept_is("dGhlIHNhbXBsZSBub2 jZQ==", NULL), "inner space");
    CHECK(accept_is("dGhlIHNhbXBsZSBub25jZ\x80==", NULL), "high byte");
    CHECK(accept_is("=GhlIHNhbXBsZSBub25jZQ==", NULL), "early padding");
}

static void test_token_list(void) {
#define HAS(v, t) mx_ws_token_list_has((v), sizeof(v) - 1, (t))
    CHECK(HAS("Upgrade", "upgrade"), "single");
    CHECK(HAS("keep-alive, Upgrade", "upgrade"), "second");
    CHECK(HAS("keep-alive,Upgrade", "upgrade"), "no space");
    CHECK(HAS(" , ,\tUPGRADE\t, ,", "upgrade"), "empty items and OWS");
    CHECK(HAS("websocket", "WebSocket"), "case");
    CHECK(!HAS("upgradex", "upgrade"), "prefix only");
    CHECK(!HAS("xupgrade", "upgrade"), "suffix only");
    CHECK(!HAS("up grade", "upgrade"), "inner space");
    CHECK(!HAS("websocket/13", "websocket"), "versioned item");
    CHECK(!HAS("", "upgrade"), "empty");
    CHECK(!HAS(",,,", "upgrade"), "only commas");
    CHECK(mx_ws_token_list_has("upgradeX", 7, "upgrade"), "length bounds the value");
    CHECK(!mx_ws_token_list_has(NULL, 0, "upgrade"), "NULL");
#undef HAS
}

static void test_select_protocol(void) {
    static const char *const sup[] = {"superchat", "chat", "v2.json"};
#define SEL(v) mx_ws_select_protocol((v), sizeof(v) - 1, sup, 3)
    CHECK(SEL("chat, superchat") == 1, "client's first choice");
    CHECK(SEL("superchat, chat") == 0, "client's first choice (2)");
    CHECK(SEL("mqtt, v2.json") == 2, "skip unsupported");
    CHECK(SEL(" ,\tchat\t,") == 1, "OWS, empty items");
    CHECK(SEL("Chat") == -1, "case-sensitive");
    CHECK(SEL("chatx, xchat, cha") == -1, "no partial matches");
    CHECK(SEL("") == -1, "empty offer");
    CHECK(mx_ws_select_protocol("chat", 4, sup, 0) == -1, "nothing supported");
#undef SEL
}

/* ---------------------------------------------------------------------------------------------
 * permessage-deflate negotiation
 * ------------------------------------------------------------------------------------------- */

static void nego_at(const char *offer, const mx_ws_deflate_params_t *lim, const char *want_resp,
                    int snct, int cnct, int smwb, int cmwb, int line) {
    mx_ws_deflate_params_t p;
    char resp[MX_WS_DEFLATE_RESP_MAX];
    guarded_t g;
    const char *o = guard_copy(&g, offer, strlen(offer));
    memset(&p, 0x55, sizeof p);
    int rc = mx_ws_negotiate_deflate_ex(o, strlen(offer), lim, &p, resp, sizeof resp);
    guard_free(&g);
    if (want_resp == NULL) {
        report(rc == 0, line, "offer \"%s\" accepted: \"%s\"", offer, rc ? resp : "");
        return;
    }
    if (rc != 1) {
        report(0, line, "offer \"%s\" declined", offer);
        return;
    }
    report(strcmp(resp, want_resp) == 0, line, "offer \"%s\": response \"%s\", want \"%s\"",
           offer, resp, want_resp);
    report(p.server_no_context_takeover == snct && p.client_no_context_takeover == cnct &&
               p.server_max_window_bits == smwb && p.client_max_window_bits == cmwb,
           line, "offer \"%s\": params %d %d %d %d", offer, p.server_no_context_takeover,
           p.client_no_context_takeover, p.server_max_window_bits, p.client_max_window_bits);
}

#define NEGO(offer, resp, snct, cnct, smwb, cmwb)                                                  \
    nego_at((offer), NULL, (resp), (snct), (cnct), (smwb), (cmwb), __LINE__)
#define NEGO_LIM(offer, lim, resp, snct, cnct, smwb, cmwb)                                         \
    nego_at((offer), (lim), (resp), (snct), (cnct), (smwb), (cmwb), __LINE__)
#define DECLINE(offer) nego_at((offer), NULL, NULL, 0, 0, 0, 0, __LINE__)

static void test_negotiate(void) {
    NEGO("permessage-deflate", "permessage-deflate", 0, 0, 15, 15);
    NEGO("  permessage-deflate  ", "permessage-deflate", 0, 0, 15, 15);
    NEGO("PerMessage-Deflate; Server_No_Context_Takeover",
         "permessage-deflate; server_no_context_takeover", 1, 0, 15, 15);
    /* What browsers send: client_max_window_bits without a value means "I can take a limit". */
    NEGO("permessage-deflate; client_max_window_bits", "permessage-deflate", 0, 0, 15, 15);
    NEGO("permessage-deflate; client_max_window_bits=10",
         "permessage-deflate; client_max_window_bits=10", 0, 0, 15, 10);
    NEGO("permessage-deflate;client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover", 0, 1, 15, 15);
    NEGO("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9; client_max_window_bits=8",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9; client_max_window_bits=8",
         1, 1, 9, 8);
    NEGO("permessage-deflate ; server_max_window_bits = 12 ",
         "permessage-deflate; server_max_window_bits=12", 0, 0, 12, 15);
    /* Every legal window size, plain and quoted. */
    for (int b = 8; b <= 15; b++) {
        char offer[96], resp[96];
        snprintf(offer, sizeof offer, "permessage-deflate; server_max_window_bits=%d", b);
        snprintf(resp, sizeof resp, "permessage-deflate; server_max_window_bits=%d", b);
        NEGO(offer, resp, 0, 0, b, 15);
        snprintf(offer, sizeof offer, "permessage-deflate; server_max_window_bits=\"%d\"", b);
        NEGO(offer, resp, 0, 0, b, 15);
        snprintf(offer, sizeof offer, "permessage-deflate; client_max_window_bits=%d", b);
        snprintf(resp, sizeof resp, "permessage-deflate; client_max_window_bits=%d", b);
        NEGO(offer, resp, 0, 0, 15, b);
    }
    NEGO("permessage-deflate; client_max_window_bits=\"1\\2\"",
         "permessage-deflate; client_max_window_bits=12", 0, 0, 15, 12);
    /* Bad values, missing values, values where none belong. */
    DECLINE("permessage-deflate; server_max_window_bits=7");
    DECLINE("permessage-deflate; server_max_window_bits=16");
    DECLINE("permessage-deflate; server_max_window_bits=08");
    DECLINE("permessage-deflate; server_max_window_bits=010");
    DECLINE("permessage-deflate; server_max_window_bits=+9");
    DECLINE("permessage-deflate; server_max_window_bits=9a");
    DECLINE("permessage-deflate; server_max_window_bits=1O");
    DECLINE("permessage-deflate; server_max_window_bits=");
    DECLINE("permessage-deflate; server_max_window_bits=\"\"");
    DECLINE("permessage-deflate; server_max_window_bits=\" 9\"");
    DECLINE("permessage-deflate; server_max_window_bits");
    DECLINE("permessage-deflate; client_max_window_bits=0");
    DECLINE("permessage-deflate; client_max_window_bits=1234567890123");
    DECLINE("permessage-deflate; server_no_context_takeover=1");
    DECLINE("permessage-deflate; client_no_context_takeover=\"\"");
    DECLINE("permessage-deflate; client_no_context_takeover=true");
    /* Duplicates and unknown parameters. */
    DECLINE("permessage-deflate; server_no_context_takeover; server_no_context_takeover");
    DECLINE("permessage-deflate; client_no_context_takeover; client_no_context_takeover");
    DECLINE("permessage-deflate; server_max_window_bits=10; server_max_window_bits=10");
    DECLINE("permessage-deflate; client_max_window_bits; client_max_window_bits=10");
    DECLINE("permessage-deflate; foo");
    DECLINE("permessage-deflate; foo=bar");
    DECLINE("permessage-deflate; max_window_bits=10");
    /* Malformed syntax. */
    DECLINE("permessage-deflate;");
    DECLINE("permessage-deflate; ; server_no_context_takeover");
    DECLINE("permessage-deflate server_no_context_takeover");
    DECLINE("permessage-deflate; server_max_window_bits=\"10");
    DECLINE("permessage-deflate; client_max_window_bits=\"10\\");
    DECLINE("permessage-deflate/1");
    DECLINE("\"permessage-deflate\"");
    DECLINE("");
    DECLINE(" , ,, ");
    DECLINE("x-webkit-deflate-frame");
    DECLINE("permessage-deflat");
    /* Several offers: the first acceptable one wins. */
    NEGO("permessage-deflate; server_max_window_bits=7, permessage-deflate; "
         "server_max_window_bits=10, permessage-deflate",
         "permessage-deflate; server_max_window_bits=10", 0, 0, 10, 15);
    NEGO("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
         "permessage-deflate", 0, 0, 15, 15);
    NEGO("permessage-deflate; foo=1, permessage-deflate; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover", 0, 1, 15, 15);
    NEGO("foo; a=\"x, permessage-deflate; y\", permessage-deflate; server_max_window_bits=11",
         "permessage-deflate; server_max_window_bits=11", 0, 0, 11, 15);
    NEGO("foo; a=\"\\\"\", , permessage-deflate", "permessage-deflate", 0, 0, 15, 15);
    NEGO("permessage-deflate; server_max_window_bits=\"8,\", permessage-deflate",
         "permessage-deflate", 0, 0, 15, 15);
    NEGO("permessage-deflate; x=\"a, permessage-deflate\", permessage-deflate; "
         "client_max_window_bits=9",
         "permessage-deflate; client_max_window_bits=9", 0, 0, 15, 9);
    DECLINE("foo; a=\"x, permessage-deflate");
    DECLINE("permessage-deflate; x, permessage-deflate; y");

    /* The server's own limits. */
    mx_ws_deflate_params_t lim = {1, 1, 10, 9};
    NEGO_LIM("permessage-deflate", &lim,
             "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
             "server_max_window_bits=10",
             1, 1, 10, 15);
    NEGO_LIM("permessage-deflate; client_max_window_bits", &lim,
             "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
             "server_max_window_bits=10; client_max_window_bits=9",
             1, 1, 10, 9);
    NEGO_LIM("permessage-deflate; server_max_window_bits=12; client_max_window_bits=8", &lim,
             "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
             "server_max_window_bits=10; client_max_window_bits=8",
             1, 1, 10, 8);
    NEGO_LIM("permessage-deflate; server_max_window_bits=9", &lim,
             "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
             "server_max_window_bits=9",
             1, 1, 9, 15);
    mx_ws_deflate_params_t none = {0, 0, 15, 15};
    NEGO_LIM("permessage-deflate", &none, "permessage-deflate", 0, 0, 15, 15);

    /* A response buffer too small declines rather than truncating. */
    mx_ws_deflate_params_t p;
    char small[20];
    static const char offer[] = "permessage-deflate; server_no_context_takeover";
    CHECK(mx_ws_negotiate_deflate(offer, sizeof offer - 1, &p, small, sizeof small) == 0,
          "small response buffer");
    char exact[19];
    CHECK(mx_ws_negotiate_deflate("permessage-deflate", 18, &p, exact, sizeof exact) == 1 &&
              strcmp(exact, "permessage-deflate") == 0,
          "exact response buffer");
    CHECK(mx_ws_negotiate_deflate("permessage-deflate", 18, &p, exact, 18) == 0,
          "one byte short");
}

int main(void) {
    test_accept_key();
    test_token_list();
    test_select_protocol();
    test_negotiate();
    return harness_summary("ws_handshake");
}
