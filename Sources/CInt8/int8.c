// The int8 engine's kernels: see include/cint8.h for the arithmetic contract.
#include "cint8.h"
#include <math.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define QI8_NB 16   /* output channels per packed block (one zmm of int32) */
#define QI8_MR 6    /* rows per register tile */

static int best_path_cached = -1;
int qi8_best_path(void) {
    if (best_path_cached >= 0) return best_path_cached;
    best_path_cached = QI8_PATH_PORTABLE;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) best_path_cached = QI8_PATH_AVX512VNNI;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best_path_cached = QI8_PATH_AVX2;
#endif
    return best_path_cached;
}

int qi8_supports(int path) {
    if (path == QI8_PATH_PORTABLE || path == QI8_PATH_AUTO) return 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (path == QI8_PATH_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (path == QI8_PATH_AVX512VNNI) return qi8_best_path() == QI8_PATH_AVX512VNNI;
#endif
    return 0;
}

static int resolve(int path) { return path == QI8_PATH_AUTO ? qi8_best_path() : path; }

long qi8_packed_bytes(int n, int k) {
    long nb = (n + QI8_NB - 1) / QI8_NB, k4 = (k + 3) / 4;
    return nb * k4 * QI8_NB * 4;
}

void qi8_pack(const int8_t *w, int n, int k, int8_t *packed) {
    long k4 = (k + 3) / 4;
    memset(packed, 0, (size_t)qi8_packed_bytes(n, k));
    for (int j = 0; j < n; j++) {
        long jb = j / QI8_NB, jj = j % QI8_NB;
        for (int kk = 0; kk < k; kk++)
            packed[((jb * k4 + kk / 4) * QI8_NB + jj) * 4 + kk % 4] = w[(long)j * k + kk];
    }
}

/* One output row's epilogue over `count` channels starting at c0, from float accumulators. */
static inline __attribute__((always_inline))
void epilogue_row(const qi8_epilogue *ep, long row, int c0, int count, const float *acc) {
    if (ep->qalpha) {
        uint8_t *o = ep->out_codes + row * ep->ldc + c0;
        for (int j = 0; j < count; j++) {
            float q = fmaf(ep->qalpha[c0 + j], acc[j], ep->qbeta[c0 + j]);
            q = q < ep->qlo ? ep->qlo : (q > ep->qhi ? ep->qhi : q);
            o[j] = (uint8_t)nearbyintf(q);
        }
        return;
    }
    const float *al = ep->alpha + c0, *be = ep->beta + c0;
    float y[64];
    const qi8_operand *r = &ep->residual;
    long base = row * ep->ldc + c0;
    for (int j = 0; j < count; j++) {
        float v = al[j] * acc[j] + be[j];
        if (r->codes) v = v + ((float)r->codes[base + j] - r->zero) * r->scale;
        else if (r->floats) v = v + r->floats[base + j];
        switch (ep->activation) {
        case QI8_ACT_RELU: v = v > 0 ? v : 0; break;
        case QI8_ACT_RELU6: v = v > 0 ? (v < 6 ? v : 6) : 0; break;
        case QI8_ACT_HARDSWISH: { float t = v + 3; t = t > 0 ? (t < 6 ? t : 6) : 0; v = v * t / 6; break; }
        case QI8_ACT_HARDSIGMOID: { float t = v + 3; t = t > 0 ? (t < 6 ? t : 6) : 0; v = t / 6; break; }
        default: break;
        }
        y[j] = v;
    }
    if (ep->out_codes) {
        uint8_t *o = ep->out_codes + row * ep->ldc + c0;
        const float inv = ep->inv_scale, z = ep->zero_point, lo = ep->lo, hi = ep->hi;
        for (int j = 0; j < count; j++) {
            float q = nearbyintf(y[j] * inv) + z;   /* x * (1 / s), half to even, + z: the fake-quant op */
            q = q < lo ? lo : (q > hi ? hi : q);
            o[j] = (uint8_t)q;
        }
    } else {
        memcpy(ep->out_float + row * ep->ldc + c0, y, sizeof(float) * (size_t)count);
    }
}

/* Integer accumulators (before zero-point corrections) of one row -> epilogue. */
static inline __attribute__((always_inline))
void finish_row(const qi8_epilogue *ep, long row, int c0, int count, const int32_t *acc,
                const int32_t *corr, const int32_t *zw, int32_t rowsum) {
    float f[QI8_NB];
    for (int j = 0; j < count; j++) {
        int32_t v = acc[j] + corr[c0 + j] - (zw ? zw[c0 + j] * rowsum : 0);
        f[j] = (float)v;
    }
    epilogue_row(ep, row, c0, count, f);
}

static int32_t row_sum(const uint8_t *a, int k) {
    int32_t s = 0;
    for (int i = 0; i < k; i++) s += a[i];
    return s;
}

static void gemm_portable(int m, int n, int k, const uint8_t *a, long lda, const int8_t *packed,
                          const int32_t *corr, const int32_t *zw, const qi8_epilogue *ep) {
    long k4 = (k + 3) / 4;
    int nblocks = (n + QI8_NB - 1) / QI8_NB;
    for (int r = 0; r < m; r++) {
        const uint8_t *ar = a + r * lda;
        int32_t rs = zw ? row_sum(ar, k) : 0;
        for (int jb = 0; jb < nblocks; jb++) {
            int32_t acc[QI8_NB] = {0};
            const int8_t *bp = packed + (long)jb * k4 * QI8_NB * 4;
            for (int kk = 0; kk < k; kk++) {
                int32_t av = ar[kk];
                const int8_t *b = bp + ((kk / 4) * QI8_NB) * 4 + kk % 4;
                for (int j = 0; j < QI8_NB; j++) acc[j] += av * (int32_t)b[j * 4];
            }
            int c0 = jb * QI8_NB, cnt = n - c0 < QI8_NB ? n - c0 : QI8_NB;
            finish_row(ep, r, c0, cnt, acc, corr, zw, rs);
        }
    }
}

#if defined(__x86_64__)
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

/* The epilogue on 16 channels in registers: the same operations, in the same order, as
   epilogue_row (multiply, then add; no fused multiply-add), so both paths give the same bits. */
static inline __attribute__((always_inline)) AVX512
void epilogue16(const qi8_epilogue *ep, long row, int c0, int count, __m512 acc) {
    __mmask16 m = (__mmask16)(count >= 16 ? 0xFFFF : ((1u << count) - 1));
    if (ep->qalpha) {
        /* Clamping before rounding equals clamping after: the bounds are integers. */
        __m512 q = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, ep->qalpha + c0), acc, _mm512_maskz_loadu_ps(m, ep->qbeta + c0));
        q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(ep->qlo)), _mm512_set1_ps(ep->qhi));
        _mm_mask_storeu_epi8(ep->out_codes + row * ep->ldc + c0, m, _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(q)));
        return;
    }
    __m512 al = _mm512_maskz_loadu_ps(m, ep->alpha + c0), be = _mm512_maskz_loadu_ps(m, ep->beta + c0);
    __m512 y = _mm512_add_ps(_mm512_mul_ps(al, acc), be);
    if (ep->residual.codes) {
        __m512 rv = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, ep->residual.codes + row * ep->ldc + c0)));
        y = _mm512_add_ps(y, _mm512_mul_ps(_mm512_sub_ps(rv, _mm512_set1_ps(ep->residual.zero)), _mm512_set1_ps(ep->residual.scale)));
    } else if (ep->residual.floats) {
        y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, ep->residual.floats + row * ep->ldc + c0));
    }
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    switch (ep->activation) {
    case QI8_ACT_RELU: y = _mm512_max_ps(y, zero); break;
    case QI8_ACT_RELU6: y = _mm512_min_ps(_mm512_max_ps(y, zero), six); break;
    case QI8_ACT_HARDSWISH: {
        __m512 t = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(y, _mm512_set1_ps(3.0f)), zero), six);
        y = _mm512_div_ps(_mm512_mul_ps(y, t), six);
        break;
    }
    case QI8_ACT_HARDSIGMOID:
        y = _mm512_div_ps(_mm512_min_ps(_mm512_max_ps(_mm512_add_ps(y, _mm512_set1_ps(3.0f)), zero), six), six);
        break;
    default: break;
    }
    if (ep->out_codes) {
        __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(ep->inv_scale)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm512_add_ps(q, _mm512_set1_ps(ep->zero_point));
        q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(ep->lo)), _mm512_set1_ps(ep->hi));
        __m128i b = _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(q));
        _mm_mask_storeu_epi8(ep->out_codes + row * ep->ldc + c0, m, b);
    } else {
        _mm512_mask_storeu_ps(ep->out_float + row * ep->ldc + c0, m, y);
    }
}

