#ifndef QAT_CHDF5_SHIM_H
#define QAT_CHDF5_SHIM_H
#include <hdf5.h>

// HDF5 exposes these as macros that expand to global ids behind H5open(); Swift cannot import them,
// so each gets a static inline getter.
static inline hid_t qat_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t qat_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t qat_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t qat_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t qat_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t qat_H5T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t qat_H5T_C_S1(void) { return H5T_C_S1; }
static inline hid_t qat_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t qat_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t qat_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t qat_H5S_ALL(void) { return H5S_ALL; }
static inline unsigned qat_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned qat_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned qat_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned qat_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline hid_t qat_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline size_t qat_H5T_VARIABLE(void) { return H5T_VARIABLE; }
static inline hid_t qat_H5S_SCALAR_space(void) { return H5Screate(H5S_SCALAR); }
/* Silences HDF5's automatic error-stack printing: the Checkpoint layer reports its own errors. */
static inline void qat_H5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
#endif
