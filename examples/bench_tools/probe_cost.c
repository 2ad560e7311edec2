/* probe_cost.c - what a matched probe costs in C, the floor for spmd's checked receives.
 *
 * usage:  mpicc -O2 -o /tmp/probe_cost examples/bench_tools/probe_cost.c
 *         mpirun -np 2 --bind-to core --mca btl self,vader /tmp/probe_cost
 * output: one line per case, median of 9 alternating repetitions:
 *   pingpong <how> <bytes> <usec one way>: recv = MPI_Recv; mprobe = MPI_Mprobe + MPI_Get_count + MPI_Mrecv;
 *     probe = MPI_Probe + MPI_Recv; improbe = an MPI_Improbe loop + MPI_Mrecv; iprobe = an MPI_Iprobe loop + MPI_Recv
 *   bw <how> <bytes> <usec per message> for a window of 64: irecv = pre-posted MPI_Irecv + MPI_Waitall;
 *     mprobe = MPI_Mprobe + MPI_Mrecv per message; improbe+imrecv = MPI_Improbe loop + MPI_Imrecv, then MPI_Waitall
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
  const char *names[] = {"recv", "mprobe", "probe", "improbe", "iprobe"};
  for (int n = 8; n <= 512; n *= 8) {
    double r[5][9];
    for (int k = 0; k < 9; k++) for (int m = 0; m < 5; m++) r[m][k] = pp(m, n, 200000);
    for (int m = 0; m < 5; m++) { qsort(r[m], 9, sizeof(double), cmp); if (!rank) printf("pingpong %s %d %.3f\n", names[m], n, r[m][4]); }
    double b[3][9];
    for (int k = 0; k < 9; k++) for (int m = 0; m < 3; m++) b[m][k] = bw(m, n, 5000);
    const char *bn[] = {"irecv", "mprobe", "improbe+imrecv"};
    for (int m = 0; m < 3; m++) { qsort(b[m], 9, sizeof(double), cmp); if (!rank) printf("bw %s %d %.3f\n", bn[m], n, b[m][4]); }
  }
  MPI_Finalize();
}
