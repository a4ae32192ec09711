#ifndef CMPI_H
#define CMPI_H
/* Open MPI at run time: libmpi.so.40 is dlopen'ed (RTLD_GLOBAL, as Open MPI's own plugins need) only
 * by a process that mpirun started, so a single-process `qat` needs neither an MPI launcher nor the
 * library. Handles are Open MPI's (pointers to its predefined objects, looked up by symbol); every
 * function returns an MPI error code (0: MPI_SUCCESS) or, before cmpi_load succeeded, -1. */
#include <stdint.h>

/* Loads the library and resolves every function and handle used here; 0 on success, else a message
 * in err. */
int cmpi_load(char *err, int errlen);
/* MPI_Init_thread(MPI_THREAD_FUNNELED); errors on the world communicator return (MPI_ERRORS_RETURN)
 * instead of aborting, and a duplicate of the world for BatchNorm statistics is made. */
int cmpi_init(int *rank, int *size);
int cmpi_finalize(void);
void cmpi_abort(int code);
void cmpi_error_string(int code, char *out, int outlen);

/* Non-blocking collectives on in-place buffers; each fills *request, completed by cmpi_test or
 * cmpi_wait. type: 0 float, 1 double; op: 0 sum, 1 max; channel 0 is the world communicator, channel 1
 * its duplicate for BatchNorm statistics (so that those never interleave with gradient buckets). */
int cmpi_iallreduce(void *buf, int count, int type, int op, int channel, void **request);
int cmpi_ibcast(void *buf, int bytes, int root, void **request);
int cmpi_iallgather_u64(const uint64_t *value, uint64_t *out, void **request);
int cmpi_ibarrier(void **request);
int cmpi_test(void **request, int *done);
int cmpi_wait(void **request);
#endif