/* Integer accumulators of one row and 16 channels -> zero-point corrections -> epilogue16. */
static inline __attribute__((always_inline)) AVX512
void finish16(const qi8_epilogue *ep, long row, int c0, int count, __m512i acc,
              const int32_t *corr, const int32_t *zw, __m512i rowsum) {
    __mmask16 m = (__mmask16)(count >= 16 ? 0xFFFF : ((1u << count) - 1));
    __m512i v = _mm512_add_epi32(acc, _mm512_maskz_loadu_epi32(m, corr + c0));
    if (zw) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_maskz_loadu_epi32(m, zw + c0), rowsum));
    epilogue16(ep, row, c0, count, _mm512_cvtepi32_ps(v));
}

/* A 6-row x NB-block tile; rows past `mr` repeat the last row (their results are dropped). */
#define DEFINE_VNNI_TILE(NB)                                                                          \
VNNI static void tile_vnni_##NB(int mr, int jb0, int n, int k, const uint8_t *a, long lda,            \
                                long row0, const int8_t *packed, const int32_t *corr,                \
                                const int32_t *zw, const int32_t *rowsums, const qi8_epilogue *ep) { \
    long k4 = (k + 3) / 4, kfull = k / 4;                                                             \
    const uint8_t *ar[QI8_MR];                                                                        \
    for (int r = 0; r < QI8_MR; r++) ar[r] = a + (r < mr ? r : mr - 1) * lda;                         \
    __m512i acc[QI8_MR][NB], rsum[QI8_MR];                                                            \
    for (int r = 0; r < QI8_MR; r++) for (int j = 0; j < NB; j++) acc[r][j] = _mm512_setzero_si512(); \
    for (int r = 0; r < QI8_MR; r++) rsum[r] = _mm512_setzero_si512();                                \
    /* Short rows: the code sums (for weight zero points) as one more dot product with ones. */        \
    const int ones = zw && !rowsums;                                                                  \
    const __m512i one8 = _mm512_set1_epi8(1);                                                          \
    const int8_t *bp[NB];                                                                             \
    for (int j = 0; j < NB; j++) bp[j] = packed + (long)(jb0 + j) * k4 * QI8_NB * 4;                  \
    for (long q = 0; q < kfull; q++) {                                                                \
        __m512i b[NB];                                                                                \
        for (int j = 0; j < NB; j++) b[j] = _mm512_loadu_si512((const void *)(bp[j] + q * 64));       \
        for (int r = 0; r < QI8_MR; r++) {                                                            \
            int32_t v; memcpy(&v, ar[r] + q * 4, 4);                                                  \
            __m512i av = _mm512_set1_epi32(v);                                                        \
            for (int j = 0; j < NB; j++) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, b[j]);        \
            if (ones) rsum[r] = _mm512_dpbusd_epi32(rsum[r], av, one8);                               \
        }                                                                                             \
    }                                                                                                 \
    if (kfull < k4) {                                                                                 \
        __m512i b[NB];                                                                                \
        for (int j = 0; j < NB; j++) b[j] = _mm512_loadu_si512((const void *)(bp[j] + kfull * 64));   \
        for (int r = 0; r < QI8_MR; r++) {                                                            \
            int32_t v = 0; memcpy(&v, ar[r] + kfull * 4, (size_t)(k - kfull * 4));                    \
            __m512i av = _mm512_set1_epi32(v);                                                        \
            for (int j = 0; j < NB; j++) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, b[j]);        \
            if (ones) rsum[r] = _mm512_dpbusd_epi32(rsum[r], av, one8);                               \
        }                                                                                             \
    }                                                                                                 \
    for (int r = 0; r < mr; r++) {                                                                    \
        for (int j = 0; j < NB; j++) {                                                                \
            int c0 = (jb0 + j) * QI8_NB, cnt = n - c0 < QI8_NB ? n - c0 : QI8_NB;                     \
            __m512i rs = ones ? rsum[r] : _mm512_set1_epi32(rowsums ? rowsums[r] : 0);                 \
            finish16(ep, row0 + r, c0, cnt, acc[r][j], corr, zw, rs);                                 \
        }                                                                                             \
    }                                                                                                 \
}
DEFINE_VNNI_TILE(1)
DEFINE_VNNI_TILE(2)
DEFINE_VNNI_TILE(3)
DEFINE_VNNI_TILE(4)

