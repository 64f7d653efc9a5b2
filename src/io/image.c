/*
 * io/image.c: PNG (libpng) and JPEG (libjpeg-turbo) decoding to 8-bit RGB, Pillow-exact bicubic
 * resize, float normalisation.
 *
 * Reference: Pillow 9.4 behaviour, as written down in spec/models.md §2.1, §2.2, §2.4 and checked
 * against Pillow by tests/golden/gen_image.py. Conversions follow Image.open(p).convert('RGB'):
 * alpha (tRNS, RGBA, LA) dropped without compositing, palettes looked up with Pillow's grey
 * default for indices past PLTE, 1/2/4-bit grey scaled to 0..255, 16-bit RGB/RGBA/LA keep the
 * high byte (Pillow's "RGB;16B" raw modes), 16-bit grey clamps to 0..255 (Pillow opens it as
 * mode I and I->RGB clips). JPEG uses libjpeg defaults (islow IDCT, fancy upsampling), as Pillow.
 *
 * Deliberately not done: EXIF orientation, colour management (gAMA/iCCP ignored, like Pillow),
 * CMYK/YCCK JPEG (rejected as unsupported), other formats (GIF, WebP, ...), the CLIP
 * shorter-side-plus-crop geometry (callers compose it from resize). Truncated JPEG/PNG data is
 * an error, not a grey-filled image.
 */
#include "io/image.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "core/common.h"

/* Whole files are read into memory; refuse anything absurd before allocating. */
#define MAX_FILE_BYTES ((size_t)1 << 30)
/* libjpeg working memory cap (coefficient buffers of progressive files). */
#define JPEG_MAX_MEMORY (1L << 30)
/* Progressive JPEGs with more scans than this are hostile (legit files have < 20). */
#define JPEG_MAX_SCANS 1000
/* mf_image_probe reads this much first; PNG's IHDR is in the first 33 bytes, JPEG's SOF follows
 * the APPn segments (EXIF, ICC), nearly always within it. */
#define PROBE_BYTES ((size_t)64 << 10)

static _Atomic int64_t max_pixels = MF_IMAGE_DEFAULT_MAX_PIXELS;

void mf_image_set_max_pixels(int64_t n)
{
    atomic_store(&max_pixels, n < 1 ? 1 : n > MF_IMAGE_MAX_PIXELS ? MF_IMAGE_MAX_PIXELS : n);
}

int64_t mf_image_max_pixels(void)
{
    return atomic_load(&max_pixels);
}

void mf_image_free(struct mf_image *im)
{
    if (!im)
        return;
    mf_free(im->rgb);
    im->rgb = NULL;
    im->w = 0;
    im->h = 0;
}

static enum mf_status check_dims(const char *label, const char *kind, uint64_t w, uint64_t h,
                                 struct mf_err *err)
{
    if (w == 0 || h == 0)
        return mf_err_set(err, MF_ERR_FORMAT, "%s: %s image has size %llux%llu", label, kind,
                          (unsigned long long)w, (unsigned long long)h);
    if (w > MF_IMAGE_MAX_SIDE || h > MF_IMAGE_MAX_SIDE)
        return mf_err_set(err, MF_ERR_RANGE,
                          "%s: %s image is %llux%llu pixels, more than this loader accepts "
                          "(%d per side)",
                          label, kind, (unsigned long long)w, (unsigned long long)h,
                          MF_IMAGE_MAX_SIDE);
    int64_t lim = mf_image_max_pixels();
    if (w * h > (uint64_t)lim)
        return mf_err_set(err, MF_ERR_RANGE,
                          "%s: %s image is %llux%llu = %llu pixels, more than the limit of %lld "
                          "(a possible decompression bomb; raise it with --max-pixels)",
                          label, kind, (unsigned long long)w, (unsigned long long)h,
                          (unsigned long long)(w * h), (long long)lim);
    return MF_OK;
}

static enum mf_status alloc_rgb(struct mf_image *im, int w, int h, struct mf_err *err,
                                const char *label)
{
    size_t n;
    if (!mf_mul_size((size_t)w * (size_t)h, 3, &n) || !(im->rgb = mf_malloc(n)))
        return mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory for a %dx%d RGB image", label,
                          w, h);
    im->w = w;
    im->h = h;
    return MF_OK;
}

/* ---------------------------------------------------------------- PNG */

