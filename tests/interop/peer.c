/* The C side of the interop test (tests/interop.rs): started by mpirun beside spmd ranks in one MPI_COMM_WORLD,
 * it makes the plain MPI calls a C program makes, step for step in the order the spmd ranks make theirs. Where
 * spmd uses a checked handle, this side also makes spmd's small agreement collective (see agree_* below). A
 * failed check prints the world rank and the step, then aborts the job. */
#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double clib_allreduce_sum(MPI_Comm comm, double x);
int clib_ring(MPI_Comm comm, int token);
int clib_dup(MPI_Comm comm, MPI_Comm *out);
int clib_free(MPI_Comm *comm);

#define W MPI_COMM_WORLD
#define MAXP 64

static int me, np, nc, ns, idx, cranks[MAXP], sranks[MAXP];
static const char *step = "start";

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "interop: C rank (world rank %d) failed in step %s: ", me, step);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    MPI_Abort(W, 2);
}

#define CHECK(cond, ...)                                                                                           \
    do {                                                                                                           \
        if (!(cond)) fail(__VA_ARGS__);                                                                            \
    } while (0)

static void done(const char *name) {
    if (me == cranks[0]) {
        printf("interop c ok %s\n", name);
        fflush(stdout);
    }
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    CHECK(p, "out of memory");
    return p;
}

/* The byte pattern both sides use: message contents are checked byte for byte. */
static uint8_t byte_at(size_t seed, size_t j) { return (uint8_t)((j * 7 + seed * 13 + (j >> 9)) % 251); }

static void fill(uint8_t *b, size_t n, size_t seed) {
    for (size_t j = 0; j < n; j++) b[j] = byte_at(seed, j);
}

static void verify(const uint8_t *b, size_t n, size_t seed, const char *what) {
    for (size_t j = 0; j < n; j++)
        CHECK(b[j] == byte_at(seed, j), "%s: byte %zu of %zu is %u, expected %u", what, j, n, b[j], byte_at(seed, j));
}

static void expect_count(MPI_Status *st, MPI_Datatype t, int n, const char *what) {
    int got = -1;
    MPI_Get_count(st, t, &got);
    CHECK(got == n, "%s: %d elements arrived, expected %d", what, got, n);
}

/* ----- spmd's agreement collectives on checked handles ----- */

/* The agreement steps are made of non-blocking operations (completed here with MPI_Wait). Their result also says
 * whether some spmd rank has receives pending: then the data call that follows is the non-blocking form on every
 * rank (MPI never matches a blocking collective with a non-blocking one). This side never has any. */
#define BAD (1ull << 63)
#define BUSY (1ull << 61)
#define COUNT (BUSY - 1)

static void wait1(MPI_Request *q) { MPI_Wait(q, MPI_STATUS_IGNORE); }

/* Runs a collective in the form the agreement chose: `blocking` or `nonblocking` (which takes &q last). */
#define COLL(nb, blocking, ...)                                                                                        \
    do {                                                                                                               \
        if (nb) {                                                                                                      \
            MPI_Request q;                                                                                             \
            __VA_ARGS__;                                                                                               \
            wait1(&q);                                                                                                 \
        } else {                                                                                                       \
            blocking;                                                                                                  \
        }                                                                                                              \
    } while (0)

/* The first agreement on a communicator is a non-blocking collective on it (MPI_Iallreduce, MPI_Iallgather or
 * MPI_Ialltoall); when it shows that the ranks agreed and no spmd rank has receives pending, every rank then
 * makes a duplicate with MPI_Comm_dup, kept as an attribute of the communicator (as spmd keeps its own), and the
 * next agreements travel on the duplicate as point-to-point messages. */
static int private_key = MPI_KEYVAL_INVALID;

static int free_private(MPI_Comm comm, int key, void *value, void *extra) {
    (void)comm, (void)key, (void)extra;
    MPI_Comm_free((MPI_Comm *)value);
    free(value);
    return MPI_SUCCESS;
}

/* The duplicate, or MPI_COMM_NULL before the first agreement made one. */
static MPI_Comm private_of(MPI_Comm comm) {
    if (private_key == MPI_KEYVAL_INVALID)
        MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, free_private, &private_key, NULL);
    MPI_Comm *p;
    int flag;
    MPI_Comm_get_attr(comm, private_key, &p, &flag);
    return flag ? *p : MPI_COMM_NULL;
}