/* Sum of k codes: psadbw against zero adds 8 bytes at a time. */
AVX512 static int32_t row_sum_avx512(const uint8_t *a, int k) {
    __m512i s = _mm512_setzero_si512();
    int i = 0;
    for (; i + 64 <= k; i += 64) s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_loadu_si512((const void *)(a + i)), _mm512_setzero_si512()));
    if (i < k) {
        __mmask64 m = (k - i) >= 64 ? ~0ULL : ((1ULL << (k - i)) - 1);
        s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_maskz_loadu_epi8(m, a + i), _mm512_setzero_si512()));
    }
    return (int32_t)_mm512_reduce_add_epi64(s);
}

VNNI static void gemm_vnni(int m, int n, int k, const uint8_t *a, long lda, const int8_t *packed,
                           const int32_t *corr, const int32_t *zw, const qi8_epilogue *ep) {
    int nblocks = (n + QI8_NB - 1) / QI8_NB;
    for (int r0 = 0; r0 < m; r0 += QI8_MR) {
        int mr = m - r0 < QI8_MR ? m - r0 : QI8_MR;
        const uint8_t *ar = a + r0 * lda;
        /* Code sums of long rows by psadbw; short rows (k <= 128) sum inside the tile. */
        int32_t rs[QI8_MR];
        int sad = zw && k > 128;
        if (sad) for (int r = 0; r < mr; r++) rs[r] = row_sum_avx512(ar + r * lda, k);
        for (int jb = 0; jb < nblocks; jb += 4) {
            int nb = nblocks - jb < 4 ? nblocks - jb : 4;
            const int32_t *rsp = sad ? rs : 0;
            switch (nb) {
            case 4: tile_vnni_4(mr, jb, n, k, ar, lda, r0, packed, corr, zw, rsp, ep); break;
            case 3: tile_vnni_3(mr, jb, n, k, ar, lda, r0, packed, corr, zw, rsp, ep); break;
            case 2: tile_vnni_2(mr, jb, n, k, ar, lda, r0, packed, corr, zw, rsp, ep); break;
            default: tile_vnni_1(mr, jb, n, k, ar, lda, r0, packed, corr, zw, rsp, ep); break;
            }
        }
    }
}
#endif


#if defined(__x86_64__)
#define AVX2 __attribute__((target("avx2,fma")))