struct png_dec {
    const uint8_t *src; /* (len) whole file */
    size_t len, pos;
    const char *label;
    png_structp png;
    png_infop info;
    uint8_t *native;   /* (h, rowbytes) rows after libpng's transforms */
    png_bytep *rows;   /* (h) pointers into native */
    struct mf_image *out;
    enum mf_status status;
    int nomem;
    int header_only; /* stop after the header checks: out->w/h set, no pixels */
    char msg[200];
};

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_dec *d = png_get_error_ptr(png);
    snprintf(d->msg, sizeof d->msg, "%s", msg ? msg : "unknown error");
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* benign problems (bad ancillary chunk CRC, palette index range) are ignored */
}

static png_voidp png_on_malloc(png_structp png, png_alloc_size_t n)
{
    void *p = mf_malloc(n);
    if (!p) {
        struct png_dec *d = png_get_mem_ptr(png);
        if (d)
            d->nomem = 1;
    }
    return p;
}

static void png_on_free(png_structp png, png_voidp p)
{
    (void)png;
    mf_free(p);
}

static void png_on_read(png_structp png, png_bytep data, size_t n)
{
    struct png_dec *d = png_get_io_ptr(png);
    if (n > d->len - d->pos)
        png_error(png, "unexpected end of file (truncated)");
    memcpy(data, d->src + d->pos, n);
    d->pos += n;
}

/* Native rows (1 byte index/grey, 2 bytes grey16 or 3 bytes RGB per pixel) -> RGB. */
static void png_to_rgb(struct png_dec *d, int color_type, int bit_depth, const uint8_t pal[256][3])
{
    int w = d->out->w, h = d->out->h;
    for (int y = 0; y < h; y++) {
        const uint8_t *s = d->rows[y];
        uint8_t *o = d->out->rgb + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < w; x++, o += 3) {
            if (color_type == PNG_COLOR_TYPE_PALETTE) {
                memcpy(o, pal[s[x]], 3);
            } else if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth == 16) {
                unsigned v = ((unsigned)s[2 * x] << 8) | s[2 * x + 1];
                o[0] = o[1] = o[2] = (uint8_t)(v > 255 ? 255 : v);
            } else if (color_type == PNG_COLOR_TYPE_GRAY ||
                       color_type == PNG_COLOR_TYPE_GRAY_ALPHA) {
                o[0] = o[1] = o[2] = s[x];
            } else {
                memcpy(o, s + 3 * (size_t)x, 3);
            }
        }
    }
}

