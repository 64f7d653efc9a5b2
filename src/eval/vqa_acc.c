/*
 * eval/vqa_acc.c: VQA accuracy as the official VQA evaluation computes it (models.md Q15).
 *
 * Reference: GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py (VQAEval.evaluate,
 * processPunctuation, processDigitArticle), the code EvalAI runs for VQA v2. Reproduced:
 *   - every answer and the prediction: '\n' and '\t' -> ' ', then stripped of whitespace at both ends;
 *   - only when the human answers of a question are not all identical (after that step), each of
 *     them and the prediction are normalised: processPunctuation (each of ; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !
 *     is deleted when it touches a space in the original text, or when the text has a digit,comma,digit
 *     sequence anywhere; otherwise it becomes a space; then periods not followed by a digit are
 *     deleted, at most 32 of them, because the reference passes re.UNICODE (= 32) as re.sub's count),
 *     then processDigitArticle (lower case, split on whitespace, none/zero..ten -> 0..10, a/an/the
 *     dropped, the contraction table applied word by word, joined by single spaces);
 *   - accuracy of a question = mean over each human answer j of min(1, #answers k != j equal to the
 *     prediction / 3); overall and per type = mean over questions, x100.
 * Differences: Python 2's unicode.lower() is per character; text/unicase.h is Python 3's full
 * lower (differs only for a few non-ASCII letters such as U+0130). Results are not rounded (the
 * reference rounds to 2 decimals when it stores them).
 * Does not: read VQA files or rank answers (the eval verb and models/ do).
 */
#include <string.h>

#include "core/common.h"
#include "multiflow/eval.h"
#include "text/unicase.h"

/* processDigitArticle's contraction table, as in the reference (including its keys with capitals,
 * which never match after the lower case, and "somebody'd" -> "somebodyd"). */
static const char *const contractions[][2] = {
    {"aint", "ain't"}, {"arent", "aren't"}, {"cant", "can't"}, {"couldve", "could've"}, {"couldnt", "couldn't"},
    {"couldn'tve", "couldn't've"}, {"couldnt've", "couldn't've"}, {"didnt", "didn't"}, {"doesnt", "doesn't"},
    {"dont", "don't"}, {"hadnt", "hadn't"}, {"hadnt've", "hadn't've"}, {"hadn'tve", "hadn't've"},
    {"hasnt", "hasn't"}, {"havent", "haven't"}, {"hed", "he'd"}, {"hed've", "he'd've"}, {"he'dve", "he'd've"},
    {"hes", "he's"}, {"howd", "how'd"}, {"howll", "how'll"}, {"hows", "how's"}, {"Id've", "I'd've"},
    {"I'dve", "I'd've"}, {"Im", "I'm"}, {"Ive", "I've"}, {"isnt", "isn't"}, {"itd", "it'd"}, {"itd've", "it'd've"},
    {"it'dve", "it'd've"}, {"itll", "it'll"}, {"let's", "let's"}, {"maam", "ma'am"}, {"mightnt", "mightn't"},
    {"mightnt've", "mightn't've"}, {"mightn'tve", "mightn't've"}, {"mightve", "might've"}, {"mustnt", "mustn't"},
    {"mustve", "must've"}, {"neednt", "needn't"}, {"notve", "not've"}, {"oclock", "o'clock"},
    {"oughtnt", "oughtn't"}, {"ow's'at", "'ow's'at"}, {"'ows'at", "'ow's'at"}, {"'ow'sat", "'ow's'at"},
    {"shant", "shan't"}, {"shed've", "she'd've"}, {"she'dve", "she'd've"}, {"she's", "she's"},
    {"shouldve", "should've"}, {"shouldnt", "shouldn't"}, {"shouldnt've", "shouldn't've"},
    {"shouldn'tve", "shouldn't've"}, {"somebody'd", "somebodyd"}, {"somebodyd've", "somebody'd've"},
    {"somebody'dve", "somebody'd've"}, {"somebodyll", "somebody'll"}, {"somebodys", "somebody's"},
    {"someoned", "someone'd"}, {"someoned've", "someone'd've"}, {"someone'dve", "someone'd've"},
    {"someonell", "someone'll"}, {"someones", "someone's"}, {"somethingd", "something'd"},
    {"somethingd've", "something'd've"}, {"something'dve", "something'd've"}, {"somethingll", "something'll"},
    {"thats", "that's"}, {"thered", "there'd"}, {"thered've", "there'd've"}, {"there'dve", "there'd've"},
    {"therere", "there're"}, {"theres", "there's"}, {"theyd", "they'd"}, {"theyd've", "they'd've"},
    {"they'dve", "they'd've"}, {"theyll", "they'll"}, {"theyre", "they're"}, {"theyve", "they've"},
    {"twas", "'twas"}, {"wasnt", "wasn't"}, {"wed've", "we'd've"}, {"we'dve", "we'd've"}, {"weve", "we've"},
    {"werent", "weren't"}, {"whatll", "what'll"}, {"whatre", "what're"}, {"whats", "what's"},
    {"whatve", "what've"}, {"whens", "when's"}, {"whered", "where'd"}, {"wheres", "where's"},
    {"whereve", "where've"}, {"whod", "who'd"}, {"whod've", "who'd've"}, {"who'dve", "who'd've"},
    {"wholl", "who'll"}, {"whos", "who's"}, {"whove", "who've"}, {"whyll", "why'll"}, {"whyre", "why're"},
    {"whys", "why's"}, {"wont", "won't"}, {"wouldve", "would've"}, {"wouldnt", "wouldn't"},
    {"wouldnt've", "wouldn't've"}, {"wouldn'tve", "wouldn't've"}, {"yall", "y'all"}, {"yall'll", "y'all'll"},
    {"y'allll", "y'all'll"}, {"yall'd've", "y'all'd've"}, {"y'alld've", "y'all'd've"},
    {"y'all'dve", "y'all'd've"}, {"youd", "you'd"}, {"youd've", "you'd've"}, {"you'dve", "you'd've"},
    {"youll", "you'll"}, {"youre", "you're"}, {"youve", "you've"},
};

