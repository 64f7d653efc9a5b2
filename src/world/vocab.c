/*
 * world/vocab.c: the world's WordPiece vocabulary in BERT's vocab.txt form.
 *
 * Lines (id = 0-based line): [PAD] [UNK] [CLS] [SEP] [MASK], the grammar's words (grammar.c
 * world_words, in that order), then every printable ASCII character not yet listed (punctuation,
 * digits, letters) and "##" + each digit and letter, so WordPiece splits any ASCII word into known
 * pieces. The grammar's words are whole tokens, so a caption costs one token per word.
 * [DEC] and [ENC] are not lines: as in BLIP's original layout, the loader appends them after the
 * file's tokens (text/wordpiece.h mf_vocab_add_blip_tokens: [DEC] = V, [ENC] = V + 1).
 * No [unused] lines: the loader finds special tokens by their text, not by BERT's fixed ids.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "io/fs.h"
#include "world/grammar.h"

#define VOCAB_MAX 256

static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

/* Built once on first use; the table is a pure function of the grammar. */
static struct {
    int n;
    const char *tok[VOCAB_MAX];
    char chars[2 * 128][4];
} V;

static void add(const char *t)
{
    for (int i = 0; i < V.n; i++)
        if (strcmp(V.tok[i], t) == 0)
            return;
    MF_ASSERT(V.n < VOCAB_MAX);
    V.tok[V.n++] = t;
}

static void build_once(void)
{
    for (size_t i = 0; i < MF_ARRAY_LEN(specials); i++)
        add(specials[i]);
    for (int i = 0; world_words[i]; i++)
        add(world_words[i]);
    int k = 0;
    for (int c = 33; c < 127; c++) { /* single characters: punctuation, digits, letters (lower case) */
        if (c >= 'A' && c <= 'Z')
            continue;
        snprintf(V.chars[k], 4, "%c", c);
        add(V.chars[k++]);
    }
    for (int c = '0'; c <= 'z'; c++)
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')) {
            snprintf(V.chars[k], 4, "##%c", c);
            add(V.chars[k++]);
        }
}

static void build(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_once);
}

int mf_world_vocab_size(void)
{
    build();
    return V.n;
}

const char *mf_world_vocab_token(int i)
{
    build();
    return i >= 0 && i < V.n ? V.tok[i] : NULL;
}

enum mf_status mf_world_write_vocab(const char *path, struct mf_err *err)
{
    build();
    struct mf_atomic_file af;
    enum mf_status st = mf_atomic_open(path, &af, err);
    if (st)
        return st;
    for (int i = 0; i < V.n; i++)
        fprintf(af.f, "%s\n", V.tok[i]);
    return mf_atomic_commit(&af, err);
}