static void make_private(MPI_Comm comm) {
    MPI_Comm *p = xmalloc(sizeof *p);
    MPI_Comm_dup(comm, p);
    MPI_Comm_set_attr(comm, private_key, p);
}

/* Sends n uint64 to `to` and receives n from `from` (-1: none) with `tag` on the private duplicate. */
static void exchange(MPI_Comm p, int to, int from, int tag, const uint64_t *out, uint64_t *in, int n) {
    MPI_Request q[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    if (from >= 0) MPI_Irecv(in, n, MPI_UINT64_T, from, tag, p, &q[0]);
    if (to >= 0) MPI_Isend(out, n, MPI_UINT64_T, to, tag, p, &q[1]);
    wait1(&q[0]); /* (not MPI_Waitall with MPI_STATUSES_IGNORE, which gcc misreads with MPICH's mpi.h) */
    wait1(&q[1]);
}

static void max_n(uint64_t *acc, const uint64_t *got, int n) {
    for (int i = 0; i < n; i++) acc[i] = got[i] > acc[i] ? got[i] : acc[i];
}

/* The element-wise maximum of acc (n values) over the ranks of comm, on its duplicate p, by recursive doubling:
 * with pof2 the largest power of two not above the size and extra the rest, the first 2 * extra ranks pair up
 * (the even one hands its values to the odd one, tag base, and gets the result back at the end, tag base + 2);
 * the pof2 remaining ranks exchange with the rank whose index differs in one bit, lowest bit first (tag
 * base + 1). The tag base tells the length: 0 for 4 values, 10 for one per rank, 20 for one per rank and two. */
static void all_max(MPI_Comm p, uint64_t *acc, int n, int base) {
    int rank, size;
    MPI_Comm_rank(p, &rank);
    MPI_Comm_size(p, &size);
    if (size < 2) return;
    int pof2 = 1;
    while (pof2 * 2 <= size) pof2 *= 2;
    int extra = size - pof2, mine = -1;
    uint64_t got[MAXP + 2];
    if (rank < 2 * extra) {
        if (rank % 2 == 0) {
            exchange(p, rank + 1, -1, base, acc, got, n);
        } else {
            exchange(p, -1, rank - 1, base, acc, got, n);
            max_n(acc, got, n);
            mine = rank / 2;
        }
    } else {
        mine = rank - extra;
    }
    for (int mask = 1; mine >= 0 && mask < pof2; mask <<= 1) {
        int other = mine ^ mask, partner = other < extra ? 2 * other + 1 : other + extra;
        exchange(p, partner, partner, base + 1, acc, got, n);
        max_n(acc, got, n);
    }
    if (rank < 2 * extra) {
        if (rank % 2 == 1) {
            exchange(p, rank - 1, -1, base + 2, acc, got, n);
        } else {
            exchange(p, -1, rank + 1, base + 2, acc, got, n);
            memcpy(acc, got, n * sizeof *got);
        }
    }
}

/* Fixed-count collectives: the maximum of [n, ~n, bad, busy] (the second gives the smallest n). Returns busy. */
static int agree_fixed(MPI_Comm comm, uint64_t n) {
    uint64_t acc[4] = {n, ~n, 0, 0};
    MPI_Comm p = private_of(comm);
    if (p != MPI_COMM_NULL) {
        all_max(p, acc, 4, 0);
    } else {
        uint64_t out[4];
        MPI_Request q;
        MPI_Iallreduce(acc, out, 4, MPI_UINT64_T, MPI_MAX, comm, &q);
        wait1(&q);
        memcpy(acc, out, sizeof out);
        if (acc[0] == n && acc[1] == ~n && acc[2] == 0 && acc[3] == 0) make_private(comm);
    }
    CHECK(acc[0] == n && acc[1] == ~n && acc[2] == 0, "agreement on n = %llu gave [%llu, %llu, %llu]",
          (unsigned long long)n, (unsigned long long)acc[0], (unsigned long long)~acc[1], (unsigned long long)acc[2]);
    return acc[3] != 0;
}

/* Whether every rank's announced count has neither the bad nor the busy flag (then the duplicate is made). */
static int settled(const uint64_t *all) {
    for (int r = 0; r < np; r++)
        if (all[r] & (BAD | BUSY)) return 0;
    return 1;
}

/* Gatherv and allgatherv: every rank's send count (flag bits above), all-gathered: with MPI_Iallgather at first,
 * then as a maximum over the duplicate where every rank sets its own entry. */
static int agree_allgather(uint64_t mine, const int *expect) {
    uint64_t all[MAXP];
    int busy = 0;
    MPI_Comm p = private_of(W);
    if (p != MPI_COMM_NULL) {
        memset(all, 0, sizeof all);
        all[me] = mine;
        all_max(p, all, np, 10);
    } else {
        MPI_Request q;
        MPI_Iallgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, W, &q);
        wait1(&q);
        if (settled(all)) make_private(W);
    }
    for (int r = 0; r < np; r++) {
        CHECK((all[r] & COUNT) == (uint64_t)expect[r], "rank %d announced %llu", r, (unsigned long long)all[r]);
        busy |= (all[r] & BUSY) != 0;
    }
    return busy;
}

