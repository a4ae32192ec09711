#!/usr/bin/env python3
"""Writes the PNG and JPEG seeds that our encoders cannot make (fuzz/corpus/png, fuzz/corpus/jpeg):
PNGs with 16-bit samples, a palette with tRNS, 1-bit gray and Adam7 interlacing (written here with
zlib), and progressive, restart-interval and 4:2:0 JPEGs (libjpeg, through a small C program compiled
with the toolchain's clang). The other seeds come from the harnesses (see scripts/fuzz.sh).
Usage: python3 fuzz/make_seeds.py   (from the repository root)"""
import os, struct, subprocess, tempfile, zlib

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

def png(w, h, depth, color, rows, extra=b"", interlace=0):
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, interlace)
    raw = b"".join(b"\x00" + r for r in rows)   # filter type 0 on every row
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")

def adam7_rows(w, h, pixel):
    """Rows of the seven Adam7 passes for 8-bit gray pixels pixel(x, y)."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    rows = []
    for x0, y0, dx, dy in passes:
        xs = list(range(x0, w, dx))
        if not xs: continue
        for y in range(y0, h, dy):
            rows.append(bytes(pixel(x, y) for x in xs))
    return rows

out = "fuzz/corpus/png"
os.makedirs(out, exist_ok=True)
seeds = {
    "rgb16-3x2.png": png(3, 2, 16, 2, [bytes((x * 40 + y * 7 + k) % 256 for x in range(3) for k in range(6)) for y in range(2)]),
    "palette-trns-4x4.png": png(4, 4, 4, 3, [bytes([((x * 2) << 4) | (x * 2 + 1) for x in range(2)]) for _ in range(4)],
                                extra=chunk(b"PLTE", bytes(range(48))) + chunk(b"tRNS", bytes([0, 128, 255]))),
    "gray1-9x3.png": png(9, 3, 1, 0, [bytes([0b10101010 ^ y, 0b10000000]) for y in range(3)]),
    "adam7-gray-10x9.png": png(10, 9, 8, 0, adam7_rows(10, 9, lambda x, y: (x * 25 + y * 9) % 256), interlace=1),
    "gamma-text-2x2.png": png(2, 2, 8, 2, [bytes(6), bytes(range(6))],
                              extra=chunk(b"gAMA", struct.pack(">I", 45455)) + chunk(b"tEXt", b"Comment\x00seed")),
}
for name, data in seeds.items():
    open(os.path.join(out, name), "wb").write(data)

C = r'''
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>
static void write(const char *path, int w, int h, int progressive, int restart, int subsample) {
    struct jpeg_compress_struct c; struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e); jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb"); jpeg_stdio_dest(&c, f);
    c.image_width = w; c.image_height = h; c.input_components = 3; c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c); jpeg_set_quality(&c, 75, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    c.restart_interval = restart;
    if (!subsample) { c.comp_info[0].h_samp_factor = 1; c.comp_info[0].v_samp_factor = 1; }
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = malloc(w * 3);
    while (c.next_scanline < c.image_height) {
        for (int x = 0; x < w * 3; x++) row[x] = (unsigned char)(x * 5 + c.next_scanline * 11);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c); jpeg_destroy_compress(&c); fclose(f); free(row);
}
int main(void) {
    write("fuzz/corpus/jpeg/progressive-24x16.jpg", 24, 16, 1, 0, 1);
    write("fuzz/corpus/jpeg/restart-32x8.jpg", 32, 8, 0, 1, 1);
    write("fuzz/corpus/jpeg/444-7x9.jpg", 7, 9, 0, 0, 0);
    return 0;
}
'''
with tempfile.TemporaryDirectory() as d:
    src, exe = os.path.join(d, "seeds.c"), os.path.join(d, "seeds")
    open(src, "w").write(C)
    subprocess.run(["clang", src, "-ljpeg", "-o", exe], check=True)
    subprocess.run([exe], check=True)
print("wrote", ", ".join(sorted(seeds)), "and 3 JPEGs")
