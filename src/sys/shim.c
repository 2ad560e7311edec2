/* MPI constants that are macros in mpi.h (invisible to bindgen), as functions spmd can call.
 * Standard MPI only: the same file compiles against Open MPI and MPICH. */
#include <mpi.h>

void *spmd_in_place(void) { return MPI_IN_PLACE; }
void *spmd_bottom(void) { return MPI_BOTTOM; }
MPI_Op spmd_op_minloc(void) { return MPI_MINLOC; }
MPI_Op spmd_op_maxloc(void) { return MPI_MAXLOC; }
MPI_Datatype spmd_type_byte(void) { return MPI_BYTE; }
MPI_Datatype spmd_type_float_int(void) { return MPI_FLOAT_INT; }
MPI_Datatype spmd_type_double_int(void) { return MPI_DOUBLE_INT; }
MPI_Datatype spmd_type_2int(void) { return MPI_2INT; }
MPI_Datatype spmd_type_long_int(void) { return MPI_LONG_INT; }
int spmd_err_truncate(void) { return MPI_ERR_TRUNCATE; }
int spmd_tag_ub_key(void) { return MPI_TAG_UB; }
int spmd_status_size(void) { return (int) sizeof(MPI_Status); }
int spmd_order_c(void) { return MPI_ORDER_C; }
int spmd_mode_create(void) { return MPI_MODE_CREATE; }
int spmd_mode_wronly(void) { return MPI_MODE_WRONLY; }
int spmd_mode_rdonly(void) { return MPI_MODE_RDONLY; }
int spmd_mode_nocheck(void) { return MPI_MODE_NOCHECK; }
