/* probe_cost.c - what a matched probe costs in C: the floor for spmd's checked receives.
 *
 * usage:  mpicc -O2 -o /tmp/probe_cost examples/bench_tools/probe_cost.c
 *         mpirun -np 2 --bind-to core --mca btl self,vader /tmp/probe_cost > probe.txt
 *         python3 examples/bench_tools/compare.py c.txt spmd.txt probe.txt   # c.txt, spmd.txt: `pt2pt` outputs
 * output: the small sizes of mpi_bench's `pt2pt` in its format, medians of 9 alternating repetitions:
 *   case=pingpong size=<bytes> usec=<mprobe> recv=.. probe_recv=.. improbe=.. iprobe=..  (usec one way), where
 *     recv = MPI_Recv; mprobe (usec) = MPI_Mprobe + MPI_Get_count + MPI_Mrecv; probe_recv = MPI_Probe + MPI_Recv;
 *     improbe = an MPI_Improbe loop + MPI_Mrecv; iprobe = an MPI_Iprobe loop + MPI_Recv
 *   case=bw size=<bytes> usec=<improbe+imrecv> irecv=.. mprobe=..  (usec per message, window of 64), where
 *     irecv = pre-posted MPI_Irecv + MPI_Waitall; mprobe = MPI_Mprobe + MPI_Mrecv per message;
 *     improbe+imrecv (usec) = an MPI_Improbe loop + MPI_Imrecv per message, then MPI_Waitall
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define W MPI_COMM_WORLD
static int rank; static char sbuf[1<<16], rbuf[1<<16];
static void rcv(int mode, int n, int peer) {
  if (mode == 0) MPI_Recv(rbuf, n, MPI_BYTE, peer, 1, W, MPI_STATUS_IGNORE);
  else if (mode == 1) { MPI_Message m; MPI_Status st; int c; MPI_Mprobe(peer, 1, W, &m, &st); MPI_Get_count(&st, MPI_BYTE, &c); MPI_Mrecv(rbuf, c, MPI_BYTE, &m, MPI_STATUS_IGNORE); }
  else if (mode == 2) { MPI_Status st; int c; MPI_Probe(peer, 1, W, &st); MPI_Get_count(&st, MPI_BYTE, &c); MPI_Recv(rbuf, c, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, W, MPI_STATUS_IGNORE); }
  else if (mode == 3) { MPI_Message m; MPI_Status st; int c, f = 0; while (!f) MPI_Improbe(peer, 1, W, &f, &m, &st); MPI_Get_count(&st, MPI_BYTE, &c); MPI_Mrecv(rbuf, c, MPI_BYTE, &m, MPI_STATUS_IGNORE); }
  else if (mode == 4) { MPI_Status st; int c, f = 0; while (!f) MPI_Iprobe(peer, 1, W, &f, &st); MPI_Get_count(&st, MPI_BYTE, &c); MPI_Recv(rbuf, c, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, W, MPI_STATUS_IGNORE); }
}
static double pp(int mode, int n, long it) {
  int peer = 1 - rank; MPI_Barrier(W); double t = MPI_Wtime();
  for (long i = 0; i < it; i++) { if (rank == 0) { MPI_Send(sbuf, n, MPI_BYTE, peer, 1, W); rcv(mode, n, peer);} else { rcv(mode, n, peer); MPI_Send(sbuf, n, MPI_BYTE, peer, 1, W);} }
  return (MPI_Wtime() - t) * 1e6 / it / 2;
}
/* streaming window 64: mode 0 preposted Irecv; 1 Mprobe+Mrecv loop; 3 Improbe poll over outstanding + Imrecv + Testall */
static double bw(int mode, int n, long it) {
  MPI_Request req[64]; MPI_Barrier(W); double t = MPI_Wtime();
  for (long i = 0; i < it; i++) {
    if (rank == 0) { for (int k = 0; k < 64; k++) MPI_Isend(sbuf, n, MPI_BYTE, 1, 2, W, &req[k]); MPI_Waitall(64, req, MPI_STATUSES_IGNORE); MPI_Recv(rbuf, 4, MPI_BYTE, 1, 3, W, MPI_STATUS_IGNORE); }
    else {
      if (mode == 0) { for (int k = 0; k < 64; k++) MPI_Irecv(rbuf + k * n, n, MPI_BYTE, 0, 2, W, &req[k]); MPI_Waitall(64, req, MPI_STATUSES_IGNORE); }
      else if (mode == 1) { for (int k = 0; k < 64; k++) { MPI_Message m; MPI_Status st; MPI_Mprobe(0, 2, W, &m, &st); MPI_Mrecv(rbuf + k*n, n, MPI_BYTE, &m, MPI_STATUS_IGNORE);} }
      else { int k = 0; while (k < 64) { MPI_Message m; MPI_Status st; int f; MPI_Improbe(0, 2, W, &f, &m, &st); if (f) { MPI_Imrecv(rbuf + k*n, n, MPI_BYTE, &m, &req[k]); k++; } } MPI_Waitall(64, req, MPI_STATUSES_IGNORE); }
      MPI_Send(sbuf, 4, MPI_BYTE, 0, 3, W);
    }
  }
  return (MPI_Wtime() - t) * 1e6 / it / 64;
}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return (x>y)-(x<y);}
int main(int c, char **v) {
  MPI_Init(&c, &v); MPI_Comm_rank(W, &rank);
  const char *names[] = {"recv", "mprobe", "probe_recv", "improbe", "iprobe"};
  if (!rank) printf("# impl=c+checks np=2\n");
  for (int n = 8; n <= 512; n *= 4) {
    double r[5][9];
    for (int k = 0; k < 9; k++) for (int m = 0; m < 5; m++) r[m][k] = pp(m, n, 200000);
    for (int m = 0; m < 5; m++) qsort(r[m], 9, sizeof(double), cmp);
    if (!rank) printf("case=pingpong size=%d usec=%.3f %s=%.3f %s=%.3f %s=%.3f %s=%.3f\n", n, r[1][4], names[0], r[0][4],
                      names[2], r[2][4], names[3], r[3][4], names[4], r[4][4]);
    double b[3][9];
    for (int k = 0; k < 9; k++) for (int m = 0; m < 3; m++) b[m][k] = bw(m, n, 5000);
    for (int m = 0; m < 3; m++) qsort(b[m], 9, sizeof(double), cmp);
    if (!rank) printf("case=bw size=%d usec=%.3f irecv=%.3f mprobe=%.3f\n", n, b[2][4], b[0][4], b[1][4]);
    if (!rank) fflush(stdout);
  }
  MPI_Finalize();
}