/* The epilogue on 8 channels (AVX2): the operations of epilogue16 in the same order. */
static inline __attribute__((always_inline)) AVX2
void epilogue8(const qi8_epilogue *ep, long row, int c0, int count, __m256 acc) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(count), lane);
    uint8_t codes[8];
    float out[8];
    if (ep->qalpha) {
        __m256 q = _mm256_fmadd_ps(_mm256_maskload_ps(ep->qalpha + c0, m), acc, _mm256_maskload_ps(ep->qbeta + c0, m));
        q = _mm256_min_ps(_mm256_max_ps(q, _mm256_set1_ps(ep->qlo)), _mm256_set1_ps(ep->qhi));
        __m256i i = _mm256_cvtps_epi32(q);
        __m128i p16 = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
        _mm_storel_epi64((__m128i *)codes, _mm_packus_epi16(p16, p16));
        memcpy(ep->out_codes + row * ep->ldc + c0, codes, (size_t)count);
        return;
    }
    __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_maskload_ps(ep->alpha + c0, m), acc), _mm256_maskload_ps(ep->beta + c0, m));
    if (ep->residual.codes) {
        uint8_t rb[8] = {0};
        memcpy(rb, ep->residual.codes + row * ep->ldc + c0, (size_t)count);
        __m256 rv = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)rb)));
        y = _mm256_add_ps(y, _mm256_mul_ps(_mm256_sub_ps(rv, _mm256_set1_ps(ep->residual.zero)), _mm256_set1_ps(ep->residual.scale)));
    } else if (ep->residual.floats) {
        y = _mm256_add_ps(y, _mm256_maskload_ps(ep->residual.floats + row * ep->ldc + c0, m));
    }
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    switch (ep->activation) {
    case QI8_ACT_RELU: y = _mm256_max_ps(y, zero); break;
    case QI8_ACT_RELU6: y = _mm256_min_ps(_mm256_max_ps(y, zero), six); break;
    case QI8_ACT_HARDSWISH: {
        __m256 t = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(y, _mm256_set1_ps(3.0f)), zero), six);
        y = _mm256_div_ps(_mm256_mul_ps(y, t), six);
        break;
    }
    case QI8_ACT_HARDSIGMOID:
        y = _mm256_div_ps(_mm256_min_ps(_mm256_max_ps(_mm256_add_ps(y, _mm256_set1_ps(3.0f)), zero), six), six);
        break;
    default: break;
    }
    if (ep->out_codes) {
        __m256 q = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(ep->inv_scale)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm256_add_ps(q, _mm256_set1_ps(ep->zero_point));
        q = _mm256_min_ps(_mm256_max_ps(q, _mm256_set1_ps(ep->lo)), _mm256_set1_ps(ep->hi));
        __m256i i = _mm256_cvtps_epi32(q);
        __m128i p16 = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
        _mm_storel_epi64((__m128i *)codes, _mm_packus_epi16(p16, p16));
        memcpy(ep->out_codes + row * ep->ldc + c0, codes, (size_t)count);
    } else {
        _mm256_storeu_ps(out, y);
        memcpy(ep->out_float + row * ep->ldc + c0, out, sizeof(float) * (size_t)count);
    }
}

/* AVX2 (no VNNI): exact products with vpmaddwd on 16-bit operands, read from the same packed layout.
   A quad of 4 codes is widened to [a0 a1 a2 a3] x 4 int16; 8 channels' quads to int16; vpmaddwd gives
   two partial sums per channel, added pairwise at the end. 4 rows x 8 channels per tile. */
AVX2 static void gemm_avx2(int m, int n, int k, const uint8_t *a, long lda, const int8_t *packed,
                           const int32_t *corr, const int32_t *zw, const qi8_epilogue *ep) {
    long k4 = (k + 3) / 4, kfull = k / 4;
    int nblocks = (n + QI8_NB - 1) / QI8_NB;
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    for (int r0 = 0; r0 < m; r0 += 4) {
        int mr = m - r0 < 4 ? m - r0 : 4;
        const uint8_t *ar[4];
        int32_t rs[4] = {0, 0, 0, 0};
        for (int r = 0; r < 4; r++) ar[r] = a + (long)(r0 + (r < mr ? r : mr - 1)) * lda;
        if (zw) for (int r = 0; r < mr; r++) rs[r] = row_sum(ar[r], k);
        for (int jb = 0; jb < nblocks; jb++) {
            for (int half = 0; half < 2; half++) {
                int c0 = jb * QI8_NB + half * 8;
                if (c0 >= n) break;
                const int8_t *bp = packed + (long)jb * k4 * QI8_NB * 4 + half * 32;
                __m256i lo[4], hi[4];
                for (int r = 0; r < 4; r++) { lo[r] = _mm256_setzero_si256(); hi[r] = _mm256_setzero_si256(); }
                for (long q = 0; q < k4; q++) {
                    __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bp + q * 64)));
                    __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bp + q * 64 + 16)));
                    if (q < kfull) {
                        for (int r = 0; r < 4; r++) {
                            int32_t v; memcpy(&v, ar[r] + q * 4, 4);
                            __m256i av = _mm256_cvtepu8_epi16(_mm_set1_epi32(v));
                            lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(av, b0));
                            hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(av, b1));
                        }
                    } else {
                        for (int r = 0; r < 4; r++) {
                            int32_t v = 0;
                            for (long t = 0; t < k - kfull * 4; t++) v |= (int32_t)ar[r][q * 4 + t] << (8 * t);
                            __m256i av = _mm256_cvtepu8_epi16(_mm_set1_epi32(v));
                            lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(av, b0));
                            hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(av, b1));
                        }
                    }
                }
                int cnt = n - c0 < 8 ? n - c0 : 8;
                for (int r = 0; r < mr; r++) {
                    __m256i v = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(lo[r], hi[r]), order);
                    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                    v = _mm256_add_epi32(v, _mm256_maskload_epi32(corr + c0, m));
                    if (zw) v = _mm256_sub_epi32(v, _mm256_mullo_epi32(_mm256_maskload_epi32(zw + c0, m), _mm256_set1_epi32(rs[r])));
                    epilogue8(ep, r0 + r, c0, cnt, _mm256_cvtepi32_ps(v));
                }
            }
        }
    }
}

