/*
 * loadgen.c: the fan-out benchmark's load generator in C, so that the generator is not the
 * limit. One thread, one epoll set, non-blocking sockets, nothing beyond libc. It is compiled
 * when a benchmark runs (bench/cgen/build.py: gcc -O2 -Wall -Wextra) and driven exactly like
 * bench/loadgen/loadgen.mjs, whose protocol and figures it follows:
 *
 *   loadgen '{"urls": ["ws://127.0.0.1:8001/ws", "ws://127.0.0.1:8002/ws"],
 *             "dialect": "trio-sessions", "groups": 10, "members": 50, "messageSize": 64,
 *             "placement": "alternate"}'
 *
 * ("url": "ws://..." names a single server.) It connects groups x members clients. Group g's
 * host (member 0) connects to urls[g % n]; member m connects to the host's server ("same",
 * the default), to urls[(g + m) % n] ("alternate": with two servers every other member sits on
 * the other one), or to urls[(g + 1) % n] ("other"). Hosts connect first; at most "window"
 * (200) set-ups run at once, for at most "setupTimeout" (120) s; then it waits "settle"
 * (0.3) s for the join events, and answers. Dialects, as in loadgen.mjs:
 *   trio-sessions  hello; the host does session:create and session:createRoom "r0"; members
 *                  session:join by the host's code; a send is a room:message without ref
 *   relay          {"join": "g<i>r0"}; a send is {"room": ..., "data": ...}
 *   socket.io      engine.io open, "40", join with an ack; a send is 42["msg", {...}]
 *
 * stdin, one JSON command per line:
 *   {"cmd": "phase", "rate": <sends/s per client>, "duration": <s>, "drain": <s>}
 *   {"cmd": "quit"}
 * stdout, one JSON line per answer: once connected
 *   {"ready": n, "errors": n, "retries": n (requests refused with retry_after_ms and sent
 *    again then, as a real client does), "per_url": [...], "setup_s": s, "cpu_seconds": s}
 * then per phase
 *   {"sent", "expected", "delivered", "p50", "p99", "max" (ms), "cpu" (share of a core used
 *    while loaded, from getrusage), "cpu_seconds" (user + system over the phase and its
 *    drain), "cpu_user", "cpu_system", "lag" (ms the send loop ran late, at most), "closed"
 *    (links lost), "reordered" (deliveries out of order)}.
 *
 * During a phase every ready client sends in turn (round-robin over all of them, at the total
 * rate rate x clients) the payload "<phase>|<CLOCK_MONOTONIC ns>|<sender>|xxx..." (padded with
 * messageSize - 24 x's); a receiver counts a delivery of the current phase and its latency, and
 * counts it as reordered if its stamp is not after the last one from the same sender (or, with
 * trio-sessions, its seq not above the last one the receiver saw).
 *
 * The client side of RFC 6455: the opening handshake with a random key, checking
 * Sec-WebSocket-Accept (SHA-1, base64) and that no extension or subprotocol was imposed; every
 * frame masked with a fresh key; 7/16/64-bit payload lengths both ways; frames split across
 * reads or coalesced in one read; fragmented messages (with control frames between fragments);
 * pings answered with pongs; a close frame echoed; masked server frames, reserved bits,
 * unknown opcodes, bad control frames and invalid UTF-8 in text fail the connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_URLS 16
#define MAX_MESSAGE (64u << 20) /* bytes: a longer message from the server fails the link */
#define MAX_HEAD 16384          /* bytes of the handshake response */
#define SCRATCH (256u << 10)    /* bytes read at once */
#define STDIN_TAG UINT32_MAX    /* epoll tag of standard input */

/* ------------------------------------------------------------------ small helpers */

typedef struct {
    uint8_t *data;
    size_t head, len, cap; /* live bytes are data[head, len) */
} buf_t;

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s\n", what);
    exit(2);
}

static void buf_reserve(buf_t *b, size_t extra) {
    if (b->head && b->head == b->len) b->head = b->len = 0;
    if (b->len + extra <= b->cap) return;
    if (b->head) { /* compact before growing */
        memmove(b->data, b->data + b->head, b->len - b->head);
        b->len -= b->head;
        b->head = 0;
        if (b->len + extra <= b->cap) return;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) die("out of memory");
    b->cap = cap;
}

static void buf_append(buf_t *b, const void *p, size_t n) {
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_free(buf_t *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void cpu_times(double *user, double *system) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    *user = u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6;
    *system = u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

static uint64_t rng_state;

static uint64_t rng(void) { /* xorshift64*: masking keys and handshake keys */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void rng_seed(void) {
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &rng_state, sizeof rng_state) != sizeof rng_state)
        rng_state = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    if (fd >= 0) close(fd);
    if (!rng_state) rng_state = 88172645463325252ULL;
}

/* ------------------------------------------------------------------ SHA-1 and base64 */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    uint8_t *m = calloc(total, 1);
    if (!m) die("out of memory");
    memcpy(m, msg, len);
    m[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) m[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t chunk = 0; chunk < total; chunk += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++) {
            const uint8_t *p = m + chunk + 4 * i;
            w[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        }
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
            else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            else f = b ^ c ^ d, k = 0xCA62C1D6;
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d, d = c, c = rol(b, 30), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    free(m);
    for (int i = 0; i < 20; i++) out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const uint8_t *in, size_t len, char *out) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = i + 1 < len ? abc[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? abc[v & 63] : '=';
    }
    out[o] = 0;
}

