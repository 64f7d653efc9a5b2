/* io/image: bit-exact decode/convert/resize against Pillow goldens (tests/golden/gen_image.py),
 * the worked examples of spec §2.2, normalisation against numpy float32 for all 256 values, and
 * the error paths (missing, empty, not an image, truncated, corrupt, CMYK, too large, NOMEM),
 * messages that never quote a file's bytes, header probing, and the pixel limit (a 16384x16384
 * PNG written here with libpng is refused from its header, before any pixel buffer). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ctype.h>
#include <jansson.h>
#include <png.h>

#include "core/common.h"
#include "io/image.h"

#define IMG_DIR "tests/data/images/"

static const char *img_path(const char *name)
{
    char rel[512];
    snprintf(rel, sizeof rel, IMG_DIR "%s", name);
    return mf_test_path(rel);
}

/* Exact comparison; prints the first differing sample and the count. */
static int compare_rgb(const char *label, const uint8_t *got, const uint8_t *want, int w, int h)
{
    size_t n = (size_t)w * (size_t)h * 3, bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i] && bad++ == 0)
            first = i;
    if (bad)
        print_error("%s: %zu of %zu samples differ; first at y=%zu x=%zu c=%zu: got %d want %d\n",
                    label, bad, n, first / 3 / (size_t)w, first / 3 % (size_t)w, first % 3,
                    got[first], want[first]);
    return bad == 0;
}

static void run_manifest(const char *kind)
{
    FILE *f = fopen(img_path("manifest.txt"), "r");
    assert_non_null(f);
    char k[16], name[128], expect[160];
    int w, h, n_cases = 0, ok = 1;
    while (fscanf(f, "%15s %127s %d %d %159s", k, name, &w, &h, expect) == 5) {
        if (strcmp(k, kind) != 0)
            continue;
        struct mf_err err = {0};
        struct mf_image im = {0}, rs = {0};
        size_t len = 0;
        char *want = mf_test_read_file(img_path(expect), &len);
        assert_non_null(want);
        assert_int_equal(len, (size_t)w * (size_t)h * 3);
        if (mf_image_load(img_path(name), &im, &err) != MF_OK)
            fail_msg("%s: %s", name, err.msg);
        const struct mf_image *cmp = &im;
        if (strcmp(kind, "resize") == 0) {
            if (mf_image_resize_bicubic(&im, w, h, &rs, &err) != MF_OK)
                fail_msg("%s -> %dx%d: %s", name, w, h, err.msg);
            cmp = &rs;
        }
        char label[300];
        snprintf(label, sizeof label, "%s %s %dx%d", kind, name, w, h);
        if (cmp->w != w || cmp->h != h) {
            print_error("%s: got size %dx%d\n", label, cmp->w, cmp->h);
            ok = 0;
        } else {
            ok &= compare_rgb(label, cmp->rgb, (const uint8_t *)want, w, h);
        }
        mf_image_free(&rs);
        mf_image_free(&im);
        free(want);
        n_cases++;
    }
    fclose(f);
    print_message("%d %s cases compared\n", n_cases, kind);
    assert_true(n_cases >= 6);
    assert_true(ok);
}

static void test_decode_golden(void **state)
{
    (void)state;
    run_manifest("decode");
}

static void test_resize_golden(void **state)
{
    (void)state;
    run_manifest("resize");
}

