#ifndef QAT_CBLAS_SHIM_H
#define QAT_CBLAS_SHIM_H
#include <cblas.h>
#endif