/* ------------------------------------------------------------------ UTF-8 */

static bool utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        while (i + 8 <= n) { /* fast path: eight ASCII bytes at a time */
            uint64_t v;
            memcpy(&v, s + i, 8);
            if (v & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t k;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) k = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) k = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) k = 3, cp = c & 0x07;
        else return false;
        if (i + k >= n) return false; /* truncated sequence */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

/* ------------------------------------------------------------------ configuration */

/* The value after "key": in a flat JSON object (the config and the commands are flat). */
static const char *json_value(const char *json, const char *key) {
    size_t n = strlen(key);
    for (const char *p = strchr(json, '"'); p; p = strchr(p + 1, '"')) {
        if (strncmp(p + 1, key, n) || p[n + 1] != '"') continue;
        const char *v = p + n + 2;
        while (isspace((unsigned char)*v)) v++;
        if (*v != ':') continue;
        v++;
        while (isspace((unsigned char)*v)) v++;
        return v;
    }
    return NULL;
}

static double json_number(const char *json, const char *key, double fallback) {
    const char *v = json_value(json, key);
    return v && (isdigit((unsigned char)*v) || *v == '-' || *v == '.') ? strtod(v, NULL) : fallback;
}

/* Copies the JSON string at v (just after its opening quote) into out; returns its end. */
static const char *json_copy_string(const char *v, char *out, size_t cap) {
    size_t o = 0;
    while (*v && *v != '"') {
        if (*v == '\\' && v[1]) v++;
        if (o + 1 < cap) out[o++] = *v;
        v++;
    }
    out[o] = 0;
    return *v ? v + 1 : v;
}

static bool json_string(const char *json, const char *key, char *out, size_t cap) {
    const char *v = json_value(json, key);
    if (!v || *v != '"') return false;
    json_copy_string(v + 1, out, cap);
    return true;
}

/* ------------------------------------------------------------------ clients */

enum dialect { TRIO_SESSIONS, RELAY, SOCKET_IO };
enum placement { SAME, ALTERNATE, OTHER };

enum step {
    ST_IDLE,        /* not started */
    ST_TCP,         /* TCP connect in progress */
    ST_UPGRADE,     /* upgrade request sent; waiting for 101 */
    ST_HELLO,       /* trio-sessions: hello sent (ref 1) */
    ST_CREATE,      /* host: session:create sent (ref 2) */
    ST_ROOM,        /* host: session:createRoom sent (ref 3) */
    ST_PARKED,      /* member: hello done, waiting for the host's code */
    ST_JOIN,        /* member: session:join sent (ref 2) */
    ST_RETRY,       /* a create or join refused with retry_after_ms: waiting to send it again */
    ST_SIO_OPEN,    /* socket.io: waiting for engine.io's open packet */
    ST_SIO_CONNECT, /* socket.io: "40" sent */
    ST_SIO_JOIN,    /* socket.io: join sent with ack 1 */
    ST_READY,       /* joined: takes part in the load */
    ST_CLOSING,     /* the server's close frame was answered; waiting for its EOF */
    ST_DEAD,        /* socket closed */
};

typedef struct {
    char host[256], port[16], path[1024];
    struct sockaddr_storage addr;
    socklen_t addrlen;
} url_t;

typedef struct {
    char code[64];
    int connected; /* clients of the group that joined */
    bool ready;    /* the host's session and room exist */
    bool failed;   /* the host failed: its members cannot join */
} group_t;

typedef struct {
    int fd;
    int group, member, url;
    enum step step;
    bool in_setup;   /* counted in the set-up window */
    bool was_ready;  /* joined once: its loss counts as "closed" */
    uint32_t events; /* epoll interest */
    buf_t in, out, msg;
    int msg_opcode;   /* opcode of the fragmented message being assembled, 0: none */
    int64_t retry_at; /* ST_RETRY: when to send the refused request again */
    char key[32];     /* Sec-WebSocket-Key */
} client_t;

static url_t urls[MAX_URLS];
static int n_urls;
static enum dialect dialect = TRIO_SESSIONS;
static enum placement placement = SAME;
static int n_groups, n_members, n_clients, window_size = 200;
static double setup_timeout = 120, settle = 0.3;
static char *pad; /* the payload's padding: messageSize - 24 bytes of 'x' */
static size_t pad_len;
static group_t *groups;
static client_t *clients;
static int epfd;
static uint8_t scratch[SCRATCH];

/* set-up progress */
static int next_start, in_flight, setup_errors, waiting_retries, retries;

/* the running phase */
static int phase;
static bool counting; /* deliveries of `phase` are counted (loaded period and drain) */
static long long sent, expected, delivered, closed_links, reordered;
/* order checks: per receiver, the last stamp from each sender of its group, and (trio-sessions)
   the last session seq it saw */