static void test_worked_examples(void **state)
{
    (void)state;
    /* spec §2.2: the row [0, 100, 200, 255] resized to width 2 and 6 (grey, so R=G=B) */
    uint8_t px[4 * 3];
    const uint8_t row[4] = {0, 100, 200, 255};
    for (int i = 0; i < 12; i++)
        px[i] = row[i / 3];
    struct mf_image in = {4, 1, px}, out = {0};
    struct mf_err err = {0};
    const uint8_t want2[2] = {60, 221}, want6[6] = {0, 41, 117, 186, 235, 255};
    assert_int_equal(mf_image_resize_bicubic(&in, 2, 1, &out, &err), MF_OK);
    for (int i = 0; i < 6; i++)
        assert_int_equal(out.rgb[i], want2[i / 3]);
    mf_image_free(&out);
    assert_int_equal(mf_image_resize_bicubic(&in, 6, 1, &out, &err), MF_OK);
    for (int i = 0; i < 18; i++)
        assert_int_equal(out.rgb[i], want6[i / 3]);
    mf_image_free(&out);
    /* the same row standing up (vertical pass) gives the same values */
    struct mf_image col = {1, 4, px};
    assert_int_equal(mf_image_resize_bicubic(&col, 1, 6, &out, &err), MF_OK);
    for (int i = 0; i < 18; i++)
        assert_int_equal(out.rgb[i], want6[i / 3]);
    mf_image_free(&out);
    /* bad sizes */
    assert_int_equal(mf_image_resize_bicubic(&in, 0, 5, &out, &err), MF_ERR_ARG);
    assert_null(out.rgb);
    assert_int_equal(mf_image_resize_bicubic(&in, 5, MF_IMAGE_MAX_SIDE + 1, &out, &err), MF_ERR_ARG);
}

static void test_normalize(void **state)
{
    (void)state;
    size_t len = 0;
    float *want = (float *)mf_test_read_file(img_path("norm.f32"), &len); /* (3, 256) */
    assert_non_null(want);
    assert_int_equal(len, 3 * 256 * sizeof(float));
    uint8_t px[256 * 3];
    for (int u = 0; u < 256; u++)
        px[3 * u] = px[3 * u + 1] = px[3 * u + 2] = (uint8_t)u;
    struct mf_image im = {256, 1, px};
    static const float mean[3] = MF_IMAGE_MEAN, std[3] = MF_IMAGE_STD;
    float got[3 * 256];
    mf_image_normalize(&im, mean, std, got);
    mf_test_compare("normalize", got, want, 3 * 256, 1e-6);
    assert_memory_equal(got, want, sizeof got); /* bit for bit */
    free(want);

    /* CHW layout on a 2x1 image: out[c][0][x] */
    uint8_t two[6] = {0, 255, 0, 255, 0, 255};
    struct mf_image t = {2, 1, two};
    float o[6];
    mf_image_normalize(&t, mean, std, o);
    assert_true(o[0] < 0 && o[1] > 0); /* R: 0 then 255 */
    assert_true(o[2] > 0 && o[3] < 0); /* G: 255 then 0 */
}

static void test_preprocess(void **state)
{
    (void)state;
    /* load + squash 10x7 -> 96x96 + normalise == normalise(Pillow's 96x96) */
    size_t len = 0;
    uint8_t *want_rgb = (uint8_t *)mf_test_read_file(img_path("rgb10x7.png_96x96.rgb"), &len);
    assert_non_null(want_rgb);
    assert_int_equal(len, 96 * 96 * 3);
    struct mf_image w = {96, 96, want_rgb};
    static const float mean[3] = MF_IMAGE_MEAN, std[3] = MF_IMAGE_STD;
    float *want = malloc(3 * 96 * 96 * sizeof(float)); /* (3, 96, 96) */
    float *got = malloc(3 * 96 * 96 * sizeof(float));
    assert_non_null(want);
    assert_non_null(got);
    mf_image_normalize(&w, mean, std, want);
    struct mf_err err = {0};
    assert_int_equal(mf_image_preprocess(img_path("rgb10x7.png"), 96, got, &err), MF_OK);
    assert_memory_equal(got, want, 3 * 96 * 96 * sizeof(float));
    assert_int_equal(mf_image_preprocess(img_path("rgb10x7.png"), 0, got, &err), MF_ERR_ARG);
    assert_non_null(strstr(err.msg, "rgb10x7.png: "));
    assert_int_equal(mf_image_preprocess(img_path("nope.png"), 96, got, &err), MF_ERR_MISSING);
    free(got);
    free(want);
    free(want_rgb);
}