/* Alltoallv: every rank's count for every other: MPI_Ialltoall at first, then one message to and from each
 * other rank (tag 30) over the duplicate. */
static void agree_alltoall(const uint64_t *mine, uint64_t *got) {
    MPI_Comm p = private_of(W);
    if (p == MPI_COMM_NULL) {
        MPI_Request q;
        MPI_Ialltoall(mine, 1, MPI_UINT64_T, got, 1, MPI_UINT64_T, W, &q);
        wait1(&q);
        if (settled(got)) make_private(W);
        return;
    }
    MPI_Request q[2 * MAXP];
    int k = 0;
    got[me] = mine[me];
    for (int r = 0; r < np; r++)
        if (r != me) MPI_Irecv(&got[r], 1, MPI_UINT64_T, r, 30, p, &q[k++]);
    for (int r = 0; r < np; r++)
        if (r != me) MPI_Isend(&mine[r], 1, MPI_UINT64_T, r, 30, p, &q[k++]);
    for (int i = 0; i < k; i++) wait1(&q[i]);
}

/* ----- point-to-point ----- */

static const size_t SIZES[] = {0, 8, 4000, 4001, 65536, 8u << 20};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

static void p2p(void) {
    int peer = sranks[idx];
    MPI_Status st;
    for (size_t k = 0; k < NSIZES; k++) {
        size_t n = SIZES[k];
        int tag = 100 + 10 * (int)k;
        uint8_t *a = xmalloc(n), *b = xmalloc(n);
        fill(a, n, me * 100 + k);
        MPI_Send(a, (int)n, MPI_UINT8_T, peer, tag, W);     /* spmd: recv_buf_into */
        MPI_Send(a, (int)n, MPI_UINT8_T, peer, tag + 1, W); /* spmd: recv_buf */
        MPI_Recv(b, (int)n, MPI_UINT8_T, peer, tag + 2, W, &st); /* spmd: send_buf */
        expect_count(&st, MPI_UINT8_T, (int)n, "MPI_Recv of send_buf");
        verify(b, n, peer * 100 + k, "MPI_Recv of send_buf");
        fill(a, n, me * 100 + k + 50); /* spmd: sendrecv_buf */
        memset(b, 0, n);
        MPI_Sendrecv(a, (int)n, MPI_UINT8_T, peer, tag + 4, b, (int)n, MPI_UINT8_T, peer, tag + 3, W, &st);
        expect_count(&st, MPI_UINT8_T, (int)n, "MPI_Sendrecv with sendrecv_buf");
        verify(b, n, peer * 100 + k + 50, "MPI_Sendrecv with sendrecv_buf");
        free(a);
        free(b);
    }
}

/* Plain bytes to an spmd rank that calls recv_obj: it must say WrongFamily, consume them, and go on. */
static void wrong_family(void) {
    static const size_t sizes[] = {0, 24, 4001, 65536};
    int peer = sranks[idx];
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint8_t *a = xmalloc(sizes[k]);
        fill(a, sizes[k], k);
        MPI_Send(a, (int)sizes[k], MPI_UINT8_T, peer, 20, W);
        free(a);
    }
    int64_t after = 42 + me;
    MPI_Send(&after, 1, MPI_INT64_T, peer, 21, W);
}

/* ----- collectives, every rank a root in turn, checked and unchecked spmd handles ----- */