static enum mf_status png_decode(struct png_dec *d, struct mf_err *err)
{
    d->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, d, png_on_error, png_on_warning, d,
                                      png_on_malloc, png_on_free);
    if (!d->png || !(d->info = png_create_info_struct(d->png))) {
        d->status = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory starting the PNG decoder",
                               d->label);
        goto fail;
    }
    if (setjmp(png_jmpbuf(d->png))) {
        if (d->nomem)
            d->status = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory decoding PNG (%s)",
                                   d->label, d->msg);
        else
            d->status = mf_err_set(err, MF_ERR_FORMAT, "%s: corrupt PNG data: %s", d->label,
                                   d->msg);
        goto fail;
    }
    png_set_read_fn(d->png, d, png_on_read);
    png_read_info(d->png, d->info);

    png_uint_32 w, h;
    int bit_depth, color_type, interlace;
    png_get_IHDR(d->png, d->info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL);
    if ((d->status = check_dims(d->label, "PNG", w, h, err)) != MF_OK)
        goto fail;

    uint8_t pal[256][3]; /* Pillow's default palette is a grey ramp; PLTE overwrites its head */
    for (int i = 0; i < 256; i++)
        pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
    int want_channels = 3, want_bytes = 1;
    switch (color_type) {
    case PNG_COLOR_TYPE_PALETTE: {
        png_colorp plte = NULL;
        int n_plte = 0;
        if (png_get_PLTE(d->png, d->info, &plte, &n_plte) & PNG_INFO_PLTE) {
            for (int i = 0; i < n_plte && i < 256; i++) {
                pal[i][0] = plte[i].red;
                pal[i][1] = plte[i].green;
                pal[i][2] = plte[i].blue;
            }
        }
        if (bit_depth < 8)
            png_set_packing(d->png);
        want_channels = 1;
        break;
    }
    case PNG_COLOR_TYPE_GRAY:
        if (bit_depth < 8)
            png_set_expand_gray_1_2_4_to_8(d->png);
        want_channels = 1;
        want_bytes = bit_depth == 16 ? 2 : 1;
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        png_set_strip_16(d->png);
        png_set_strip_alpha(d->png);
        want_channels = 1;
        break;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA:
        png_set_strip_16(d->png);
        png_set_strip_alpha(d->png);
        break;
    default:
        d->status = mf_err_set(err, MF_ERR_UNSUPPORTED, "%s: PNG colour type %d not supported",
                               d->label, color_type);
        goto fail;
    }
    if (d->header_only) {
        d->out->w = (int)w;
        d->out->h = (int)h;
        d->status = MF_OK;
        goto fail;
    }
    png_set_interlace_handling(d->png);
    png_read_update_info(d->png, d->info);

    size_t rowbytes = png_get_rowbytes(d->png, d->info);
    if (png_get_channels(d->png, d->info) != want_channels ||
        rowbytes != (size_t)w * (size_t)want_channels * (size_t)want_bytes) {
        d->status = mf_err_set(err, MF_ERR_INTERNAL,
                               "%s: PNG row layout after transforms is %zu bytes, %d channels "
                               "(expected %d channels of %d bytes)",
                               d->label, rowbytes, (int)png_get_channels(d->png, d->info),
                               want_channels, want_bytes);
        goto fail;
    }
    size_t total;
    if (!mf_mul_size(rowbytes, h, &total) || !(d->native = mf_malloc(total)) ||
        !(d->rows = mf_malloc(sizeof(png_bytep) * h))) {
        d->status = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory for a %ux%u PNG", d->label,
                               (unsigned)w, (unsigned)h);
        goto fail;
    }
    for (png_uint_32 y = 0; y < h; y++)
        d->rows[y] = d->native + (size_t)y * rowbytes;
    if ((d->status = alloc_rgb(d->out, (int)w, (int)h, err, d->label)) != MF_OK)
        goto fail;
    png_read_image(d->png, d->rows);
    png_to_rgb(d, color_type, bit_depth, (const uint8_t(*)[3])pal);
    d->status = MF_OK;

fail:
    if (d->png)
        png_destroy_read_struct(&d->png, d->info ? &d->info : NULL, NULL);
    mf_free(d->rows);
    mf_free(d->native);
    d->rows = NULL;
    d->native = NULL;
    if (d->status != MF_OK)
        mf_image_free(d->out);
    return d->status;
}

/* ---------------------------------------------------------------- JPEG */

struct jpeg_dec {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this */
    jmp_buf jb;
    struct jpeg_progress_mgr progress;
    struct jpeg_decompress_struct cinfo;
    int created;
    int truncated;
    enum mf_status fail_code;
    char msg[JMSG_LENGTH_MAX + 64];
    struct mf_image *out;
    const char *label;
    enum mf_status status;
    int header_only;
};

static void jpeg_on_error_exit(j_common_ptr c)
{
    struct jpeg_dec *d = (struct jpeg_dec *)c->err;
    char buf[JMSG_LENGTH_MAX];
    (*c->err->format_message)(c, buf);
    snprintf(d->msg, sizeof d->msg, "%s", buf);
    d->fail_code = MF_ERR_FORMAT;
    longjmp(d->jb, 1);
}

static void jpeg_on_emit(j_common_ptr c, int level)
{
    if (level < 0) {
        struct jpeg_dec *d = (struct jpeg_dec *)c->err;
        /* libjpeg pads a truncated stream with a fake EOI and warns; Pillow refuses it. */
        if (c->err->msg_code == JWRN_JPEG_EOF)
            d->truncated = 1;
        c->err->num_warnings++;
    }
}

static void jpeg_on_output(j_common_ptr c)
{
    (void)c;
}

static void jpeg_on_progress(j_common_ptr c)
{
    struct jpeg_dec *d = (struct jpeg_dec *)c->err;
    if (c->is_decompressor && ((j_decompress_ptr)c)->input_scan_number > JPEG_MAX_SCANS) {
        snprintf(d->msg, sizeof d->msg, "more than %d scans", JPEG_MAX_SCANS);
        d->fail_code = MF_ERR_RANGE;
        longjmp(d->jb, 1);
    }
}