#endif

void qi8_gemm(int path, int m, int n, int k, const uint8_t *a, long lda, const int8_t *packed,
              const int32_t *corr, const int32_t *zw, const qi8_epilogue *ep) {
#if defined(__x86_64__)
    if (resolve(path) == QI8_PATH_AVX512VNNI) { gemm_vnni(m, n, k, a, lda, packed, corr, zw, ep); return; }
    if (resolve(path) == QI8_PATH_AVX2) { gemm_avx2(m, n, k, a, lda, packed, corr, zw, ep); return; }
#endif
    gemm_portable(m, n, k, a, lda, packed, corr, zw, ep);
}

/* Depthwise: float accumulation of (x - zx) * (w - zw), exact for these integer ranges. The same C
   compiled twice: for AVX-512 and portable; the compiler vectorizes the channel loops. */
#define DEPTHWISE_BODY                                                                                \
    float acc[64];                                                                                    \
    for (int row = row0; row < row1; row++) {                                                         \
        int img = row / oh_count, oy = row % oh_count;                                                \
        for (int ox = 0; ox < ow_count; ox++) {                                                       \
            long orow = (long)row * ow_count + ox;                                                    \
            for (int c0 = 0; c0 < c; c0 += 64) {                                                      \
                int cnt = c - c0 < 64 ? c - c0 : 64;                                                  \
                for (int j = 0; j < cnt; j++) acc[j] = 0;                                             \
                for (int ky = 0; ky < kh; ky++) {                                                     \
                    int iy = oy * sh - ph + ky * dh;                                                  \
                    if (iy < 0 || iy >= h) continue;                                                  \
                    for (int kx = 0; kx < kw; kx++) {                                                 \
                        int ix = ox * sw - pw + kx * dw;                                              \
                        if (ix < 0 || ix >= w) continue;                                              \
                        const uint8_t *src = x + (((long)img * h + iy) * w + ix) * c + c0;            \
                        const float *wt = wf + (long)(ky * kw + kx) * c + c0;                         \
                        for (int j = 0; j < cnt; j++) acc[j] += ((float)src[j] - zx) * wt[j];         \
                    }                                                                                 \
                }                                                                                     \
                epilogue_row(ep, orow, c0, cnt, acc);                                                 \
            }                                                                                         \
        }                                                                                             \
    }

#if defined(__x86_64__)
/* 16 channels per vector. Input rows are widened once to float (x - zx) into zero-padded row buffers
   (a ring of (kh-1)*dh+1 rows, so consecutive output rows reuse the rows they share); the inner loop is
   a load and an (exact) multiply-add per tap, two output pixels at a time sharing the weight loads. */
AVX512 static void depthwise_avx512(int row0, int row1, const uint8_t *x, int h, int w, int c, float zx,
                                    const float *wf, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                                    int oh_count, int ow_count, const qi8_epilogue *ep) {
    const __m512 vzx = _mm512_set1_ps(zx);
    int wpad = w + 2 * pw + 16;                 /* columns of a row buffer, with slack for any kx reach */
    int need = (ow_count - 1) * sw + (kw - 1) * dw + 2;
    if (need > wpad) wpad = need;
    long cpad = ((long)c + 15) / 16 * 16;
    int slots = (kh - 1) * dh + 1;
    float *buf = (float *)aligned_alloc(64, sizeof(float) * (size_t)(slots * wpad * cpad));
    long *held = (long *)malloc(sizeof(long) * (size_t)slots);
    if (!buf || !held) { fprintf(stderr, "int8 engine: out of memory in a depthwise convolution\n"); abort(); }
    for (int i = 0; i < slots; i++) {
        held[i] = -1;
        float *dst = buf + (long)i * wpad * cpad;   /* padding columns stay zero */
        memset(dst, 0, sizeof(float) * (size_t)(pw * cpad));
        memset(dst + (long)(w + pw) * cpad, 0, sizeof(float) * (size_t)((wpad - w - pw) * cpad));
    }
    const float *rows[16];
    for (int row = row0; row < row1; row++) {
        int img = row / oh_count, oy = row % oh_count;
        int nvalid = 0;
        const float *wrows[16];
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * sh - ph + ky * dh;
            if (iy < 0 || iy >= h) continue;
            long key = (long)img * h + iy;
            int slot = iy % slots;
            float *dst = buf + (long)slot * wpad * cpad;
            if (held[slot] != key) {
                held[slot] = key;
                const uint8_t *src = x + key * w * c;
                for (int ix = 0; ix < w; ix++) {
                    float *d = dst + (long)(ix + pw) * cpad;
                    for (int c0 = 0; c0 < c; c0 += 16) {
                        int cnt = c - c0 < 16 ? c - c0 : 16;
                        __mmask16 m = (__mmask16)(cnt >= 16 ? 0xFFFF : ((1u << cnt) - 1));
                        __m128i b = _mm_maskz_loadu_epi8(m, src + (long)ix * c + c0);
                        _mm512_store_ps(d + c0, _mm512_maskz_sub_ps(m, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)), vzx));
                    }
                }
            }
            rows[nvalid] = dst;
            wrows[nvalid] = wf + (long)ky * kw * c;
            nvalid++;
        }
        for (int c0 = 0; c0 < c; c0 += 16) {
            int cnt = c - c0 < 16 ? c - c0 : 16;
            __mmask16 m = (__mmask16)(cnt >= 16 ? 0xFFFF : ((1u << cnt) - 1));
            int ox = 0;
            for (; ox + 2 <= ow_count; ox += 2) {
                __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
                for (int v = 0; v < nvalid; v++) {
                    const float *b0 = rows[v] + (long)(ox * sw) * cpad + c0, *b1 = b0 + (long)sw * cpad;
                    const float *wr = wrows[v] + c0;
                    for (int kx = 0; kx < kw; kx++) {
                        __m512 wv = _mm512_maskz_loadu_ps(m, wr + (long)kx * c);
                        a0 = _mm512_fmadd_ps(_mm512_load_ps(b0 + (long)kx * dw * cpad), wv, a0);   /* exact */
                        a1 = _mm512_fmadd_ps(_mm512_load_ps(b1 + (long)kx * dw * cpad), wv, a1);
                    }
                }
                epilogue16(ep, (long)row * ow_count + ox, c0, cnt, a0);
                epilogue16(ep, (long)row * ow_count + ox + 1, c0, cnt, a1);
            }
            for (; ox < ow_count; ox++) {
                __m512 a0 = _mm512_setzero_ps();
                for (int v = 0; v < nvalid; v++) {
                    const float *b0 = rows[v] + (long)(ox * sw) * cpad + c0;
                    const float *wr = wrows[v] + c0;
                    for (int kx = 0; kx < kw; kx++)
                        a0 = _mm512_fmadd_ps(_mm512_load_ps(b0 + (long)kx * dw * cpad), _mm512_maskz_loadu_ps(m, wr + (long)kx * c), a0);
                }
                epilogue16(ep, (long)row * ow_count + ox, c0, cnt, a0);
            }
        }
    }
    free(buf);
    free(held);
}
#endif

