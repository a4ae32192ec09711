// Issue 14 spike: oneDNN (Debian libdnnl-dev 2.6) int8 convolution against its FP32 convolution on
// MobileNetV2 x0.5 layer shapes at batch 8 (the inference workload, 256-px input), NHWC,
// inference with an output scale per channel, a source zero point and a fused ReLU, as an integer
// engine would run them. Prints median ms of 20 runs after 3 warm-ups and the int8 / f32 ratio.
//   gcc -O2 -o /tmp/dnnl_conv scripts/bench/dnnl_conv.c -ldnnl && /tmp/dnnl_conv
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(f) do { dnnl_status_t s_ = (f); if (s_ != dnnl_success) { fprintf(stderr, "%s failed: %d (line %d)\n", #f, s_, __LINE__); exit(1); } } while (0)

static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

typedef struct { const char *name; int n, ic, oc, h, w, k, s, g; } Shape;

static double run(dnnl_engine_t eng, dnnl_stream_t st, Shape sh, int int8) {
    int oh = (sh.h + 2 * (sh.k / 2) - sh.k) / sh.s + 1, ow = (sh.w + 2 * (sh.k / 2) - sh.k) / sh.s + 1;
    dnnl_dims_t src_d = {sh.n, sh.ic, sh.h, sh.w}, dst_d = {sh.n, sh.oc, oh, ow}, bias_d = {sh.oc};
    dnnl_dims_t strides = {sh.s, sh.s}, pad = {sh.k / 2, sh.k / 2};
    dnnl_memory_desc_t src_md, wei_md, dst_md, bias_md, wei_any;
    dnnl_data_type_t in_t = int8 ? dnnl_u8 : dnnl_f32, w_t = int8 ? dnnl_s8 : dnnl_f32;
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, src_d, in_t, dnnl_nhwc));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dst_d, in_t, dnnl_nhwc));
    CHECK(dnnl_memory_desc_init_by_tag(&bias_md, 1, bias_d, dnnl_f32, dnnl_a));
    if (sh.g == 1) {
        dnnl_dims_t wd = {sh.oc, sh.ic, sh.k, sh.k};
        CHECK(dnnl_memory_desc_init_by_tag(&wei_md, 4, wd, w_t, dnnl_oihw));
        CHECK(dnnl_memory_desc_init_by_tag(&wei_any, 4, wd, w_t, dnnl_format_tag_any));
    } else {
        dnnl_dims_t wd = {sh.g, sh.oc / sh.g, sh.ic / sh.g, sh.k, sh.k};
        CHECK(dnnl_memory_desc_init_by_tag(&wei_md, 5, wd, w_t, dnnl_goihw));
        CHECK(dnnl_memory_desc_init_by_tag(&wei_any, 5, wd, w_t, dnnl_format_tag_any));
    }
    dnnl_convolution_desc_t cd;
    CHECK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &src_md, &wei_any, &bias_md, &dst_md,
                                             strides, pad, pad));
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    dnnl_post_ops_t po;
    CHECK(dnnl_post_ops_create(&po));
    CHECK(dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, 0.f, 0.f));
    CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
    float *scales = malloc(sizeof(float) * sh.oc);
    for (int i = 0; i < sh.oc; i++) scales[i] = 0.01f + 0.001f * (i % 7);
    if (int8) {
        CHECK(dnnl_primitive_attr_set_output_scales(attr, sh.oc, 1 << 1, scales));
        int32_t zp = 3;
        CHECK(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &zp));
    }
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL));
    const dnnl_memory_desc_t *wei_chosen = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_memory_t src, wei_user, wei, dst, bias;
    CHECK(dnnl_memory_create(&src, &src_md, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&dst, &dst_md, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&bias, &bias_md, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&wei_user, &wei_md, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&wei, wei_chosen, eng, DNNL_MEMORY_ALLOCATE));
    void *p;
    CHECK(dnnl_memory_get_data_handle(src, &p)); memset(p, 7, dnnl_memory_desc_get_size(&src_md));
    CHECK(dnnl_memory_get_data_handle(wei_user, &p)); memset(p, 1, dnnl_memory_desc_get_size(&wei_md));
    CHECK(dnnl_memory_get_data_handle(bias, &p)); memset(p, 0, dnnl_memory_desc_get_size(&bias_md));
    // Weights into the layout the primitive chose (done once, at conversion time in an engine).
    dnnl_primitive_desc_t rpd; dnnl_primitive_t rp;
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, &wei_md, eng, wei_chosen, eng, NULL));
    CHECK(dnnl_primitive_create(&rp, rpd));
    dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, wei_user}, {DNNL_ARG_TO, wei}};
    CHECK(dnnl_primitive_execute(rp, st, 2, rargs)); CHECK(dnnl_stream_wait(st));
    dnnl_primitive_t conv;
    CHECK(dnnl_primitive_create(&conv, pd));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}};
    double t[20];
    for (int i = 0; i < 23; i++) {
        double a = now_ms();
        CHECK(dnnl_primitive_execute(conv, st, 4, args)); CHECK(dnnl_stream_wait(st));
        if (i >= 3) t[i - 3] = now_ms() - a;
    }
    qsort(t, 20, sizeof(double), cmp);
    const char *impl = NULL;
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    fprintf(stderr, "  %s %s: %s\n", sh.name, int8 ? "int8" : "f32", impl);
    free(scales);
    return (t[9] + t[10]) / 2;
}

int main(void) {
    dnnl_engine_t eng; dnnl_stream_t st;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    // MobileNetV2 x0.5 at 256 px, batch 8: the stem, an expansion, a depthwise and a projection of the
    // 64x64 stage, the same of the 16x16 stage, and the last 1x1 (160 -> 1280) at 8x8.
    Shape shapes[] = {
        {"stem 3x3 s2 3->16 @256", 8, 3, 16, 256, 256, 3, 2, 1},
        {"1x1 16->96 @64", 8, 16, 96, 64, 64, 1, 1, 1},
        {"dw3x3 96 @64", 8, 96, 96, 64, 64, 3, 1, 96},
        {"1x1 96->16 @64", 8, 96, 16, 64, 64, 1, 1, 1},
        {"1x1 32->192 @16", 8, 32, 192, 16, 16, 1, 1, 1},
        {"dw3x3 192 @16", 8, 192, 192, 16, 16, 3, 1, 192},
        {"1x1 192->32 @16", 8, 192, 32, 16, 16, 1, 1, 1},
        {"1x1 160->1280 @8", 8, 160, 1280, 8, 8, 1, 1, 1},
    };
    printf("%-26s %10s %10s %8s\n", "layer (batch 8, NHWC)", "f32 ms", "int8 ms", "int8/f32");
    double tf = 0, ti = 0;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        double f = run(eng, st, shapes[i], 0), q = run(eng, st, shapes[i], 1);
        tf += f; ti += q;
        printf("%-26s %10.3f %10.3f %8.2f\n", shapes[i].name, f, q, q / f);
    }
    printf("%-26s %10.3f %10.3f %8.2f\n", "sum", tf, ti, ti / tf);
    return 0;
}