static enum mf_status jpeg_decode(struct jpeg_dec *d, const uint8_t *buf, size_t len,
                                  struct mf_err *err)
{
    d->cinfo.err = jpeg_std_error(&d->pub);
    d->pub.error_exit = jpeg_on_error_exit;
    d->pub.emit_message = jpeg_on_emit;
    d->pub.output_message = jpeg_on_output;
    if (setjmp(d->jb)) {
        if (d->fail_code == MF_ERR_RANGE)
            d->status = mf_err_set(err, MF_ERR_RANGE, "%s: JPEG has %s", d->label, d->msg);
        else
            d->status = mf_err_set(err, MF_ERR_FORMAT, "%s: corrupt JPEG data: %s", d->label,
                                   d->msg);
        goto fail;
    }
    jpeg_create_decompress(&d->cinfo);
    d->created = 1;
    d->cinfo.mem->max_memory_to_use = JPEG_MAX_MEMORY;
    d->progress.progress_monitor = jpeg_on_progress;
    d->cinfo.progress = &d->progress;
    if (len > (size_t)(unsigned long)-1) {
        d->status = mf_err_set(err, MF_ERR_RANGE, "%s: JPEG of %zu bytes is too large", d->label,
                               len);
        goto fail;
    }
    jpeg_mem_src(&d->cinfo, buf, (unsigned long)len);
    jpeg_read_header(&d->cinfo, TRUE);
    if ((d->status = check_dims(d->label, "JPEG", d->cinfo.image_width, d->cinfo.image_height,
                                err)) != MF_OK)
        goto fail;
    switch (d->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        d->cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        d->cinfo.out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        d->status = mf_err_set(err, MF_ERR_UNSUPPORTED,
                               "%s: CMYK JPEG (%d components) is not supported; convert it to "
                               "RGB first",
                               d->label, d->cinfo.num_components);
        goto fail;
    default:
        d->status = mf_err_set(err, MF_ERR_UNSUPPORTED,
                               "%s: JPEG colour space %d with %d components is not supported",
                               d->label, (int)d->cinfo.jpeg_color_space,
                               d->cinfo.num_components);
        goto fail;
    }
    if (d->header_only) {
        d->out->w = (int)d->cinfo.image_width;
        d->out->h = (int)d->cinfo.image_height;
        d->status = MF_OK;
        goto fail;
    }
    jpeg_start_decompress(&d->cinfo); /* progressive files are consumed whole here */
    int w = (int)d->cinfo.output_width, h = (int)d->cinfo.output_height;
    int nc = d->cinfo.output_components;
    if ((nc != 1 && nc != 3) || w != (int)d->cinfo.image_width ||
        h != (int)d->cinfo.image_height) {
        d->status = mf_err_set(err, MF_ERR_INTERNAL,
                               "%s: JPEG decoder output %dx%dx%d, expected %ux%u", d->label, w, h,
                               nc, d->cinfo.image_width, d->cinfo.image_height);
        goto fail;
    }
    if ((d->status = alloc_rgb(d->out, w, h, err, d->label)) != MF_OK)
        goto fail;
    /* stop at the first sign of truncation: a 16-byte file may declare 16384x16384 pixels */
    while (d->cinfo.output_scanline < d->cinfo.output_height && !d->truncated) {
        /* grey rows are decoded into the start of the RGB row, then spread right to left */
        uint8_t *row = d->out->rgb + (size_t)d->cinfo.output_scanline * (size_t)w * 3;
        JSAMPROW rp = row;
        if (jpeg_read_scanlines(&d->cinfo, &rp, 1) != 1) {
            snprintf(d->msg, sizeof d->msg, "decoder stopped at row %u of %d",
                     d->cinfo.output_scanline, h);
            d->status = mf_err_set(err, MF_ERR_FORMAT, "%s: corrupt JPEG data: %s", d->label,
                                   d->msg);
            goto fail;
        }
        if (nc == 1)
            for (int x = w - 1; x >= 0; x--)
                row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = row[x];
    }
    if (d->truncated) {
        d->status = mf_err_set(err, MF_ERR_FORMAT,
                               "%s: truncated JPEG data (premature end of file, %zu bytes)",
                               d->label, len);
        goto fail;
    }
    d->status = MF_OK;

fail:
    if (d->created)
        jpeg_destroy_decompress(&d->cinfo);
    d->created = 0;
    if (d->status != MF_OK)
        mf_image_free(d->out);
    return d->status;
}

/* ---------------------------------------------------------------- entry points */