static void expect_error(const char *name, enum mf_status code, const char *needle)
{
    struct mf_err err = {0};
    struct mf_image im = {0};
    const char *p = img_path(name);
    enum mf_status st = mf_image_load(p, &im, &err);
    print_message("%s -> %d: %s\n", name, st, err.msg);
    assert_int_equal(st, code);
    assert_int_equal(err.code, code);
    assert_null(im.rgb);
    assert_int_equal(im.w, 0);
    assert_non_null(strstr(err.msg, p)); /* names the file */
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("missing.png", MF_ERR_MISSING, "cannot open: No such file or directory");
    expect_error("bad_notimage.png", MF_ERR_FORMAT, "not a PNG or JPEG file (a GIF image)");
    expect_error("bad_empty.png", MF_ERR_FORMAT, "not a PNG or JPEG file (empty file)");
    expect_error("bad_truncated.png", MF_ERR_FORMAT, "corrupt PNG data: ");
    expect_error("bad_crc.png", MF_ERR_FORMAT, "corrupt PNG data: ");
    expect_error("bad_truncated.jpg", MF_ERR_FORMAT, "corrupt JPEG data: ");
    expect_error("bad_truncated_scan.jpg", MF_ERR_FORMAT, "truncated JPEG data");
    expect_error("bad_header.jpg", MF_ERR_FORMAT, "corrupt JPEG data: ");
    expect_error("bad_cmyk.jpg", MF_ERR_UNSUPPORTED, "CMYK JPEG");
    expect_error("bad_huge.png", MF_ERR_RANGE, "20000x1");
    expect_error("", MF_ERR_IO, "cannot read"); /* the directory itself */

    struct mf_err err = {0};
    struct mf_image im = {0};
    assert_int_equal(mf_image_load_mem("\x89PNG", 4, "short", &im, &err), MF_ERR_FORMAT);
    assert_string_equal(err.msg, "short: not a PNG or JPEG file (a damaged or truncated PNG signature)");
    assert_int_equal(mf_image_load_mem("\xff\xd8\xff", 3, NULL, &im, &err), MF_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "<memory>: corrupt JPEG data: "));
    assert_int_equal(mf_image_load_mem("ab", 2, "x", &im, &err), MF_ERR_FORMAT);
    assert_string_equal(err.msg, "x: not a PNG or JPEG file (unrecognised signature)");
    /* a text file (say /etc/passwd) named as an image: its content never reaches the message */
    const char secret[] = "root:x:0:0:root:/root:/bin/bash\n";
    assert_int_equal(mf_image_load_mem(secret, sizeof secret - 1, "passwd", &im, &err), MF_ERR_FORMAT);
    assert_string_equal(err.msg, "passwd: not a PNG or JPEG file (unrecognised signature)");
    mf_image_free(&im);
    mf_image_free(&im); /* idempotent */
}

/* Probing reads the header only and agrees with a full load: sizes of good files, the same
 * status for every bad one. */
static void test_probe(void **state)
{
    (void)state;
    const char *names[] = {"interlaced.png", "prog420.jpg", "gray.jpg", "pal4.png", "gray16.png",
                           "missing.png", "bad_notimage.png", "bad_empty.png", "bad_header.jpg",
                           "bad_cmyk.jpg", "bad_huge.png", "bad_crc.png", ""};
    for (size_t i = 0; i < MF_ARRAY_LEN(names); i++) {
        struct mf_err e1 = {0}, e2 = {0};
        struct mf_image im = {0};
        int w = -1, h = -1;
        enum mf_status sl = mf_image_load(img_path(names[i]), &im, &e1);
        enum mf_status sp = mf_image_probe(img_path(names[i]), &w, &h, &e2);
        print_message("%s: load %d, probe %d (%s)\n", names[i], sl, sp, e2.msg);
        if (sl == MF_OK) {
            assert_int_equal(sp, MF_OK);
            assert_int_equal(w, im.w);
            assert_int_equal(h, im.h);
        } else if (strcmp(names[i], "bad_crc.png") != 0) { /* a bad IDAT CRC is past the header */
            assert_int_equal(sp, sl);
            assert_string_equal(e2.msg, e1.msg);
            assert_int_equal(w, 0);
        }
        mf_image_free(&im);
    }
}