#if defined(__x86_64__)
/* Depthwise on AVX2: the AVX-512 kernel's algorithm (ring of zero-padded float row buffers, two
   output pixels per step) on 8 lanes. */
AVX2 static void depthwise_avx2(int row0, int row1, const uint8_t *x, int h, int w, int c, float zx,
                                const float *wf, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                                int oh_count, int ow_count, const qi8_epilogue *ep) {
    const __m256 vzx = _mm256_set1_ps(zx);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int wpad = w + 2 * pw + 16;
    int need = (ow_count - 1) * sw + (kw - 1) * dw + 2;
    if (need > wpad) wpad = need;
    long cpad = ((long)c + 7) / 8 * 8;
    int slots = (kh - 1) * dh + 1;
    float *buf = (float *)aligned_alloc(64, sizeof(float) * (size_t)((slots * wpad * cpad + 15) / 16 * 16));
    long *held = (long *)malloc(sizeof(long) * (size_t)slots);
    if (!buf || !held) { fprintf(stderr, "int8 engine: out of memory in a depthwise convolution\n"); abort(); }
    for (int i = 0; i < slots; i++) {
        held[i] = -1;
        float *dst = buf + (long)i * wpad * cpad;
        memset(dst, 0, sizeof(float) * (size_t)(pw * cpad));
        memset(dst + (long)(w + pw) * cpad, 0, sizeof(float) * (size_t)((wpad - w - pw) * cpad));
    }
    const float *rows[16], *wrows[16];
    for (int row = row0; row < row1; row++) {
        int img = row / oh_count, oy = row % oh_count;
        int nvalid = 0;
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * sh - ph + ky * dh;
            if (iy < 0 || iy >= h) continue;
            long key = (long)img * h + iy;
            int slot = iy % slots;
            float *dst = buf + (long)slot * wpad * cpad;
            if (held[slot] != key) {
                held[slot] = key;
                const uint8_t *src = x + key * w * c;
                for (int ix = 0; ix < w; ix++) {
                    float *d = dst + (long)(ix + pw) * cpad;
                    const uint8_t *sp = src + (long)ix * c;
                    int c0 = 0;
                    for (; c0 + 8 <= c; c0 += 8)
                        _mm256_storeu_ps(d + c0, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sp + c0)))), vzx));
                    for (; c0 < cpad; c0++) d[c0] = c0 < c ? (float)sp[c0] - zx : 0;
                }
            }
            rows[nvalid] = dst;
            wrows[nvalid] = wf + (long)ky * kw * c;
            nvalid++;
        }
        for (int c0 = 0; c0 < c; c0 += 8) {
            int cnt = c - c0 < 8 ? c - c0 : 8;
            __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), lane);
            int ox = 0;
            for (; ox + 2 <= ow_count; ox += 2) {
                __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
                for (int v = 0; v < nvalid; v++) {
                    const float *b0 = rows[v] + (long)(ox * sw) * cpad + c0, *b1 = b0 + (long)sw * cpad;
                    const float *wr = wrows[v] + c0;
                    for (int kx = 0; kx < kw; kx++) {
                        __m256 wv = _mm256_maskload_ps(wr + (long)kx * c, m);
                        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(b0 + (long)kx * dw * cpad), wv, a0);   /* exact */
                        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(b1 + (long)kx * dw * cpad), wv, a1);
                    }
                }
                epilogue8(ep, (long)row * ow_count + ox, c0, cnt, a0);
                epilogue8(ep, (long)row * ow_count + ox + 1, c0, cnt, a1);
            }
            for (; ox < ow_count; ox++) {
                __m256 a0 = _mm256_setzero_ps();
                for (int v = 0; v < nvalid; v++) {
                    const float *b0 = rows[v] + (long)(ox * sw) * cpad + c0;
                    const float *wr = wrows[v] + c0;
                    for (int kx = 0; kx < kw; kx++)
                        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(b0 + (long)kx * dw * cpad), _mm256_maskload_ps(wr + (long)kx * c, m), a0);
                }
                epilogue8(ep, (long)row * ow_count + ox, c0, cnt, a0);
            }
        }
    }
    free(buf);
    free(held);
}
#endif

