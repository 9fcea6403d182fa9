#include "CTurnoutTLS.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* The functions behind the wrappers, filled once by CTurnoutTLS_load. */
static struct {
#define CTURNOUT_TLS_POINTER(type, name, parameters, arguments) type (*name) parameters;
    CTURNOUT_TLS_FUNCTIONS(CTURNOUT_TLS_POINTER)
#undef CTURNOUT_TLS_POINTER
    long (*SSL_ctrl)(SSL *ssl, int command, long value, void *argument);
    long (*SSL_CTX_ctrl)(SSL_CTX *ctx, int command, long value, void *argument);
    uint64_t (*SSL_CTX_set_options)(SSL_CTX *ctx, uint64_t options);
    void (*SSL_CTX_set_default_passwd_cb)(SSL_CTX *ctx, pem_password_cb *callback);
} openssl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_result = -1;
static char load_reason[256] = "not loaded";

static int resolve(void *library, const char *name, void **slot) {
    *slot = dlsym(library, name);
    if (*slot == NULL) {
        snprintf(load_reason, sizeof load_reason, "libssl.so.3 has no %s", name);
        return -1;
    }
    return 0;
}

static void load(void) {
    /* RTLD_LOCAL: OpenSSL's names stay out of the process's global scope. */
    void *library = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        const char *reason = dlerror();
        snprintf(load_reason, sizeof load_reason, "%s", reason != NULL ? reason : "dlopen failed");
        return;
    }
#define CTURNOUT_TLS_RESOLVE(type, name, parameters, arguments) \
    if (resolve(library, #name, (void **)&openssl.name) != 0) return;
    CTURNOUT_TLS_FUNCTIONS(CTURNOUT_TLS_RESOLVE)
#undef CTURNOUT_TLS_RESOLVE
    if (resolve(library, "SSL_ctrl", (void **)&openssl.SSL_ctrl) != 0 ||
        resolve(library, "SSL_CTX_ctrl", (void **)&openssl.SSL_CTX_ctrl) != 0 ||
        resolve(library, "SSL_CTX_set_options", (void **)&openssl.SSL_CTX_set_options) != 0 ||
        resolve(library, "SSL_CTX_set_default_passwd_cb", (void **)&openssl.SSL_CTX_set_default_passwd_cb) != 0) {
        return;
    }
    load_result = 0;
}

int CTurnoutTLS_load(char *reason, size_t size) {
    pthread_once(&load_once, load);
    if (load_result != 0 && reason != NULL && size > 0) snprintf(reason, size, "%s", load_reason);
    return load_result;
}

/* A wrapper called before a successful load is a programming error: fail loudly, not with a
 * jump through a null pointer. */
static void require_loaded(const char *name) {
    if (load_result != 0) {
        fprintf(stderr, "turnout: %s called before OpenSSL was loaded\n", name);
        abort();
    }
}

#define CTURNOUT_TLS_DEFINE(type, name, parameters, arguments) \
    type CTurnoutTLS_##name parameters { \
        require_loaded(#name); \
        return openssl.name arguments; \
    }
CTURNOUT_TLS_FUNCTIONS(CTURNOUT_TLS_DEFINE)
#undef CTURNOUT_TLS_DEFINE

void CTurnoutTLS_set_partial_moving_writes(SSL *ssl) {
    require_loaded("SSL_ctrl");
    openssl.SSL_ctrl(ssl, SSL_CTRL_MODE, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, NULL);
}

int CTurnoutTLS_set_server_name_indication(SSL *ssl, const char *name) {
    require_loaded("SSL_ctrl");
    return (int)openssl.SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, (void *)name);
}

void CTurnoutTLS_ignore_unexpected_eof(SSL_CTX *ctx) {
    require_loaded("SSL_CTX_set_options");
    openssl.SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
}

int CTurnoutTLS_require_tls12(SSL_CTX *ctx) {
    require_loaded("SSL_CTX_ctrl");
    return (int)openssl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
}

static int CTurnoutTLS_no_passphrase(char *buffer, int size, int writing, void *context) {
    (void)buffer; (void)size; (void)writing; (void)context;
    return 0;
}

void CTurnoutTLS_refuse_passphrases(SSL_CTX *ctx) {
    require_loaded("SSL_CTX_set_default_passwd_cb");
    openssl.SSL_CTX_set_default_passwd_cb(ctx, CTurnoutTLS_no_passphrase);
}