static int64_t *last_stamp;
static long long *last_seq;
static double *latencies;
static size_t n_latencies, cap_latencies;

static void fail(client_t *c, int code);
static void send_frame(client_t *c, int opcode, const void *payload, size_t len);
static void on_text(client_t *c, const char *text, size_t len);

static bool parse_url(const char *text, url_t *u) {
    if (strncmp(text, "ws://", 5)) return false;
    const char *host = text + 5, *slash = strchr(host, '/');
    const char *colon = memchr(host, ':', slash ? (size_t)(slash - host) : strlen(host));
    size_t host_len = colon ? (size_t)(colon - host) : slash ? (size_t)(slash - host) : strlen(host);
    if (host_len == 0 || host_len >= sizeof u->host) return false;
    memcpy(u->host, host, host_len);
    u->host[host_len] = 0;
    if (colon) {
        size_t port_len = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);
        if (port_len == 0 || port_len >= sizeof u->port) return false;
        memcpy(u->port, colon + 1, port_len);
        u->port[port_len] = 0;
    } else {
        strcpy(u->port, "80");
    }
    snprintf(u->path, sizeof u->path, "%s", slash ? slash : "/");
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *found;
    if (getaddrinfo(u->host, u->port, &hints, &found) != 0) return false;
    memcpy(&u->addr, found->ai_addr, found->ai_addrlen);
    u->addrlen = found->ai_addrlen;
    freeaddrinfo(found);
    return true;
}

static void configure(const char *json) {
    char text[1024];
    const char *list = json_value(json, "urls");
    if (list && *list == '[') {
        for (const char *p = strchr(list, '"'); p && n_urls < MAX_URLS; p = strchr(p, '"')) {
            const char *end = strchr(list, ']');
            if (end && p > end) break;
            p = json_copy_string(p + 1, text, sizeof text);
            if (!parse_url(text, &urls[n_urls++])) die("bad url in urls");
        }
    } else if (json_string(json, "url", text, sizeof text)) {
        if (!parse_url(text, &urls[n_urls++])) die("bad url");
    }
    if (n_urls == 0) die("no url or urls in the configuration");
    if (json_string(json, "dialect", text, sizeof text)) {
        if (!strcmp(text, "relay")) dialect = RELAY;
        else if (!strcmp(text, "socket.io")) dialect = SOCKET_IO;
        else if (strcmp(text, "trio-sessions")) die("unknown dialect");
    }
    if (json_string(json, "placement", text, sizeof text)) {
        if (!strcmp(text, "alternate")) placement = ALTERNATE;
        else if (!strcmp(text, "other")) placement = OTHER;
        else if (strcmp(text, "same")) die("unknown placement (same, alternate, other)");
    }
    n_groups = (int)json_number(json, "groups", 1);
    n_members = (int)json_number(json, "members", 2);
    window_size = (int)json_number(json, "window", 200);
    setup_timeout = json_number(json, "setupTimeout", 120);
    settle = json_number(json, "settle", 0.3);
    if (n_groups < 1 || n_members < 1 || window_size < 1) die("bad groups, members or window");
    double size = json_number(json, "messageSize", 64) - 24;
    pad_len = size < 0 ? 0 : size > MAX_MESSAGE / 2 ? MAX_MESSAGE / 2 : (size_t)size;
    pad = malloc(pad_len + 1);
    if (!pad) die("out of memory");
    memset(pad, 'x', pad_len);
    pad[pad_len] = 0;
    n_clients = n_groups * n_members;
}

/* ------------------------------------------------------------------ sockets and frames */

static void set_events(client_t *c, uint32_t events) {
    if (c->events == events) return;
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - clients)};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->events = events;
}

static void close_socket(client_t *c) {
    if (c->fd >= 0) close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->step = ST_DEAD;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->msg);
}

/* Sends what is queued; returns false if the link failed (and was closed). */
static bool flush(client_t *c) {
    while (c->out.head < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out.head, c->out.len - c->out.head,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out.head += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, EPOLLIN | EPOLLOUT);
            return true;
        } else {
            fail(c, 0);
            return false;
        }
    }
    c->out.head = c->out.len = 0;
    if (c->step != ST_TCP) set_events(c, EPOLLIN);
    return true;
}

