/* A tiny C "library" that takes a communicator handle, as real C libraries do. The spmd ranks of the interop test
 * call it on `Comm::as_raw()` (loaded with dlopen); the C peer links it and makes the same calls. */
#include <mpi.h>

double clib_allreduce_sum(MPI_Comm comm, double x) {
    double sum = 0.0;
    MPI_Allreduce(&x, &sum, 1, MPI_DOUBLE, MPI_SUM, comm);
    return sum;
}

/* Passes `token` to the next rank and returns the previous rank's token. */
int clib_ring(MPI_Comm comm, int token) {
    int rank, size, got = -1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    MPI_Sendrecv(&token, 1, MPI_INT, (rank + 1) % size, 77, &got, 1, MPI_INT, (rank + size - 1) % size, 77, comm,
                 MPI_STATUS_IGNORE);
    return got;
}

int clib_dup(MPI_Comm comm, MPI_Comm *out) { return MPI_Comm_dup(comm, out); }

int clib_free(MPI_Comm *comm) { return MPI_Comm_free(comm); }
