/* pbx.media.udp compiled: the datagram I/O of the RTP sockets (the plain twin is udp.py).
 *
 * Same functions as udp.py, used instead of it with the compiled modules (pbx/native.py).
 * A peer is the kernel's socket address as bytes (struct sockaddr_in or sockaddr_in6): a
 * received packet's source costs one small bytes object instead of an address formatted as
 * text (inet_ntop through sprintf) and a tuple, and comparing it with the latched source is a
 * memcmp; sending to a peer passes its bytes to sendto instead of parsing an address tuple.
 *
 * The receiver and sender keep a reference to the Python socket and read its descriptor from
 * it on every call, so a socket closed behind the endpoint's back gives EBADF, as the socket's
 * own methods do, and never another socket that got its number. Both pass MSG_DONTWAIT. Errors
 * are raised as the socket module raises them (OSError from errno: BlockingIOError for
 * EAGAIN); EINTR is retried after signal handlers ran.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* The head of CPython's socket object (Modules/socketmodule.h: the descriptor is the first
 * field, unchanged since Python 2). Checked against fileno() whenever a Datagrams is made. */
typedef struct {
    PyObject_HEAD
    int sock_fd;
} SocketHead;

typedef struct {
    PyObject_HEAD
    PyObject *sock;
} Datagrams;

static PyTypeObject *socket_type; /* _socket.socket */

static int
datagrams_fd(Datagrams *self)
{
    int fd = ((SocketHead *)self->sock)->sock_fd;
    if (fd < 0)
        errno = EBADF;
    return fd;
}

static void
datagrams_dealloc(Datagrams *self)
{
    Py_XDECREF(self->sock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
datagrams_recvfrom(Datagrams *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "recvfrom(size) takes exactly one argument");
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[0]);
    if (size < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "negative buffersize in recvfrom");
        return NULL;
    }
    char stack[4096];
    char *buf = stack;
    if ((size_t)size > sizeof stack && (buf = PyMem_Malloc(size)) == NULL)
        return PyErr_NoMemory();
    struct sockaddr_storage source;
    socklen_t length;
    ssize_t n;
    for (;;) {
        int fd = datagrams_fd(self);
        length = sizeof source;
        n = fd < 0 ? -1
                   : recvfrom(fd, buf, (size_t)size, MSG_DONTWAIT, (struct sockaddr *)&source,
                              &length);
        if (n >= 0 || errno != EINTR || PyErr_CheckSignals() < 0)
            break;
    }
    PyObject *result = NULL;
    if (n < 0) {
        if (!PyErr_Occurred())
            PyErr_SetFromErrno(PyExc_OSError);
    }
    else {
        PyObject *data = PyBytes_FromStringAndSize(buf, n);
        PyObject *peer = PyBytes_FromStringAndSize((const char *)&source, length);
        if (data != NULL && peer != NULL)
            result = PyTuple_Pack(2, data, peer);
        Py_XDECREF(data);
        Py_XDECREF(peer);
    }
    if (buf != stack)
        PyMem_Free(buf);
    return result;
}