static void bcast(int checked, int root) {
    int n = 1000 + 7 * root;
    double *v = xmalloc(n * sizeof *v);
    for (int j = 0; j < n; j++) v[j] = me == root ? root * 1000 + j * 0.5 : 0.0;
    int nb = checked && agree_fixed(W, n);
    COLL(nb, MPI_Bcast(v, n, MPI_DOUBLE, root, W), MPI_Ibcast(v, n, MPI_DOUBLE, root, W, &q));
    for (int j = 0; j < n; j++) CHECK(v[j] == root * 1000 + j * 0.5, "bcast from %d: element %d is %g", root, j, v[j]);
    free(v);
}

static void gatherv(int checked, int root) {
    int counts[MAXP], displs[MAXP], total = 0;
    for (int r = 0; r < np; r++) {
        counts[r] = ((r + root) % np) * 5;
        displs[r] = total;
        total += counts[r];
    }
    int n = counts[me];
    int64_t *s = xmalloc(n * sizeof *s), *all = xmalloc(total * sizeof *all);
    for (int j = 0; j < n; j++) s[j] = me * 100000 + j;
    int nb = checked && agree_allgather(n, counts);
    COLL(nb, MPI_Gatherv(s, n, MPI_INT64_T, all, counts, displs, MPI_INT64_T, root, W),
         MPI_Igatherv(s, n, MPI_INT64_T, all, counts, displs, MPI_INT64_T, root, W, &q));
    if (me == root)
        for (int r = 0; r < np; r++)
            for (int j = 0; j < counts[r]; j++)
                CHECK(all[displs[r] + j] == r * 100000 + j, "gatherv to %d: element %d from rank %d is %lld", root, j, r,
                      (long long)all[displs[r] + j]);
    free(s);
    free(all);
}

static void scatterv(int checked, int root) {
    int counts[MAXP], displs[MAXP], total = 0;
    for (int r = 0; r < np; r++) {
        counts[r] = ((r + 2 * root + 1) % np) * 7;
        displs[r] = total;
        total += counts[r];
    }
    int32_t *all = xmalloc(total * sizeof *all), *mine = xmalloc(counts[me] * sizeof *mine);
    if (me == root)
        for (int r = 0; r < np; r++)
            for (int j = 0; j < counts[r]; j++) all[displs[r] + j] = r * 10000 + j + root;
    int nb = 0;
    if (checked) {
        /* The root's counts, then [bad, busy]: a non-blocking all-reduce with MPI_MAX (others give zeros). */
        uint64_t c[MAXP + 2], out[MAXP + 2];
        for (int r = 0; r < np; r++) c[r] = me == root ? (uint64_t)counts[r] : 0;
        c[np] = c[np + 1] = 0;
        MPI_Comm p = private_of(W);
        if (p != MPI_COMM_NULL) {
            memcpy(out, c, (np + 2) * sizeof *c);
            all_max(p, out, np + 2, 20);
        } else {
            MPI_Request q;
            MPI_Iallreduce(c, out, np + 2, MPI_UINT64_T, MPI_MAX, W, &q);
            wait1(&q);
            if (out[np] == 0 && out[np + 1] == 0) make_private(W);
        }
        for (int r = 0; r < np; r++) CHECK(out[r] == (uint64_t)counts[r], "scatterv counts from %d: %d", root, r);
        CHECK(out[np] == 0, "scatterv: a rank reported unusable arguments");
        nb = out[np + 1] != 0;
    }
    COLL(nb, MPI_Scatterv(all, counts, displs, MPI_INT32_T, mine, counts[me], MPI_INT32_T, root, W),
         MPI_Iscatterv(all, counts, displs, MPI_INT32_T, mine, counts[me], MPI_INT32_T, root, W, &q));
    for (int j = 0; j < counts[me]; j++)
        CHECK(mine[j] == me * 10000 + j + root, "scatterv from %d: element %d is %d", root, j, mine[j]);
    free(all);
    free(mine);
}

static void allreduce(int checked) {
    enum { N = 257 };
    double s[N], r[N];
    for (int j = 0; j < N; j++) s[j] = me + j * 0.25;
    int nb = checked && agree_fixed(W, N);
    COLL(nb, MPI_Allreduce(s, r, N, MPI_DOUBLE, MPI_SUM, W), MPI_Iallreduce(s, r, N, MPI_DOUBLE, MPI_SUM, W, &q));
    for (int j = 0; j < N; j++)
        CHECK(r[j] == np * (np - 1) / 2 + np * j * 0.25, "allreduce: element %d is %g", j, r[j]);
}

