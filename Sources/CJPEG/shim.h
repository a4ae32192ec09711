#ifndef QAT_CJPEG_SHIM_H
#define QAT_CJPEG_SHIM_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>

/* libjpeg reports errors by calling error_exit, whose default ends the process. These helpers return
   through setjmp/longjmp instead (Swift cannot), so a corrupt file is an error, not a crash. */

struct qat_jpeg_err { struct jpeg_error_mgr pub; jmp_buf jb; char msg[JMSG_LENGTH_MAX]; };

static void qat_jpeg_error_exit(j_common_ptr c) {
    struct qat_jpeg_err *e = (struct qat_jpeg_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}
static void qat_jpeg_silent(j_common_ptr c) { (void)c; }

/* Decodes to 8-bit gray (channels 1) or RGB (channels 3). Returns 0 on success. `max_pixels` caps
   width x height from the header, before libjpeg allocates its buffers (up to 65500 x 65500). */
static inline int qat_jpeg_decode(const unsigned char *data, size_t size, int channels, size_t max_pixels, unsigned char **out,
                                  unsigned *w, unsigned *h, char *msg, size_t msglen) {
    struct jpeg_decompress_struct cinfo;
    struct qat_jpeg_err jerr;
    unsigned char *volatile buf = NULL;
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = qat_jpeg_error_exit;
    jerr.pub.output_message = qat_jpeg_silent;
    jerr.msg[0] = 0;
    if (setjmp(jerr.jb)) {
        jpeg_destroy_decompress(&cinfo);
        free(buf);
        snprintf(msg, msglen, "%s", jerr.msg);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if ((size_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        snprintf(jerr.msg, sizeof jerr.msg, "declares %ux%u = %zu pixels, above the cap of %zu pixels; downscale or tile it",
                 (unsigned)cinfo.image_width, (unsigned)cinfo.image_height, (size_t)cinfo.image_width * cinfo.image_height, max_pixels);
        longjmp(jerr.jb, 1);
    }
    cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)cinfo.output_width * cinfo.output_components;
    buf = (unsigned char *)malloc(stride * cinfo.output_height + 1);
    if (!buf) { snprintf(jerr.msg, sizeof jerr.msg, "out of memory"); longjmp(jerr.jb, 1); }
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned char *row = buf + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    *w = cinfo.output_width; *h = cinfo.output_height;
    jpeg_destroy_decompress(&cinfo);
    *out = buf;
    return 0;
}

/* Encodes 8-bit gray or RGB pixels at the given quality (1-100). Returns 0 on success. */
static inline int qat_jpeg_encode(const unsigned char *pixels, unsigned w, unsigned h, int channels, int quality,
                                  unsigned char **out, size_t *outsize, char *msg, size_t msglen) {
    struct jpeg_compress_struct cinfo;
    struct qat_jpeg_err jerr;
    unsigned char *mem = NULL;
    unsigned long memsize = 0;
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = qat_jpeg_error_exit;
    jerr.pub.output_message = qat_jpeg_silent;
    if (setjmp(jerr.jb)) { jpeg_destroy_compress(&cinfo); snprintf(msg, msglen, "%s", jerr.msg); return 1; }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &mem, &memsize);
    cinfo.image_width = w; cinfo.image_height = h;
    cinfo.input_components = channels; cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * w * channels);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = mem; *outsize = memsize;
    return 0;
}
#endif