static const char *const number_words[][2] = {
    {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"}, {"three", "3"}, {"four", "4"}, {"five", "5"},
    {"six", "6"}, {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"},
};

static const char punct_chars[] = ";/[]\"{}()=+\\_-><@`,?!";

static bool is_digit(int32_t c)
{
    return c >= '0' && c <= '9';
}

/* processPunctuation on cp[0..n) in place; returns the new length. */
static size_t process_punctuation(int32_t *cp, size_t n)
{
    bool comma_digit = false;
    for (size_t i = 0; i + 2 < n && !comma_digit; i++)
        comma_digit = is_digit(cp[i]) && cp[i + 1] == ',' && is_digit(cp[i + 2]);
    bool remove[128] = {0};
    for (const char *p = punct_chars; *p; p++) {
        bool touches = comma_digit;
        for (size_t i = 0; i < n && !touches; i++)
            touches = cp[i] == *p && ((i + 1 < n && cp[i + 1] == ' ') || (i > 0 && cp[i - 1] == ' '));
        remove[(unsigned char)*p] = touches;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = cp[i];
        if (c < 128 && c && strchr(punct_chars, (int)c)) {
            if (!remove[c])
                cp[m++] = ' ';
        } else {
            cp[m++] = c;
        }
    }
    /* periodStrip: '.' not followed by a digit, at most 32 replacements (re.sub's count) */
    size_t k = 0, removed = 0;
    for (size_t i = 0; i < m; i++) {
        if (cp[i] == '.' && removed < 32 && !(i + 1 < m && is_digit(cp[i + 1]))) {
            removed++;
            continue;
        }
        cp[k++] = cp[i];
    }
    return k;
}

/* processDigitArticle of cp[0..n) into out (UTF-8, capacity out_size); false if it does not fit. */
static bool process_digit_article(const int32_t *cp, size_t n, int32_t *low, char *out, size_t out_size)
{
    size_t nl = mf_uni_lower(cp, n, low);
    size_t o = 0;
    char word[1024];
    for (size_t i = 0; i < nl;) {
        while (i < nl && mf_uni_is_pyspace(low[i]))
            i++;
        size_t s = i;
        while (i < nl && !mf_uni_is_pyspace(low[i]))
            i++;
        if (i == s)
            break;
        /* the word as UTF-8; a word longer than the buffer matches no table entry */
        size_t wl = 0;
        bool fits = (i - s) * 4 < sizeof word;
        if (fits)
            wl = mf_uni_encode(low + s, i - s, word);
        word[fits ? wl : 0] = '\0';
        const char *w = word;
        for (size_t t = 0; fits && t < MF_ARRAY_LEN(number_words); t++)
            if (strcmp(word, number_words[t][0]) == 0)
                w = number_words[t][1];
        if (fits && (strcmp(w, "a") == 0 || strcmp(w, "an") == 0 || strcmp(w, "the") == 0))
            continue;
        for (size_t t = 0; fits && t < MF_ARRAY_LEN(contractions); t++)
            if (strcmp(w, contractions[t][0]) == 0) {
                w = contractions[t][1];
                break;
            }
        size_t len = fits ? strlen(w) : 4 * (i - s); /* bound for an over-long word */
        if (o + (o ? 1 : 0) + len + 1 > out_size)
            return false;
        if (o)
            out[o++] = ' ';
        if (fits) {
            memcpy(out + o, w, len);
            o += len;
        } else {
            o += mf_uni_encode(low + s, i - s, out + o);
        }
    }
    if (o + 1 > out_size)
        return false;
    out[o] = '\0';
    return true;
}

enum mf_status mf_vqa_normalize(const char *answer, char *out, size_t out_size, struct mf_err *err)
{
    size_t len = strlen(answer), n, bad;
    int32_t *cp = mf_malloc((3 * len + 2) * sizeof *cp);
    enum mf_status st = MF_OK;
    if (!cp)
        return mf_err_set(err, MF_ERR_NOMEM, "VQA answer: out of memory (%zu bytes)", len);
    if (mf_uni_decode(answer, len, cp, &n, &bad) != MF_OK) {
        st = mf_err_set(err, MF_ERR_FORMAT, "VQA answer is not valid UTF-8 (byte %zu)", bad);
    } else {
        n = process_punctuation(cp, n);
        if (!process_digit_article(cp, n, cp + len + 1, out, out_size))
            st = mf_err_set(err, MF_ERR_RANGE, "VQA answer: output buffer of %zu bytes is too small", out_size);
    }
    mf_free(cp);
    return st;
}

/* answer.replace('\n', ' ').replace('\t', ' ').strip() into a new string; NULL on NOMEM or bad UTF-8
 * (*bad set). */
static char *clean_ws(const char *s, bool *bad_utf8)
{
    size_t len = strlen(s), n, bad;
    int32_t *cp = mf_malloc((len + 1) * sizeof *cp);
    char *out = NULL;
    *bad_utf8 = false;
    if (!cp)
        return NULL;
    if (mf_uni_decode(s, len, cp, &n, &bad) != MF_OK) {
        *bad_utf8 = true;
        goto done;
    }
    size_t a = 0, b = n;
    while (a < b && (cp[a] == '\n' || cp[a] == '\t' || mf_uni_is_pyspace(cp[a])))
        a++;
    while (b > a && (cp[b - 1] == '\n' || cp[b - 1] == '\t' || mf_uni_is_pyspace(cp[b - 1])))
        b--;
    for (size_t i = a; i < b; i++)
        if (cp[i] == '\n' || cp[i] == '\t')
            cp[i] = ' ';
    out = mf_malloc(4 * (b - a) + 1);
    if (out)
        out[mf_uni_encode(cp + a, b - a, out)] = '\0';
done:
    mf_free(cp);
    return out;
}

/* Replaces *s by its normalisation. */
static enum mf_status normalize_in_place(char **s, struct mf_err *err)
{
    size_t size = MF_VQA_NORM_SIZE(strlen(*s));
    char *o = mf_malloc(size);
    if (!o)
        return mf_err_set(err, MF_ERR_NOMEM, "VQA accuracy: out of memory");
    enum mf_status st = mf_vqa_normalize(*s, o, size, err);
    if (st != MF_OK) {
        mf_free(o);
        return st;
    }
    mf_free(*s);
    *s = o;
    return MF_OK;
}

/* Accuracy (0-1) of one question. */
static enum mf_status question_accuracy(const struct mf_vqa_question *q, int64_t qi, double *acc, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    int n = q->n_answers;
    char **ans = mf_calloc((size_t)n + 1, sizeof *ans);
    if (!ans)
        return mf_err_set(err, MF_ERR_NOMEM, "VQA accuracy: out of memory");
    for (int k = 0; k <= n; k++) {
        const char *src = k < n ? q->answers[k] : q->prediction;
        bool bad;
        if (!src) {
            st = mf_err_set(err, MF_ERR_ARG, "VQA accuracy: question %lld: %s is NULL", (long long)qi,
                            k < n ? "a human answer" : "the prediction");
            goto done;
        }
        ans[k] = clean_ws(src, &bad);
        if (!ans[k]) {
            if (bad)
                st = mf_err_set(err, MF_ERR_FORMAT, "VQA accuracy: question %lld: %s is not valid UTF-8",
                                (long long)qi, k < n ? "a human answer" : "the prediction");
            else
                st = mf_err_set(err, MF_ERR_NOMEM, "VQA accuracy: out of memory");
            goto done;
        }
    }
    bool distinct = false;
    for (int k = 1; k < n && !distinct; k++)
        distinct = strcmp(ans[k], ans[0]) != 0;
    if (distinct)
        for (int k = 0; k <= n; k++)
            if ((st = normalize_in_place(&ans[k], err)) != MF_OK)
                goto done;
    double sum = 0;
    for (int j = 0; j < n; j++) {
        int match = 0;
        for (int k = 0; k < n; k++)
            match += k != j && strcmp(ans[k], ans[n]) == 0;
        sum += MF_MIN(1.0, (double)match / 3);
    }
    *acc = sum / n;
done:
    for (int k = 0; k <= n; k++)
        mf_free(ans[k]);
    mf_free(ans);
    return st;
}

/* Adds acc to the group called name (first appearance order). */
static enum mf_status add_group(struct mf_vqa_group **g, int64_t *n, const char *name, double acc, struct mf_err *err)
{
    for (int64_t i = 0; i < *n; i++)
        if (strcmp((*g)[i].name, name) == 0) {
            (*g)[i].n++;
            (*g)[i].accuracy += acc;
            return MF_OK;
        }
    struct mf_vqa_group *ng = mf_realloc(*g, (size_t)(*n + 1) * sizeof *ng);
    if (!ng)
        return mf_err_set(err, MF_ERR_NOMEM, "VQA accuracy: out of memory");
    *g = ng;
    ng[*n] = (struct mf_vqa_group){.name = mf_strdup(name), .n = 1, .accuracy = acc};
    if (!ng[*n].name)
        return mf_err_set(err, MF_ERR_NOMEM, "VQA accuracy: out of memory");
    (*n)++;
    return MF_OK;
}

void mf_vqa_result_free(struct mf_vqa_result *r)
{
    if (!r)
        return;
    for (int64_t i = 0; i < r->n_types; i++)
        mf_free(r->per_type[i].name);
    for (int64_t i = 0; i < r->n_answer_types; i++)
        mf_free(r->per_answer_type[i].name);
    mf_free(r->per_type);
    mf_free(r->per_answer_type);
    memset(r, 0, sizeof *r);
}

enum mf_status mf_vqa_accuracy(const struct mf_vqa_question *q, int64_t n, double *per_question,
                               struct mf_vqa_result *out, struct mf_err *err)
{
    memset(out, 0, sizeof *out);
    if (n < 1)
        return mf_err_set(err, MF_ERR_ARG, "VQA accuracy: no questions");
    enum mf_status st = MF_OK;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double acc = 0;
        if (q[i].n_answers < 1 || !q[i].answers) {
            st = mf_err_set(err, MF_ERR_ARG, "VQA accuracy: question %lld has no human answers", (long long)i);
            goto fail;
        }
        if ((st = question_accuracy(&q[i], i, &acc, err)) != MF_OK)
            goto fail;
        sum += acc;
        if (per_question)
            per_question[i] = 100 * acc;
        if (q[i].question_type && (st = add_group(&out->per_type, &out->n_types, q[i].question_type, acc, err)))
            goto fail;
        if (q[i].answer_type &&
            (st = add_group(&out->per_answer_type, &out->n_answer_types, q[i].answer_type, acc, err)))
            goto fail;
    }
    out->n_questions = n;
    out->accuracy = 100 * sum / (double)n;
    for (int64_t i = 0; i < out->n_types; i++)
        out->per_type[i].accuracy = 100 * out->per_type[i].accuracy / (double)out->per_type[i].n;
    for (int64_t i = 0; i < out->n_answer_types; i++)
        out->per_answer_type[i].accuracy =
            100 * out->per_answer_type[i].accuracy / (double)out->per_answer_type[i].n;
    return MF_OK;
fail:
    mf_vqa_result_free(out);
    return st;
}