static void allgatherv(int checked) {
    int counts[MAXP], displs[MAXP], total = 0;
    for (int r = 0; r < np; r++) {
        counts[r] = (r % 3) * 4;
        displs[r] = total;
        total += counts[r];
    }
    float *s = xmalloc(counts[me] * sizeof *s), *all = xmalloc(total * sizeof *all);
    for (int j = 0; j < counts[me]; j++) s[j] = me * 100 + j;
    int nb = checked && agree_allgather(counts[me], counts);
    COLL(nb, MPI_Allgatherv(s, counts[me], MPI_FLOAT, all, counts, displs, MPI_FLOAT, W),
         MPI_Iallgatherv(s, counts[me], MPI_FLOAT, all, counts, displs, MPI_FLOAT, W, &q));
    for (int r = 0; r < np; r++)
        for (int j = 0; j < counts[r]; j++)
            CHECK(all[displs[r] + j] == r * 100 + j, "allgatherv: element %d from rank %d", j, r);
    free(s);
    free(all);
}

static int a2a_count(int from, int to) { return ((from + 2 * to) % 3) * 3; }

static void alltoallv(int checked) {
    int sc[MAXP], sd[MAXP], rc[MAXP], rd[MAXP], st = 0, rt = 0;
    for (int q = 0; q < np; q++) {
        sc[q] = a2a_count(me, q), sd[q] = st, st += sc[q];
        rc[q] = a2a_count(q, me), rd[q] = rt, rt += rc[q];
    }
    uint64_t *s = xmalloc(st * sizeof *s), *r = xmalloc(rt * sizeof *r);
    for (int q = 0; q < np; q++)
        for (int j = 0; j < sc[q]; j++) s[sd[q] + j] = me * 1000000 + q * 1000 + j;
    int nb = 0;
    if (checked) {
        uint64_t mine[MAXP], got[MAXP];
        for (int k = 0; k < np; k++) mine[k] = sc[k];
        agree_alltoall(mine, got);
        for (int k = 0; k < np; k++) {
            CHECK((got[k] & COUNT) == (uint64_t)rc[k], "alltoallv: rank %d announced %llu", k, (unsigned long long)got[k]);
            nb |= (got[k] & BUSY) != 0;
        }
    }
    COLL(nb, MPI_Alltoallv(s, sc, sd, MPI_UINT64_T, r, rc, rd, MPI_UINT64_T, W),
         MPI_Ialltoallv(s, sc, sd, MPI_UINT64_T, r, rc, rd, MPI_UINT64_T, W, &q));
    for (int q = 0; q < np; q++)
        for (int j = 0; j < rc[q]; j++)
            CHECK(r[rd[q] + j] == (uint64_t)(q * 1000000 + me * 1000 + j), "alltoallv: element %d from rank %d", j, q);
    free(s);
    free(r);
}

static void collectives(int checked) {
    for (int root = 0; root < np; root++) {
        bcast(checked, root);
        gatherv(checked, root);
        scatterv(checked, root);
    }
    allreduce(checked);
    allgatherv(checked);
    alltoallv(checked);
}

/* ----- communicators: the C library, a split, a duplicate made by the C library ----- */