static void depthwise_portable(int row0, int row1, const uint8_t *x, int h, int w, int c, float zx,
                               const float *wf, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                               int oh_count, int ow_count, const qi8_epilogue *ep) { DEPTHWISE_BODY }

void qi8_depthwise(int path, int row0, int row1, const uint8_t *x, int h, int w, int c, float zx,
                   const float *wf, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                   int oh_count, int ow_count, const qi8_epilogue *ep) {
#if defined(__x86_64__)
    if (resolve(path) == QI8_PATH_AVX512VNNI && kh <= 16) {
        depthwise_avx512(row0, row1, x, h, w, c, zx, wf, kh, kw, sh, sw, ph, pw, dh, dw, oh_count, ow_count, ep);
        return;
    }
    if (resolve(path) == QI8_PATH_AVX2 && kh <= 16) {
        depthwise_avx2(row0, row1, x, h, w, c, zx, wf, kh, kw, sh, sw, ph, pw, dh, dw, oh_count, ow_count, ep);
        return;
    }
#endif
    depthwise_portable(row0, row1, x, h, w, c, zx, wf, kh, kw, sh, sw, ph, pw, dh, dw, oh_count, ow_count, ep);
}

/* memcpy for the short spans of im2col, without a call: overlapping 8- or 4-byte moves. */
static inline void copy_small(uint8_t *d, const uint8_t *s, int n) {
    if (n > 16) { memcpy(d, s, (size_t)n); return; }
    if (n >= 8) { uint64_t a, b; memcpy(&a, s, 8); memcpy(&b, s + n - 8, 8); memcpy(d, &a, 8); memcpy(d + n - 8, &b, 8); return; }
    if (n >= 4) { uint32_t a, b; memcpy(&a, s, 4); memcpy(&b, s + n - 4, 4); memcpy(d, &a, 4); memcpy(d + n - 4, &b, 4); return; }
    for (int i = 0; i < n; i++) d[i] = s[i];
}

void qi8_im2col(int row0, int row1, const uint8_t *x, int h, int w, int c, uint8_t zx,
                int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int oh_count, int ow_count,
                uint8_t *col, long ldcol) {
    const int span = kw * c;
    for (int row = row0; row < row1; row++) {
        int img = row / oh_count, oy = row % oh_count;
        for (int ox = 0; ox < ow_count; ox++) {
            uint8_t *dst = col + ((long)(row - row0) * ow_count + ox) * ldcol;
            int ix0 = ox * sw - pw;
            if (dw == 1 && ix0 >= 0 && ix0 + kw <= w) {
                /* The kx taps of one ky are kw adjacent pixels: one copy of kw * c bytes. */
                for (int ky = 0; ky < kh; ky++, dst += span) {
                    int iy = oy * sh - ph + ky * dh;
                    if (iy < 0 || iy >= h) { memset(dst, zx, (size_t)span); continue; }
                    copy_small(dst, x + (((long)img * h + iy) * w + ix0) * c, span);
                }
                continue;
            }
            for (int ky = 0; ky < kh; ky++) {
                int iy = oy * sh - ph + ky * dh;
                for (int kx = 0; kx < kw; kx++, dst += c) {
                    int ix = ox * sw - pw + kx * dw;
                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) { for (int i = 0; i < c; i++) dst[i] = zx; }
                    else if (c < 32) { const uint8_t *src = x + (((long)img * h + iy) * w + ix) * c; for (int i = 0; i < c; i++) dst[i] = src[i]; }
                    else memcpy(dst, x + (((long)img * h + iy) * w + ix) * c, (size_t)c);
                }
            }
        }
    }
}

/* Elementwise ops. Dequantization (u - zero) * scale and the quantizer arithmetic are the fake-quant
   op's; plain C the compiler vectorizes. */
static inline float operand_value(const qi8_operand *o, long i) {
    return o->codes ? ((float)o->codes[i] - o->zero) * o->scale : o->floats[i];
}

static inline float activate(float v, int act) {
    switch (act) {
    case QI8_ACT_RELU: return v > 0 ? v : 0;
    case QI8_ACT_RELU6: return v > 0 ? (v < 6 ? v : 6) : 0;
    case QI8_ACT_HARDSWISH: { float t = v + 3; t = t > 0 ? (t < 6 ? t : 6) : 0; return v * t / 6; }
    case QI8_ACT_HARDSIGMOID: { float t = v + 3; t = t > 0 ? (t < 6 ? t : 6) : 0; return t / 6; }
    default: return v;
    }
}

static inline uint8_t quantize_value(const qi8_epilogue *ep, float v) {
    float q = nearbyintf(v * ep->inv_scale) + ep->zero_point;
    q = q < ep->lo ? ep->lo : (q > ep->hi ? ep->hi : q);
    return (uint8_t)q;
}