/* Queues one masked frame (FIN set) and sends what it can. */
static void send_frame(client_t *c, int opcode, const void *payload, size_t len) {
    if (c->fd < 0) return;
    buf_reserve(&c->out, len + 14);
    uint8_t *h = c->out.data + c->out.len;
    size_t n = 0;
    h[n++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[n++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[n++] = 0x80 | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t key32 = (uint32_t)(rng() >> 32);
    uint8_t key[4];
    memcpy(key, &key32, 4);
    memcpy(h + n, key, 4);
    n += 4;
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++) h[n + i] = p[i] ^ key[i & 3];
    c->out.len += n + len;
    if (!(c->events & EPOLLOUT)) flush(c); /* else the kernel is full: EPOLLOUT flushes */
}

static void send_text(client_t *c, const char *text) { send_frame(c, 0x1, text, strlen(text)); }

/* Fails the link: a close frame with `code` if it is worth one (best effort), then closed. */
static void fail(client_t *c, int code) {
    if (c->step == ST_DEAD) return;
    if (code && c->fd >= 0 && c->step >= ST_HELLO && c->step != ST_CLOSING) {
        uint8_t body[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        buf_reserve(&c->out, 16);
        c->events |= EPOLLOUT; /* keeps send_frame from flushing (and failing) re-entrantly */
        send_frame(c, 0x8, body, 2);
        (void)!send(c->fd, c->out.data + c->out.head, c->out.len - c->out.head,
                    MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    bool in_setup = c->in_setup, ready = c->was_ready;
    if (c->step == ST_RETRY) waiting_retries--;
    close_socket(c);
    if (ready) closed_links++;
    if (in_setup) {
        c->in_setup = false;
        setup_errors++;
        in_flight--;
        if (c->member == 0) { /* a host that failed: its members cannot join */
            group_t *g = &groups[c->group];
            g->failed = true;
            for (int m = 1; m < n_members; m++) {
                client_t *member = &clients[c->group * n_members + m];
                if (member->step == ST_PARKED) fail(member, 1000);
            }
        }
    }
}

/* ------------------------------------------------------------------ set-up */

static void start_client(client_t *c) {
    url_t *u = &urls[c->url];
    c->in_setup = true;
    in_flight++;
    c->fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fail(c, 0);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->step = ST_TCP;
    if (connect(c->fd, (struct sockaddr *)&u->addr, u->addrlen) < 0 && errno != EINPROGRESS) {
        fail(c, 0);
        return;
    }
    c->events = EPOLLIN | EPOLLOUT;
    struct epoll_event ev = {.events = c->events, .data.u32 = (uint32_t)(c - clients)};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) fail(c, 0);
}

static void start_more(void) {
    while (in_flight < window_size && next_start < n_clients) {
        int i = next_start++, id;
        if (i < n_groups) { /* hosts first: their sessions must exist */
            id = i * n_members;
        } else {
            int j = i - n_groups;
            id = (j / (n_members - 1)) * n_members + 1 + j % (n_members - 1);
        }
        start_client(&clients[id]);
    }
}

static void now_ready(client_t *c) {
    c->step = ST_READY;
    c->was_ready = true;
    c->in_setup = false;
    in_flight--;
    groups[c->group].connected++;
}

static void send_upgrade(client_t *c) {
    uint8_t nonce[16];
    uint64_t a = rng(), b = rng();
    memcpy(nonce, &a, 8);
    memcpy(nonce + 8, &b, 8);
    base64(nonce, 16, c->key);
    url_t *u = &urls[c->url];
    char request[2048];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     u->path, u->host, u->port, c->key);
    buf_append(&c->out, request, (size_t)n);
    c->step = ST_UPGRADE;
    flush(c);
}

static void request(client_t *c, const char *fields, int ref, enum step next) {
    char text[512];
    snprintf(text, sizeof text, "{%s,\"ref\":%d}", fields, ref);
    c->step = next;
    send_text(c, text);
}

static void send_join(client_t *c) {
    char fields[160];
    snprintf(fields, sizeof fields, "\"type\":\"session:join\",\"code\":\"%s\"",
             groups[c->group].code);
    request(c, fields, 2, ST_JOIN);
}

/* The socket is open and upgraded: the dialect's first step. */
static void on_open(client_t *c) {
    char text[256];
    switch (dialect) {
    case TRIO_SESSIONS:
        snprintf(text, sizeof text, "\"type\":\"hello\",\"name\":\"bench-%d-%d\"", c->group,
                 c->member);
        request(c, text, 1, ST_HELLO);
        break;
    case RELAY:
        snprintf(text, sizeof text, "{\"join\":\"g%dr0\"}", c->group);
        send_text(c, text);
        if (c->step != ST_DEAD) now_ready(c);
        break;
    case SOCKET_IO:
        c->step = ST_SIO_OPEN;
        break;
    }
}

static void group_ready(group_t *g, int index) {
    g->ready = true;
    for (int m = 1; m < n_members; m++) {
        client_t *member = &clients[index * n_members + m];
        if (member->step == ST_PARKED) send_join(member);
    }
}

/* The value of the first member "key" in the JSON text (whitespace allowed around the colon;
   the first match at any depth: the messages looked into have it at the top or unambiguous),
   or NULL. The value ends inside the text: every message ends with '}' or ']'. */
static const char *field(const char *text, size_t len, const char *key) {
    char quoted[32];
    size_t n = (size_t)snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *end = text + len;
    for (const char *p = text; (p = memmem(p, (size_t)(end - p), quoted, n)); p += n) {
        const char *v = p + n;
        while (v < end && isspace((unsigned char)*v)) v++;
        if (v == end || *v != ':') continue;
        v++;
        while (v < end && isspace((unsigned char)*v)) v++;
        return v < end ? v : NULL;
    }
    return NULL;
}

/* Is `text` the reply to `ref`? Sets *ok. */
static bool is_reply(const char *text, size_t len, int ref, bool *ok) {
    static const char head[] = "{\"type\":\"reply\"";
    if (len < sizeof head || memcmp(text, head, sizeof head - 1)) return false;
    const char *r = field(text, len, "ref"), *status = field(text, len, "ok");
    if (!r || atoi(r) != ref || !status) return false;
    *ok = !strncmp(status, "true", 4);
    return true;
}

/* A refused create or join that says when to try again is retried then, like a real client
   (a cluster node refuses creates with "unavailable" while it reserves codes). */
static bool retry_later(client_t *c, const char *text, size_t len) {
    const char *after = field(text, len, "retry_after_ms");
    if (!after) return false;
    c->retry_at = now_ns() + (int64_t)(atof(after) * 1e6);
    c->step = ST_RETRY;
    waiting_retries++;
    retries++;
    return true;
}

static void send_retries(void) {
    int64_t now = now_ns();
    for (int i = 0; i < n_clients && waiting_retries; i++) {
        client_t *c = &clients[i];
        if (c->step != ST_RETRY || c->retry_at > now) continue;
        waiting_retries--;
        if (c->member == 0) request(c, "\"type\":\"session:create\"", 2, ST_CREATE);
        else send_join(c);
    }
}

static void on_setup_text(client_t *c, const char *text, size_t len) {
    bool ok = false;
    group_t *g = &groups[c->group];
    switch (c->step) {
    case ST_HELLO:
        if (!is_reply(text, len, 1, &ok)) return;
        if (!ok) break;
        if (c->member == 0) request(c, "\"type\":\"session:create\"", 2, ST_CREATE);
        else if (g->ready) send_join(c);
        else if (g->failed) break;
        else c->step = ST_PARKED;
        return;
    case ST_CREATE: {
        if (!is_reply(text, len, 2, &ok)) return;
        if (!ok && retry_later(c, text, len)) return;
        const char *code = ok ? field(text, len, "code") : NULL;
        if (!code || *code != '"') break;
        json_copy_string(code + 1, g->code, sizeof g->code);
        request(c, "\"type\":\"session:createRoom\",\"room\":\"r0\"", 3, ST_ROOM);
        return;
    }
    case ST_ROOM:
        if (!is_reply(text, len, 3, &ok)) return;
        if (!ok) break;
        now_ready(c);
        group_ready(g, c->group);
        return;
    case ST_JOIN:
        if (!is_reply(text, len, 2, &ok)) return;
        if (!ok && retry_later(c, text, len)) return;
        if (!ok) break;
        now_ready(c);
        return;
    case ST_SIO_OPEN:
        if (len < 1 || text[0] != '0') return;
        c->step = ST_SIO_CONNECT;
        send_text(c, "40");
        return;
    case ST_SIO_CONNECT: {
        if (len < 2 || memcmp(text, "40", 2)) return;
        char join[96];
        snprintf(join, sizeof join, "421[\"join\",\"g%dr0\"]", c->group);
        c->step = ST_SIO_JOIN;
        send_text(c, join);
        return;
    }
    case ST_SIO_JOIN:
        if (len < 3 || memcmp(text, "431", 3)) return;
        now_ready(c);
        return;
    default:
        return;
    }
    fail(c, 1000); /* refused by the server */
}

/* ------------------------------------------------------------------ deliveries */

static void record_latency(double ms) {
    if (n_latencies == cap_latencies) {
        cap_latencies = cap_latencies ? cap_latencies * 2 : 1 << 16;
        latencies = realloc(latencies, cap_latencies * sizeof *latencies);
        if (!latencies) die("out of memory");
    }
    latencies[n_latencies++] = ms;
}

/* A delivery: "<phase>|<stamp>|<sender member>|xxx" in the data field. */
static void on_delivery(client_t *c, const char *text, size_t len) {
    const char *data = field(text, len, "data");
    if (!data || *data != '"' || isdigit((unsigned char)text[len - 1])) return;
    char *end; /* the numbers parsed below end inside the text, which ends in '}' or ']' */
    long sent_phase = strtol(data + 1, &end, 10);
    if (*end != '|' || sent_phase != phase) return;
    long long stamp = strtoll(end + 1, &end, 10);
    if (*end != '|') return;
    long sender = strtol(end + 1, &end, 10);
    if (*end != '|' || sender < 0 || sender >= n_members) return;
    delivered++;
    record_latency((double)(now_ns() - stamp) / 1e6);
    int64_t *last = &last_stamp[(size_t)(c - clients) * (size_t)n_members + (size_t)sender];
    bool out_of_order = stamp <= *last;
    *last = stamp;
    if (dialect == TRIO_SESSIONS) {
        const char *seq = field(text, len, "seq");
        long long value = seq ? strtoll(seq, NULL, 10) : 0;
        out_of_order |= value <= last_seq[c - clients];
        last_seq[c - clients] = value;
    }
    reordered += out_of_order;
}

static void on_text(client_t *c, const char *text, size_t len) {
    if (dialect == SOCKET_IO && len == 1 && text[0] == '2') { /* engine.io ping */
        send_text(c, "3");
        return;
    }
    if (c->step != ST_READY) {
        on_setup_text(c, text, len);
        return;
    }
    if (!counting) return;
    static const char room_message[] = "{\"type\":\"room:message\"";
    static const char sio_message[] = "42[\"msg\"";
    if (dialect == TRIO_SESSIONS &&
        (len < sizeof room_message || memcmp(text, room_message, sizeof room_message - 1)))
        return;
    if (dialect == SOCKET_IO &&
        (len < sizeof sio_message || memcmp(text, sio_message, sizeof sio_message - 1)))
        return;
    on_delivery(c, text, len);
}

/* ------------------------------------------------------------------ reading */

static void on_message(client_t *c, int opcode, const uint8_t *data, size_t len) {
    if (opcode != 0x1) return; /* binary: none of the dialects sends it */
    if (!utf8_valid(data, len)) {
        fail(c, 1007);
        return;
    }
    on_text(c, (const char *)data, len);
}

static void on_control(client_t *c, int opcode, const uint8_t *data, size_t len) {
    if (opcode == 0x9) { /* ping: pong with its payload */
        send_frame(c, 0xA, data, len);
    } else if (opcode == 0x8) { /* close: echo its code, then wait for the server's EOF */
        if (len == 1 || (len > 2 && !utf8_valid(data + 2, len - 2))) {
            fail(c, 1002);
            return;
        }
        if (c->step == ST_CLOSING) return;
        send_frame(c, 0x8, data, len >= 2 ? 2 : 0);
        if (c->step == ST_DEAD) return;
        if (c->in_setup) { /* closed before it joined */
            fail(c, 0);
            return;
        }
        c->step = ST_CLOSING;
    }
}

static void on_frame(client_t *c, bool fin, int opcode, const uint8_t *p, size_t len) {
    if (opcode >= 0x8) {
        if (!fin || len > 125 || opcode > 0xA) fail(c, 1002);
        else on_control(c, opcode, p, len);
    } else if (opcode == 0x0) { /* continuation */
        if (!c->msg_opcode || c->msg.len + len > MAX_MESSAGE) {
            fail(c, c->msg_opcode ? 1009 : 1002);
            return;
        }
        buf_append(&c->msg, p, len);
        if (!fin) return;
        int whole = c->msg_opcode;
        c->msg_opcode = 0;
        on_message(c, whole, c->msg.data + c->msg.head, c->msg.len - c->msg.head);
        if (c->step != ST_DEAD) c->msg.head = c->msg.len = 0;
    } else if (opcode <= 0x2) {
        if (c->msg_opcode) {
            fail(c, 1002);
        } else if (fin) {
            on_message(c, opcode, p, len);
        } else {
            c->msg_opcode = opcode;
            c->msg.head = c->msg.len = 0;
            buf_append(&c->msg, p, len);
        }
    } else {
        fail(c, 1002); /* reserved opcode */
    }
}

/* Parses the complete frames in p[0, n); returns the bytes consumed. */
static size_t parse_frames(client_t *c, const uint8_t *p, size_t n) {
    size_t off = 0;
    while (n - off >= 2 && c->step != ST_DEAD) {
        const uint8_t *f = p + off;
        size_t head = 2;
        uint64_t len = f[1] & 0x7F;
        if ((f[0] & 0x70) || (f[1] & 0x80)) { /* reserved bits, or a masked server frame */
            fail(c, 1002);
            break;
        }
        if (len == 126) {
            if (n - off < 4) break;
            len = (uint64_t)f[2] << 8 | f[3];
            head = 4;
        } else if (len == 127) {
            if (n - off < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | f[2 + i];
            head = 10;
        }
        if (len > MAX_MESSAGE) {
            fail(c, 1009);
            break;
        }
        if (n - off - head < len) break; /* the rest comes with a later read */
        on_frame(c, f[0] & 0x80, f[0] & 0x0F, f + head, (size_t)len);
        off += head + (size_t)len;
    }
    return off;
}

static bool header_has(const char *value, size_t len, const char *token) {
    size_t n = strlen(token);
    for (size_t i = 0; i + n <= len; i++)
        if (!strncasecmp(value + i, token, n)) return true;
    return false;
}

/* The handshake response in p[0, n): returns its length, 0 if incomplete, or -1 if refused. */
static long parse_upgrade(client_t *c, const uint8_t *p, size_t n) {
    const uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) return n > MAX_HEAD ? -1 : 0;
    size_t head = (size_t)(end - p) + 4;
    const char *text = (const char *)p;
    if (n < 12 || memcmp(text, "HTTP/1.1 101", 12)) return -1;
    char accept_in[128], accept[32];
    uint8_t digest[20];
    snprintf(accept_in, sizeof accept_in, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
    sha1((const uint8_t *)accept_in, strlen(accept_in), digest);
    base64(digest, 20, accept);
    bool upgrade = false, connection = false, accepted = false;
    for (const char *line = strstr(text, "\r\n") + 2; line < text + head - 2;) {
        const char *eol = memmem(line, (size_t)(text + head - line), "\r\n", 2);
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon) {
            size_t name = (size_t)(colon - line);
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            size_t vlen = (size_t)(eol - v);
            while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
            if (name == 7 && !strncasecmp(line, "upgrade", 7))
                upgrade = header_has(v, vlen, "websocket");
            else if (name == 10 && !strncasecmp(line, "connection", 10))
                connection = header_has(v, vlen, "upgrade");
            else if (name == 20 && !strncasecmp(line, "sec-websocket-accept", 20))
                accepted = vlen == strlen(accept) && !memcmp(v, accept, vlen);
            else if ((name == 24 && !strncasecmp(line, "sec-websocket-extensions", 24)) ||
                     (name == 22 && !strncasecmp(line, "sec-websocket-protocol", 22)))
                return -1; /* none was offered */
        }
        line = eol + 2;
    }
    return upgrade && connection && accepted ? (long)head : -1;
}

/* Handles bytes just read: the handshake response, then frames. Returns bytes consumed. */
static size_t consume(client_t *c, const uint8_t *p, size_t n) {
    size_t used = 0;
    if (c->step == ST_UPGRADE) {
        long head = parse_upgrade(c, p, n);
        if (head < 0) {
            fail(c, 0);
            return n;
        }
        if (head == 0) return 0;
        used = (size_t)head;
        on_open(c);
    }
    if (c->step == ST_DEAD) return n;
    return used + parse_frames(c, p + used, n - used);
}

static void on_readable(client_t *c) {
    for (;;) {
        ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
        if (n == 0) { /* the server closed the TCP connection */
            fail(c, 0);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) fail(c, 0);
            return;
        }
        if (c->in.len == c->in.head) { /* nothing held over: parse in place */
            size_t used = consume(c, scratch, (size_t)n);
            if (c->step != ST_DEAD && used < (size_t)n) {
                c->in.head = c->in.len = 0;
                buf_append(&c->in, scratch + used, (size_t)n - used);
            }
        } else {
            buf_append(&c->in, scratch, (size_t)n);
            size_t used = consume(c, c->in.data + c->in.head, c->in.len - c->in.head);
            if (c->step != ST_DEAD) c->in.head += used;
        }
        if (c->step == ST_DEAD || (size_t)n < sizeof scratch) return;
    }
}

static void on_writable(client_t *c) {
    if (c->step == ST_TCP) {
        int error = 0;
        socklen_t size = sizeof error;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0 || error) {
            fail(c, 0);
            return;
        }
        send_upgrade(c);
        return;
    }
    flush(c);
}