/* A 16384x16384 1-bit grey PNG (2^28 pixels, a few tens of kB): written row by row. */
static void write_huge_png(const char *path, int side)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_non_null(info);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("libpng failed writing %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)side, (png_uint_32)side, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 9);
    png_write_info(png, info);
    png_byte *row = calloc((size_t)side / 8, 1);
    for (int y = 0; y < side; y++)
        png_write_row(png, row);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    fclose(f);
}

static void test_pixel_limit(void **state)
{
    (void)state;
    struct mf_err err = {0};
    struct mf_image im = {0};
    int w, h;
    char path[4096];
    snprintf(path, sizeof path, "%s/huge16384.png", mf_test_tmpdir());
    write_huge_png(path, 16384);
    assert_int_equal(mf_image_max_pixels(), MF_IMAGE_DEFAULT_MAX_PIXELS);
    long allocs = mf_alloc_count();
    assert_int_equal(mf_image_load(path, &im, &err), MF_ERR_RANGE);
    print_message("%s\n", err.msg);
    assert_non_null(strstr(err.msg, "16384x16384 = 268435456 pixels, more than the limit of 178956970"));
    assert_non_null(strstr(err.msg, "--max-pixels"));
    assert_null(im.rgb);
    /* refused from the header: the file buffer and libpng's own structures, no row or pixel buffer */
    assert_true(mf_alloc_count() - allocs < 20);
    assert_int_equal(mf_image_probe(path, &w, &h, &err), MF_ERR_RANGE);
    assert_int_equal(w, 0);
    /* the limit is adjustable and exact: rgb10x7.png has 70 pixels */
    mf_image_set_max_pixels(69);
    assert_int_equal(mf_image_load(img_path("rgb10x7.png"), &im, &err), MF_ERR_RANGE);
    assert_non_null(strstr(err.msg, "10x7 = 70 pixels, more than the limit of 69"));
    assert_int_equal(mf_image_probe(img_path("prog420.jpg"), &w, &h, &err), MF_ERR_RANGE);
    mf_image_set_max_pixels(70);
    assert_int_equal(mf_image_load(img_path("rgb10x7.png"), &im, &err), MF_OK);
    mf_image_free(&im);
    mf_image_set_max_pixels(INT64_MAX); /* clamped to the hard limit */
    assert_int_equal(mf_image_max_pixels(), MF_IMAGE_MAX_PIXELS);
    mf_image_set_max_pixels(MF_IMAGE_DEFAULT_MAX_PIXELS);
    remove(path);
}

static void test_load_mem_matches_file(void **state)
{
    (void)state;
    const char *names[] = {"interlaced.png", "prog420.jpg"};
    for (size_t i = 0; i < MF_ARRAY_LEN(names); i++) {
        size_t len = 0;
        char *buf = mf_test_read_file(img_path(names[i]), &len);
        assert_non_null(buf);
        struct mf_err err = {0};
        struct mf_image a = {0}, b = {0};
        assert_int_equal(mf_image_load(img_path(names[i]), &a, &err), MF_OK);
        assert_int_equal(mf_image_load_mem(buf, len, names[i], &b, &err), MF_OK);
        assert_int_equal(a.w, b.w);
        assert_int_equal(a.h, b.h);
        assert_memory_equal(a.rgb, b.rgb, (size_t)a.w * (size_t)a.h * 3);
        mf_image_free(&a);
        mf_image_free(&b);
        free(buf);
    }
}

