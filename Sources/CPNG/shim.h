#ifndef QAT_CPNG_SHIM_H
#define QAT_CPNG_SHIM_H
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libpng's simplified API behind two calls Swift can use directly. 16-bit images come out as 8-bit
   (sRGB-encoded) samples; palette, gray+alpha and tRNS images are expanded to the requested layout.
   Return 0 on success; on failure `msg` holds libpng's message. */

static inline int qat_png_info(const unsigned char *data, size_t size, unsigned *w, unsigned *h, unsigned *channels,
                               char *msg, size_t msglen) {
    png_image img; memset(&img, 0, sizeof img); img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, size)) { snprintf(msg, msglen, "%s", img.message); return 1; }
    *w = img.width; *h = img.height; *channels = PNG_IMAGE_PIXEL_CHANNELS(img.format);
    png_image_free(&img);
    return 0;
}

/* `max_pixels` caps width x height before the pixel buffer is allocated (the header alone may declare
   1,000,000 x 1,000,000); the size is computed in size_t, not with PNG_IMAGE_SIZE's 32-bit arithmetic. */
static inline int qat_png_decode(const unsigned char *data, size_t size, int channels, size_t max_pixels, unsigned char **out,
                                 unsigned *w, unsigned *h, char *msg, size_t msglen) {
    png_image img; memset(&img, 0, sizeof img); img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, size)) { snprintf(msg, msglen, "%s", img.message); return 1; }
    size_t pixels = (size_t)img.width * img.height;
    if (pixels > max_pixels) {
        snprintf(msg, msglen, "declares %ux%u = %zu pixels, above the cap of %zu pixels; downscale or tile it", img.width, img.height, pixels, max_pixels);
        png_image_free(&img);
        return 4;
    }
    img.format = channels == 1 ? PNG_FORMAT_GRAY : channels == 2 ? PNG_FORMAT_GA : channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
    size_t n = pixels * (size_t)channels;
    unsigned char *buf = (unsigned char *)malloc(n ? n : 1);
    if (!buf) { png_image_free(&img); snprintf(msg, msglen, "out of memory"); return 2; }
    if (!png_image_finish_read(&img, NULL, buf, 0, NULL)) { snprintf(msg, msglen, "%s", img.message); free(buf); return 3; }
    *out = buf; *w = img.width; *h = img.height;
    return 0;
}

static inline int qat_png_encode(const unsigned char *pixels, unsigned w, unsigned h, int channels,
                                 unsigned char **out, size_t *outsize, char *msg, size_t msglen) {
    png_image img; memset(&img, 0, sizeof img); img.version = PNG_IMAGE_VERSION;
    img.width = w; img.height = h;
    img.format = channels == 1 ? PNG_FORMAT_GRAY : channels == 2 ? PNG_FORMAT_GA : channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&img, NULL, &size, 0, pixels, 0, NULL)) { snprintf(msg, msglen, "%s", img.message); return 1; }
    unsigned char *buf = (unsigned char *)malloc(size);
    if (!buf) { snprintf(msg, msglen, "out of memory"); return 2; }
    if (!png_image_write_to_memory(&img, buf, &size, 0, pixels, 0, NULL)) { snprintf(msg, msglen, "%s", img.message); free(buf); return 3; }
    *out = buf; *outsize = size;
    return 0;
}
#endif
