/* agree_cost.c - what agreeing on sizes before a collective costs in C: the floor for spmd's checked collectives.
 *
 * usage:  mpicc -O2 -o /tmp/agree_cost examples/bench_tools/agree_cost.c
 *         mpirun -np 2 --bind-to core --mca btl self,vader /tmp/agree_cost > agree.txt
 *         python3 examples/bench_tools/compare.py c.txt spmd.txt agree.txt   # c.txt, spmd.txt: `coll` outputs
 * output: the cases and sizes of mpi_bench's `coll`, one line each in its format, medians of 9 alternating
 *   repetitions:  case=<collective> size=<bytes> usec=<agree> bare=<bare> blocking=<blocking>  where
 *   bare = the MPI collective alone; agree (usec) = first the exchange spmd makes (a recursive-doubling
 *   element-wise maximum of four integers, MPI_Isend + MPI_Irecv + MPI_Waitall per round, on a duplicate of the
 *   communicator), then the collective; blocking = first a blocking MPI_Allreduce of the four integers (which
 *   spmd cannot use: a rank with receives pending must keep them moving), then the collective.
 *   Sizes are per rank for gather, scatter and alltoall. Needs a power-of-two number of ranks.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define W MPI_COMM_WORLD
#define MAXB (1 << 16)
static int rank, size;
static MPI_Comm dup;
static char *sbuf, *rbuf;

/* The agreement: element-wise maximum of four integers by recursive doubling over non-blocking messages. */
static void agree(void) {
  int mine[4] = {rank, 1, 2, 3}, theirs[4];
  for (int d = 1; d < size; d <<= 1) {
    MPI_Request r[2];
    int peer = rank ^ d;
    MPI_Irecv(theirs, 4, MPI_INT, peer, 0, dup, &r[0]);
    MPI_Isend(mine, 4, MPI_INT, peer, 0, dup, &r[1]);
    MPI_Waitall(2, r, MPI_STATUSES_IGNORE);
    for (int k = 0; k < 4; k++) if (theirs[k] > mine[k]) mine[k] = theirs[k];
  }
}

static void coll(int which, int n) {
  switch (which) {
  case 0: MPI_Bcast(sbuf, n, MPI_BYTE, 0, W); break;
  case 1: MPI_Allreduce(sbuf, rbuf, n / 8, MPI_DOUBLE, MPI_SUM, W); break;
  case 2: MPI_Gather(sbuf, n, MPI_BYTE, rbuf, n, MPI_BYTE, 0, W); break;
  case 3: MPI_Scatter(sbuf, n, MPI_BYTE, rbuf, n, MPI_BYTE, 0, W); break;
  case 4: MPI_Alltoall(sbuf, n, MPI_BYTE, rbuf, n, MPI_BYTE, W); break;
  }
}

static double run(int which, int how, int n, long it) {
  MPI_Barrier(W);
  double t = MPI_Wtime();
  for (long i = 0; i < it; i++) {
    if (how == 1) agree();
    else if (how == 2) { int mine[4] = {rank, 1, 2, 3}, all[4]; MPI_Allreduce(mine, all, 4, MPI_INT, MPI_MAX, W); }
    coll(which, n);
  }
  return (MPI_Wtime() - t) * 1e6 / it;
}

static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return (x > y) - (x < y); }

int main(int c, char **v) {
  MPI_Init(&c, &v);
  MPI_Comm_rank(W, &rank);
  MPI_Comm_size(W, &size);
  if (size & (size - 1)) { if (!rank) fprintf(stderr, "agree_cost: needs a power-of-two number of ranks\n"); MPI_Abort(W, 1); }
  MPI_Comm_dup(W, &dup);
  sbuf = calloc((size_t)MAXB * size, 1);
  rbuf = calloc((size_t)MAXB * size, 1);
  const char *names[] = {"bcast", "allreduce", "gather", "scatter", "alltoall"};
  const int sizes[5][4] = {{8, 512, 2048, 8192}, {8, 512, 4096, 32768}, {1024, 65536}, {1024, 65536}, {1024, 65536}};
  if (!rank) printf("# impl=c+checks np=%d\n", size);
  for (int w = 0; w < 5; w++)
    for (int s = 0; s < 4 && sizes[w][s]; s++) {
      int n = sizes[w][s];
      long it = n >= 32768 ? 2000 : 20000;
      double r[3][9];
      for (int k = 0; k < 9; k++) for (int h = 0; h < 3; h++) r[h][k] = run(w, h, n, it);
      for (int h = 0; h < 3; h++) qsort(r[h], 9, sizeof(double), cmp);
      if (!rank) printf("case=%s size=%d usec=%.3f bare=%.3f blocking=%.3f\n", names[w], n, r[1][4], r[0][4], r[2][4]);
      if (!rank) fflush(stdout);
    }
  MPI_Comm_free(&dup);
  free(sbuf);
  free(rbuf);
  MPI_Finalize();
}
