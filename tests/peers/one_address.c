/* LD_PRELOAD shim: an IPv4 process on ONE loopback address (HELPLINE_PEER_ADDR).
 *
 * baresip 1.0 binds its RTP sockets to the wildcard address, and baresip and linphone-cli
 * both connect SIP over TCP/TLS from unbound sockets; the kernel then sends from 127.0.0.1 (the source it picks for any
 * 127.0.0.0/8 destination), although SIP listens and SDP advertises another address. On a
 * real handset with one address that cannot happen; on loopback it makes the phone look like
 * the carrier trunk (127.0.0.1). This shim makes a wildcard bind() bind the given address,
 * and binds a still unbound socket to it before connect() to a loopback destination.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

static int wanted(struct in_addr *out) {
    const char *text = getenv("HELPLINE_PEER_ADDR");
    return text != NULL && inet_pton(AF_INET, text, out) == 1;
}

static int real_bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn next;
    if (next == NULL) next = (bind_fn)dlsym(RTLD_NEXT, "bind");
    return next(fd, addr, len);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    struct in_addr want;
    if (addr != NULL && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)
        && ((const struct sockaddr_in *)addr)->sin_addr.s_addr == htonl(INADDR_ANY)
        && wanted(&want)) {
        struct sockaddr_in mine;
        memcpy(&mine, addr, sizeof mine);
        mine.sin_addr = want;
        return real_bind(fd, (const struct sockaddr *)&mine, sizeof mine);
    }
    return real_bind(fd, addr, len);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static connect_fn next;
    if (next == NULL) next = (connect_fn)dlsym(RTLD_NEXT, "connect");
    struct in_addr want;
    if (addr != NULL && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)
        && (ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr) >> 24) == 127
        && wanted(&want)) {
        struct sockaddr_in local;
        socklen_t size = sizeof local;
        if (getsockname(fd, (struct sockaddr *)&local, &size) == 0 && local.sin_family == AF_INET
            && local.sin_addr.s_addr == htonl(INADDR_ANY) && local.sin_port == 0) {
            local.sin_addr = want;
            real_bind(fd, (const struct sockaddr *)&local, sizeof local); /* best effort */
        }
    }
    return next(fd, addr, len);
}
