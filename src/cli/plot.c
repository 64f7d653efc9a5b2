/*
 * cli/plot.c: sparsity.svg: layer-wise sparsity per modality, one line per (method, sparsity) run.
 * Titled with the model; one panel per modality; x = the modality's prunable tensors in forward
 * order (ticks at layer boundaries, the axis naming the towers the panel holds: vision encoder,
 * text encoder, text decoder with "d" ticks), y = fraction pruned, each requested sparsity a grey
 * dashed level. Plain SVG 1.1, no scripts, readable at 100 % zoom.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/prune_cli.h"
#include "io/fs.h"

static const char *dashes[] = {"", "8,4", "2,3", "12,3,3,3"};

/* s as SVG text content (XML-escaped). */
static void put_text(FILE *f, const char *s)
{
    for (; *s; s++)
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

/* The tower of a prunable tensor from its role ("vision.*", "text.*", "decoder.*"): 0, 1, 2. */
static int tower_of(const char *role)
{
    return strncmp(role, "decoder", 7) == 0 ? 2 : strncmp(role, "vision", 6) == 0 ? 0 : 1;
}
static const char *palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

enum mf_status cli_plot_sparsity(const char *path, const struct mf_model *m, const char *model_name,
                                 const struct cli_run *runs, size_t n_runs, struct mf_err *err)
{
    struct mf_atomic_file af;
    enum mf_status st = mf_atomic_open(path, &af, err);
    if (st)
        return st;
    FILE *f = af.f;
    const int W = 1100, panel_h = 300, top = 60, left = 80, right = 250, gap = 70;
    int mods[4], n_mods = 0;
    size_t nt = mf_model_n_tensors(m);
    for (int mod = 1; mod < 4; mod++) {
        for (size_t i = 0; i < nt; i++)
            if (mf_model_tensor_at(m, i)->prunable && (int)mf_model_tensor_at(m, i)->modality == mod) {
                mods[n_mods++] = mod;
                break;
            }
    }
    int H = top + n_mods * (panel_h + gap) + 20;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"DejaVu Sans, Arial, sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"30\" font-size=\"20\" font-weight=\"bold\">Layer-wise sparsity per modality: ",
            W, H, W, H, left);
    put_text(f, model_name ? model_name : "");
    fputs("</text>\n", f);
    int pw = W - left - right;
    for (int p = 0; p < n_mods; p++) {
        int mod = mods[p], y0 = top + p * (panel_h + gap);
        size_t cnt = 0;
        bool towers[3] = {false, false, false};
        for (size_t i = 0; i < nt; i++) {
            const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
            if (t->prunable && (int)t->modality == mod) {
                cnt++;
                towers[tower_of(t->role)] = true;
            }
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"16\" font-weight=\"bold\">%s (%zu tensors)</text>\n", left,
                y0 + 10, mf_modality_name((enum mf_modality)mod), cnt);
        int py = y0 + 20;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", left, py,
                pw, panel_h - 40);
        for (int q = 0; q <= 4; q++) {
            double yy = py + (panel_h - 40) * (1.0 - q / 4.0);
            fprintf(f,
                    "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                    "<text x=\"%d\" y=\"%.1f\" font-size=\"13\" text-anchor=\"end\">%d%%</text>\n",
                    left, yy, left + pw, yy, left - 8, yy + 4, q * 25);
        }
        /* layer ticks */
        size_t k = 0;
        int last_layer = -2;
        const char *last_prefix = "";
        for (size_t i = 0; i < nt; i++) {
            const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
            if (!t->prunable || t->modality != (enum mf_modality)mod)
                continue;
            double x = left + (cnt > 1 ? (double)pw * (double)k / (double)(cnt - 1) : pw / 2.0);
            const char *dot = strchr(t->role, '.');
            bool new_tower = strncmp(t->role, last_prefix, dot ? (size_t)(dot - t->role) : 0) != 0;
            if (t->layer != last_layer || new_tower) {
                fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/>\n", x, py, x,
                        py + panel_h - 40);
                fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s%d</text>\n", x,
                        py + panel_h - 24, strncmp(t->role, "decoder", 7) == 0 ? "d" : "", t->layer);
                last_layer = t->layer;
                last_prefix = t->role;
            }
            k++;
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\">%s%s%s%s%s</text>\n",
                left + pw / 2, py + panel_h - 6, towers[0] ? "vision encoder layer" : "",
                towers[0] && towers[1] ? ", " : "", towers[1] ? "text encoder layer" : "",
                towers[2] && (towers[0] || towers[1]) ? ", " : "", towers[2] ? "d = text decoder layer" : "");
        /* the requested sparsities, once each */
        for (size_t r = 0; r < n_runs; r++) {
            bool seen = false;
            for (size_t q = 0; q < r; q++)
                seen |= runs[q].style_dash == runs[r].style_dash;
            if (seen)
                continue;
            double y = py + (panel_h - 40) * (1.0 - runs[r].sparsity);
            fprintf(f,
                    "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#999\" stroke-dasharray=\"1,4\"/>\n"
                    "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" fill=\"#666\">requested %g %%</text>\n",
                    left, y, left + pw, y, left + 4, y - 3, 100.0 * runs[r].sparsity);
        }
        for (size_t r = 0; r < n_runs; r++) {
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"%s\" points=\"",
                    palette[runs[r].style_color % MF_ARRAY_LEN(palette)],
                    dashes[runs[r].style_dash % MF_ARRAY_LEN(dashes)]);
            k = 0;
            for (size_t i = 0; i < nt; i++) {
                const struct mf_model_tensor *t = mf_model_tensor_at(m, i);
                if (!t->prunable || t->modality != (enum mf_modality)mod)
                    continue;
                double x = left + (cnt > 1 ? (double)pw * (double)k / (double)(cnt - 1) : pw / 2.0);
                double y = py + (panel_h - 40) * (1.0 - runs[r].tensor_sparsity[i]);
                fprintf(f, "%.1f,%.1f ", x, y);
                k++;
            }
            fprintf(f, "\"/>\n");
        }
    }
    for (size_t r = 0; r < n_runs; r++) {
        int y = top + 30 + (int)r * 24;
        fprintf(f,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\" "
                "stroke-dasharray=\"%s\"/>\n"
                "<text x=\"%d\" y=\"%d\" font-size=\"14\">%s</text>\n",
                W - right + 20, y, W - right + 60, y, palette[runs[r].style_color % MF_ARRAY_LEN(palette)],
                dashes[runs[r].style_dash % MF_ARRAY_LEN(dashes)], W - right + 68, y + 5, runs[r].name);
    }
    fprintf(f, "</svg>\n");
    if (ferror(f)) {
        mf_atomic_abort(&af);
        return mf_err_set(err, MF_ERR_IO, "%s: write failed: %s", path, mf_fs_strerror(errno));
    }
    return mf_atomic_commit(&af, err);
}