/* The elementwise loops, compiled once per kernel path (plain C the compiler vectorizes; rounding
   inline with SSE4.1 and later). */
#define DEFINE_ELEMENTWISE(ATTR, SUFFIX)                                                                                      \
ATTR static void add_##SUFFIX(long begin, long end, qi8_operand a, qi8_operand b, const qi8_epilogue *ep_in) {                \
    /* A local copy: stores through the output pointers cannot alias it, so the loop keeps its fields in registers. */        \
    const qi8_epilogue local = *ep_in, *ep = &local;                                                                          \
    uint8_t *const oc = ep->out_codes;                                                                                        \
    float *const of = ep->out_float;                                                                                          \
    for (long i = begin; i < end; i++) {                                                                                      \
        float v = activate(operand_value(&a, i) + operand_value(&b, i), ep->activation);                                      \
        if (oc) oc[i] = quantize_value(ep, v);                                                                                \
        else of[i] = v;                                                                                                       \
    }                                                                                                                         \
}                                                                                                                             \
                                                                                                                              \
ATTR static void quantize_##SUFFIX(long begin, long end, qi8_operand a, const qi8_epilogue *ep_in) {                          \
    const qi8_epilogue local = *ep_in, *ep = &local;                                                                          \
    uint8_t *const oc = ep->out_codes;                                                                                        \
    if (a.codes) {                                                                                                            \
        /* Codes to codes: a table of the 256 stored codes, the same arithmetic per entry. */                                 \
        uint8_t lut[256];                                                                                                     \
        for (int u = 0; u < 256; u++) lut[u] = quantize_value(ep, ((float)u - a.zero) * a.scale);                             \
        const uint8_t *const in = a.codes;                                                                                    \
        for (long i = begin; i < end; i++) oc[i] = lut[in[i]];                                                                \
        return;                                                                                                               \
    }                                                                                                                         \
    const float *const in = a.floats;                                                                                         \
    for (long i = begin; i < end; i++) oc[i] = quantize_value(ep, in[i]);                                                     \
}                                                                                                                             \
                                                                                                                              \
ATTR static void quantize_nchw_##SUFFIX(int image0, int image1, const float *x, int c, long hw, const qi8_epilogue *ep_in) {  \
    const qi8_epilogue local = *ep_in, *ep = &local;                                                                          \
    uint8_t *const oc = ep->out_codes;                                                                                        \
    /* Blocks of 64 pixels: each channel plane quantized contiguously (vectorizes), then interleaved. */                      \
    uint8_t tmp[8][64];                                                                                                       \
    if (c > 8) {                                                                                                              \
        for (long img = image0; img < image1; img++)                                                                          \
            for (long p = 0; p < hw; p++)                                                                                     \
                for (int ch = 0; ch < c; ch++)                                                                                \
                    oc[(img * hw + p) * c + ch] = quantize_value(ep, x[(img * c + ch) * hw + p]);                             \
        return;                                                                                                               \
    }                                                                                                                         \
    for (long img = image0; img < image1; img++) {                                                                            \
        for (long p0 = 0; p0 < hw; p0 += 64) {                                                                                \
            int n = hw - p0 < 64 ? (int)(hw - p0) : 64;                                                                       \
            for (int ch = 0; ch < c; ch++) {                                                                                  \
                const float *src = x + (img * c + ch) * hw + p0;                                                              \
                for (int i = 0; i < n; i++) tmp[ch][i] = quantize_value(ep, src[i]);                                          \
            }                                                                                                                 \
            uint8_t *dst = oc + (img * hw + p0) * c;                                                                          \
            for (int i = 0; i < n; i++)                                                                                       \
                for (int ch = 0; ch < c; ch++) dst[i * c + ch] = tmp[ch][i];                                                  \
        }                                                                                                                     \
    }                                                                                                                         \
}
DEFINE_ELEMENTWISE(, portable)
#if defined(__x86_64__)
DEFINE_ELEMENTWISE(AVX2, avx2)
DEFINE_ELEMENTWISE(AVX512, avx512)
#endif

void qi8_add(int path, long begin, long end, qi8_operand a, qi8_operand b, const qi8_epilogue *ep) {
#if defined(__x86_64__)
    if (resolve(path) == QI8_PATH_AVX512VNNI) { add_avx512(begin, end, a, b, ep); return; }
    if (resolve(path) == QI8_PATH_AVX2) { add_avx2(begin, end, a, b, ep); return; }
#endif
    add_portable(begin, end, a, b, ep);
}

void qi8_quantize(int path, long begin, long end, qi8_operand a, const qi8_epilogue *ep) {
#if defined(__x86_64__)
    if (resolve(path) == QI8_PATH_AVX512VNNI) { quantize_avx512(begin, end, a, ep); return; }
    if (resolve(path) == QI8_PATH_AVX2) { quantize_avx2(begin, end, a, ep); return; }
#endif
    quantize_portable(begin, end, a, ep);
}

void qi8_quantize_nchw(int path, int image0, int image1, const float *x, int c, long hw, const qi8_epilogue *ep) {
#if defined(__x86_64__)
    if (resolve(path) == QI8_PATH_AVX512VNNI) { quantize_nchw_avx512(image0, image1, x, c, hw, ep); return; }
    if (resolve(path) == QI8_PATH_AVX2) { quantize_nchw_avx2(image0, image1, x, c, hw, ep); return; }
#endif
    quantize_nchw_portable(image0, image1, x, c, hw, ep);
}