/* ------------------------------------------------------------------ the loop */

static buf_t input; /* standard input, up to a whole line */
static bool input_closed;

static void on_stdin(void) {
    buf_reserve(&input, 4096);
    ssize_t n = read(0, input.data + input.len, input.cap - input.len);
    if (n > 0) input.len += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        input_closed = true; /* commands already read still run; EOF then means quit */
        epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
    }
}

/* Waits at most timeout_ms for events and handles them. */
static void pump(int timeout_ms) {
    struct epoll_event events[1024];
    int n = epoll_wait(epfd, events, 1024, timeout_ms);
    for (int i = 0; i < n; i++) {
        uint32_t tag = events[i].data.u32, what = events[i].events;
        if (tag == STDIN_TAG) {
            on_stdin();
            continue;
        }
        client_t *c = &clients[tag];
        if (c->step == ST_DEAD) continue;
        if (what & EPOLLOUT) on_writable(c);
        if (c->step != ST_DEAD && (what & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(c);
    }
    if (waiting_retries) send_retries();
    start_more(); /* set-ups that ended make room for more */
}

static int sleep_ms(int64_t until) {
    int64_t left = until - now_ns();
    return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

static void connect_all(void) {
    int64_t started = now_ns(), deadline = started + (int64_t)(setup_timeout * 1e9);
    double user, system;
    start_more();
    while ((next_start < n_clients || in_flight > 0) && now_ns() < deadline) pump(10);
    for (int i = 0; i < n_clients; i++)
        if (clients[i].in_setup) fail(&clients[i], 1000); /* out of time */
    setup_errors += n_clients - next_start;             /* never started */
    next_start = n_clients;
    int64_t settled = now_ns() + (int64_t)(settle * 1e9); /* let the join events settle */
    while (now_ns() < settled) pump(sleep_ms(settled));
    int ready = 0, per_url[MAX_URLS] = {0};
    for (int i = 0; i < n_clients; i++)
        if (clients[i].step == ST_READY) ready++, per_url[clients[i].url]++;
    cpu_times(&user, &system);
    printf("{\"ready\": %d, \"errors\": %d, \"retries\": %d, \"per_url\": [", ready, setup_errors,
           retries);
    for (int u = 0; u < n_urls; u++) printf("%s%d", u ? ", " : "", per_url[u]);
    printf("], \"setup_s\": %.3f, \"cpu_seconds\": %.3f}\n", (now_ns() - started) / 1e9,
           user + system);
    fflush(stdout);
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_quantile(const char *name, double q) {
    if (!n_latencies) {
        printf(", \"%s\": null", name);
        return;
    }
    size_t i = (size_t)(q * (double)n_latencies);
    printf(", \"%s\": %.3f", name, latencies[i < n_latencies ? i : n_latencies - 1]);
}

/* One rate phase: `rate` sends per second per ready client for `duration`, then `drain`. */
static void run_phase(double rate, double duration, double drain) {
    int *ready = malloc(sizeof(int) * (size_t)n_clients), n_ready = 0;
    if (!ready) die("out of memory");
    for (int i = 0; i < n_clients; i++)
        if (clients[i].step == ST_READY) ready[n_ready++] = i;
    phase++;
    sent = expected = delivered = reordered = 0;
    n_latencies = 0;
    long long closed_before = closed_links;
    counting = true;
    double user0, system0, user1, system1, user2, system2, due = 0, lag = 0;
    cpu_times(&user0, &system0);
    int64_t started = now_ns(), last = started, end = started + (int64_t)(duration * 1e9);
    double total = rate * n_ready; /* sends per second over all clients */
    int next = 0;
    size_t text_cap = pad_len + 256;
    char *text = malloc(text_cap);
    if (!text) die("out of memory");
    while (last < end) {
        int64_t now = now_ns();
        double late = (now - last) / 1e6 - 1.0;
        if (late > lag) lag = late;
        due += total * (double)(now - last) / 1e9;
        last = now;
        while (due >= 1 && n_ready) {
            due -= 1;
            client_t *c = &clients[ready[next++ % n_ready]];
            if (c->step != ST_READY) continue;
            int g = c->group;
            long long stamp = now_ns();
            int m = c->member;
            if (dialect == TRIO_SESSIONS)
                snprintf(text, text_cap,
                         "{\"type\":\"room:message\",\"room\":\"r0\",\"data\":\"%d|%lld|%d|%s\"}",
                         phase, stamp, m, pad);
            else if (dialect == RELAY)
                snprintf(text, text_cap, "{\"room\":\"g%dr0\",\"data\":\"%d|%lld|%d|%s\"}",
                         g, phase, stamp, m, pad);
            else
                snprintf(text, text_cap,
                         "42[\"msg\",{\"room\":\"g%dr0\",\"data\":\"%d|%lld|%d|%s\"}]", g,
                         phase, stamp, m, pad);
            send_text(c, text);
            sent++;
            expected += groups[g].connected - 1;
        }
        pump(1);
    }
    cpu_times(&user1, &system1);
    int64_t drained = end + (int64_t)(drain * 1e9);
    while (now_ns() < drained) pump(sleep_ms(drained));
    counting = false;
    cpu_times(&user2, &system2);
    qsort(latencies, n_latencies, sizeof *latencies, compare_doubles);
    printf("{\"sent\": %lld, \"expected\": %lld, \"delivered\": %lld", sent, expected, delivered);
    print_quantile("p50", 0.5);
    print_quantile("p99", 0.99);
    print_quantile("max", 1.0);
    printf(", \"cpu\": %.4f, \"cpu_seconds\": %.4f, \"cpu_user\": %.4f, \"cpu_system\": %.4f"
           ", \"lag\": %.3f, \"closed\": %lld, \"reordered\": %lld}\n",
           (user1 - user0 + system1 - system0) / duration, user2 - user0 + system2 - system0,
           user2 - user0, system2 - system0, lag, closed_links - closed_before, reordered);
    fflush(stdout);
    free(ready);
    free(text);
}

/* ------------------------------------------------------------------ main */

static int url_of(int group, int member) {
    int home = group % n_urls;
    if (member == 0 || placement == SAME) return home;
    if (placement == ALTERNATE) return (group + member) % n_urls;
    return (group + 1) % n_urls;
}

static void raise_file_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) die("usage: loadgen '<JSON configuration>' (see the top of loadgen.c)");
    configure(argv[1]);
    raise_file_limit();
    rng_seed();
    groups = calloc((size_t)n_groups, sizeof *groups);
    clients = calloc((size_t)n_clients, sizeof *clients);
    last_stamp = calloc((size_t)n_clients * (size_t)n_members, sizeof *last_stamp);
    last_seq = calloc((size_t)n_clients, sizeof *last_seq);
    if (!groups || !clients || !last_stamp || !last_seq) die("out of memory");
    for (int i = 0; i < n_clients; i++) {
        client_t *c = &clients[i];
        c->fd = -1;
        c->group = i / n_members;
        c->member = i % n_members;
        c->url = url_of(c->group, c->member);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll");
    connect_all();
    for (;;) {
        char *eol;
        while (!(eol = input.len > input.head
                           ? memchr(input.data + input.head, '\n', input.len - input.head)
                           : NULL) &&
               !input_closed)
            pump(-1);
        if (!eol) break;
        *eol = 0;
        const char *line = (const char *)input.data + input.head;
        input.head = (size_t)((uint8_t *)eol - input.data) + 1;
        char cmd[32] = "";
        json_string(line, "cmd", cmd, sizeof cmd);
        if (!strcmp(cmd, "quit")) break;
        if (!strcmp(cmd, "phase"))
            run_phase(json_number(line, "rate", 0), json_number(line, "duration", 1),
                      json_number(line, "drain", 0));
    }
    for (int i = 0; i < n_clients; i++) close_socket(&clients[i]);
    return 0;
}
