/*
 * cli/verb_eval_vqa.c: `multiflow eval vqa`: BLIP's rank-based VQA evaluation (rank_answer over an
 * answer list, models/vqa.h, eval/vqa_eval.h) scored with the official VQA accuracy
 * (mf_vqa_accuracy), overall and per question type; optional predictions file in the VQA
 * evaluation server's result format [{"question_id", "answer"}].
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"
#include "eval/vqa_eval.h"
#include "io/fs.h"
#include "multiflow/eval.h"

enum { OPT_ANSWERS = OPT_VERB_BASE + 50, OPT_K_TEST, OPT_PREDICTIONS, OPT_QCLEAN };

static const char help[] =
    "usage: multiflow eval vqa --model PATH --data ANN --images ROOT [--answers LIST] [--k-test 128]\n"
    "                          [--predictions FILE] [--json] [options]\n"
    "\n"
    "VQA with BLIP's answer ranking: for each question, the answers of LIST whose first token the\n"
    "decoder finds most probable (k = min(k-test, answers)) are scored by their full label-smoothed\n"
    "LM loss given the question (encoded with cross-attention to the image); the lowest wins. The\n"
    "answers are scored with the official VQA accuracy (normalisation, leave-one-out over the human\n"
    "answers, 0-100), overall and per question_type.\n"
    "\n"
    "  --data ANN            JSON array of {\"image\", \"question\", \"question_id\", \"answer\": [...],\n"
    "                        \"question_type\"?} (the world's vqa_test.json, BLIP's vqa_*.json); records\n"
    "                        without \"answer\" are answered but not scored (only with --predictions)\n"
    "  --images ROOT         folder the image paths are relative to\n"
    CLI_DATA_HELP
    "  --answers LIST        JSON array of candidate answers (default: answers.json next to ANN)\n"
    "  --k-test K            ranking depth (default 128, BLIP's)\n"
    "  --question-clean multiflow|blip   question cleaning (default multiflow: MULTIFLOW's, which\n"
    "                        deletes ? , ' as well; blip: salesforce/BLIP's pre_question)\n"
    "  --predictions FILE    write [{\"question_id\", \"answer\"}] (the VQA server's result format)\n"
    CLI_COMMON_HELP;

static json_t *per_type_json(const struct mf_vqa_result *r)
{
    json_t *o = json_object();
    for (int64_t i = 0; i < r->n_types; i++)
        json_object_set_new(o, r->per_type[i].name, json_real(r->per_type[i].accuracy));
    return o;
}

static int write_predictions(const char *path, const struct mf_vqa_set *v, int64_t n, char *const *list,
                             const int64_t *pred)
{
    struct mf_err err = {0};
    json_t *arr = json_array();
    for (int64_t i = 0; i < n; i++) {
        json_t *qid = json_loads(v->question_id[i], JSON_DECODE_ANY, NULL);
        json_array_append_new(arr, json_pack("{s:o,s:s}", "question_id", qid, "answer", list[pred[i]]));
    }
    struct mf_atomic_file af;
    int rc = 0;
    if (mf_atomic_open(path, &af, &err)) {
        rc = cli_error("%s", err.msg);
    } else if (json_dumpf(arr, af.f, JSON_INDENT(1)) != 0 || fputc('\n', af.f) == EOF) {
        mf_atomic_abort(&af);
        rc = cli_error("%s: cannot write", path);
    } else if (mf_atomic_commit(&af, &err)) {
        rc = cli_error("%s", err.msg);
    }
    json_decref(arr);
    return rc;
}

int verb_eval_vqa(int argc, char **argv)
{
    static const struct option opts[] = {CLI_COMMON_OPTIONS, CLI_DATA_OPTIONS,
                                         {"answers", required_argument, 0, OPT_ANSWERS},
                                         {"k-test", required_argument, 0, OPT_K_TEST},
                                         {"predictions", required_argument, 0, OPT_PREDICTIONS},
                                         {"question-clean", required_argument, 0, OPT_QCLEAN},
                                         {0, 0, 0, 0}};
    struct cli_common c;
    const char *answers_path = NULL, *pred_path = NULL;
    struct mf_vqa_eval_opts o = {128, MF_QUESTION_MULTIFLOW, 0};
    struct mf_err err = {0};
    cli_common_init(&c);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP: fputs(help, stdout); return 0;
        case OPT_ANSWERS: answers_path = optarg; break;
        case OPT_PREDICTIONS: pred_path = optarg; break;
        case OPT_K_TEST:
            if (!cli_parse_int("k-test", optarg, 1, 1 << 20, &o.k_test))
                return 2;
            break;
        case OPT_QCLEAN:
            if (mf_question_style_parse(optarg, &o.style, &err))
                return cli_usage_error("eval vqa", "--question-clean: %s", err.msg);
            break;
        default: {
            int rc = cli_common_or_usage(&c, opt, optarg, "eval vqa");
            if (rc)
                return rc;
        }
        }
    }
    if (cli_no_operands("eval vqa", argc, argv))
        return 2;
    if (!c.model || !c.data)
        return cli_usage_error("eval vqa", "--model and --data are required");
    char def_answers[MF_PATH_MAX];
    if (!answers_path) {
        if (!mf_fs_dirname(def_answers, sizeof def_answers, c.data) ||
            strlen(def_answers) + sizeof "/answers.json" > sizeof def_answers)
            return cli_error("%s: path too long", c.data);
        strcat(def_answers, "/answers.json");
        if (!mf_fs_exists(def_answers))
            return cli_usage_error("eval vqa", "no --answers and no %s", def_answers);
        answers_path = def_answers;
    }
    if (pred_path && cli_check_writable(pred_path))
        return 1;
    cli_common_finish(&c);

    int rc = 1;
    struct mf_vqa_set *v = NULL;
    char **list = NULL;
    int64_t n_list = 0, *pred = NULL;
    struct mf_model *m = NULL;
    struct mf_session *s = NULL;
    struct mf_vqa_question *qs = NULL;
    struct mf_vqa_result r = {0};
    bool have_r = false;
    if (mf_vqa_set_load(c.data, c.images, pred_path == NULL, &v, &err) ||
        mf_vqa_answer_list_load(answers_path, &list, &n_list, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    const int64_t n = c.pairs > 0 ? MF_MIN(c.pairs, v->n) : v->n;
    if ((c.pairs > 0 && mf_annotations_truncate(v->ann, n, &err)) ||
        mf_pairs_check_images(v->ann, c.images, c.allow_outside_root, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (!(m = cli_load_model(&c)))
        goto done;
    if (!(pred = malloc((size_t)n * sizeof *pred)) || !(qs = calloc((size_t)n, sizeof *qs))) {
        cli_error("out of memory");
        goto done;
    }
    o.batch = c.batch;
    const double t0 = mf_time_now();
    struct mf_vqa_set view = *v;
    view.n = n;
    if (mf_session_create(m, c.threads, &s, &err) ||
        mf_eval_vqa(s, &view, (const char *const *)list, n_list, &o, pred, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    const double secs = mf_time_now() - t0;
    int64_t n_scored = 0;
    for (int64_t i = 0; i < n; i++)
        if (v->answers[i])
            qs[n_scored++] = (struct mf_vqa_question){(const char *const *)v->answers[i], v->n_answers[i],
                                                      list[pred[i]], v->question_type[i], v->answer_type[i]};
    if (n_scored > 0) {
        if (mf_vqa_accuracy(qs, n_scored, NULL, &r, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        have_r = true;
    }
    if (pred_path && write_predictions(pred_path, v, n, list, pred))
        goto done;
    if (c.json) {
        json_t *j = json_object();
        json_object_set_new(j, "questions", json_integer(n_scored));
        json_object_set_new(j, "accuracy", have_r ? json_real(r.accuracy) : json_null());
        json_object_set_new(j, "per_type", have_r ? per_type_json(&r) : json_object());
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
        fputc('\n', stdout);
        json_decref(j);
    } else {
        printf("vqa on %s: %lld questions answered from %lld candidates (k = %lld), %.1f s\n", c.data, (long long)n,
               (long long)n_list, (long long)MF_MIN(o.k_test, n_list), secs);
        if (have_r) {
            printf("  accuracy %6.2f  (%lld scored)\n", r.accuracy, (long long)n_scored);
            for (int64_t i = 0; i < r.n_types; i++)
                printf("  %-20s %6.2f  (%lld)\n", r.per_type[i].name, r.per_type[i].accuracy,
                       (long long)r.per_type[i].n);
        }
        if (pred_path)
            printf("  predictions: %s\n", pred_path);
    }
    if (fflush(stdout) != 0) {
        cli_error("cannot write to stdout");
        goto done;
    }
    rc = 0;
done:
    if (have_r)
        mf_vqa_result_free(&r);
    free(qs);
    free(pred);
    mf_session_free(s);
    mf_model_free(m);
    mf_vqa_answer_list_free(list, n_list);
    mf_vqa_set_free(v);
    return rc;
}
