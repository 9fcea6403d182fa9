/* OpenSSL 3 (Debian's libssl3; headers from libssl-dev) for the TLS client that talks to etcd
 * over https, loaded only when a TLS context is first made.
 *
 * Why loaded, not linked: only an etcd source with an https URL uses TLS, and a proxy or an
 * init step never does. Linked, libssl and libcrypto were mapped and relocated in every turnout
 * process (1.7 MiB of a proxy's resident memory) and had to be in every image. So
 * CTurnoutTLS_load() opens libssl.so.3 (which brings libcrypto.so.3) with dlopen(3) and looks
 * up the functions below; each is called through a prefixed wrapper, CTurnoutTLS_<OpenSSL's
 * name>, with OpenSSL's own signature. The headers still give the types and constants.
 *
 * What OpenSSL defines as a macro, Swift cannot call, so each such macro the client needs gets a
 * named wrapper here too, as swift-nio's shims do for Linux calls. No wrapper may be called
 * before CTurnoutTLS_load() returned 0 (a wrapper called earlier aborts). */
#ifndef C_TURNOUT_TLS_H
#define C_TURNOUT_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/* Loads libssl.so.3 and every function below, once per process (later calls return the first
 * call's result). Returns 0, or -1 with dlerror(3)'s reason in `reason` (NUL-terminated,
 * truncated to `size`). Thread-safe. */
int CTurnoutTLS_load(char *reason, size_t size);

/* The OpenSSL functions the client calls: (return type, name, parameters, arguments). */
#define CTURNOUT_TLS_FUNCTIONS(X) \
    X(const SSL_METHOD *, TLS_client_method, (void), ()) \
    X(SSL_CTX *, SSL_CTX_new, (const SSL_METHOD *method), (method)) \
    X(void, SSL_CTX_free, (SSL_CTX *ctx), (ctx)) \
    X(void, SSL_CTX_set_verify, (SSL_CTX *ctx, int mode, SSL_verify_cb callback), (ctx, mode, callback)) \
    X(int, SSL_CTX_load_verify_locations, (SSL_CTX *ctx, const char *file, const char *path), (ctx, file, path)) \
    X(int, SSL_CTX_set_default_verify_paths, (SSL_CTX *ctx), (ctx)) \
    X(int, SSL_CTX_use_certificate_chain_file, (SSL_CTX *ctx, const char *file), (ctx, file)) \
    X(int, SSL_CTX_use_PrivateKey_file, (SSL_CTX *ctx, const char *file, int type), (ctx, file, type)) \
    X(SSL *, SSL_new, (SSL_CTX *ctx), (ctx)) \
    X(void, SSL_free, (SSL *ssl), (ssl)) \
    X(int, SSL_set_fd, (SSL *ssl, int fd), (ssl, fd)) \
    X(void, SSL_set_hostflags, (SSL *ssl, unsigned int flags), (ssl, flags)) \
    X(int, SSL_set1_host, (SSL *ssl, const char *hostname), (ssl, hostname)) \
    X(X509_VERIFY_PARAM *, SSL_get0_param, (SSL *ssl), (ssl)) \
    X(int, X509_VERIFY_PARAM_set1_ip_asc, (X509_VERIFY_PARAM *param, const char *ip), (param, ip)) \
    X(int, SSL_connect, (SSL *ssl), (ssl)) \
    X(int, SSL_read, (SSL *ssl, void *buffer, int count), (ssl, buffer, count)) \
    X(int, SSL_write, (SSL *ssl, const void *buffer, int count), (ssl, buffer, count)) \
    X(int, SSL_pending, (const SSL *ssl), (ssl)) \
    X(int, SSL_get_error, (const SSL *ssl, int result), (ssl, result)) \
    X(long, SSL_get_verify_result, (const SSL *ssl), (ssl)) \
    X(const char *, X509_verify_cert_error_string, (long result), (result)) \
    X(const char *, X509_get_default_cert_file, (void), ()) \
    X(unsigned long, ERR_get_error, (void), ()) \
    X(const char *, ERR_reason_error_string, (unsigned long code), (code)) \
    X(void, ERR_clear_error, (void), ())

#define CTURNOUT_TLS_DECLARE(type, name, parameters, arguments) type CTurnoutTLS_##name parameters;
CTURNOUT_TLS_FUNCTIONS(CTURNOUT_TLS_DECLARE)
#undef CTURNOUT_TLS_DECLARE

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