/* Every allocation of load + resize fails in turn: the result is OK or NOMEM, never a crash or
 * a leak (the leak part is checked under -DMF_SANITIZE=ON). */
static void test_alloc_failures(void **state)
{
    (void)state;
    const char *names[] = {"interlaced.png", "pal4.png", "prog420.jpg", "gray.jpg"};
    for (size_t i = 0; i < MF_ARRAY_LEN(names); i++) {
        int n_fail = 0;
        for (long n = 0; n < 200; n++) {
            struct mf_err err = {0};
            struct mf_image im = {0}, rs = {0};
            mf_alloc_fail_after(n);
            enum mf_status st = mf_image_load(img_path(names[i]), &im, &err);
            if (st == MF_OK)
                st = mf_image_resize_bicubic(&im, 9, 5, &rs, &err);
            mf_alloc_fail_after(-1);
            mf_image_free(&rs);
            mf_image_free(&im);
            if (st == MF_OK)
                break;
            if (st != MF_ERR_NOMEM)
                fail_msg("%s, allocation %ld failing: status %d: %s", names[i], n, st, err.msg);
            n_fail++;
        }
        assert_true(n_fail >= 3);
    }
}

/* The bundled data/shapes set: every image decodes, every entry has two different captions made
 * only of the closed vocabulary (tools/gen_shapes.py WORDS). */
static void test_shapes_dataset(void **state)
{
    (void)state;
    static const char *vocab[] = {
        "a", "the", "in", "on", "at", "of", "and", "with", "left", "right", "top", "bottom",
        "center", "middle", "corner", "red", "green", "blue", "yellow", "purple", "orange",
        "white", "black", "gray", "circle", "square", "triangle", "small", "large", "big",
        "image", "picture", "shape", "background", "there", "is"};
    json_error_t jerr;
    json_t *root = json_load_file(mf_test_path("data/shapes/annotations.json"), 0, &jerr);
    if (!root)
        fail_msg("annotations.json:%d: %s", jerr.line, jerr.text);
    assert_true(json_is_array(root));
    assert_true(json_array_size(root) >= 32);
    size_t i;
    json_t *e;
    json_array_foreach(root, i, e) {
        const char *img = json_string_value(json_object_get(e, "image"));
        json_t *caps = json_object_get(e, "caption");
        assert_non_null(img);
        assert_true(json_is_array(caps) && json_array_size(caps) == 2);
        const char *c0 = json_string_value(json_array_get(caps, 0));
        const char *c1 = json_string_value(json_array_get(caps, 1));
        assert_non_null(c0);
        assert_non_null(c1);
        assert_string_not_equal(c0, c1);
        for (int k = 0; k < 2; k++) {
            const char *c = k ? c1 : c0;
            while (*c) {
                if (*c == ' ' || *c == '.' || *c == ',') {
                    c++;
                    continue;
                }
                size_t n = 0;
                while (islower((unsigned char)c[n]))
                    n++;
                int found = 0;
                for (size_t v = 0; v < MF_ARRAY_LEN(vocab) && n; v++)
                    found |= strlen(vocab[v]) == n && strncmp(vocab[v], c, n) == 0;
                if (!found)
                    fail_msg("%s: caption word '%.*s' not in the vocabulary", img, (int)(n ? n : 1), c);
                c += n;
            }
        }
        char rel[256];
        snprintf(rel, sizeof rel, "data/shapes/%s", img);
        struct mf_err err = {0};
        struct mf_image im = {0};
        if (mf_image_load(mf_test_path(rel), &im, &err) != MF_OK)
            fail_msg("%s", err.msg);
        assert_true(im.w >= 64 && im.h >= 64);
        mf_image_free(&im);
    }
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_golden),  cmocka_unit_test(test_resize_golden),
        cmocka_unit_test(test_worked_examples), cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_preprocess),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load_mem_matches_file), cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_shapes_dataset), cmocka_unit_test(test_probe),
        cmocka_unit_test(test_pixel_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