static void comms(void) {
    double sum = clib_allreduce_sum(W, me + 0.25);
    CHECK(sum == np * (np - 1) / 2 + 0.25 * np, "clib_allreduce_sum gave %g", sum);
    int left = clib_ring(W, 100 + me);
    CHECK(left == 100 + (me + np - 1) % np, "clib_ring gave %d", left);

    /* Pairs {C[i], spmd[i]}: the spmd rank first in even pairs, the C rank first in odd ones. */
    int key = idx % 2 == 0 ? 1 : 0, prank, psize;
    MPI_Comm pair;
    MPI_Comm_split(W, idx, key, &pair);
    MPI_Comm_rank(pair, &prank);
    MPI_Comm_size(pair, &psize);
    CHECK(psize == 2 && prank == key, "split: rank %d of %d", prank, psize);
    int other = 1 - prank;
    uint8_t b[4001];
    MPI_Status st;
    MPI_Recv(b, sizeof b, MPI_UINT8_T, other, 5, pair, &st);
    expect_count(&st, MPI_UINT8_T, sizeof b, "split: MPI_Recv");
    verify(b, sizeof b, 7 + idx, "split: MPI_Recv");
    MPI_Send(b, sizeof b, MPI_UINT8_T, other, 6, pair);
    double v[33];
    for (int j = 0; j < 33; j++) v[j] = j + idx;
    int nb = agree_fixed(pair, 33);
    COLL(nb, MPI_Bcast(v, 33, MPI_DOUBLE, prank, pair), MPI_Ibcast(v, 33, MPI_DOUBLE, prank, pair, &q));
    double psum = clib_allreduce_sum(pair, me);
    CHECK(psum == me + sranks[idx], "clib_allreduce_sum on the split gave %g", psum);
    MPI_Comm_free(&pair);

    /* A duplicate of world made by the C library; the spmd ranks wrap theirs with Comm::from_raw. */
    MPI_Comm d;
    CHECK(clib_dup(W, &d) == MPI_SUCCESS, "clib_dup failed");
    int64_t in[2] = {me, 1}, out[2];
    nb = agree_fixed(d, 2);
    COLL(nb, MPI_Allreduce(in, out, 2, MPI_INT64_T, MPI_SUM, d), MPI_Iallreduce(in, out, 2, MPI_INT64_T, MPI_SUM, d, &q));
    CHECK(out[0] == np * (np - 1) / 2 && out[1] == np, "allreduce on the duplicate gave [%lld, %lld]",
          (long long)out[0], (long long)out[1]);
    /* The same tag on world and on the duplicate: each must arrive on its own communicator. */
    int32_t on_world = 1000 + me, on_dup = 2000 + me;
    MPI_Send(&on_world, 1, MPI_INT32_T, sranks[idx], 8, W);
    MPI_Send(&on_dup, 1, MPI_INT32_T, sranks[idx], 8, d);
    CHECK(clib_free(&d) == MPI_SUCCESS, "clib_free failed");
}

int main(int argc, char **argv) {
    int provided, appnum = -1, flag = 0, *attr = NULL;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SINGLE, &provided);
    MPI_Comm_rank(W, &me);
    MPI_Comm_size(W, &np);
    CHECK(np <= MAXP, "at most %d ranks", MAXP);
    MPI_Comm_get_attr(W, MPI_APPNUM, &attr, &flag);
    if (flag) appnum = *attr;

    /* Who is who: every rank tells its kind (0 C, 1 spmd) and MPI_APPNUM. */
    step = "hello";
    int32_t mine[2] = {0, appnum}, all[2 * MAXP];
    MPI_Allgather(mine, 2, MPI_INT32_T, all, 2, MPI_INT32_T, W);
    for (int r = 0; r < np; r++) {
        for (int q = 0; q < np; q++)
            CHECK((all[2 * r] == all[2 * q]) == (all[2 * r + 1] == all[2 * q + 1]),
                  "MPI_APPNUM does not tell the programs apart: ranks %d and %d have kinds %d, %d and appnums %d, %d",
                  r, q, all[2 * r], all[2 * q], all[2 * r + 1], all[2 * q + 1]);
        if (all[2 * r] == 0) {
            if (r == me) idx = nc;
            cranks[nc++] = r;
        } else {
            sranks[ns++] = r;
        }
    }
    CHECK(nc == ns, "%d C ranks and %d spmd ranks: the test pairs them", nc, ns);
    done("hello");

    step = "p2p_checked"; /* the spmd side receives with a matched probe */
    p2p();
    done("p2p_checked");
    step = "p2p_unchecked"; /* the spmd side receives with MPI_Recv */
    p2p();
    done("p2p_unchecked");
    step = "wrong_family";
    wrong_family();
    done("wrong_family");
    step = "collectives_checked";
    collectives(1);
    done("collectives_checked");
    step = "collectives_unchecked";
    collectives(0);
    done("collectives_unchecked");
    step = "comms";
    comms();
    done("comms");

    step = "finish";
    /* spmd's barrier on a checked handle: MPI_Ibarrier completed by a test loop. */
    MPI_Request q;
    MPI_Ibarrier(W, &q);
    wait1(&q);
    done("finish");
    MPI_Finalize();
    return 0;
}
