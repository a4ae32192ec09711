// Integer kernels of the int8 inference engine (Sources/Int8Engine). C with intrinsics, chosen at run
// time (AVX-512 VNNI, else AVX2 + FMA, else portable C), so one binary serves every x86-64 machine.
//
// Arithmetic contract (the engine's documentation restates it): activations are 8-bit codes stored
// as uint8 (a signed grid is stored shifted by +128, its zero point with it), weights are int8 codes
// with a per-output-channel zero point; products are accumulated exactly in int32 and corrected for
// both zero points, so the accumulator equals sum_k (x_k - zx) * (w_k - zw). The epilogue converts it
// to float, applies the per-channel affine map (scales, folded BatchNorm, bias), the activation, and
// either stores the float or quantizes it to the next quantizer's grid (round half to even, as the
// fake-quant op does).
#ifndef CINT8_H
#define CINT8_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { QI8_ACT_NONE = 0, QI8_ACT_RELU = 1, QI8_ACT_RELU6 = 2, QI8_ACT_HARDSWISH = 3, QI8_ACT_HARDSIGMOID = 4 };
/// Kernel paths. AUTO picks the best the CPU runs: AVX-512 VNNI, else AVX2 + FMA, else portable C.
enum { QI8_PATH_AUTO = 0, QI8_PATH_PORTABLE = 1, QI8_PATH_AVX512VNNI = 2, QI8_PATH_AVX2 = 3 };

/// One operand of an elementwise op: stored codes (value (u - zero) * scale) when `codes` is set, else floats.
typedef struct {
    const uint8_t *codes;
    const float *floats;
    float scale, zero;
} qi8_operand;

typedef struct {
    const float *alpha;     /// [n] y = alpha[j] * acc + beta[j]
    const float *beta;      /// [n]
    int activation;         /// QI8_ACT_*
    uint8_t *out_codes;     /// codes out (stored form) when non-NULL, else float out
    float *out_float;
    long ldc;               /// elements between output rows
    float inv_scale;        /// 1 / scale of the output quantizer
    float zero_point;       /// stored zero point (z + 128 for a signed grid)
    float lo, hi;           /// stored grid bounds
    /// Folded requantization (codes out, activation none/relu/relu6): when set, codes are
    /// clamp(round(fma(qalpha, acc, qbeta)), qlo, qhi) with alpha and beta pre-multiplied by 1/scale, the
    /// zero point in qbeta and the activation's clamp in the bounds; one rounding instead of two.
    const float *qalpha;
    const float *qbeta;
    float qlo, qhi;
    /// A residual added after the affine map and before the activation (a fused residual add:
    /// y = alpha * acc + beta + r, then activation, then quantization); element row * ldc + channel.
    /// Unused when neither pointer is set.
    qi8_operand residual;
} qi8_epilogue;

/// The path AUTO resolves to on this CPU.
int qi8_best_path(void);
/// Whether this CPU runs `path` (portable: always).
int qi8_supports(int path);
/// Bytes of a packed [n, k] weight matrix: ceil(n/16) blocks of ceil(k/4) quads of 16 x 4 int8.
long qi8_packed_bytes(int n, int k);
/// Packs row-major int8 weights w[n][k] (zero padded).
void qi8_pack(const int8_t *w, int n, int k, int8_t *packed);
/// Rows [0, m) of C = epilogue(A W^T): a is m rows of k uint8 codes, lda bytes apart. `corr[j]` is the
/// per-column correction -zx * sum_k w[j][k] + k * zx * zw[j]; `zw` (NULL when every weight zero point
/// is 0) multiplies each row's code sum.
void qi8_gemm(int path, int m, int n, int k, const uint8_t *a, long lda, const int8_t *packed,
              const int32_t *corr, const int32_t *zw, const qi8_epilogue *ep);
/// Depthwise convolution over NHWC codes, output rows (image, oh) in [row0, row1) of batch*oh_count.
/// `wf` holds (w - zw) as floats, [kh*kw][c]; sums of up to 49 products of 9-bit values are exact in
/// float. Epilogue row index: (image * oh_count + oh) * ow_count + ow.
void qi8_depthwise(int path, int row0, int row1, const uint8_t *x, int h, int w, int c, float zx,
                   const float *wf, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                   int oh_count, int ow_count, const qi8_epilogue *ep);
/// im2col over NHWC codes for output rows (image, oh) in [row0, row1): each output pixel's row is
/// kh*kw*c codes in (ky, kx, channel) order, padding filled with the zero point `zx`; rows are `ldcol`
/// bytes apart, starting with row0's first pixel.
void qi8_im2col(int row0, int row1, const uint8_t *x, int h, int w, int c, uint8_t zx,
                int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int oh_count, int ow_count,
                uint8_t *col, long ldcol);

/// out[i] = act(a[i] + b[i]) for i in [begin, end), written as floats or codes by the epilogue's output
/// fields (alpha and beta unused; channel index 0).
void qi8_add(int path, long begin, long end, qi8_operand a, qi8_operand b, const qi8_epilogue *ep);
/// out[i] = quantize(a[i]) for i in [begin, end): floats, or another grid's codes, to the epilogue's grid.
void qi8_quantize(int path, long begin, long end, qi8_operand a, const qi8_epilogue *ep);
/// Codes of NCHW floats written NHWC: images [0, n), c channels of hw pixels; the epilogue's quantizer.
void qi8_quantize_nchw(int path, int image0, int image1, const float *x, int c, long hw, const qi8_epilogue *ep);

#ifdef __cplusplus
}
#endif
#endif
