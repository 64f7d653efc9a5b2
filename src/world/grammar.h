/*
 * world/grammar.h: internals shared by the caption generator (grammar.c), the caption checker
 * (parse.c), the question generator (questions.c) and the vocabulary (vocab.c).
 */
#ifndef MF_WORLD_GRAMMAR_H
#define MF_WORLD_GRAMMAR_H

#include "world/world_impl.h"

/* Every word of the grammar, questions and answers, NULL-terminated. */
extern const char *const world_words[];

/* A text under construction: words joined by single spaces, "," and "?" glued to the word before;
 * pieces counts the words and punctuation marks (= WordPiece tokens with the world's vocabulary). */
struct world_sb {
    char *buf;
    size_t cap, len;
    int pieces;
    bool overflow;
};
void world_sb_init(struct world_sb *b, char *buf, size_t cap);
void world_sb_word(struct world_sb *b, const char *w);
/* "a" or "an" before word w. */
const char *world_article(const char *w);

#endif