/* What a file that is not PNG or JPEG looks like, from its signature: never its bytes. */
static const char *not_image_kind(const uint8_t *b, size_t len)
{
    if (len >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return "a GIF image";
    if (len >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return "a WebP image";
    if (len >= 2 && b[0] == 'B' && b[1] == 'M')
        return "looks like a BMP image";
    if (len >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0))
        return "a TIFF image";
    if (len >= 4 && memcmp(b, "\x89PNG", 4) == 0)
        return "a damaged or truncated PNG signature";
    return "unrecognised signature";
}

static enum mf_status decode_mem(const void *buf, size_t len, const char *label, int header_only,
                                 struct mf_image *out, struct mf_err *err)
{
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t *b = buf;
    enum mf_status st;
    if (!label)
        label = "<memory>";
    if (!out || (!buf && len))
        return mf_err_set(err, MF_ERR_ARG, "%s: mf_image_load_mem: NULL argument", label);
    memset(out, 0, sizeof *out);
    if (len >= 8 && memcmp(b, png_magic, 8) == 0) {
        struct png_dec *d = mf_calloc(1, sizeof *d);
        if (!d)
            return mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory", label);
        d->src = b;
        d->len = len;
        d->label = label;
        d->out = out;
        d->status = MF_ERR_INTERNAL;
        d->header_only = header_only;
        st = png_decode(d, err);
        mf_free(d);
        return st;
    }
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
        struct jpeg_dec *d = mf_calloc(1, sizeof *d);
        if (!d)
            return mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory", label);
        d->label = label;
        d->out = out;
        d->status = MF_ERR_INTERNAL;
        d->header_only = header_only;
        st = jpeg_decode(d, b, len, err);
        mf_free(d);
        return st;
    }
    if (len == 0)
        return mf_err_set(err, MF_ERR_FORMAT, "%s: not a PNG or JPEG file (empty file)", label);
    return mf_err_set(err, MF_ERR_FORMAT, "%s: not a PNG or JPEG file (%s)", label,
                      not_image_kind(b, len));
}

enum mf_status mf_image_load_mem(const void *buf, size_t len, const char *label,
                                 struct mf_image *out, struct mf_err *err)
{
    return decode_mem(buf, len, label, 0, out, err);
}

/* Reads at most cap bytes of the regular file at path into *buf (mf_malloc'd); *len is what was
 * read, *size the file's size. */
static enum mf_status read_file(const char *path, size_t cap, uint8_t **buf, size_t *len,
                                size_t *size, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    struct stat sb;
    *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return mf_err_set(err, e == ENOENT ? MF_ERR_MISSING : MF_ERR_IO, "%s: cannot open: %s",
                          path, strerror(e));
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = mf_err_set(err, MF_ERR_IO, "%s: cannot read: not a regular file", path);
        goto fail;
    }
    if ((uint64_t)sb.st_size > MAX_FILE_BYTES) {
        st = mf_err_set(err, MF_ERR_RANGE, "%s: file is %lld bytes, more than the %zu accepted",
                        path, (long long)sb.st_size, MAX_FILE_BYTES);
        goto fail;
    }
    *size = (size_t)sb.st_size;
    size_t want = MF_MIN(*size, cap), got = 0;
    if (!(*buf = mf_malloc(want ? want : 1))) {
        st = mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, want);
        goto fail;
    }
    while (got < want) {
        ssize_t r = read(fd, *buf + got, want - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            st = mf_err_set(err, MF_ERR_IO, "%s: read error after %zu bytes: %s", path, got,
                            r < 0 ? strerror(errno) : "file shrank while reading");
            goto fail;
        }
        got += (size_t)r;
    }
    *len = got;
fail:
    if (st != MF_OK) {
        mf_free(*buf);
        *buf = NULL;
    }
    close(fd);
    return st;
}

enum mf_status mf_image_load(const char *path, struct mf_image *out, struct mf_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0, size = 0;
    if (!path || !out)
        return mf_err_set(err, MF_ERR_ARG, "mf_image_load: NULL argument");
    memset(out, 0, sizeof *out);
    enum mf_status st = read_file(path, MAX_FILE_BYTES, &buf, &len, &size, err);
    if (st == MF_OK)
        st = decode_mem(buf, len, path, 0, out, err);
    mf_free(buf);
    return st;
}