static int
valid_peer(PyObject *peer)
{
    if (!PyBytes_Check(peer)) {
        PyErr_SetString(PyExc_TypeError, "a peer is the bytes udp.peer() or recvfrom gave");
        return 0;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(peer);
    sa_family_t family = 0;
    if (size >= (Py_ssize_t)sizeof(sa_family_t))
        memcpy(&family, PyBytes_AS_STRING(peer), sizeof family);
    if ((family == AF_INET && size == sizeof(struct sockaddr_in)) ||
        (family == AF_INET6 && size == sizeof(struct sockaddr_in6)))
        return 1;
    PyErr_SetString(PyExc_ValueError, "not a socket address of IPv4 or IPv6");
    return 0;
}

static PyObject *
datagrams_sendto(Datagrams *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sendto(data, peer) takes exactly two arguments");
        return NULL;
    }
    if (!valid_peer(args[1]))
        return NULL;
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    ssize_t n;
    for (;;) {
        int fd = datagrams_fd(self);
        n = fd < 0 ? -1
                   : sendto(fd, data.buf, (size_t)data.len, MSG_DONTWAIT,
                            (const struct sockaddr *)PyBytes_AS_STRING(args[1]),
                            (socklen_t)PyBytes_GET_SIZE(args[1]));
        if (n >= 0 || errno != EINTR || PyErr_CheckSignals() < 0)
            break;
    }
    PyBuffer_Release(&data);
    if (n < 0) {
        if (!PyErr_Occurred())
            PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    return PyLong_FromSsize_t(n);
}

static PyMethodDef datagrams_methods[] = {
    {"recvfrom", (PyCFunction)(void (*)(void))datagrams_recvfrom, METH_FASTCALL,
     "recvfrom(size) -> (data, peer)"},
    {"sendto", (PyCFunction)(void (*)(void))datagrams_sendto, METH_FASTCALL,
     "sendto(data, peer) -> bytes sent"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DatagramsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pbx.media.udp.Datagrams",
    .tp_basicsize = sizeof(Datagrams),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A socket's datagrams with peers as socket address bytes",
    .tp_dealloc = (destructor)datagrams_dealloc,
    .tp_methods = datagrams_methods,
};

static Datagrams *
datagrams_of(PyObject *sock)
{
    if (!PyObject_TypeCheck(sock, socket_type)) {
        PyErr_SetString(PyExc_TypeError, "expected a socket.socket");
        return NULL;
    }
    PyObject *fileno = PyObject_CallMethod(sock, "fileno", NULL);
    if (fileno == NULL)
        return NULL;
    long expected = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    if (expected == -1 && PyErr_Occurred())
        return NULL;
    if (((SocketHead *)sock)->sock_fd != expected) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this Python's socket object has another layout: rebuild without udp.c");
        return NULL;
    }
    Datagrams *self = PyObject_New(Datagrams, &DatagramsType);
    if (self != NULL)
        self->sock = Py_NewRef(sock);
    return self;
}

static PyObject *
bound(PyObject *sock, const char *name)
{
    Datagrams *datagrams = datagrams_of(sock);
    if (datagrams == NULL)
        return NULL;
    PyObject *method = PyObject_GetAttrString((PyObject *)datagrams, name);
    Py_DECREF(datagrams);
    return method;
}

static PyObject *
udp_receiver(PyObject *module, PyObject *sock)
{
    return bound(sock, "recvfrom");
}

static PyObject *
udp_sender(PyObject *module, PyObject *sock)
{
    return bound(sock, "sendto");
}

static PyObject *
udp_peer(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "peer(family, address) takes exactly two arguments");
        return NULL;
    }
    long family = PyLong_AsLong(args[0]);
    if (family == -1 && PyErr_Occurred())
        return NULL;
    PyObject *address = args[1];
    if (!PyTuple_Check(address) || PyTuple_GET_SIZE(address) < 2)
        Py_RETURN_NONE;
    PyObject *host = PyTuple_GET_ITEM(address, 0), *port_obj = PyTuple_GET_ITEM(address, 1);
    if (!PyUnicode_Check(host) || !PyLong_Check(port_obj))
        Py_RETURN_NONE;
    long port = PyLong_AsLong(port_obj);
    if (port == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (port < 0 || port > 65535 || strlen(text) != (size_t)PyUnicode_GET_LENGTH(host))
        Py_RETURN_NONE; /* out of range, or an embedded NUL or non-ASCII: not an IP literal */
    if (family == AF_INET) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, text, &sin.sin_addr) != 1)
            Py_RETURN_NONE;
        return PyBytes_FromStringAndSize((const char *)&sin, sizeof sin);
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memset(&sin6, 0, sizeof sin6);
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, text, &sin6.sin6_addr) != 1)
            Py_RETURN_NONE;
        if (PyTuple_GET_SIZE(address) >= 4) {
            unsigned long flow = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(address, 2));
            unsigned long scope = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(address, 3));
            if (PyErr_Occurred() || flow > 0xFFFFF || scope > 0xFFFFFFFFUL) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
            sin6.sin6_flowinfo = htonl((uint32_t)flow);
            sin6.sin6_scope_id = (uint32_t)scope;
        }
        return PyBytes_FromStringAndSize((const char *)&sin6, sizeof sin6);
    }
    Py_RETURN_NONE;
}

static PyObject *
udp_address(PyObject *module, PyObject *peer)
{
    if (!valid_peer(peer))
        return NULL;
    char text[INET6_ADDRSTRLEN];
    const char *raw = PyBytes_AS_STRING(peer);
    sa_family_t family;
    memcpy(&family, raw, sizeof family);
    if (family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, raw, sizeof sin);
        if (inet_ntop(AF_INET, &sin.sin_addr, text, sizeof text) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", text, (int)ntohs(sin.sin_port));
    }
    struct sockaddr_in6 sin6;
    memcpy(&sin6, raw, sizeof sin6);
    if (inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof text) == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    return Py_BuildValue("(siII)", text, (int)ntohs(sin6.sin6_port),
                         (unsigned int)ntohl(sin6.sin6_flowinfo),
                         (unsigned int)sin6.sin6_scope_id);
}

static PyMethodDef udp_functions[] = {
    {"receiver", udp_receiver, METH_O,
     "receiver(sock) -> recvfrom(size) -> (data, peer); reads one datagram"},
    {"sender", udp_sender, METH_O,
     "sender(sock) -> sendto(data, peer) -> bytes sent; sends one datagram"},
    {"peer", (PyCFunction)(void (*)(void))udp_peer, METH_FASTCALL,
     "peer(family, address) -> the peer for an (IP literal, port) address, or None"},
    {"address", udp_address, METH_O, "address(peer) -> the address as socket.recvfrom gives it"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef udp_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pbx.media.udp",
    .m_doc = "Datagram I/O of the RTP sockets, compiled (the plain twin is udp.py).",
    .m_size = -1,
    .m_methods = udp_functions,
};

PyMODINIT_FUNC
PyInit_udp(void)
{
    PyObject *sockets = PyImport_ImportModule("_socket");
    if (sockets == NULL)
        return NULL;
    socket_type = (PyTypeObject *)PyObject_GetAttrString(sockets, "socket");
    Py_DECREF(sockets);
    if (socket_type == NULL)
        return NULL;
    if (!PyType_Check(socket_type)) {
        PyErr_SetString(PyExc_ImportError, "_socket.socket is not a type");
        return NULL;
    }
    if (PyType_Ready(&DatagramsType) < 0)
        return NULL;
    return PyModule_Create(&udp_module);
}
