/* OpenSSL (Debian's libssl-dev, 3.0) for the TLS client that talks to etcd over https.
 *
 * TurnoutControl calls OpenSSL's functions directly; this header makes them visible to Swift.
 * What OpenSSL defines as a macro, Swift cannot call, so each such macro the client needs gets
 * a prefixed wrapper here (CTurnoutTLS_), as swift-nio's shims do for Linux calls. Only the
 * etcd client uses TLS: the data plane is L4 and never links a byte of this into its path. */
#ifndef C_TURNOUT_TLS_H
#define C_TURNOUT_TLS_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/* SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) (a
 * macro): a write may take part of the bytes, as send(2) does, and a retried write may pass the
 * same bytes at another address, which Swift arrays do not promise to keep. */
void CTurnoutTLS_set_partial_moving_writes(SSL *ssl);

/* SSL_set_tlsext_host_name (a macro): the server name (SNI) sent in the ClientHello, so a
 * member that serves several names picks the right certificate. */
int CTurnoutTLS_set_server_name_indication(SSL *ssl, const char *name);

/* SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF) (the option is a macro expression):
 * a peer closing without close_notify reads as the end of the stream, as a plain socket's
 * close does. HTTP framing (Content-Length, chunked) still tells a cut-off body. */
void CTurnoutTLS_ignore_unexpected_eof(SSL_CTX *ctx);

/* SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) (a macro): nothing older than TLS 1.2 is
 * offered, whatever the system's openssl.cnf allows. Returns 1 on success. */
int CTurnoutTLS_require_tls12(SSL_CTX *ctx);

/* SSL_CTX_set_default_passwd_cb with a callback that gives no passphrase: OpenSSL's default
 * callback would prompt on the terminal (or read stdin) for an encrypted key, on every
 * connection, which a daemon must never do. Loading an encrypted key then fails. */
void CTurnoutTLS_refuse_passphrases(SSL_CTX *ctx);

#endif