enum mf_status mf_image_probe(const char *path, int *w, int *h, struct mf_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0, size = 0;
    struct mf_image im = {0};
    if (!path)
        return mf_err_set(err, MF_ERR_ARG, "mf_image_probe: NULL argument");
    enum mf_status st = read_file(path, PROBE_BYTES, &buf, &len, &size, err);
    if (st == MF_OK)
        st = decode_mem(buf, len, path, 1, &im, err);
    if (st != MF_OK && buf && len < size) { /* the header may go on past the prefix: all of it */
        mf_free(buf);
        if ((st = read_file(path, MAX_FILE_BYTES, &buf, &len, &size, err)) == MF_OK)
            st = decode_mem(buf, len, path, 1, &im, err);
    }
    mf_free(buf);
    if (w)
        *w = st == MF_OK ? im.w : 0;
    if (h)
        *h = st == MF_OK ? im.h : 0;
    return st;
}

/* ---------------------------------------------------------------- resize */

#define PRECISION_BITS 22

/* Fixed-point bicubic taps for one dimension (spec §2.2, Pillow precompute_coeffs and
 * normalize_coeffs_8bpc). */
struct taps {
    int ksize;
    int *bounds; /* (n_out, 2): first source index, number of taps */
    int32_t *k;  /* (n_out, ksize) */
};

static double cubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static enum mf_status taps_make(int in, int out, struct taps *t)
{
    double *wk = NULL;
    enum mf_status st = MF_ERR_NOMEM;
    double scale = (double)in / out;
    double fs = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * fs;
    double ss = 1.0 / fs; /* Pillow multiplies by the reciprocal */
    t->ksize = (int)ceil(support) * 2 + 1;
    t->bounds = mf_malloc(sizeof(int) * 2 * (size_t)out);
    t->k = mf_malloc(sizeof(int32_t) * (size_t)t->ksize * (size_t)out);
    wk = mf_malloc(sizeof(double) * (size_t)t->ksize);
    if (!t->bounds || !t->k || !wk)
        goto fail;
    for (int o = 0; o < out; o++) {
        double center = (o + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        int xmax = (int)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > in)
            xmax = in;
        int n = xmax - xmin;
        MF_ASSERT(n >= 0 && n <= t->ksize);
        double sum = 0.0;
        for (int x = 0; x < n; x++) {
            wk[x] = cubic((x + xmin - center + 0.5) * ss);
            sum += wk[x];
        }
        int32_t *k = t->k + (size_t)o * (size_t)t->ksize;
        for (int x = 0; x < t->ksize; x++) {
            double w = x < n ? (sum != 0.0 ? wk[x] / sum : wk[x]) : 0.0;
            k[x] = w < 0 ? (int32_t)(-0.5 + w * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + w * (1 << PRECISION_BITS));
        }
        t->bounds[2 * o] = xmin;
        t->bounds[2 * o + 1] = n;
    }
    st = MF_OK;
fail:
    mf_free(wk);
    return st;
}

static void taps_free(struct taps *t)
{
    mf_free(t->bounds);
    mf_free(t->k);
}

static inline uint8_t clip8(int64_t acc)
{
    acc >>= PRECISION_BITS; /* arithmetic shift (floor) */
    return (uint8_t)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

/* (h, w_in, 3) -> (h, w_out, 3) */
static void pass_horizontal(const uint8_t *src, int h, int w_in, const struct taps *t, int w_out,
                            uint8_t *dst)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *s = src + (size_t)y * (size_t)w_in * 3;
        uint8_t *d = dst + (size_t)y * (size_t)w_out * 3;
        for (int o = 0; o < w_out; o++) {
            int xmin = t->bounds[2 * o], n = t->bounds[2 * o + 1];
            const int32_t *k = t->k + (size_t)o * (size_t)t->ksize;
            for (int c = 0; c < 3; c++) {
                int64_t acc = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < n; x++)
                    acc += (int64_t)s[(size_t)(xmin + x) * 3 + c] * k[x];
                d[(size_t)o * 3 + c] = clip8(acc);
            }
        }
    }
}

/* (h_in, w, 3) -> (h_out, w, 3) */
static void pass_vertical(const uint8_t *src, int w, const struct taps *t, int h_out,
                          uint8_t *dst)
{
    size_t stride = (size_t)w * 3;
    for (int o = 0; o < h_out; o++) {
        int ymin = t->bounds[2 * o], n = t->bounds[2 * o + 1];
        const int32_t *k = t->k + (size_t)o * (size_t)t->ksize;
        uint8_t *d = dst + (size_t)o * stride;
        for (size_t i = 0; i < stride; i++) {
            int64_t acc = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < n; y++)
                acc += (int64_t)src[(size_t)(ymin + y) * stride + i] * k[y];
            d[i] = clip8(acc);
        }
    }
}

