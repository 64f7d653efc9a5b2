/* cli/prune_cli.h: what verb_prune.c, verb_apply.c and plot.c share. */
#ifndef MF_CLI_PRUNE_CLI_H
#define MF_CLI_PRUNE_CLI_H

#include "cli/cli.h"
#include "models/model_impl.h"
#include "multiflow/prune.h"

/* One (method, sparsity) run, for the summary and the plot. */
struct cli_run {
    char name[64];          /* "multiflow-63" */
    int style_color, style_dash; /* plot style: one colour per method, one dash pattern per sparsity */
    double sparsity;        /* requested (marked on the plot) */
    double *tensor_sparsity; /* (n_tensors of the model) achieved per prunable tensor, model order */
};

/* sparsity.svg: titled with model_name, one panel per modality with a line per run, each requested
 * sparsity marked, the x axis naming only the towers the panel shows. */
enum mf_status cli_plot_sparsity(const char *path, const struct mf_model *m, const char *model_name,
                                 const struct cli_run *runs, size_t n_runs, struct mf_err *err);

/* Writes one run directory: checkpoint, masks, report.json; returns the report's JSON object
 * (caller owns) through *report for the summary. masks in set order. */
struct cli_report_info {
    const char *method;
    double sparsity;
    uint64_t seed;
    const char *stats_source; /* "forward pass", "stats file X", or NULL (data-free) */
    int64_t calib_pairs;
    const struct cli_common *common;
    double t_load, t_calib, t_score, t_select;
    const float *const *values; /* set order: new weights to write (chita), NULL = the input's */
};
enum mf_status cli_write_run(const struct mf_model *m, const struct mf_prune_set *set, uint8_t *const *masks,
                             const char *dir, const struct cli_report_info *ri, struct cli_run *run, void **report,
                             struct mf_err *err);

/* Writes a jansson object as indented JSON, atomically. */
enum mf_status cli_write_json(const char *path, void *root, struct mf_err *err);

int verb_prune(int argc, char **argv);
int verb_apply(int argc, char **argv);
int verb_stats(int argc, char **argv);

#endif
