#include "cmpi.h"
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* Open MPI's ABI (libmpi.so.40, Open MPI 3.x-5.x): every handle is a pointer to a predefined object. */
typedef void *Handle;
#define CMPI_THREAD_FUNNELED 1
#define CMPI_IN_PLACE ((void *)1)

static void *lib;
static Handle comm_world, comm_bn, t_float, t_double, t_u64, t_byte, op_sum, op_max, errors_return;
static int (*p_init_thread)(int *, char ***, int, int *);
static int (*p_initialized)(int *);
static int (*p_finalize)(void);
static int (*p_abort)(Handle, int);
static int (*p_comm_rank)(Handle, int *);
static int (*p_comm_size)(Handle, int *);
static int (*p_comm_dup)(Handle, Handle *);
static int (*p_comm_set_errhandler)(Handle, Handle);
static int (*p_error_string)(int, char *, int *);
static int (*p_iallreduce)(const void *, void *, int, Handle, Handle, Handle, Handle *);
static int (*p_test)(Handle *, int *, void *);
static int (*p_wait)(Handle *, void *);
static int (*p_iallgather)(const void *, int, Handle, void *, int, Handle, Handle, Handle *);
static int (*p_ibcast)(void *, int, Handle, int, Handle, Handle *);
static int (*p_ibarrier)(Handle, Handle *);

static void *sym(const char *name, char *err, int errlen, int *bad) {
    void *p = dlsym(lib, name);
    if (!p && !*bad) { snprintf(err, errlen, "libmpi has no symbol %s (is it Open MPI's libmpi.so.40?)", name); *bad = 1; }
    return p;
}

int cmpi_load(char *err, int errlen) {
    if (lib) return 0;
    const char *names[] = {"libmpi.so.40", "libmpi.so"};
    for (int i = 0; i < 2 && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) { snprintf(err, errlen, "cannot load libmpi.so.40: %s", dlerror()); return -1; }
    int bad = 0;
#define F(var, name) *(void **)(&var) = sym(name, err, errlen, &bad)
    F(p_init_thread, "MPI_Init_thread"); F(p_initialized, "MPI_Initialized"); F(p_finalize, "MPI_Finalize");
    F(p_abort, "MPI_Abort"); F(p_comm_rank, "MPI_Comm_rank"); F(p_comm_size, "MPI_Comm_size"); F(p_comm_dup, "MPI_Comm_dup");
    F(p_comm_set_errhandler, "MPI_Comm_set_errhandler"); F(p_error_string, "MPI_Error_string");
    F(p_iallreduce, "MPI_Iallreduce"); F(p_test, "MPI_Test"); F(p_wait, "MPI_Wait");
    F(p_iallgather, "MPI_Iallgather"); F(p_ibcast, "MPI_Ibcast"); F(p_ibarrier, "MPI_Ibarrier");
#undef F
    comm_world = sym("ompi_mpi_comm_world", err, errlen, &bad);
    t_float = sym("ompi_mpi_float", err, errlen, &bad);
    t_double = sym("ompi_mpi_double", err, errlen, &bad);
    t_u64 = sym("ompi_mpi_uint64_t", err, errlen, &bad);
    t_byte = sym("ompi_mpi_byte", err, errlen, &bad);
    op_sum = sym("ompi_mpi_op_sum", err, errlen, &bad);
    op_max = sym("ompi_mpi_op_max", err, errlen, &bad);
    errors_return = sym("ompi_mpi_errors_return", err, errlen, &bad);
    if (bad) { dlclose(lib); lib = NULL; return -1; }
    return 0;
}

int cmpi_init(int *rank, int *size) {
    if (!lib) return -1;
    int provided = 0, rc;
    if ((rc = p_init_thread(NULL, NULL, CMPI_THREAD_FUNNELED, &provided))) return rc;
    if ((rc = p_comm_set_errhandler(comm_world, errors_return))) return rc;
    if ((rc = p_comm_dup(comm_world, &comm_bn))) return rc;
    if ((rc = p_comm_set_errhandler(comm_bn, errors_return))) return rc;
    if ((rc = p_comm_rank(comm_world, rank))) return rc;
    return p_comm_size(comm_world, size);
}

int cmpi_finalize(void) { return lib ? p_finalize() : -1; }
void cmpi_abort(int code) { if (lib) p_abort(comm_world, code); }

void cmpi_error_string(int code, char *out, int outlen) {
    char buf[512]; int len = 0;
    if (lib && code > 0 && p_error_string(code, buf, &len) == 0) snprintf(out, outlen, "%.*s", len, buf);
    else snprintf(out, outlen, "MPI error %d", code);
}

int cmpi_iallreduce(void *buf, int count, int type, int op, int channel, void **request) {
    if (!lib) return -1;
    return p_iallreduce(CMPI_IN_PLACE, buf, count, type == 1 ? t_double : t_float, op == 1 ? op_max : op_sum,
                        channel == 1 ? comm_bn : comm_world, (Handle *)request);
}
int cmpi_ibcast(void *buf, int bytes, int root, void **request) {
    return lib ? p_ibcast(buf, bytes, t_byte, root, comm_world, (Handle *)request) : -1;
}
int cmpi_iallgather_u64(const uint64_t *value, uint64_t *out, void **request) {
    return lib ? p_iallgather(value, 1, t_u64, out, 1, t_u64, comm_world, (Handle *)request) : -1;
}
int cmpi_ibarrier(void **request) { return lib ? p_ibarrier(comm_world, (Handle *)request) : -1; }
int cmpi_test(void **request, int *done) { return lib ? p_test((Handle *)request, done, NULL) : -1; }
int cmpi_wait(void **request) { return lib ? p_wait((Handle *)request, NULL) : -1; }