enum mf_status mf_image_resize_bicubic(const struct mf_image *in, int out_w, int out_h,
                                       struct mf_image *out, struct mf_err *err)
{
    enum mf_status st;
    struct taps th = {0}, tv = {0};
    struct mf_image tmp = {0};
    if (!in || !out || !in->rgb || in->w <= 0 || in->h <= 0)
        return mf_err_set(err, MF_ERR_ARG, "mf_image_resize_bicubic: empty input image");
    memset(out, 0, sizeof *out);
    if (out_w <= 0 || out_h <= 0 || out_w > MF_IMAGE_MAX_SIDE || out_h > MF_IMAGE_MAX_SIDE ||
        (int64_t)out_w * out_h > MF_IMAGE_MAX_PIXELS)
        return mf_err_set(err, MF_ERR_ARG, "mf_image_resize_bicubic: output size %dx%d out of "
                          "range (1..%d per side)", out_w, out_h, MF_IMAGE_MAX_SIDE);
    const uint8_t *cur = in->rgb;
    int cur_w = in->w;
    if (out_w != in->w) {
        if ((st = taps_make(in->w, out_w, &th)) != MF_OK ||
            (st = alloc_rgb(&tmp, out_w, in->h, err, "resize")) != MF_OK) {
            st = mf_err_set(err, MF_ERR_NOMEM, "resize %dx%d -> %dx%d: out of memory", in->w,
                            in->h, out_w, out_h);
            goto fail;
        }
        pass_horizontal(in->rgb, in->h, in->w, &th, out_w, tmp.rgb);
        cur = tmp.rgb;
        cur_w = out_w;
    }
    if (out_h != in->h) {
        if ((st = taps_make(in->h, out_h, &tv)) != MF_OK ||
            (st = alloc_rgb(out, out_w, out_h, err, "resize")) != MF_OK) {
            st = mf_err_set(err, MF_ERR_NOMEM, "resize %dx%d -> %dx%d: out of memory", in->w,
                            in->h, out_w, out_h);
            goto fail;
        }
        pass_vertical(cur, cur_w, &tv, out_h, out->rgb);
    } else if (tmp.rgb) {
        *out = tmp; /* horizontal pass only: hand the buffer over */
        tmp.rgb = NULL;
    } else {
        if ((st = alloc_rgb(out, out_w, out_h, err, "resize")) != MF_OK)
            goto fail;
        memcpy(out->rgb, in->rgb, (size_t)out_w * (size_t)out_h * 3);
    }
    st = MF_OK;
fail:
    mf_image_free(&tmp);
    taps_free(&th);
    taps_free(&tv);
    if (st != MF_OK)
        mf_image_free(out);
    return st;
}

/* ---------------------------------------------------------------- normalise */

void mf_image_normalize(const struct mf_image *im, const float mean[3], const float std[3],
                        float *out)
{
    size_t hw = (size_t)im->w * (size_t)im->h;
    float lut[3][256]; /* the same float32 ops per value, hoisted out of the pixel loop */
    for (int c = 0; c < 3; c++)
        for (int u = 0; u < 256; u++) {
            float x = (float)u / 255.0f;
            lut[c][u] = (x - mean[c]) / std[c];
        }
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++)
            out[(size_t)c * hw + i] = lut[c][im->rgb[i * 3 + (size_t)c]];
}

enum mf_status mf_image_preprocess(const char *path, int size, float *out, struct mf_err *err)
{
    static const float mean[3] = MF_IMAGE_MEAN, std[3] = MF_IMAGE_STD;
    struct mf_image im = {0}, rs = {0};
    enum mf_status st;
    if ((st = mf_image_load(path, &im, err)) != MF_OK)
        goto fail;
    if ((st = mf_image_resize_bicubic(&im, size, size, &rs, err)) != MF_OK) {
        mf_err_prefix(err, path);
        goto fail;
    }
    mf_image_normalize(&rs, mean, std, out);
fail:
    mf_image_free(&rs);
    mf_image_free(&im);
    return st;
}
